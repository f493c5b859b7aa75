"""Call a running MedEnhance Studio from Python with ``gradio_client``.

Usage::

    python scripts/client_example.py [--url http://127.0.0.1:7860] FILE \
        --task "Super-resolution x2" --model bicubic_x2 [--frame 0] [--window default] [--strength 1] [--ensemble] --out out.png

Tasks: "Super-resolution x2", "Super-resolution x4", "Denoise", "Enhance".
Windows: default (file's own, else auto), auto, full, a preset (soft tissue, lung,
bone, brain) or "center,width" such as "40,400". Strength: 1 = the model's output,
0 = the input, in between a blend of the two. --ensemble: average the model over the
8 rotations and flips of the input (8x the time, a slightly lower error).
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import argparse  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

from gradio_client import Client, handle_file  # noqa: E402


def enhance_remote(url: str, file: str | Path, task: str, model: str, frame: int = 0,
                   window: str = "default", out: str | Path = "out.png", strength: float = 1.0,
                   ensemble: bool = False) -> tuple[Path, str]:
    """Send ``file`` to the studio's ``/enhance`` endpoint and save the result PNG at ``out``.

    Returns:
        (path of the saved PNG, the markdown report: timing, image metadata, model card).
    Raises:
        gradio_client.exceptions.AppError: the server rejected the input (its message says why).
    """
    with tempfile.TemporaryDirectory(prefix="medenhance-client-") as tmp:
        client = Client(url, verbose=False, download_files=tmp, analytics_enabled=False)
        # Outputs: ((before, after) preview files, markdown, result PNG path).
        _preview, report, result = client.predict(
            handle_file(str(file)), task, model, frame, window, strength, ensemble, api_name="/enhance"
        )
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(result, out)
    return out, report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("file", help="DICOM / PNG / JPEG / TIFF to enhance")
    p.add_argument("--url", default=os.environ.get("MEDENHANCE_URL", "http://127.0.0.1:7860"))
    p.add_argument("--task", default="Super-resolution x2")
    p.add_argument("--model", default="bicubic_x2")
    p.add_argument("--frame", type=int, default=0)
    p.add_argument("--window", default="default")
    p.add_argument("--strength", type=float, default=1.0, help="0 (the input) .. 1 (the model's output)")
    p.add_argument("--ensemble", action="store_true", help="x8 self-ensemble (8x slower)")
    p.add_argument("--out", default="out.png")
    p.add_argument("--quiet", action="store_true", help="do not print the report")
    args = p.parse_args(argv)
    try:
        out, report = enhance_remote(args.url, args.file, args.task, args.model, args.frame, args.window, args.out,
                                     args.strength, args.ensemble)
    except Exception as e:  # AppError carries the server's gr.Error message
        print(f"error: {e}", file=sys.stderr)
        return 1
    if not args.quiet:
        print(report)
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
