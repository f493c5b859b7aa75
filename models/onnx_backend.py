"""ONNX Runtime as an optional CPU backend for the networks.

Optional at run time (``onnxruntime`` and ``onnx`` are in requirements.txt, but
the studio works without them): when they are missing, or a network cannot be
exported, ONNX Runtime is simply not a candidate plan in :mod:`models.device`;
nothing here raises into inference.

A loaded network is exported once per module instance, in memory, with the
TorchScript-based exporter (``dynamo=False``, needs only ``onnx``) at
:data:`OPSET`, with dynamic batch, height and width axes so every tile size
runs through the same session. Networks with ``global_stats`` (per-image
statistics, see :class:`models.arch.gated.GatedEnhancer`) are exported with
``stats`` as a second input, and :func:`run` computes the statistics with the
module when the caller does not pass them, exactly as ``forward`` does.
The graph is a snapshot of the weights at export: weights loaded into the
same module object later need :func:`clear` (a reloaded module, e.g. after
``models.loading.clear_cache()``, gets its own export).

User models (:mod:`models.user_nets`): a module with ``onnx_export = False`` (an imported ONNX
graph already run by ONNX Runtime, or a spandrel network that pads by its input size) is never
exported; one with ``onnx_verify = True`` is exported, then trusted only if the session agrees
with ``forward`` on an odd-sized input (:data:`VERIFY_SHAPE`), so a graph whose sizes the tracer
froze never serves a tile.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import io
import logging
import math
import threading
import warnings
import weakref
from typing import Any

import torch

log = logging.getLogger(__name__)

OPSET = 17  # supported by onnx >= 1.12 and onnxruntime >= 1.11
VERIFY_SHAPE = (37, 45)  # (h, w) of the check of onnx_verify modules: odd, unlike the 32 x 32 export
VERIFY_MIN_PSNR_DB = 50.0

_sessions: "weakref.WeakKeyDictionary[torch.nn.Module, Any]" = weakref.WeakKeyDictionary()
_lock = threading.Lock()


@functools.cache
def available() -> bool:
    """True when both ``onnxruntime`` and ``onnx`` import (logged once when not)."""
    try:
        importlib.import_module("onnx")
        importlib.import_module("onnxruntime")
    except Exception as e:  # noqa: BLE001 - a broken install is the same as no install
        log.info("ONNX Runtime backend unavailable (pip install onnxruntime onnx): %s", e)
        return False
    return True


def supports(module: torch.nn.Module) -> bool:
    """Whether an exported graph serves every ``run(module, x, **kwargs)`` call the way ``forward`` does.

    ``forward(x)`` qualifies, and ``forward(x, stats=None)`` of a ``global_stats`` network
    (stats become a graph input). Any other keyword would be frozen into the graph at
    export time, so such networks get no ONNX candidate.
    """
    if getattr(module, "onnx_export", True) is False:  # an imported graph, or a network that pads by size
        return False
    params = list(inspect.signature(module.forward).parameters)[1:]
    return params == [] or (params == ["stats"] and getattr(module, "global_stats", False))


def _agrees(module: torch.nn.Module, sess: Any) -> bool:
    """Whether ``sess`` matches ``module.forward`` on a :data:`VERIFY_SHAPE` input (PSNR >= 50 dB, same shape)."""
    h, w = VERIFY_SHAPE
    x = torch.rand(1, module.in_channels, h, w, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = module(x).float().clamp(0, 1)
    y = torch.from_numpy(sess.run(["y"], {"x": x.numpy()})[0]).clamp(0, 1)
    if y.shape != ref.shape:
        return False
    mse = float(torch.mean((y - ref) ** 2))
    return mse == 0 or 10 * math.log10(1.0 / mse) >= VERIFY_MIN_PSNR_DB


def export(module: torch.nn.Module) -> bytes:
    """Serialized ONNX model of ``module`` (CPU, fp32).

    Inputs ``x`` (N, C, H, W) in [0, 1] [and ``stats`` (N, 4C)]; output ``y`` (N, C, H*scale, W*scale).
    """
    x = torch.rand(1, module.in_channels, 32, 32, generator=torch.Generator().manual_seed(0))  # global RNG untouched
    args: tuple[torch.Tensor, ...] = (x,)
    names, axes = ["x"], {"x": {0: "n", 2: "h", 3: "w"}, "y": {0: "n", 2: "oh", 3: "ow"}}
    if getattr(module, "global_stats", False):
        args += (module.image_stats(x),)
        names.append("stats")
        axes["stats"] = {0: "n"}
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer / deprecation chatter
        torch.onnx.export(module, args, buf, dynamo=False, opset_version=OPSET, input_names=names,
                          output_names=["y"], dynamic_axes=axes)
    return buf.getvalue()


def _session(module: torch.nn.Module) -> Any:
    """The cached ``onnxruntime.InferenceSession`` of ``module``, or None if it cannot have one."""
    with _lock:
        if module in _sessions:
            return _sessions[module]
        sess = None
        if available() and supports(module):
            try:
                import onnxruntime as ort

                opts = ort.SessionOptions()
                opts.intra_op_num_threads = torch.get_num_threads()
                opts.inter_op_num_threads = 1
                opts.log_severity_level = 3  # errors only
                sess = ort.InferenceSession(export(module), opts, providers=["CPUExecutionProvider"])
                if getattr(module, "onnx_verify", False) and not _agrees(module, sess):
                    log.warning("ONNX export of %s disagrees with PyTorch on a %d x %d input, staying on PyTorch",
                                type(module).__name__, VERIFY_SHAPE[1], VERIFY_SHAPE[0])
                    sess = None
            except Exception as e:  # noqa: BLE001 - any exporter/runtime failure: no ONNX candidate
                sess = None  # also when the export ran but its check did not
                log.warning("ONNX export of %s failed, staying on PyTorch: %s: %s",
                            type(module).__name__, type(e).__name__, str(e).splitlines()[0] if str(e) else "")
        _sessions[module] = sess
        return sess


def usable(module: torch.nn.Module) -> bool:
    """True when ``module`` (on the CPU) runs through ONNX Runtime (exports it on first call)."""
    return _session(module) is not None


def run(module: torch.nn.Module, x: torch.Tensor, stats: torch.Tensor | None = None) -> torch.Tensor:
    """Forward ``x`` (N, C, H, W) float32 CPU, values in [0, 1], through ONNX Runtime.

    Returns (N, C, H*scale, W*scale) float32 contiguous CPU tensor (unclamped, like
    ``forward``). Raises RuntimeError when ``module`` has no session (see :func:`usable`)
    or ONNX Runtime fails.
    """
    sess = _session(module)
    if sess is None:
        raise RuntimeError(f"{type(module).__name__} has no ONNX Runtime session")
    feeds = {"x": x.detach().float().contiguous().numpy()}
    if getattr(module, "global_stats", False):
        feeds["stats"] = (module.image_stats(x) if stats is None else stats).detach().float().contiguous().numpy()
    try:
        y = sess.run(["y"], feeds)[0]
    except Exception as e:  # noqa: BLE001 - onnxruntime's errors are not RuntimeErrors; callers expect one
        raise RuntimeError(f"ONNX Runtime failed on {type(module).__name__}: {e}") from e
    return torch.from_numpy(y)


def clear() -> None:
    """Forget every session (tests; after weights change in place)."""
    with _lock:
        _sessions.clear()
