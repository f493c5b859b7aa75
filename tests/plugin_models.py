"""Model files for the user-model tests, made in the test: small randomly initialised spandrel architectures
(built from spandrel's own classes), ONNX graphs exported here, and hostile files (a code-running pickle,
a truncated safetensors, a wrong-shape network, ...). Deterministic (seeded), a few kB to a few MB each.
"""

from __future__ import annotations

import pathlib
import pickle
import warnings
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn


def _state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().clone() for k, v in module.state_dict().items()}


def _seeded(seed: int) -> None:
    torch.manual_seed(seed)


def esrgan(in_nc: int = 1, scale: int = 2, seed: int = 0) -> nn.Module:
    """RRDBNet (ESRGAN) with 8 features and one RRDB block (spandrel fixes the growth channels at 32)."""
    from spandrel.architectures.ESRGAN import ESRGAN

    _seeded(seed)
    return ESRGAN(in_nc=in_nc, out_nc=in_nc, num_filters=8, num_blocks=1, scale=scale)


def swinir(scale: int = 2, seed: int = 0) -> nn.Module:
    """SwinIR with one stage of one block, 12-dimensional embedding, window 4 (RGB)."""
    from spandrel.architectures.SwinIR import SwinIR

    _seeded(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.meshgrid indexing note inside SwinIR
        return SwinIR(img_size=16, in_chans=3, embed_dim=12, depths=[1], num_heads=[2], window_size=4,
                      mlp_ratio=1.0, upscale=scale, upsampler="pixelshuffledirect")


def dncnn(seed: int = 0) -> nn.Module:
    """DnCNN (a x1 restoration network): 8 layers of 8 channels, grayscale."""
    from spandrel.architectures.DnCNN import DnCNN

    _seeded(seed)
    return DnCNN(in_nc=1, out_nc=1, nc=8, nb=8, act_mode="R")


def nafnet(seed: int = 0) -> nn.Module:
    """NAFNet (a x1 restoration network), width 8, one encoder/decoder level (RGB)."""
    from spandrel.architectures.NAFNet import NAFNet

    _seeded(seed)
    return NAFNet(img_channel=3, width=8, middle_blk_num=1, enc_blk_nums=[1], dec_blk_nums=[1])


def save_safetensors(module: nn.Module, path: Path) -> Path:
    save_file(_state(module), str(path))
    return path


def save_pth(module: nn.Module, path: Path, wrap: str | None = None) -> Path:
    """``torch.save`` of the state dict (optionally wrapped, e.g. ``{"params_ema": ...}`` as BasicSR writes)."""
    state = _state(module)
    torch.save({wrap: state} if wrap else state, path)
    return path


class TinyOnnxSR(nn.Module):
    """x``scale`` grayscale SR for ONNX export: a 3x3 conv to scale**2 channels and a pixel shuffle."""

    def __init__(self, scale: int = 2, channels: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels * scale * scale, 3, padding=1)
        self.shuffle = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.conv(x))


class Cropping(nn.Module):
    """A wrong-shape network: drops the last row and column of its input (output is not h x w)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., :-1, :-1] * 1.0


def export_onnx(module: nn.Module, path: Path, channels: int = 1, dynamic: bool = True, seed: int = 0) -> Path:
    """Export ``module`` with input ``x`` (N, C, H, W) and output ``y``; dynamic batch, height and width unless told."""
    _seeded(seed)
    axes = {"x": {0: "n", 2: "h", 3: "w"}, "y": {0: "n", 2: "oh", 3: "ow"}} if dynamic else None
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), torch.rand(1, channels, 24, 24), str(path), dynamo=False, opset_version=17,
                          input_names=["x"], output_names=["y"], dynamic_axes=axes)
    return path


def onnx_with_external_data(path: Path) -> Path:
    """An ONNX model whose weights live in a separate file beside it (refused: it could read any file)."""
    import onnx

    tmp = export_onnx(TinyOnnxSR(), path.with_name("inline_" + path.name))
    model = onnx.load(str(tmp))
    tmp.unlink()
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=path.stem + ".weights", size_threshold=0)
    return path


class CodeRunner:
    """Unpickling this runs code: it creates ``marker`` (a harmless stand-in for anything an attacker wants)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def malicious_pth(path: Path, marker: Path, legacy: bool = False) -> Path:
    """A weights file whose pickle creates ``marker`` when loaded without ``weights_only``.

    ``legacy``: a plain ``pickle.dump`` (the pre-zip format) instead of ``torch.save``'s zip archive.
    """
    payload = {"conv.weight": torch.zeros(2, 2), "trigger": CodeRunner(marker)}
    if legacy:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    else:
        torch.save(payload, path)
    return path


def pickle_globals(path: Path) -> set[str]:
    """Every global (``module.name``) a weights file's pickle imports, read with pickletools: nothing runs.

    Handles ``torch.save``'s zip archive (its ``data.pkl``) and a plain pickle.
    """
    import io
    import pickletools
    import zipfile

    data = path.read_bytes()
    if zipfile.is_zipfile(io.BytesIO(data)):
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            data = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
    found, strings = set(), []
    for op, arg, _ in pickletools.genops(data):
        if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
            strings.append(arg)
        elif op.name == "GLOBAL":
            found.add(arg.replace(" ", "."))
        elif op.name == "STACK_GLOBAL":
            found.add(f"{strings[-2]}.{strings[-1]}")
    return found


def torchscript_pt(path: Path) -> Path:
    """A TorchScript archive (code, not just weights): torch.load(weights_only=True) refuses it."""
    torch.jit.script(TinyOnnxSR()).save(str(path))
    return path
