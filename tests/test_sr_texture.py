"""scripts/sr_texture.py: its texture measure and its loading of unshipped weights."""

import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import sr_texture  # noqa: E402

from models import get_spec  # noqa: E402
from models.loading import load_network  # noqa: E402


def test_high_freq_energy_ranks_flat_smooth_and_grainy() -> None:
    rng = np.random.default_rng(0)
    flat = np.full((64, 64), 0.5, np.float32)
    ramp = np.tile(np.linspace(0, 1, 64, dtype=np.float32), (64, 1))
    grain = np.clip(flat + rng.normal(0, 0.05, flat.shape), 0, 1).astype(np.float32)
    assert sr_texture.high_freq_energy(flat, crop=4) == 0.0
    assert sr_texture.high_freq_energy(ramp, crop=4) < 1e-6  # a blur leaves a linear ramp unchanged
    # white noise keeps most of its energy above the 1 px blur's pass band
    assert 0.03 < sr_texture.high_freq_energy(grain, crop=4) < 0.05


def test_load_state_reads_checkpoints_and_exports(tmp_path: Path) -> None:
    shipped = load_network(get_spec("srcnn_x2"))
    state = {k: v.clone().contiguous() for k, v in shipped.state_dict().items()}
    ckpt = {f"model.{k}": v for k, v in state.items()} | {"opt.0.step": torch.zeros(1)}
    save_file(ckpt, str(tmp_path / "run.ckpt.safetensors"))
    save_file(state, str(tmp_path / "export.safetensors"))
    x = torch.rand(1, 1, 24, 24)
    with torch.no_grad():
        want = shipped(x)
        for name in ("run.ckpt.safetensors", "export.safetensors"):
            got = sr_texture.load_state("srcnn_x2", str(tmp_path / name))(x)
            assert torch.equal(got, want)
