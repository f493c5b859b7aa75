"""``torch.compile`` (Inductor, frozen weights) as an opt-in execution backend: ``MEDENHANCE_COMPILE=1``.

Inductor with ``freezing`` prepacks the convolutions' weights for oneDNN and
fuses the element-wise work around them (PReLU, pixel shuffle, the bicubic
skip's add and clamp) into generated loops. On the 2-core AVX2 development CPU
it ran SRResNet x4's high-resolution stage 1.5x faster than ONNX Runtime (one
thread, 136 px sub-tile: 0.58 s vs 0.86 s; LR stage 0.69 vs 0.96 s at 200 px).
The price is compile time: 1.5-2 minutes per network on that machine, paid
inside the first request that uses it. So it is never a candidate unless asked
for (batch jobs, a server that warms up before it takes requests), and
Inductor's on-disk cache makes a later process's compile shorter.

Shapes are dynamic (one compile serves every tile size). A compile or run
that fails falls back to eager PyTorch for that module, logged once.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from typing import Any

import torch

log = logging.getLogger(__name__)

_compiled: "weakref.WeakKeyDictionary[torch.nn.Module, Any]" = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def enabled() -> bool:
    """True when ``MEDENHANCE_COMPILE=1`` asks for the Inductor candidate."""
    return os.environ.get("MEDENHANCE_COMPILE", "") == "1"


def _compiled_module(module: torch.nn.Module) -> Any:
    with _lock:
        if module not in _compiled:
            # freezing: weights are constants of the graph (prepacked); valid because our modules never train here.
            _compiled[module] = torch.compile(module, dynamic=True, options={"freezing": True})
        return _compiled[module]


def run(module: torch.nn.Module, x: torch.Tensor, **kwargs: Any) -> torch.Tensor:
    """``module(x)`` through Inductor (compiled on first use); eager after a failure (logged once)."""
    fn = _compiled_module(module)
    if fn is None:
        return module(x, **kwargs)
    try:
        return fn(x, **kwargs)
    except Exception as e:  # noqa: BLE001 - Dynamo/Inductor errors are of many kinds: eager from now on
        log.warning("torch.compile of %s failed, running it eagerly: %s: %s", type(module).__name__,
                    type(e).__name__, str(e).splitlines()[0] if str(e) else "")
        with _lock:
            _compiled[module] = None
        return module(x, **kwargs)


def clear() -> None:
    """Forget every compiled module (tests)."""
    with _lock:
        _compiled.clear()
