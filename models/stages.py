"""Split a post-upsampling SR network into a low-resolution and a high-resolution stage (torch.fx).

SRResNet, EDSR and RRDBNet x4 compute features at the input resolution and
then upsample. Tiling them as one piece recomputes the whole network's
receptive margin around every small tile (:mod:`models.tiling`). Split in two,

* ``lr``: (N, C, h, w) -> (N, K, h, w), every value the high-resolution part
  reads, concatenated on channels (the features and, for the bicubic skip, the input);
* ``hr``: (N, K, h, w) -> (N, C, h*scale, w*scale), everything downstream of the
  first upsampling, whose receptive radius ``hr_margin`` is a few input pixels,

the low-resolution stage runs on large tiles and the high-resolution one on
small sub-tiles of its features (:func:`models.tiling.staged_tiled_apply`).

The split is generic: the network is traced with ``torch.fx``, shapes are
propagated on a small input, and every node whose output is larger than the
input, or that depends on one that is, belongs to ``hr``. ``hr_margin`` is
derived from the traced layers (kernel sizes at their resolution); a layer
whose spatial reach is unknown (pooling, strided or transposed convolution, an
untraceable module) means no split. Before a split is used, ``hr(lr(x))`` must
equal ``forward(x)`` on a random input, whole and with ``hr`` in 6-pixel
sub-tiles (a seam within ``hr_margin`` of every pixel). Convolutions after a
pixel shuffle are folded to the lower resolution first (:mod:`models.fold`).

The stages hold a snapshot of folded weights: weights loaded into the same
module object later need :func:`clear`.
"""

from __future__ import annotations

import logging
import math
import operator
import threading
import weakref
from dataclasses import dataclass

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from .fold import fold_shuffle_convs
from .resample import upscale_tensor
from .tiling import tiled_apply

log = logging.getLogger(__name__)

_PROBE_HW = (20, 24)  # shape propagation input: small, and not square so h and w cannot be confused
_POINTWISE_MODULES = (nn.ReLU, nn.PReLU, nn.LeakyReLU, nn.Sigmoid, nn.Tanh, nn.GELU, nn.SiLU, nn.ELU,
                      nn.Identity, nn.Dropout)
_POINTWISE_FUNCTIONS = {operator.add, operator.sub, operator.mul, operator.truediv, operator.neg, torch.add,
                        torch.sub, torch.mul, torch.cat, torch.sigmoid, torch.tanh, torch.clamp, F.relu,
                        F.leaky_relu, F.prelu, F.gelu, F.silu}
_POINTWISE_METHODS = {"clamp", "clamp_", "contiguous", "float", "add", "sub", "mul", "div", "sigmoid", "tanh",
                      "relu", "add_", "mul_"}
# Input pixels read on each side by interpolation with align_corners=False, rounded up (+0.5 px of centre shift).
_INTERP_REACH = {"nearest": 1, "nearest-exact": 1, "bilinear": 2, "bicubic": 3}

_cache: "weakref.WeakKeyDictionary[nn.Module, Stages | None]" = weakref.WeakKeyDictionary()
_lock = threading.Lock()


@dataclass(frozen=True)
class Stages:
    """The two stages of a network (``hr(lr(x)) == module(x)``); ``hr_margin`` in input pixels."""

    lr: nn.Module
    hr: nn.Module
    hr_margin: int
    channels: int
    folded: int


class _Tracer(fx.Tracer):
    # upscale_tensor reads x.shape to size its output: kept as one call, not traced into.
    def __init__(self) -> None:
        super().__init__(autowrap_functions=(upscale_tensor,))


def split(module: nn.Module) -> Stages | None:
    """The two stages of ``module`` (cached per module object), or None when it cannot be split.

    ``module`` follows the contract of :mod:`models.arch` (``in_channels``, ``scale``); only
    networks with ``scale > 1``, one input and a non-trivial low-resolution part are split.
    """
    with _lock:
        if module in _cache:
            return _cache[module]
        try:
            stages = _split(module)
        except Exception as e:  # noqa: BLE001 - an untraceable network simply runs in one piece
            log.info("no staged tiling for %s: %s: %s", type(module).__name__, type(e).__name__, e)
            stages = None
        _cache[module] = stages
        return stages


