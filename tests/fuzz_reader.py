"""Mutation fuzzing of :func:`models.read_image` (Hypothesis), and its long-run command.

Property: for any byte-level mutation of a small valid file (DICOM of several
encodings, PNG, TIFF), ``read_image`` either returns a valid image (float32,
finite, [0, 1], shape as its meta says) or raises
:class:`~models.errors.ImageReadError` with a one-line message - never another
exception, never a traced allocation over :data:`MAX_PEAK_MB`.

A mutation is a *recipe*, ``{"seed": name, "ops": [[op, ...], ...], "frame": n}``,
so a crash is kept as a few bytes of JSON (``tests/regressions/reader_crashes.json``)
rather than a binary file. Ops: ``flip`` (xor a byte), ``set`` (a byte to a
boundary value), ``u16`` / ``u32`` (little-endian integers over length and size
fields), ``insert`` (hex junk), ``delete``, ``truncate``.

Long run (not part of ``pytest``)::

    python -m tests.fuzz_reader --seconds 300 [--seed 1] [--save]

runs Hypothesis batches until the time is up, prints reads, refusals,
images and crashes, and with ``--save`` appends each new crash (shrunk by
Hypothesis) to the regression file. Exit status 1 if anything crashed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import tracemalloc
import warnings
from pathlib import Path
from typing import Any

import numpy as np

if __package__:  # python -m tests.fuzz_reader
    from . import fuzz_corpus
else:  # imported by pytest (rootdir-relative, tests/ on sys.path)
    import fuzz_corpus

REGRESSIONS = Path(__file__).resolve().parent / "regressions" / "reader_crashes.json"

#: Pixel limit while fuzzing: mutated headers may legitimately claim up to this
#: many pixels, so with it a read allocating more than MAX_PEAK_MB is a bug.
FUZZ_MAX_PIXELS = 4_000_000
MAX_PEAK_MB = 256.0
MAX_SECONDS = 10.0

_OPS = ("flip", "set", "u16", "u32", "insert", "delete", "truncate")


def apply_recipe(data: bytes, ops: list[list[Any]]) -> bytes:
    """Apply mutation ``ops`` to ``data`` in order; offsets past the end are wrapped.

    Returns the mutated bytes (possibly empty).
    """
    buf = bytearray(data)
    for op in ops:
        kind = op[0]
        if kind not in _OPS:
            raise ValueError(f"unknown mutation {kind!r}")
        if kind == "truncate":
            del buf[int(op[1]):]
            continue
        at = int(op[1]) % max(len(buf), 1)
        if kind == "flip" and buf:
            buf[at] ^= int(op[2]) & 0xFF
        elif kind == "set" and buf:
            buf[at] = int(op[2]) & 0xFF
        elif kind in ("u16", "u32") and buf:
            width = 2 if kind == "u16" else 4
            buf[at:at + width] = (int(op[2]) & (2 ** (8 * width) - 1)).to_bytes(width, "little")
        elif kind == "insert":
            buf[at:at] = bytes.fromhex(op[2])
        elif kind == "delete":
            del buf[at:at + int(op[2])]
    return bytes(buf)


def recipe_strategy(seeds: dict[str, bytes]) -> Any:
    """Hypothesis strategy of recipes over ``seeds`` (name -> bytes)."""
    from hypothesis import strategies as st

    names = sorted(seeds)

    @st.composite
    def build(draw: Any) -> dict[str, Any]:
        name = draw(st.sampled_from(names))
        size = len(seeds[name])
        # Half the offsets in the first kilobyte: one byte of a header changes the meaning of all that follows.
        offset = st.one_of(st.integers(0, min(size, 1024) - 1), st.integers(0, size - 1))
        op = st.one_of(
            st.tuples(st.just("flip"), offset, st.integers(1, 255)),
            st.tuples(st.just("set"), offset, st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0xFF])),
            st.tuples(st.just("u16"), offset, st.sampled_from([0, 1, 2, 0x7FFF, 0x8000, 0xFFFF])),
            st.tuples(st.just("u32"), offset, st.sampled_from([0, 1, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFF0, 0xFFFFFFFF])),
            st.tuples(st.just("insert"), offset, st.binary(min_size=1, max_size=16).map(bytes.hex)),
            st.tuples(st.just("delete"), offset, st.integers(1, 64)),
            st.tuples(st.just("truncate"), st.integers(0, size)),
        )
        ops = draw(st.lists(op, min_size=1, max_size=4))
        frame = draw(st.sampled_from([0, 0, 0, 1, 5]))
        return {"seed": name, "ops": [list(o) for o in ops], "frame": frame}

    return build()


def check_read(path: Path, frame: int = 0) -> str:
    """Read ``path``; ``"image"`` or ``"refused"``, or an AssertionError / the unexpected exception.

    Checks the image convention, the refusal message, time and traced peak memory.
    """
    from models.errors import ImageReadError
    from models.io import read_image

    tracemalloc.start()
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom/Pillow warn about every corrupt element
            image, meta = read_image(path, frame=frame)
        outcome = "image"
    except ImageReadError as exc:
        message = str(exc)
        assert 0 < len(message) < 1000 and "\n" not in message and "Traceback" not in message, message
        outcome = "refused"
    finally:
        seconds = time.perf_counter() - start
        peak_mb = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    assert seconds < MAX_SECONDS, f"read took {seconds:.1f} s"
    assert peak_mb < MAX_PEAK_MB, f"read allocated {peak_mb:.0f} MB at its peak"
    if outcome == "image":
        assert image.dtype == np.float32 and image.flags.c_contiguous
        assert image.ndim in (2, 3) and (image.ndim == 2 or image.shape[2] == 3)
        assert min(image.shape[:2]) >= 2 and tuple(meta.shape) == image.shape
        assert np.isfinite(image).all() and float(image.min()) >= 0.0 and float(image.max()) <= 1.0
    return outcome


def replay(recipe: dict[str, Any], seeds: dict[str, bytes], folder: Path) -> str:
    """Write a recipe's file into ``folder`` and :func:`check_read` it."""
    path = folder / f"fuzz_{Path(recipe['seed']).stem}{Path(recipe['seed']).suffix}"
    path.write_bytes(apply_recipe(seeds[recipe["seed"]], recipe["ops"]))
    return check_read(path, int(recipe.get("frame", 0)))


