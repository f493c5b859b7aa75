"""Enhance a folder tree from the command line.

Usage::

    python -m models.batch IN_DIR OUT_DIR --model NAME [--format png|tiff|dcm]
                           [--window W] [--frame N] [--resume] [--device D] [--tile T]
                           [--no-deid] [--deid-key-file FILE] [--models-dir DIR]

``--model`` is a registered model: one of :mod:`models.zoo`, or a user model file of the models
folder (``--models-dir``, default ``MEDENHANCE_MODELS_DIR`` or ``./user-models``; :mod:`models.plugins`).

Every file under ``IN_DIR`` (recursively; hidden files and folders skipped)
is read with :func:`models.read_image` (DICOM with or without extension, PNG,
JPEG, TIFF, BMP), enhanced with :func:`models.enhance` and written to the same
relative path under ``OUT_DIR`` with the new extension:

* ``png`` (default): 16-bit grayscale for inputs stored with more than 8
  bits, else 8-bit (colour is 8-bit RGB);
* ``tiff``: the same bit depths, deflate-compressed;
* ``dcm``: a derived DICOM (:func:`models.io.dicom_export.export_derived_dicom`):
  same study, new series, source referenced, de-identified unless
  ``--no-deid``; non-DICOM inputs become Secondary Captures.

A file that cannot be read or processed is reported and skipped; the run
goes on. At the end a summary is printed and ``OUT_DIR/batch_report.csv``
lists every file (status ``ok``, ``skipped`` or ``error`` with the reason).
Outputs are written under a temporary name and renamed when complete, so an
interrupted run never leaves a half-written file; ``--resume`` skips inputs
whose output already exists.

De-identification key: UIDs and patient pseudonyms in DICOM outputs come
from a keyed hash. Give the same key (``--deid-key-file`` or the
``MEDENHANCE_DEID_KEY`` environment variable) to every run whose outputs
must fit together (e.g. a resumed run); without one, a random key is used
and UIDs differ between runs. Keep the key secret.

Exit status: 0 all files done, 1 some files failed, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from .csvsafe import safe_row
from .errors import MedEnhanceError

__all__ = ["BatchItem", "find_inputs", "main", "output_paths", "run_batch"]

FORMATS = {"png": ".png", "tiff": ".tif", "dcm": ".dcm"}
REPORT_NAME = "batch_report.csv"
# Extensions replaced by the output's; any other suffix (e.g. the ".3" of a
# UID-named DICOM file) is kept and the output extension appended.
_IMAGE_SUFFIXES = {".dcm", ".dicom", ".dic", ".ima", ".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp"}
_PARTIAL = re.compile(r"^\..+\.partial-\d+$")


@dataclass
class BatchItem:
    """One row of the report. Paths are relative to IN_DIR / OUT_DIR."""

    input: str
    output: str
    status: str = "pending"  # ok | skipped | error
    message: str = ""
    seconds: float = 0.0
    input_size: str = ""
    output_size: str = ""


# ----------------------------------------------------------------- planning


def find_inputs(in_dir: Path, exclude: Path | None = None) -> list[Path]:
    """Files under ``in_dir`` (sorted, relative), skipping hidden names and ``exclude``'s tree."""
    in_dir = in_dir.resolve()
    exclude = exclude.resolve() if exclude is not None else None
    found = []
    for root, dirs, files in os.walk(in_dir):  # does not follow symlinked folders (no cycles)
        root_path = Path(root)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                         and (exclude is None or (root_path / d).resolve() != exclude))
        for name in sorted(files):
            if not name.startswith("."):
                found.append((root_path / name).relative_to(in_dir))
    return found


def output_paths(inputs: Sequence[Path], fmt: str) -> list[Path]:
    """Relative output path of each input: same folder, image extension replaced.

    Two inputs that would map to one output (``a.dcm`` and ``a.png``) keep
    their full names instead (``a.dcm.png``, ``a.png.png``), so nothing is overwritten.
    """
    ext = FORMATS[fmt]

    def replaced(p: Path) -> Path:
        return p.with_suffix(ext) if p.suffix.lower() in _IMAGE_SUFFIXES else p.with_name(p.name + ext)

    first = [replaced(p) for p in inputs]
    counts: dict[str, int] = {}
    for p in first:
        counts[str(p).lower()] = counts.get(str(p).lower(), 0) + 1  # case-insensitive file systems
    return [p if counts[str(p).lower()] == 1 else src.with_name(src.name + ext)
            for p, src in zip(first, inputs)]