def clear() -> None:
    """Forget every split (tests; after weights change in place)."""
    with _lock:
        _cache.clear()


def _tensor_shape(node: fx.Node) -> tuple[int, ...] | None:
    meta = node.meta.get("tensor_meta")
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def _split(module: nn.Module) -> Stages | None:
    scale = int(getattr(module, "scale", 1))
    if scale <= 1 or getattr(module, "global_stats", False) or getattr(module, "runs_itself", False) \
            or getattr(module, "onnx_export", True) is False:  # e.g. a plug-in that pads by its input size
        return None
    c = module.in_channels
    tracer = _Tracer()
    gm = fx.GraphModule(module, tracer.trace(module))
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        return None
    sample = torch.rand(1, c, *_PROBE_HW, generator=torch.Generator().manual_seed(0))
    dev = next((p.device for p in module.parameters()), torch.device("cpu"))
    sample = sample.to(dev)
    with torch.no_grad():
        ShapeProp(gm).propagate(sample)
        folded = fold_shuffle_convs(gm)
        if folded:
            ShapeProp(gm).propagate(sample)
    nodes = list(gm.graph.nodes)
    out_node = nodes[-1]
    hr: set[fx.Node] = set()
    for n in nodes:
        if n.op in ("call_module", "call_function", "call_method"):
            shape = _tensor_shape(n)
            if (shape is not None and len(shape) == 4 and shape[2] > _PROBE_HW[0]) or any(
                    a in hr for a in n.all_input_nodes):
                hr.add(n)
    result = out_node.args[0]
    if not isinstance(result, fx.Node) or result not in hr or _tensor_shape(result) != (1, c, _PROBE_HW[0] * scale,
                                                                                      _PROBE_HW[1] * scale):
        return None
    lr_nodes = [n for n in nodes if n not in hr and n.op != "output"]
    mods = dict(gm.named_modules())
    if not any(n.op == "call_module" and isinstance(mods[n.target], nn.Conv2d) for n in lr_nodes):
        return None  # pre-upsampling network (SRCNN, VDSR): nothing to gain
    # Parameters read by forward itself (get_attr) are copied into both stages, not passed between them.
    shared = [n for n in lr_nodes if n.op == "get_attr"]
    boundary = [n for n in lr_nodes if n.op != "get_attr" and any(u in hr for u in n.users)]
    for b in boundary:
        if _tensor_shape(b) is None or _tensor_shape(b)[0] != 1 or _tensor_shape(b)[2:] != _PROBE_HW:
            return None  # e.g. a size read in the LR part: sub-tiles would get the tile's size
        if any(_in_place(u, mods) for u in b.users if u in hr):
            return None  # a sub-tile would overwrite features its neighbours still read
    reach = _hr_reach([n for n in nodes if n in hr], set(boundary), set(shared), result, mods)
    if reach is None:
        return None
    widths = [_tensor_shape(b)[1] for b in boundary]

    lr_graph, env = fx.Graph(), {}
    for n in lr_nodes:
        env[n] = lr_graph.node_copy(n, lambda a: env[a])
    outs = [env[b] for b in boundary]
    lr_graph.output(outs[0] if len(outs) == 1 else lr_graph.call_function(torch.cat, (outs, 1)))
    lr_gm = fx.GraphModule(gm, lr_graph)
    lr_gm.graph.eliminate_dead_code()
    lr_gm.recompile()

    hr_graph, env = fx.Graph(), {}
    z = hr_graph.placeholder("z")
    start = 0
    for b, width in zip(boundary, widths):
        env[b] = z if len(boundary) == 1 else hr_graph.call_function(
            operator.getitem, (z, (slice(None), slice(start, start + width))))
        start += width
    for n in shared:
        env[n] = hr_graph.node_copy(n)
    for n in nodes:
        if n in hr:
            env[n] = hr_graph.node_copy(n, lambda a: env[a])
    hr_graph.output(env[result])
    hr_gm = fx.GraphModule(gm, hr_graph)
    k = sum(widths)
    lr_gm.in_channels, lr_gm.scale = c, 1  # the models.arch contract, e.g. for the ONNX export
    hr_gm.in_channels, hr_gm.scale = k, scale
    for g in (lr_gm, hr_gm):
        g.eval()
    hr_margin = math.ceil(reach) + 1
    with torch.no_grad():
        # The split must be the same function (folding changes only rounding), and HR sub-tiles with
        # hr_margin must reproduce it: small sub-tiles put a seam within hr_margin of every pixel.
        ref = module(sample)
        feats = lr_gm(sample)
        got = hr_gm(feats)
        tiled = tiled_apply(hr_gm, feats.cpu(), scale, 6, hr_margin).to(ref.device) if got.shape == ref.shape else got
    diff = max(float((got - ref).abs().max()), float((tiled - ref).abs().max())) if got.shape == ref.shape else math.inf
    if diff > 1e-4:
        log.warning("staged %s disagrees with forward (max |diff| %.3g): not split", type(module).__name__, diff)
        return None
    return Stages(lr_gm, hr_gm, hr_margin, k, folded)


