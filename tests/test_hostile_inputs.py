"""Hostile and broken inputs (issue #8): the generated fuzz corpus (tests/fuzz_corpus.py) through
``models.read_image`` and through the ``/enhance`` handler.

Every file gives an ImageReadError with a readable one-line message (or a valid image where that is the
right answer), within a time limit and a traced-memory limit; through the handler every refusal is a
``gr.Error`` that is not an "internal error" and does not echo the upload's name.
"""

from __future__ import annotations

import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported

import re  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
import warnings  # noqa: E402
from collections import Counter  # noqa: E402
from pathlib import Path  # noqa: E402

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from fuzz_corpus import CATEGORIES, Case, build_corpus  # noqa: E402

from models.errors import ImageReadError  # noqa: E402
from models.io import display_name, read_image  # noqa: E402
from studio import handlers  # noqa: E402


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[Case]:
    return build_corpus(tmp_path_factory.mktemp("corpus"))



def _read(case: Case) -> tuple[str, str, float, float]:
    """(outcome, message or shape, seconds, traced peak MB) of read_image on one case."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image, meta = read_image(case.path, frame=case.frame)
    except ImageReadError as exc:
        outcome, detail = "refused", str(exc)
        assert isinstance(exc, ValueError)
    else:
        outcome, detail = "image", str(image.shape)
        assert image.dtype == np.float32 and image.flags.c_contiguous and meta.shape == image.shape
        assert np.isfinite(image).all() and image.min() >= 0.0 and image.max() <= 1.0
    finally:
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    return outcome, detail, seconds, peak


def _problems(case: Case, outcome: str, detail: str, seconds: float, peak: float) -> list[str]:
    out = []
    if case.expect != "either" and outcome != case.expect:
        out.append(f"expected {case.expect}, got {outcome}: {detail}")
    if outcome == "refused":
        if not 10 < len(detail) < 600 or "\n" in detail or "\r" in detail or "Traceback" in detail:
            out.append(f"unreadable message {detail!r}")
        missing = [f for f in case.fragments if f not in detail.lower()]
        if missing and case.expect == "refused":
            out.append(f"message lacks {missing}: {detail}")
    if seconds > case.max_seconds:
        out.append(f"took {seconds:.2f} s")
    if peak > case.max_peak_mb:
        out.append(f"allocated {peak:.1f} MB")
    return out


def test_corpus_is_deterministic_and_covers_every_category(tmp_path: Path, corpus: list[Case]) -> None:
    again = build_corpus(tmp_path)
    assert [c.id for c in again] == [c.id for c in corpus]
    for a, b in zip(corpus, again):
        if a.path.is_file():
            assert a.path.read_bytes() == b.path.read_bytes(), a.id
    counts = Counter(c.category for c in corpus)
    assert set(counts) == set(CATEGORIES)
    assert counts["truncated"] == 30
    print("\ncorpus:", dict(counts), "total", len(corpus))


@pytest.mark.parametrize("category", CATEGORIES)
def test_read_image_refuses_clearly_within_time_and_memory(corpus: list[Case], category: str) -> None:
    failures = {}
    for case in (c for c in corpus if c.category == category):
        found = _problems(case, *_read(case))
        if found:
            failures[case.id] = found
    assert not failures, failures


def test_one_frame_of_a_100_frame_file_costs_one_frame(corpus: list[Case]) -> None:
    native = next(c for c in corpus if c.id == "mf100-frame57")
    size_mb = native.path.stat().st_size / 2**20
    outcome, _, seconds, peak = _read(native)
    assert outcome == "image" and size_mb > 12
    assert peak < size_mb / 4, f"{peak:.1f} MB traced for one frame of a {size_mb:.1f} MB file"
    assert seconds < 1.0


def test_displayable_means_intensities(corpus: list[Case]) -> None:
    by_id = {c.id: c for c in corpus}
    image, meta = read_image(by_id["rtdose-float-grid"].path, frame=1)
    assert image.shape == (12, 10) and meta.sop_class == "RT Dose Storage" and meta.frame_count == 3
    with pytest.raises(ImageReadError, match="segmentation"):
        read_image(by_id["nonimage-seg-binary"].path)


@pytest.mark.parametrize("category", CATEGORIES)
def test_enhance_handler_gives_a_clear_gr_error(corpus: list[Case], category: str) -> None:
    failures = {}
    for case in (c for c in corpus if c.category == category):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _, _, png = handlers.enhance_file(str(case.path), "Super-resolution x2", "bicubic_x2", case.frame)
        except gr.Error as exc:
            message = str(exc.message)
            if case.expect == "image":
                failures[case.id] = f"refused: {message}"
            elif "internal error" in message.lower() or not message or "\n" in message:
                failures[case.id] = f"unclear: {message!r}"
            elif case.path.name in message or display_name(case.path) in message:
                failures[case.id] = f"echoes the upload's name: {message}"
        else:
            if case.expect == "refused":
                failures[case.id] = "accepted"
            elif not re.fullmatch(r"medenhance_bicubic_x2_[0-9a-f]{12}\.png", Path(png).name):
                failures[case.id] = f"result name {Path(png).name!r} is not generated"
    assert not failures, failures