def load_regressions(path: Path = REGRESSIONS) -> list[dict[str, Any]]:
    """The kept crash recipes (each with ``id``, ``seed``, ``ops``, ``frame``, ``found``, ``fix``)."""
    return json.loads(path.read_text()) if path.is_file() else []


def _signature(exc: BaseException) -> str:
    """Crash identity for de-duplication: exception type and the innermost frame."""
    tb = exc.__traceback__
    where = ""
    while tb is not None:
        where = f"{Path(tb.tb_frame.f_code.co_filename).name}:{tb.tb_lineno}"
        tb = tb.tb_next
    return f"{type(exc).__name__} at {where}"


def fuzz(seconds: float, seed: int | None, batch: int = 200) -> dict[str, Any]:
    """Run Hypothesis batches for ``seconds``; returns counts and one shrunk recipe per crash signature."""
    os.environ["MEDENHANCE_MAX_PIXELS"] = str(FUZZ_MAX_PIXELS)
    with tempfile.TemporaryDirectory(prefix="medenhance-fuzz-") as tmp:
        return _fuzz(Path(tmp), seconds, seed, batch)


def _fuzz(folder: Path, seconds: float, seed: int | None, batch: int) -> dict[str, Any]:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as hypothesis_seed

    seeds = fuzz_corpus.seed_files(folder / "seeds")
    stats: dict[str, Any] = {"reads": 0, "image": 0, "refused": 0, "batches": 0, "crashes": {}}
    known: set[str] = set()
    last: dict[str, Any] = {}

    @settings(max_examples=batch, deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck))
    @given(recipe_strategy(seeds))
    def prop(recipe: dict[str, Any]) -> None:
        stats["reads"] += 1
        try:
            stats[replay(recipe, seeds, folder)] += 1
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # noqa: BLE001 - any exception is a finding, even a Rust panic
            sig = _signature(exc)
            if sig in known:  # already reported: keep exploring past it
                return
            last.update(recipe=recipe, signature=sig, error=f"{type(exc).__name__}: {str(exc)[:300]}")
            raise

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        stats["batches"] += 1
        run = prop if seed is None else hypothesis_seed(seed * 100_003 + stats["batches"])(prop)
        try:
            run()
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException:  # noqa: BLE001 - Hypothesis re-raises the shrunk failure; last holds its recipe
            if last:
                known.add(last["signature"])
                stats["crashes"][last["signature"]] = {"recipe": last["recipe"], "error": last["error"]}
                last.clear()
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=300.0, help="how long to fuzz (default 300)")
    parser.add_argument("--seed", type=int, default=None, help="make the run reproducible (default: random)")
    parser.add_argument("--batch", type=int, default=200, help="examples per Hypothesis run")
    parser.add_argument("--save", action="store_true", help=f"append new crashes to {REGRESSIONS}")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    stats = fuzz(args.seconds, args.seed, args.batch)
    wall = time.perf_counter() - t0
    print(f"{stats['reads']} reads in {wall:.0f} s ({stats['reads'] / wall:.1f}/s), {stats['batches']} batches: "
          f"{stats['image']} images, {stats['refused']} refusals, {len(stats['crashes'])} crash signature(s)")
    for sig, found in stats["crashes"].items():
        print(f"CRASH {sig}: {found['error']}\n  recipe: {json.dumps(found['recipe'])}")
    if args.save and stats["crashes"]:
        kept = load_regressions()
        for sig, found in stats["crashes"].items():
            kept.append({"id": f"fuzz-{len(kept) + 1:03d}", **found["recipe"], "found": found["error"],
                         "fix": "TODO: describe the fix"})
        REGRESSIONS.parent.mkdir(parents=True, exist_ok=True)
        REGRESSIONS.write_text(json.dumps(kept, indent=1) + "\n")
        print(f"saved {len(stats['crashes'])} recipe(s) to {REGRESSIONS}")
    return 1 if stats["crashes"] else 0


if __name__ == "__main__":
    sys.exit(main())
