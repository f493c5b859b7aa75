"""Where and how a network runs: device, precision and memory layout.

CUDA when present, CPU otherwise. For each (model, device) an execution plan
is chosen once and cached: every candidate (fp32 / bf16 / fp16 autocast,
NCHW / channels-last, and on the CPU ONNX Runtime fp32 when ``onnxruntime``
and ``onnx`` are installed, see :mod:`models.onnx_backend`) is timed on a
real image crop, and the fastest one whose output agrees with plain fp32
PyTorch (PSNR >= 50 dB between the two) wins. A candidate that fails the
fidelity check is never used, so speed never costs accuracy silently.

Choosing is cheap: bf16 is offered on a CPU only when oneDNN has native bf16
kernels there (AVX-512 BF16 / AMX; elsewhere a bf16 convolution is ~100x slower
than fp32, and timing it alone took minutes), and every candidate is first
run once on a tiny crop; one more than :data:`SCREEN_FACTOR` times slower than
the fastest there is not timed further.

Post-upsampling SR networks run staged (:mod:`models.stages`): the
low-resolution part on large tiles, the high-resolution part on small
sub-tiles (:func:`forward_tiled`, ``plan.staged``); the split checks itself
against the plain forward, and every candidate is timed and checked staged.

Environment:
    ``MEDENHANCE_PLAN=fp32``  force the reference plan (plain PyTorch fp32).
    ``MEDENHANCE_PLAN=ort``   prefer ONNX Runtime whatever its speed (benchmarks);
                              it must still pass the fidelity check, else fp32.
    ``MEDENHANCE_ORT=0``      never offer the ONNX Runtime candidate.
    ``MEDENHANCE_COMPILE=1``  also offer ``torch.compile`` (Inductor, :mod:`models.compiled`): often
                              faster, but compiling takes minutes inside the first request.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import threading
import time
from dataclasses import dataclass

import numpy as np
import torch

from . import compiled, onnx_backend, stages
from .tiling import Progress, staged_tiled_apply, tiled_apply

log = logging.getLogger(__name__)

FIDELITY_MIN_PSNR_DB = 50.0
SCREEN_SIDE = 32  # side of the crop every candidate is first run on
SCREEN_FACTOR = 3.0  # candidates this much slower than the fastest on it are dropped
# Core of a low-resolution tile of a staged network (input px). Its activations are the small ones;
# larger tiles recompute less margin (RRDBNet x4's 76 px around 512 px: 1.7x the core's work).
LR_TILE = 512

_plans: dict[tuple[str, str], "ExecPlan"] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class ExecPlan:
    """How to run a module: autocast dtype (None = fp32), channels-last layout, and backend.

    ``backend`` is ``"torch"``, ``"onnxruntime"`` (CPU, fp32, NCHW only) or ``"inductor"``
    (``torch.compile``, fp32, opt-in: :mod:`models.compiled`). ``staged``: tiles are
    run as two stages (:mod:`models.stages`, :func:`forward_tiled`), each with this backend and layout.
    """

    dtype: torch.dtype | None = None
    channels_last: bool = False
    fidelity_db: float = math.inf
    seconds: float = 0.0
    backend: str = "torch"
    staged: bool = False

    @property
    def label(self) -> str:
        d = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]
        prefix = {"onnxruntime": "ort-", "inductor": "compiled-"}.get(self.backend, "")
        return prefix + d + ("+channels_last" if self.channels_last else "") + ("+staged" if self.staged else "")


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


def run(module: torch.nn.Module, x: torch.Tensor, plan: ExecPlan, contiguous: bool = True,
        **kwargs) -> torch.Tensor:
    """Forward ``x`` (already on the module's device) with ``plan``; returns fp32, NCHW-contiguous.

    ``contiguous=False`` keeps the module's memory layout (channels-last features passed
    from one stage to the next need no round trip through NCHW).
    """
    if plan.backend == "onnxruntime":
        if onnx_backend.usable(module):
            return onnx_backend.run(module, x, **kwargs)
        plan = ExecPlan()  # e.g. a reloaded module whose export failed: plain PyTorch fp32
    if plan.backend == "inductor":
        y = compiled.run(module, x, **kwargs)
        return y.float().contiguous() if contiguous else y.float()
    if plan.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast(x.device.type, dtype=plan.dtype or torch.float32, enabled=plan.dtype is not None):
        y = module(x, **kwargs)
    return y.float().contiguous() if contiguous else y.float()


def _probe_forward(module: torch.nn.Module, st: stages.Stages | None, x: torch.Tensor, plan: ExecPlan,
                   kwargs: dict) -> torch.Tensor:
    """One probe forward the way tiles will run: staged (one LR tile, one HR sub-tile) or whole."""
    if st is None:
        return run(module, x, plan, **kwargs)
    return run(st.hr, run(st.lr, x, plan, contiguous=False), plan)


def _time(fn, x: torch.Tensor, repeats: int = 3) -> tuple[torch.Tensor, float]:
    """(output, minimum seconds of ``repeats`` calls of ``fn(x)`` after one warm-up)."""
    sync = torch.cuda.synchronize if x.device.type == "cuda" else (lambda: None)
    y = fn(x)  # warm-up (and oneDNN/cuDNN algorithm selection)
    ts = []
    for _ in range(repeats):
        sync()
        t = time.perf_counter()
        y = fn(x)
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
    elif torch.backends.mkldnn.is_available() and _native_cpu_bf16():
        plans += [ExecPlan(torch.bfloat16, False), ExecPlan(torch.bfloat16, True)]
    return plans + ort_plans + ([ExecPlan(backend="inductor")] if compiled.enabled() else [])


def _native_cpu_bf16() -> bool:
    """Whether oneDNN has native bf16 kernels on this CPU (AVX-512 BF16 / AMX).

    Without them (e.g. AVX2-only Zen 3) a bf16 convolution is ~100x slower than fp32: a
    32-channel 3x3 conv at 256x256 took 3 s instead of 7 ms, so the candidate can never win.
    """
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # an older or newer torch: let the screening decide
        return True


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
        # A module that runs its own runtime (an imported ONNX graph, models.user_nets.OnnxNet):
        # autocast and memory layout do not reach it, so only the reference plan is timed.
        plans = [ExecPlan()] if getattr(module, "runs_itself", False) else candidates(device)
        if plans == [ExecPlan()]:  # the reference alone (also MEDENHANCE_PLAN=fp32): nothing to compare or time
            plans = []
        st = stages.split(module) if plans else None
        ref = run(module, x, ExecPlan(), **kw).clamp(0, 1) if plans else None  # plain fp32, whole probe
        plans = _screened(name, module, st, [p for p in plans if _offered(p, module, st)], x, kw)
        for plan in plans:
            try:
                _set_layout(module, st, plan.channels_last)
                y, secs = _time(lambda t: _probe_forward(module, st, t, plan, kw), x)
            except RuntimeError:  # e.g. an op without a bf16 kernel on this CPU: not a candidate
                continue
            finally:
                _set_layout(module, st, False)
            fid = psnr_torch(ref, y.clamp(0, 1))
            log.info("plan %s@%s: %s%s %.2f ms, %.1f dB vs fp32", name, device, plan.label,
                     "+staged" if st else "", secs * 1e3, fid)
            wins = best is None or secs < best.seconds or (prefer_ort and plan.backend == "onnxruntime")
            if fid >= FIDELITY_MIN_PSNR_DB and wins:
                best = ExecPlan(plan.dtype, plan.channels_last, fid, secs, plan.backend, staged=st is not None)
        best = best or ExecPlan()
        _set_layout(module, st if best.staged else None, best.channels_last)
        _plans[key] = best
        return best


def _offered(plan: ExecPlan, module: torch.nn.Module, st: stages.Stages | None) -> bool:
    """ONNX Runtime only where every module that will run exports (ORT absent, export failed, or a
    forward with keywords a graph cannot serve: not a candidate)."""
    if plan.backend != "onnxruntime":
        return True
    return all(onnx_backend.usable(m) for m in ((st.lr, st.hr) if st else (module,)))


def _set_layout(module: torch.nn.Module, st: stages.Stages | None, channels_last: bool) -> None:
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for m in (module, *((st.lr, st.hr) if st else ())):  # the stages hold folded convs of their own
        m.to(memory_format=fmt)


def _screened(name: str, module: torch.nn.Module, st: stages.Stages | None, plans: list[ExecPlan],
              x: torch.Tensor, kw: dict) -> list[ExecPlan]:
    """``plans`` without those ``SCREEN_FACTOR`` times slower than the fastest on a tiny crop (one timed run).

    Compiled plans are never screened out: their first calls compile, and on a tiny crop their
    time is guards and launch overhead, not what a tile costs.
    """
    if len([p for p in plans if p.backend != "inductor"]) < 2:
        return plans
    kept_compiled = [p for p in plans if p.backend == "inductor"]
    plans = [p for p in plans if p.backend != "inductor"]
    small = x[:, :, :SCREEN_SIDE, :SCREEN_SIDE]
    skw = {"stats": module.image_stats(small)} if kw else {}
    secs: dict[ExecPlan, float] = {}
    for plan in plans:
        try:
            _set_layout(module, st, plan.channels_last)
            secs[plan] = _time(lambda t: _probe_forward(module, st, t, plan, skw), small, repeats=1)[1]
        except RuntimeError:
            continue
        finally:
            _set_layout(module, st, False)
    fastest = min(secs.values(), default=0.0)
    kept = [p for p in plans if p in secs and secs[p] <= SCREEN_FACTOR * fastest]
    dropped = [f"{p.label} {secs[p] * 1e3:.0f} ms" for p in plans if p in secs and p not in kept]
    if dropped:
        log.info("plan %s: screened out on a %d px crop (fastest %.0f ms): %s", name, SCREEN_SIDE,
                 fastest * 1e3, ", ".join(dropped))
    return kept + kept_compiled


@functools.lru_cache(maxsize=1)
def last_level_cache_bytes() -> int:
    """Size of the CPU's last-level cache (Linux sysfs; 32 MiB, a Zen 3 CCX's L3, where it cannot be read)."""
    for index in (3, 2):
        try:
            text = open(f"/sys/devices/system/cpu/cpu0/cache/index{index}/size").read().strip()
        except OSError:
            continue
        unit = {"K": 1 << 10, "M": 1 << 20}.get(text[-1:], 1)
        return int(text.rstrip("KM")) * unit
    return 32 << 20


def lr_tile_for(tile: int, module: torch.nn.Module | None = None, margin: int = 0) -> int:
    """Core of the low-resolution tiles of a staged network whose HR sub-tiles are ``tile`` px.

    A small ``tile`` (bounding memory) shrinks these too: at most 4x its side. A network whose whole body
    runs at low resolution with ``lr_feats`` channels (CompactSR) gets tiles whose conv input and output,
    margin included, fit in 3/4 of the last-level cache: measured on the 2-core Zen 3 (32 MiB L3), its
    32-channel convs run at 180-190 GFLOP/s on tiles up to ~130k px and at ~100 GFLOP/s on 512 + 2 x 20 px
    tiles (305k px), so 256 px cores are 1.4x faster despite recomputing more margin.
    """
    side = max(tile, min(LR_TILE, 4 * tile))
    feats = getattr(module, "lr_feats", None)
    if feats:
        fit = int((0.75 * last_level_cache_bytes() / (2 * 4 * feats)) ** 0.5) - 2 * margin
        side = min(side, max(64, fit // 32 * 32))
    return side


def forward_tiled(module: torch.nn.Module, x: torch.Tensor, plan: ExecPlan, device: str, scale: int, tile: int,
                  *, kwargs: dict | None = None, progress: Progress | None = None) -> torch.Tensor:
    """The whole image ``x`` (1, C, H, W) CPU float32 in [0, 1] through ``module`` with ``plan``, tiled.

    Returns (1, C, H*scale, W*scale) float32 CPU, clamped to [0, 1]. ``tile`` is the core of a tile
    (of an HR sub-tile when staged) in input pixels; ``progress(done, total)`` counts tiles.
    """
    kwargs = kwargs or {}
    margin = getattr(module, "receptive_margin", 16)
    st = stages.split(module) if plan.staged else None
    if st is None:
        def fn(t: torch.Tensor) -> torch.Tensor:
            return run(module, t.to(device, non_blocking=True), plan, **kwargs).clamp_(0, 1).cpu()

        return tiled_apply(fn, x, scale, tile, margin, align=getattr(module, "tile_align", 1), progress=progress)

    def lr(t: torch.Tensor) -> torch.Tensor:
        return run(st.lr, t.to(device, non_blocking=True), plan, contiguous=False)

    def hr(f: torch.Tensor) -> torch.Tensor:
        return run(st.hr, f, plan).clamp_(0, 1).cpu()

    # The LR tiles' margin covers both stages, so the features are exact where sub-tiles read them.
    lr_margin = margin + st.hr_margin
    return staged_tiled_apply(lr, hr, x, scale, lr_tile_for(tile, module, lr_margin), lr_margin, tile, st.hr_margin,
                              progress=progress)