# ------------------------------------------------------------------ writing


def result_bits(meta: Any, result: np.ndarray) -> int:
    """16 for grayscale results of inputs stored with more than 8 bits, else 8 (as the studio)."""
    return 16 if result.ndim == 2 and not meta.is_colour and (meta.bits_stored or 8) > 8 else 8


def _partial_name(dst: Path) -> Path:
    return dst.with_name(f".{dst.name}.partial-{os.getpid()}")


def _write_image(out: np.ndarray, dst: Path, fmt: str, bits: int) -> None:
    """PNG or TIFF via a temp name and an atomic rename."""
    from PIL import Image

    from .io.export import save_png, to_uint

    tmp = _partial_name(dst)
    try:
        if fmt == "png":
            save_png(out, tmp, bits=bits)
        else:
            if out.ndim == 2:
                img = Image.fromarray(to_uint(out, bits))  # uint16 -> mode I;16, uint8 -> L
            else:
                img = Image.fromarray(to_uint(out, 8), mode="RGB")  # Pillow has no 16-bit RGB
            img.save(tmp, format="TIFF", compression="tiff_adobe_deflate")
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)


def _clean_partials(out_dir: Path) -> int:
    """Remove temp files an interrupted run of ours left behind; returns how many."""
    n = 0
    for root, _dirs, files in os.walk(out_dir):
        for name in files:
            if _PARTIAL.match(name):
                Path(root, name).unlink(missing_ok=True)
                n += 1
    return n


# --------------------------------------------------------------------- run


def _size(shape: Sequence[int]) -> str:
    return f"{shape[1]}x{shape[0]}" + ("x3" if len(shape) == 3 else "")


def process_file(src: Path, dst: Path, fmt: str, model: str, *, frame: int = 0, window: Any = None,
                 device: str | None = None, tile: int | None = None, export_options: Any = None,
                 progress: Callable[[int, int], None] | None = None) -> tuple[str, str]:
    """Read, enhance and write one file; returns (input size, output size) as ``"WxH"``.

    ``progress(done, total)``: tiles of the model run (see :func:`models.enhance`).

    Raises:
        MedEnhanceError / ValueError: unreadable input or model error; OSError: cannot write.
    """
    from .enhance import enhance
    from .io import read_image
    from .io.dicom_export import export_derived_dicom

    image, meta = read_image(src, frame=frame, window=window)
    out = enhance(image, model, device=device, tile=tile, progress=progress)
    dst.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "dcm":
        source = src if meta.source_format == "dicom" else None
        export_derived_dicom(source, out, meta, model, dst, export_options)  # temp name + rename inside
    else:
        _write_image(out, dst, fmt, result_bits(meta, out))
    return _size(image.shape), _size(out.shape)


