"""Run the same model comparison on every image of a folder through a running studio's ``/compare`` endpoint.

Usage::

    python scripts/compare_folder.py FOLDER --models lanczos_x2,srcnn_x2 \
        [--mode simulate] [--degradation down_x2] [--seed 0] [--window default] \
        [--url http://127.0.0.1:7860] [--out compare.csv] [--zips DIR]

Writes one CSV row per (image, model): the image's file name, then the studio's
metrics table (PSNR, SSIM, MSE, SNR[, DeltaE2000], data range, border crop,
seconds / image; or the no-reference indicators with ``--mode none``). Files the
studio cannot read get one row with the error and the run goes on.

Modes: ``simulate`` (each image is a clean original; ``--degradation`` is one of
down_x2, down_x4, gaussian_noise, poisson_noise, rician_noise, enhance_eval,
low_contrast, gaussian_blur, jpeg, matching the models' scale) or ``none``.
Reference mode needs a ground truth per image, so it is not offered here.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import argparse  # noqa: E402
import csv  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from gradio_client import Client, handle_file  # noqa: E402


def _table_rows(table: Any) -> tuple[list[str], list[list[Any]]]:
    """The Dataframe output as (headers, rows); gradio_client returns ``{"headers": [...], "data": [...]}``."""
    if isinstance(table, dict):
        return list(table.get("headers") or []), [list(r) for r in table.get("data") or []]
    raise ValueError(f"unexpected table output: {type(table).__name__}")


def image_files(folder: str | Path) -> list[Path]:
    """Regular, non-hidden files directly in ``folder``, sorted (the studio decides what is an image)."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and not p.name.startswith("."))


def compare_folder(url: str, folder: str | Path, models: list[str], out_csv: str | Path, *, mode: str = "simulate",
                   degradation: str = "", seed: int = 0, window: str = "default",
                   zips: str | Path | None = None) -> int:
    """Call ``/compare`` for every file in ``folder``; write all tables into ``out_csv``.

    Returns:
        The number of images compared successfully.
    """
    files = image_files(folder)
    ok = 0
    headers: list[str] = []
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="medenhance-compare-") as tmp:
        client = Client(url, verbose=False, download_files=tmp, analytics_enabled=False)
        for path in files:
            try:
                # Outputs: results gallery, error-map gallery, table, markdown report, ZIP path.
                _results, _errors, table, _report, zip_path = client.predict(
                    file=handle_file(str(path)), frame=0, window=window, models=models, mode=mode,
                    reference=None, degradation=degradation, seed=seed, api_name="/compare")
            except Exception as e:  # AppError carries the server's gr.Error message
                rows.append({"file": path.name, "note": f"error: {e}"})
                print(f"{path.name}: error: {e}", file=sys.stderr)
                continue
            h, data = _table_rows(table)
            headers = headers or h
            rows += [{"file": path.name, **dict(zip(h, r))} for r in data]
            if zips:
                Path(zips).mkdir(parents=True, exist_ok=True)
                shutil.copyfile(zip_path, Path(zips) / f"{path.stem}_compare.zip")
            ok += 1
            print(f"{path.name}: {len(data)} rows")
    out_csv = Path(out_csv)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    with out_csv.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["file", *(headers or ["model", "note"])], restval="", extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return ok


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folder", help="folder of DICOM / PNG / JPEG / TIFF images")
    p.add_argument("--models", required=True, help="comma-separated model names of one output scale")
    p.add_argument("--url", default=os.environ.get("MEDENHANCE_URL", "http://127.0.0.1:7860"))
    p.add_argument("--mode", choices=("simulate", "none"), default="simulate")
    p.add_argument("--degradation", default="", help="simulate mode; default: the models' scale's default")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--window", default="default")
    p.add_argument("--out", default="compare.csv")
    p.add_argument("--zips", default=None, help="also save each image's ZIP (results, error maps) here")
    args = p.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    n = compare_folder(args.url, args.folder, models, args.out, mode=args.mode, degradation=args.degradation,
                       seed=args.seed, window=args.window, zips=args.zips)
    print(f"compared {n} of {len(image_files(args.folder))} files -> {args.out}")
    return 0 if n else 1


if __name__ == "__main__":
    sys.exit(main())