def _in_place(node: fx.Node, mods: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return bool(getattr(mods[node.target], "inplace", False))
    name = getattr(node.target, "__name__", str(node.target))
    return name.endswith("_") and not name.endswith("__") or bool(node.kwargs.get("inplace", False))


def _hr_reach(hr_nodes: list[fx.Node], boundary: set[fx.Node], shared: set[fx.Node], result: fx.Node,
              mods: dict[str, nn.Module]) -> float | None:
    """How far (in input pixels) an output pixel of the HR stage reads from its own position; None if unknown."""
    ratio = {**{b: 1.0 for b in boundary}, **{p: 0.0 for p in shared}}  # parameters: no resolution
    reach = {**{b: 0.0 for b in boundary}, **{p: 0.0 for p in shared}}
    for n in hr_nodes:
        inputs = [a for a in n.all_input_nodes if a in reach]
        if not inputs:
            return None
        shape = _tensor_shape(n)
        ratio[n] = shape[2] / _PROBE_HW[0] if shape is not None and len(shape) == 4 else ratio[inputs[0]]
        r_in = max(ratio[a] for a in inputs)
        own = _own_reach(n, mods)
        if own is None:
            log.info("no staged tiling: unknown spatial reach of %s %s", n.op, n.target)
            return None
        reach[n] = max(reach[a] for a in inputs) + own / r_in
    return reach[result]


def _own_reach(n: fx.Node, mods: dict[str, nn.Module]) -> float | None:
    """Pixels (at the node's input resolution) one output pixel of ``n`` reads on each side; None if unknown."""
    if n.op == "call_module":
        m = mods[n.target]
        if isinstance(m, nn.Conv2d):
            if m.stride != (1, 1):
                return None
            return float(max(d * (k - 1) / 2 for d, k in zip(m.dilation, m.kernel_size)))
        if isinstance(m, nn.PixelShuffle):
            return 1.0  # within the input pixel; 1 covers rounding of the position
        if isinstance(m, nn.Upsample):
            return float(_INTERP_REACH.get(m.mode, math.inf)) if m.mode in _INTERP_REACH else None
        if isinstance(m, _POINTWISE_MODULES):
            return 0.0
        return None
    if n.op == "call_function":
        if n.target is upscale_tensor:
            return float(_INTERP_REACH["bicubic"])
        if n.target is F.interpolate:
            mode = n.kwargs.get("mode", n.args[3] if len(n.args) > 3 else "nearest")
            return float(_INTERP_REACH[mode]) if mode in _INTERP_REACH else None
        return 0.0 if n.target in _POINTWISE_FUNCTIONS else None
    if n.op == "call_method":
        return 0.0 if n.target in _POINTWISE_METHODS else None
    return None