def run_batch(
    in_dir: Path,
    out_dir: Path,
    model: str,
    *,
    fmt: str = "png",
    window: Any = None,
    frame: int = 0,
    resume: bool = False,
    device: str | None = None,
    tile: int | None = None,
    export_options: Any = None,
    progress: bool | None = None,
) -> list[BatchItem]:
    """Process a tree; returns one :class:`BatchItem` per input file (the report rows).

    Never stops on a bad file. ``progress=None`` shows tqdm bars only on a terminal: files, and
    below it the tiles of the file being enhanced.
    The report CSV is written even when interrupted (Ctrl-C), then the interrupt is re-raised.
    """
    from tqdm import tqdm

    in_dir, out_dir = Path(in_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if resume:
        _clean_partials(out_dir)
    inputs = find_inputs(in_dir, exclude=out_dir)
    items = [BatchItem(str(i), str(o)) for i, o in zip(inputs, output_paths(inputs, fmt))]
    bar = tqdm(items, unit="file", disable=None if progress is None else not progress, file=sys.stderr,
               dynamic_ncols=True)
    tiles, on_tile = _tile_bar(bar.disable)
    try:
        for item in bar:
            dst = out_dir / item.output
            if resume and dst.is_file() and dst.stat().st_size > 0:
                item.status, item.message = "skipped", "output exists (--resume)"
                continue
            t0 = time.perf_counter()
            try:
                item.input_size, item.output_size = process_file(
                    in_dir / item.input, dst, fmt, model, frame=frame, window=window, device=device,
                    tile=tile, export_options=export_options, progress=on_tile)
                item.status = "ok"
            except (ValueError, OSError) as exc:  # every MedEnhanceError is a ValueError
                item.status, item.message = "error", _one_line(exc)
            except Exception as exc:  # a bug on one odd file must not lose the rest of the run
                item.status, item.message = "error", f"internal error: {type(exc).__name__}: {_one_line(exc)}"
            item.seconds = round(time.perf_counter() - t0, 3)
            bar.set_postfix(failed=sum(i.status == "error" for i in items), refresh=False)
    finally:
        tiles.close()
        bar.close()
        write_report(items, out_dir / REPORT_NAME)
    return items


def _tile_bar(disable: bool) -> tuple[Any, Callable[[int, int], None]]:
    """A second tqdm bar (tiles of the current file) and the ``progress(done, total)`` that moves it."""
    from tqdm import tqdm

    bar = tqdm(total=1, desc="tiles", unit="tile", leave=False, position=1, disable=disable, file=sys.stderr,
               dynamic_ncols=True)

    def on_tile(done: int, total: int) -> None:
        if done == 0 or bar.total != total:  # a new file (or a redo with smaller tiles)
            bar.reset(total=total)
        bar.update(done - bar.n)

    return bar, on_tile


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def write_report(items: Iterable[BatchItem], path: Path) -> Path:
    """The report CSV (one row per input; pending rows were never reached), written atomically."""
    # File names and error messages are text a spreadsheet could run as a formula (models.csvsafe).
    rows = [safe_row(asdict(i)) for i in items]
    tmp = _partial_name(path)
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(BatchItem.__dataclass_fields__))
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)
    return path


def summary(items: Sequence[BatchItem], seconds: float, report: Path) -> str:
    """Human summary: counts, the failures (first 20) and where the report is."""
    ok = sum(i.status == "ok" for i in items)
    skipped = sum(i.status == "skipped" for i in items)
    failed = [i for i in items if i.status == "error"]
    pending = sum(i.status == "pending" for i in items)
    lines = [f"{ok} written, {skipped} skipped (already done), {len(failed)} failed"
             + (f", {pending} not reached" if pending else "") + f" of {len(items)} files in {seconds:.1f} s."]
    for i in failed[:20]:
        lines.append(f"  FAILED {i.input}: {i.message}")
    if len(failed) > 20:
        lines.append(f"  ... and {len(failed) - 20} more")
    lines.append(f"Report: {report}")
    return "\n".join(lines)


# --------------------------------------------------------------------- CLI


def _parse_window(text: str | None) -> Any:
    """CLI window: default/auto/full/preset name, or "C,W" in stored units (HU for CT)."""
    from .io import WINDOW_PRESETS

    if text is None or text.strip().lower() in ("", "default", "file"):
        return None
    t = text.strip().lower()
    if t in ("auto", "full") or t in WINDOW_PRESETS:
        return t
    m = re.fullmatch(r"\s*(-?\d+(?:\.\d*)?)\s*[,/]\s*(\d+(?:\.\d*)?)\s*", t)
    if m and float(m.group(2)) > 0:
        return float(m.group(1)), float(m.group(2))
    names = ", ".join(["default", "auto", "full", *WINDOW_PRESETS])
    raise argparse.ArgumentTypeError(f"unknown window {text!r}: use {names} or CENTER,WIDTH (e.g. 40,400)")


