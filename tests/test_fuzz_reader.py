"""Hypothesis mutation fuzzing of ``models.read_image`` (bounded: 150 examples, derandomized so CI is
reproducible) and replay of every crash the fuzzer found (tests/regressions/reader_crashes.json).

The long, random run is ``python -m tests.fuzz_reader --seconds 300`` (see tests/fuzz_reader.py).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import fuzz_corpus
import fuzz_reader
import pytest
from hypothesis import HealthCheck, given, settings


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    return fuzz_corpus.seed_files(tmp_path_factory.mktemp("seeds"))


@pytest.fixture(autouse=True, scope="module")
def _fuzz_pixel_limit():
    """A low pixel limit, so a traced peak over MAX_PEAK_MB can only be a bug (see fuzz_reader)."""
    saved = os.environ.get("MEDENHANCE_MAX_PIXELS")
    os.environ["MEDENHANCE_MAX_PIXELS"] = str(fuzz_reader.FUZZ_MAX_PIXELS)
    yield
    if saved is None:
        del os.environ["MEDENHANCE_MAX_PIXELS"]
    else:
        os.environ["MEDENHANCE_MAX_PIXELS"] = saved


def test_apply_recipe_ops() -> None:
    data = bytes(range(10))
    assert fuzz_reader.apply_recipe(data, [["flip", 1, 0xFF]])[1] == 0xFE
    assert fuzz_reader.apply_recipe(data, [["truncate", 4]]) == data[:4]
    assert fuzz_reader.apply_recipe(data, [["insert", 2, "aabb"]])[2:4] == b"\xaa\xbb"
    assert fuzz_reader.apply_recipe(data, [["delete", 0, 3]]) == data[3:]
    assert fuzz_reader.apply_recipe(data, [["u32", 12, 0xFFFFFFFF]])[2:6] == b"\xff" * 4  # offsets wrap
    assert fuzz_reader.apply_recipe(b"", [["flip", 5, 1], ["insert", 0, "00"]]) == b"\x00"


def test_mutated_files_are_read_or_refused(seeds: dict[str, bytes], tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = tmp_path_factory.mktemp("fuzz")
    outcomes: dict[str, int] = {"image": 0, "refused": 0}

    @settings(max_examples=150, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(fuzz_reader.recipe_strategy(seeds))
    def read_or_refuse(recipe: dict[str, Any]) -> None:
        outcomes[fuzz_reader.replay(recipe, seeds, folder)] += 1

    read_or_refuse()
    print(f"\nfuzz: {outcomes}")
    assert outcomes["refused"] > 0 and outcomes["image"] > 0  # the mutations reach both outcomes


REGRESSIONS = fuzz_reader.load_regressions()


def test_regression_file_is_well_formed() -> None:
    assert REGRESSIONS, "tests/regressions/reader_crashes.json is missing or empty"
    for r in REGRESSIONS:
        assert {"id", "seed", "ops", "found", "fix"} <= set(r), r
        assert "TODO" not in r["fix"], f"{r['id']}: describe the fix"


@pytest.mark.parametrize("recipe", REGRESSIONS, ids=[r["id"] for r in REGRESSIONS])
def test_fuzz_regressions_stay_fixed(recipe: dict[str, Any], seeds: dict[str, bytes], tmp_path: Path) -> None:
    # Each once raised a non-ImageReadError, gave a multi-line message or allocated hundreds of MB.
    assert fuzz_reader.replay(recipe, seeds, tmp_path) in ("image", "refused")
