"""Command line: ``python -m train fit ...`` and ``python -m train eval ...``.

Examples::

    python -m train fit --model vdsr_x2 --data ../shared/data/hannover-cxr/png --steps 3000
    python -m train fit --model vdsr_x2 --resume          # continue from checkpoints/
    python -m train eval --models srcnn_x2,vdsr_x2 --scale 2
    python -m train eval --task denoise --noise poisson --models dncnn,dae
    python -m train eval --task denoise --models dncnn,dae --subset external --data external/ --max-side 640
    python -m train fit --model srcnn_x2_real --init models/weights/srcnn_x2.safetensors   # realistic task
    python -m train eval --task sr_real --scale 2 --models srcnn_x2,srcnn_x2_real --subset external --data external/
    python -m train eval --task denoise_real --noise dose2000 --models dncnn,dncnn_real
    python -m train probe --clean edsr_x2 --noisy edsr_x2_na --out models/weights/probe_x2.safetensors
"""

from __future__ import annotations

import argparse
import os
import sys

from .config import DEFAULT_SPLIT, add_fit_args, config_from_args
from .probe import add_probe_args
from .realistic import DENOISE_REAL_EVAL


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    add_fit_args(sub.add_parser("fit", help="train one registered network"))
    add_probe_args(sub.add_parser("probe", help="train the degradation probe of an automatic SR entry (train.probe)"))
    e = sub.add_parser("eval", help="score models on the held-out test patients")
    e.add_argument("--models", default="", help="comma-separated registry names (baseline rows are always added)")
    e.add_argument("--task", default="sr", choices=["sr", "denoise", "enhance", "sr_real", "sr_pg", "denoise_real"],
                   help="sr_real/denoise_real: realistic degradations in the detector-signal domain (train.realistic); "
                   "sr_pg: bicubic sampling plus Poisson-Gaussian noise (noisy, not blurred)")
    e.add_argument("--scale", type=int, default=2, help="SR scale")
    e.add_argument("--noise", default="", choices=["", "gaussian", "poisson", "rician", *DENOISE_REAL_EVAL],
                   help="denoise: noise kind (default gaussian); denoise_real: dose level (default dose250)")
    e.add_argument("--data", default="../shared/data/hannover-cxr/png")
    e.add_argument("--split-file", default=str(DEFAULT_SPLIT))
    e.add_argument("--subset", default="test", choices=["train", "val", "test", "external"],
                   help="split subset; external = every image under --data (another site), split ignored")
    e.add_argument("--max-side", type=int, default=0,
                   help="downscale images whose longer side exceeds N px first (0 = never); the models were trained at 640 px")
    e.add_argument("--crop", type=int, default=0,
                   help="score up to four native-resolution crops of N px per image instead (the resolution users upload)")
    e.add_argument("--limit", type=int, default=0, help="only the first N images (0 = all)")
    e.add_argument("--colour", action="store_true", help="keep colour images in colour, grey ones as three equal channels (DeltaE is reported)")
    e.add_argument("--maps", type=int, default=2, help="write absolute-error maps of the first N images")
    e.add_argument("--out", default="results", help="folder for the CSV, markdown table and error maps")
    e.add_argument("--ensemble", action="store_true",
                   help="also score each network with the x8 geometric self-ensemble (rows named <model>+x8; 8x slower)")
    e.add_argument("--write-cards", action="store_true",
                   help="store the scores in each network's weights metadata (user models: NAME.scores.json beside the file)")
    e.add_argument("--models-dir", default=None,
                   help="folder of user model files to register first (default: $MEDENHANCE_MODELS_DIR, else ./user-models)")
    e.add_argument("--threads", type=int, default=0)
    args = p.parse_args(argv)

    if args.cmd == "probe":
        from .probe import config_from_args as probe_config, fit_probe

        fit_probe(probe_config(args))
        return 0
    if args.cmd == "fit":
        from .fit import fit

        fit(config_from_args(args))
        return 0
    from .evaluate import evaluate, register_user_models

    register_user_models(args.models_dir)
    noise = args.noise or ("dose250" if args.task == "denoise_real" else "gaussian")

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    evaluate(
        [m for m in args.models.split(",") if m], task=args.task, scale=args.scale, data=args.data,
        split_file=args.split_file, subset=args.subset, limit=args.limit, out_dir=args.out,
        write_cards=args.write_cards, noise=noise, maps=args.maps, colour=args.colour,
        max_side=args.max_side, ensemble=args.ensemble, crop=args.crop,
    )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    sys.exit(main())
