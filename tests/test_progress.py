"""Progress of long jobs: tiles done / total from models.enhance, an estimate, and cancellation that stops the tiles."""

from __future__ import annotations

import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported

from pathlib import Path  # noqa: E402

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from conftest import smooth_test_image  # noqa: E402
from models import enhance  # noqa: E402
from models.tiling import count_tiles, staged_tiled_apply, tiled_apply  # noqa: E402
from studio.handlers import progress as runs  # noqa: E402


class _Stop(Exception):
    pass


def _recorder() -> tuple[list[tuple[int, int]], callable]:
    calls: list[tuple[int, int]] = []
    return calls, lambda done, total: calls.append((done, total))


def _is_complete_count(calls: list[tuple[int, int]]) -> bool:
    """0, 1, ..., total against one total: every tile reported once, in order."""
    total = calls[0][1]
    return calls == [(i, total) for i in range(total + 1)]


def test_tiled_apply_reports_every_tile():
    x = torch.rand(1, 1, 50, 37)
    calls, say = _recorder()
    tiled_apply(lambda t: t, x, 1, 16, 3, progress=say)
    assert calls[0] == (0, count_tiles(50, 37, 16)) == (0, 12) and _is_complete_count(calls)
    calls.clear()
    tiled_apply(lambda t: t, x, 1, 64, 3, progress=say)  # one tile
    assert calls == [(0, 1), (1, 1)]


def test_staged_tiling_counts_its_sub_tiles():
    x = torch.rand(1, 1, 50, 37)
    calls, say = _recorder()
    out = staged_tiled_apply(lambda t: t * 2, lambda f: f + 1, x, 1, 32, 4, 10, 2, progress=say)
    assert torch.allclose(out, x * 2 + 1)
    # LR tiles 32x32, 32x5, 18x32, 18x5; sub-tiles of 10 in each: 16 + 4 + 8 + 2
    assert calls[0] == (0, 30) and _is_complete_count(calls)


def test_raising_from_progress_stops_the_tile_loop():
    x = torch.rand(1, 1, 64, 64)
    ran: list[int] = []

    def say(done, total):
        if done == 3:
            raise _Stop

    with pytest.raises(_Stop):
        tiled_apply(lambda t: ran.append(1) or t, x, 1, 16, 2, progress=say)
    assert len(ran) == 3  # 13 tiles left undone


def test_enhance_reports_tiles_and_the_ensemble_counts_eight_passes():
    img = smooth_test_image(70, 90, seed=1)
    calls, say = _recorder()
    enhance(img, "srcnn_x2", tile=32, progress=say)
    single = calls[0][1]
    assert single == count_tiles(70, 90, 32) == 9 and _is_complete_count(calls)
    calls.clear()
    enhance(img, "srcnn_x2", tile=32, ensemble=True, progress=say)
    assert calls[-1] == (8 * single, 8 * single)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls) and {t for _, t in calls} == {8 * single}


def test_enhance_stops_at_the_tile_where_progress_raises():
    img = smooth_test_image(96, 96, seed=2)
    seen: list[int] = []

    def say(done, total):
        seen.append(done)
        if done == 2:
            raise _Stop

    with pytest.raises(_Stop):
        enhance(img, "vdsr_x2", tile=24, progress=say)
    assert seen == [0, 1, 2]  # 16 tiles: the other 14 never ran


def test_classical_models_report_start_and_end():
    calls, say = _recorder()
    enhance(smooth_test_image(), "gaussian", progress=say)
    assert calls == [(0, 1), (1, 1)]


def test_estimate_text():
    assert runs.estimate(0, 10, 5.0) == "estimating…"
    assert runs.estimate(5, 10, 20.0) == "about 20 s left"
    assert runs.estimate(1, 10, 30.0) == "about 4 min 30 s left"
    assert runs.estimate(10, 10, 30.0) == "finishing"


def test_tile_progress_text_estimate_and_stop():
    now = [100.0]
    lines: list[tuple[int, int, str]] = []
    flag = runs.begin_run("session-a", "enhance")
    tp = runs.TileProgress(lambda d, t, s: lines.append((d, t, s)), "srresnet_x4", flag, clock=lambda: now[0])
    tp(0, 240)
    now[0] += 4.0
    tp(40, 240)
    assert lines[-1] == (40, 240, "srresnet_x4: tile 40 / 240 · about 20 s left")
    assert not runs.request_stop("session-b", "enhance")  # another user's Stop: not this run
    assert not runs.request_stop("session-a", "compare")  # the other tab: not this run
    assert runs.request_stop("session-a", "enhance")
    with pytest.raises(runs.Cancelled) as err:
        tp(41, 240)
    assert isinstance(err.value, gr.Error) and "Stopped" in str(err.value)
    runs.end_run("session-a", "enhance", flag)
    assert not runs.request_stop("session-a", "enhance")  # nothing in flight any more


def test_enhance_upload_reports_tiles_and_stops(results_dir, tmp_path: Path):
    from studio import handlers

    src = tmp_path / "in.png"
    Image.fromarray((smooth_test_image(300, 260) * 255).astype(np.uint8)).save(src)
    lines: list[tuple[int, int, str]] = []
    tp = runs.TileProgress(lambda d, t, s: lines.append((d, t, s)), "srcnn_x2")
    handlers.enhance_upload(str(src), "Super-resolution x2", "srcnn_x2", progress=tp)
    assert lines[0][:2] == (0, 4) and lines[-1][:2] == (4, 4) and "tile 4 / 4" in lines[-1][2]

    flag = runs.begin_run("s", "enhance")
    flag.set()  # Stop pressed before the first tile finished
    with pytest.raises(runs.Cancelled):
        handlers.enhance_upload(str(src), "Super-resolution x2", "srcnn_x2",
                                progress=runs.TileProgress(lambda *_: None, "srcnn_x2", flag))
    runs.end_run("s", "enhance", flag)


def test_comparison_progress_moves_forward_through_each_models_tiles():
    from studio.compare.run import run_comparison

    img = smooth_test_image(280, 300, seed=3)
    seen: list[tuple[float, str]] = []
    run_comparison(img, ["srcnn_x2", "bicubic_x2"], 2, progress=lambda f, s: seen.append((f, s)))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and 0 <= fractions[0] and fractions[-1] < 1
    tiles = [s for _, s in seen if "tile" in s]
    assert any("(1/2) srcnn_x2: tile 4 / 4" in s for s in tiles), tiles


def test_batch_shows_a_tile_bar_per_file(tmp_path: Path, capsys):
    from models import batch

    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray((smooth_test_image(300, 260) * 255).astype(np.uint8)).save(src / "a.png")
    calls, say = _recorder()
    batch.process_file(src / "a.png", tmp_path / "a.png", "png", "srcnn_x2", progress=say)
    assert calls[0] == (0, 4) and _is_complete_count(calls)
    items = batch.run_batch(src, tmp_path / "out", "srcnn_x2", progress=True)
    assert [i.status for i in items] == ["ok"]
    err = capsys.readouterr().err
    assert "tiles" in err and "1/1" in err  # the file bar and the tile bar below it