DEFAULT_MODEL = "auto_x2"  # the studio's default task and its automatic entry


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m models.batch",
        description="Enhance every image under IN_DIR into the same tree under OUT_DIR.",
        epilog="Exit status: 0 all done, 1 some files failed (see the report), 2 bad arguments.")
    p.add_argument("in_dir", type=Path, help="folder of DICOM / PNG / JPEG / TIFF files (searched recursively)")
    p.add_argument("out_dir", type=Path, help="output folder (created; mirrors IN_DIR)")
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"registered model name (default {DEFAULT_MODEL}: measures each image's noise and runs the "
                        "clean or the noise-aware x2 network; auto_x4, auto_denoise likewise), e.g. srcnn_x2, clahe")
    p.add_argument("--format", dest="fmt", choices=sorted(FORMATS), default="png",
                   help="png (default; 16-bit for >8-bit grayscale), tiff, or dcm (derived DICOM)")
    p.add_argument("--window", type=_parse_window, default=None,
                   help="display window: default (file's, else auto), auto, full, a preset "
                        "(soft tissue, lung, bone, brain) or CENTER,WIDTH in stored units")
    p.add_argument("--frame", type=int, default=0, help="frame of multi-frame files (0-based; default 0)")
    p.add_argument("--resume", action="store_true", help="skip inputs whose output already exists")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: CUDA when present)")
    p.add_argument("--tile", type=int, default=None, help="network input tile size in pixels (bounds memory)")
    p.add_argument("--no-deid", action="store_true",
                   help="dcm only: keep identifying header attributes (data that never leaves the site)")
    p.add_argument("--deid-key-file", type=Path, default=None,
                   help="dcm only: file with the secret de-identification key (else $MEDENHANCE_DEID_KEY, "
                        "else a random key per run)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--models-dir", type=Path, default=None,
                   help="folder of user model files (default: $MEDENHANCE_MODELS_DIR, else ./user-models)")
    return p


def _deid_key(path: Path | None) -> tuple[str, bool]:
    """(key, given): from the key file, the environment, else a fresh random key."""
    from .io.deid import new_key

    if path is not None:
        key = path.read_text(encoding="utf-8").strip()
        if not key:
            raise ValueError(f"the key file {path} is empty")
        return key, True
    env = os.environ.get("MEDENHANCE_DEID_KEY", "").strip()
    return (env, True) if env else (new_key(), False)


def _check_model(name: str) -> str | None:
    """An error message if ``name`` cannot run, else None (checked once, not per file)."""
    from .loading import weights_path
    from .registry import get_spec

    try:
        spec = get_spec(name)
    except MedEnhanceError as exc:
        return str(exc)
    if spec.kind == "network" and not weights_path(spec).is_file():
        return f"model {name!r} has no trained weights yet ({spec.weights} is missing)"
    if spec.kind == "auto":
        from .auto import missing_weights

        if missing := missing_weights(name):
            return f"model {name!r} needs weights that are missing: {', '.join(missing)}"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit status."""
    from . import zoo as _zoo  # noqa: F401  (fills the registry)
    from .io.dicom_export import ExportOptions

    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.in_dir.is_dir():
        parser.error(f"input folder not found: {args.in_dir}")
    from .plugins import load_user_models

    report = load_user_models(args.models_dir)
    for prob in report.problems:
        print(f"note: user model {prob.file} not registered: {prob.message}", file=sys.stderr)
    problem = _check_model(args.model)
    if problem:
        parser.error(problem)
    if args.frame < 0:
        parser.error("--frame must be >= 0")
    options = None
    if args.fmt == "dcm":
        try:
            key, given = _deid_key(args.deid_key_file)
        except (OSError, ValueError) as exc:
            parser.error(f"cannot read the de-identification key: {exc}")
        if args.resume and not given and not args.no_deid:
            print("note: no de-identification key given (--deid-key-file or MEDENHANCE_DEID_KEY): files written "
                  "by this run get different UIDs and pseudonyms than earlier runs.", file=sys.stderr)
        options = ExportOptions(deidentify=not args.no_deid, deid_key=key)

    t0 = time.perf_counter()
    try:
        items = run_batch(args.in_dir, args.out_dir, args.model, fmt=args.fmt, window=args.window,
                          frame=args.frame, resume=args.resume, device=args.device, tile=args.tile,
                          export_options=options, progress=False if args.quiet else None)
    except KeyboardInterrupt:
        print(f"interrupted; partial report: {args.out_dir / REPORT_NAME}", file=sys.stderr)
        return 130
    print(summary(items, time.perf_counter() - t0, args.out_dir / REPORT_NAME))
    return 1 if any(i.status == "error" for i in items) else 0


if __name__ == "__main__":
    sys.exit(main())
