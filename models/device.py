"""Where and how a network runs: device, precision and memory layout.

CUDA when present, CPU otherwise. For each (model, device) an execution plan
is chosen once and cached: every candidate (fp32 / bf16 / fp16 autocast,
NCHW / channels-last, and on the CPU ONNX Runtime fp32 when ``onnxruntime``
and ``onnx`` are installed, see :mod:`models.onnx_backend`) is timed on a
real image crop, and the fastest one whose output agrees with plain fp32
PyTorch (PSNR >= 50 dB between the two) wins. A candidate that fails the
fidelity check is never used, so speed never costs accuracy silently.

Environment:
    ``MEDENHANCE_PLAN=fp32``  force the reference plan (plain PyTorch fp32).
    ``MEDENHANCE_PLAN=ort``   prefer ONNX Runtime whatever its speed (benchmarks);
                              it must still pass the fidelity check, else fp32.
    ``MEDENHANCE_ORT=0``      never offer the ONNX Runtime candidate.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from dataclasses import dataclass

import numpy as np
import torch

from . import onnx_backend

log = logging.getLogger(__name__)

FIDELITY_MIN_PSNR_DB = 50.0

_plans: dict[tuple[str, str], "ExecPlan"] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class ExecPlan:
    """How to run a module: autocast dtype (None = fp32), channels-last layout, and backend.

    ``backend`` is ``"torch"`` or ``"onnxruntime"`` (CPU, fp32, NCHW only).
    """

    dtype: torch.dtype | None = None
    channels_last: bool = False
    fidelity_db: float = math.inf
    seconds: float = 0.0
    backend: str = "torch"

    @property
    def label(self) -> str:
        d = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]
        prefix = "ort-" if self.backend == "onnxruntime" else ""
        return prefix + d + ("+channels_last" if self.channels_last else "")


def default_device() -> str:
    """``"cuda"`` if a GPU is usable (and ``MEDENHANCE_DEVICE`` does not say otherwise), else ``"cpu"``."""
    forced = os.environ.get("MEDENHANCE_DEVICE")
    if forced:
        return forced
    return "cuda" if torch.cuda.is_available() else "cpu"


def psnr_torch(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two tensors with data range 1 (inf when identical)."""
    mse = float(torch.mean((a.float() - b.float()) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def probe_side(device: str) -> int:
    """Side of the probe image a plan is timed on: 96 px on the CPU, 256 px on a GPU.

    On an H100 every network runs a 96x96 input in well under a millisecond, where kernel launches,
    not arithmetic, set the time: the plans picked there were up to 1.6x slower than fp32 at a 512x512
    output (docs/bench/h100). 256 px keeps the GPU's arithmetic in the timing.
    """
    return 96 if device == "cpu" else 256


def _probe_image(channels: int, side: int = 96) -> torch.Tensor:
    """A real crop (scikit-image's 'camera' photograph, shipped with the package), (1, C, side, side)."""
    y0 = 200 if side <= 96 else max(0, 256 - side // 2)  # 96 px: the crop the CPU plans were always picked on
    try:
        from skimage import data

        img = data.camera()[y0 : y0 + side, y0 : y0 + side].astype(np.float32) / 255.0
    except Exception:  # noqa: BLE001 - a missing sample file must not stop inference; use a synthetic image
        yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
        img = 0.5 + 0.4 * np.sin(xx / 4) * np.cos(yy / 6)
    t = torch.from_numpy(img)[None, None]
    return t.expand(1, channels, side, side).contiguous()


def run(module: torch.nn.Module, x: torch.Tensor, plan: ExecPlan, **kwargs) -> torch.Tensor:
    """Forward ``x`` (already on the module's device) with ``plan``; returns fp32 NCHW."""
    if plan.backend == "onnxruntime":
        if onnx_backend.usable(module):
            return onnx_backend.run(module, x, **kwargs)
        plan = ExecPlan()  # e.g. a reloaded module whose export failed: plain PyTorch fp32
    if plan.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast(x.device.type, dtype=plan.dtype or torch.float32, enabled=plan.dtype is not None):
        y = module(x, **kwargs)
    return y.float().contiguous()


def _time(module: torch.nn.Module, x: torch.Tensor, plan: ExecPlan, kwargs: dict,
          repeats: int = 3) -> tuple[torch.Tensor, float]:
    sync = torch.cuda.synchronize if x.device.type == "cuda" else (lambda: None)
    y = run(module, x, plan, **kwargs)  # warm-up (and oneDNN/cuDNN algorithm selection)
    ts = []
    for _ in range(repeats):
        sync()
        t = time.perf_counter()
        y = run(module, x, plan, **kwargs)
        sync()
        ts.append(time.perf_counter() - t)
    # The minimum, not the median: other processes only ever add time, so the fastest of the
    # repeats is the best estimate of what the plan costs (a busy moment must not pick the plan).
    return y, float(np.min(ts))


def candidates(device: str) -> list[ExecPlan]:
    """Plans worth trying on ``device``: fp32 first (the reference), then faster ones.

    ``MEDENHANCE_PLAN=ort`` gives only the reference and ONNX Runtime (when enabled).
    """
    mode = os.environ.get("MEDENHANCE_PLAN", "")
    if mode == "fp32":
        return [ExecPlan()]
    ort = device == "cpu" and os.environ.get("MEDENHANCE_ORT", "1") != "0" and onnx_backend.available()
    ort_plans = [ExecPlan(backend="onnxruntime")] if ort else []
    if mode == "ort":
        return [ExecPlan()] + ort_plans
    plans = [ExecPlan(), ExecPlan(None, True)]
    if device.startswith("cuda"):
        plans += [ExecPlan(torch.bfloat16, True), ExecPlan(torch.float16, True)]
    elif torch.backends.mkldnn.is_available():
        plans += [ExecPlan(torch.bfloat16, False), ExecPlan(torch.bfloat16, True)]
    return plans + ort_plans


def forget_plans(name: str) -> None:
    """Drop the cached plans of model ``name`` on every device (a user model reloaded from another file)."""
    with _lock:
        for key in [k for k in _plans if k[0] == name]:
            del _plans[key]


@torch.no_grad()
def pick_plan(name: str, module: torch.nn.Module, device: str) -> ExecPlan:
    """The fastest plan whose output stays within ``FIDELITY_MIN_PSNR_DB`` of fp32 (cached).

    Under ``MEDENHANCE_PLAN=ort`` the ONNX Runtime plan wins whenever it passes the fidelity check.
    """
    key = (name, device)
    with _lock:
        if key in _plans:
            return _plans[key]
        prefer_ort = os.environ.get("MEDENHANCE_PLAN", "") == "ort"
        x = _probe_image(module.in_channels, probe_side(device)).to(device)
        kw = {"stats": module.image_stats(x)} if getattr(module, "global_stats", False) else {}
        best: ExecPlan | None = None
        ref = None
        # A module that runs its own runtime (an imported ONNX graph, models.user_nets.OnnxNet):
        # autocast and memory layout do not reach it, so only the reference plan is timed.
        plans = [ExecPlan()] if getattr(module, "runs_itself", False) else candidates(device)
        if plans == [ExecPlan()]:  # the reference alone (also MEDENHANCE_PLAN=fp32): nothing to compare or time
            plans = []
        for plan in plans:
            # No export (ORT absent, export failed, or forward takes keywords a graph cannot serve): not a candidate.
            if plan.backend == "onnxruntime" and not onnx_backend.usable(module):
                continue
            try:
                if plan.channels_last:
                    module.to(memory_format=torch.channels_last)
                y, secs = _time(module, x, plan, kw)
            except RuntimeError:  # e.g. an op without a bf16 kernel on this CPU: not a candidate
                continue
            finally:
                module.to(memory_format=torch.contiguous_format)
            y = y.clamp(0, 1)
            if ref is None:
                ref = y
            fid = psnr_torch(ref, y)
            log.info("plan %s@%s: %s %.2f ms, %.1f dB vs fp32", name, device, plan.label, secs * 1e3, fid)
            wins = best is None or secs < best.seconds or (prefer_ort and plan.backend == "onnxruntime")
            if fid >= FIDELITY_MIN_PSNR_DB and wins:
                best = ExecPlan(plan.dtype, plan.channels_last, fid, secs, plan.backend)
        best = best or ExecPlan()
        if best.channels_last:
            module.to(memory_format=torch.channels_last)
        _plans[key] = best
        return best
