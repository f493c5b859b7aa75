"""Write an *oracle* split: train and validate on the held-out test images themselves.

No honest model may do this; that is the point. A network of a given size, fine-tuned from its
shipped weights on the very images it is scored on, shows how far that network *could* go on
this data — if even that stays below a target, more training of the honest model cannot reach it,
and the limit is the data (for the Hannover PNGs: CLAHE texture in the references that the degraded
input does not contain).

    python scripts/oracle_split.py splits/hannover-cxr.json /tmp/oracle.json
    python -m train fit --model edsr_x2 --split-file /tmp/oracle.json \\
        --init models/weights/edsr_x2.safetensors --out /tmp/oracle/edsr_x2.safetensors ...

Never write the result over ``models/weights``: ``--out`` keeps it elsewhere. ``fit()`` then
selects on the test images too, and its log's "val PSNR" lines are test-set scores.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def oracle_split(split: dict[str, Any]) -> dict[str, Any]:
    """``split`` with its ``train`` and ``val`` subsets (and their patients) replaced by ``test``."""
    out = dict(split)
    out["train"] = list(split["test"])
    out["val"] = list(split["test"])
    patients = dict(split.get("patients", {}))
    if "test" in patients:
        patients["train"] = patients["val"] = list(patients["test"])
    out["patients"] = patients
    out["oracle"] = "train = val = test: an upper bound, never a shipped model"
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("split", help="the real split file, e.g. splits/hannover-cxr.json")
    ap.add_argument("out", help="where to write the oracle split")
    args = ap.parse_args(argv)
    split = json.loads(Path(args.split).read_text())
    Path(args.out).write_text(json.dumps(oracle_split(split), indent=1))
    print(f"wrote {args.out}: {len(split['test'])} test images as train, val and test")


if __name__ == "__main__":
    main()
