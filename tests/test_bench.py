"""python -m bench: FLOPs from the layers, per-network summary (efficiency per size, whole-CR seconds)."""

from __future__ import annotations

from pathlib import Path

import torch

from bench.__main__ import main, summarize
from bench.flops import flops_per_output_pixel
from models import get_spec


def test_flops_are_counted_from_the_layers():
    # SRCNN x2 (9-5-5, 64 and 32 features) on the bicubic-enlarged image: every conv at the output size.
    spec = get_spec("srcnn_x2")
    net = spec.build().eval()
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    expected = sum(2 * m.in_channels * m.out_channels * m.kernel_size[0] * m.kernel_size[1] for m in convs)
    assert flops_per_output_pixel(net, 1, 2) == expected


def test_summary_has_one_row_per_network_with_each_size_and_the_whole_cr():
    base = {"model": "m", "plan": "p", "pick_s": 1.0, "min_s": 1.0, "max_s": 3.0}
    rows = [{**base, "image": "pattern", "output": "256x256", "efficiency": 0.251, "median_s": 0.1},
            {**base, "image": "pattern", "output": "1024x1024", "efficiency": 0.5, "median_s": 1.0},
            {**base, "image": "whole CR", "output": "7364x7820", "efficiency": 0.612, "median_s": 2.0}]
    assert summarize(rows) == [{"model": "m", "plan": "p", "pick_s": 1.0, "efficiency 256x256": "25%",
                                "efficiency 1024x1024": "50%", "efficiency whole CR": "61%", "whole CR s": 2.0,
                                "whole CR min..max s": "1.0..3.0"}]


def test_bench_writes_the_tables(tmp_path: Path, monkeypatch):
    from models import device as devmod

    # main() sets the plan switches and clears the plan cache: keep both out of the other tests.
    monkeypatch.setenv("MEDENHANCE_PLAN", "fp32")
    monkeypatch.setenv("MEDENHANCE_ORT", "1")
    monkeypatch.setattr(devmod, "_plans", {})
    assert main(["--models", "srcnn_x2", "--sizes", "64", "--repeats", "1", "--peak-size", "256",
                 "--out", str(tmp_path)]) == 0
    table = (tmp_path / "bench.md").read_text()
    assert "srcnn_x2" in table and "64x64" in table and "efficiency" in table
    assert "| srcnn_x2 |" in (tmp_path / "summary.md").read_text()
