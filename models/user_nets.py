"""The networks of user model files, behind the contract of :mod:`models.arch`.

A file of the user models folder (:mod:`models.plugins`) becomes a ``torch.nn.Module`` with
``in_channels``, ``scale``, ``receptive_margin`` and ``tile_align`` that maps (N, C, h, w) float
in [0, 1] to (N, C, h * scale, w * scale), so :func:`models.enhance` runs it exactly like the
networks of :mod:`models.zoo`: tiling, strength, the x8 self-ensemble, the device plans, the batch
CLI and evaluation. Two kinds:

* :class:`SpandrelNet`: weights (``.safetensors``, ``.pth``, ``.pt``, ``.ckpt``) whose architecture
  and hyper-parameters `spandrel <https://github.com/chaiNNer-org/spandrel>`_ detects from the state
  dict (ESRGAN, Real-ESRGAN, SwinIR, HAT, DAT, SCUNet, NAFNet, DnCNN, ...). The model's own size
  requirements (a minimum side, a multiple, square inputs) are met by padding inside ``forward``
  and cropping the output, so any tile size works.
* :class:`OnnxNet`: an ONNX graph run by ONNX Runtime (CPU), with dynamic height and width axes;
  its scale is found by running it on two small inputs.

Safety: nothing here ever unpickles code. ``.safetensors`` holds tensors only; ``.pth/.pt/.ckpt``
go through ``torch.load(weights_only=True)``, which refuses any pickle that would call a function
or build an object other than tensors and plain containers, and TorchScript archives. ONNX graphs
that point at external data files are refused (they could make the runtime read any file).
Every loader takes the file's bytes, already read (and hashed) by the caller, so the SHA-256 that
identifies a model names exactly the bytes that run.
"""

from __future__ import annotations

import io
import pickle
import re
import warnings
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from .errors import PluginError

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".ckpt")
ONNX_SUFFIXES = (".onnx",)
MODEL_SUFFIXES = WEIGHT_SUFFIXES + ONNX_SUFFIXES

# Scales the studio offers (Enhance and Compare: x1 restoration, x2 and x4 super-resolution).
SCALES = (1, 2, 4)
# Receptive margin guessed from a network's convolutions is kept within these bounds (input pixels):
# the theoretical receptive field of a deep ESRGAN is hundreds of pixels, its effective one far less,
# and a margin of hundreds of pixels per tile would multiply the work. A sidecar can set it.
MIN_AUTO_MARGIN, MAX_AUTO_MARGIN = 16, 64


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


# --- weights files ------------------------------------------------------------------------


def read_state_dict(data: bytes, suffix: str, label: str) -> dict[str, torch.Tensor]:
    """The tensors of a weights file's bytes, with common wrappers (``params_ema``, ``module.``) removed.

    Raises:
        PluginError: not safetensors / not a weights pickle, truncated, a pickle that would run
            code (refused unread), a TorchScript archive, or no tensors at all.
    """
    suffix = suffix.lower()
    if suffix == ".safetensors":
        from safetensors.torch import load as load_safetensors

        try:
            obj: Any = load_safetensors(data)
        except Exception as e:  # noqa: BLE001 - safetensors raises its own SafetensorError and others
            raise PluginError(f"{label}: not a readable safetensors file (truncated or damaged?): "
                              f"{_first_line(e)}") from None
    elif suffix in (".pth", ".pt", ".ckpt"):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "looks like a TorchScript archive": refused just below
                obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            # torch's weights-only unpickler names the global a pickle asked for ("GLOBAL posix.system"):
            # that is a file that would run code (or build arbitrary objects) when unpickled.
            wanted = re.search(r"GLOBAL\s+([\w.]+)", str(e))
            if wanted is None:
                raise PluginError(f"{label}: not a readable PyTorch weights file (damaged, or not a pickle).") from None
            raise PluginError(
                f"{label}: refused: its pickle asks for {wanted.group(1)}, which could run code when loaded. "
                "Only plain weights are loaded (torch.load with weights_only=True): save the state dict "
                "alone, or convert the file to .safetensors.") from None
        except Exception as e:  # noqa: BLE001 - truncated zip, TorchScript archive, not a pickle at all
            raise PluginError(f"{label}: not a readable PyTorch weights file ({type(e).__name__}: "
                              f"{_first_line(e)[:200]}).") from None
    else:
        raise PluginError(f"{label}: not a weights file (expected one of {', '.join(WEIGHT_SUFFIXES)}).")
    if not isinstance(obj, dict):
        raise PluginError(f"{label}: holds a {type(obj).__name__}, not a state dict of tensors.")
    from spandrel import canonicalize_state_dict

    state = canonicalize_state_dict(obj)
    tensors = {k: v for k, v in state.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not tensors:
        raise PluginError(f"{label}: holds no weight tensors.")
    return tensors


# --- spandrel architectures ------------------------------------------------------------------


def _conv_radius(net: nn.Module) -> int:
    """Sum of the convolutions' half-kernel reach (an upper bound of the receptive radius in input pixels).

    Convolutions after an upsampling layer reach fewer input pixels than counted here, so this
    overestimates, which is the safe side for tiling.
    """
    r = 0
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            kh, kw = m.kernel_size
            dh, dw = m.dilation
            r += max((kh - 1) * dh, (kw - 1) * dw) // 2
    return r


def _pad(x: torch.Tensor, pad_w: int, pad_h: int) -> torch.Tensor:
    """Pad right and bottom: reflect as far as the size allows, the rest replicated (as spandrel does)."""
    h, w = x.shape[-2:]
    rw, rh = min(pad_w, w - 1), min(pad_h, h - 1)
    if rw or rh:
        x = nn.functional.pad(x, (0, rw, 0, rh), mode="reflect")
    if pad_w - rw or pad_h - rh:
        x = nn.functional.pad(x, (0, pad_w - rw, 0, pad_h - rh), mode="replicate")
    return x


class SpandrelNet(nn.Module):
    """A spandrel ``ImageModelDescriptor``'s network behind the :mod:`models.arch` contract.

    ``forward``: (N, C, h, w) float in [0, 1] -> (N, C, h * scale, w * scale), unclamped. Inputs that
    break the model's size requirements are padded (reflect, then replicate) and the output cropped,
    so tiles of any size work. ``tile_align`` is the model's ``multiple_of``, so tiles start on the
    window grid of window-attention models.
    """

    def __init__(self, descriptor: Any, receptive_margin: int | None = None) -> None:
        super().__init__()
        self.net = descriptor.model
        # spandrel's per-architecture call (e.g. FDnCNN adds a noise-level map, FBCNN returns a tuple).
        self._call: Callable[[nn.Module, torch.Tensor], torch.Tensor] = (
            getattr(descriptor, "_call_fn", None) or (lambda model, image: model(image)))
        self.in_channels = int(descriptor.input_channels)
        self.scale = int(descriptor.scale)
        req = descriptor.size_requirements
        self.size_minimum, self.size_multiple, self.size_square = int(req.minimum), int(req.multiple_of), bool(req.square)
        self.tile_align = max(1, self.size_multiple)
        self.arch_name = str(descriptor.architecture.name)
        self.tags = [str(t) for t in descriptor.tags]
        self.purpose = str(descriptor.purpose)
        self.tiling = str(getattr(descriptor.tiling, "name", descriptor.tiling))
        margin = receptive_margin if receptive_margin is not None else min(
            max(_conv_radius(self.net), MIN_AUTO_MARGIN), MAX_AUTO_MARGIN)
        self.receptive_margin = -(-int(margin) // self.tile_align) * self.tile_align
        # The ONNX Runtime plan (models.onnx_backend) traces forward once: padding decided from the
        # traced size would be frozen into the graph, so only models that never pad are exported,
        # and the export is checked on an odd size before it is trusted (onnx_verify).
        self.onnx_export = (self.tiling == "SUPPORTED" and self.size_multiple == 1 and not self.size_square
                            and self.size_minimum <= 2)
        self.onnx_verify = True

    def _padding(self, h: int, w: int) -> tuple[int, int]:
        ph, pw = max(h, self.size_minimum), max(w, self.size_minimum)
        m = self.size_multiple
        ph, pw = -(-ph // m) * m, -(-pw // m) * m
        if self.size_square:
            ph = pw = max(ph, pw)
        return pw - w, ph - h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = int(x.shape[-2]), int(x.shape[-1])
        pad_w, pad_h = self._padding(h, w)
        if pad_w or pad_h:
            x = _pad(x, pad_w, pad_h)
        y = self._call(self.net, x)
        if pad_w or pad_h:
            y = y[..., : h * self.scale, : w * self.scale]
        return y


def _extra_arches() -> None:
    """Add spandrel_extra_arches' architectures (non-commercial licences) once, when the operator opted in."""
    try:
        import spandrel_extra_arches  # type: ignore[import-not-found]
    except ImportError:
        raise PluginError("MEDENHANCE_SPANDREL_EXTRA=1 but the spandrel_extra_arches package is not installed "
                          "(pip install spandrel_extra_arches; mind its non-commercial licences).") from None
    spandrel_extra_arches.install(ignore_duplicates=True)


def spandrel_net(state: dict[str, torch.Tensor], label: str, *, extra: bool = False,
                 receptive_margin: int | None = None) -> SpandrelNet:
    """Detect the architecture of ``state`` with spandrel and wrap it (eval mode, no gradients, CPU).

    Raises:
        PluginError: unknown architecture, not an image-to-image model, weights that do not fit the
            detected architecture, or a channel count the studio cannot feed.
    """
    from spandrel import ImageModelDescriptor, MAIN_REGISTRY, UnsupportedModelError

    if extra:
        _extra_arches()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. torch.meshgrid's indexing note inside window-attention models
            desc = MAIN_REGISTRY.load(state)
    except UnsupportedModelError:
        keys = ", ".join(sorted(state)[:4])
        raise PluginError(f"{label}: spandrel does not recognise this architecture (first keys: {keys}); "
                          "see spandrel's list of supported architectures, or export the model to ONNX.") from None
    except Exception as e:  # noqa: BLE001 - detected, but the weights do not fit (shapes, missing keys)
        raise PluginError(f"{label}: the weights do not fit the architecture spandrel detected "
                          f"({type(e).__name__}: {_first_line(e)[:200]}).") from None
    if not isinstance(desc, ImageModelDescriptor):
        raise PluginError(f"{label}: a {desc.architecture.name} model needs a mask (inpainting); only "
                          "image-to-image models can be used.")
    if desc.purpose not in ("SR", "Restoration"):
        raise PluginError(f"{label}: a {desc.purpose} model ({desc.architecture.name}); only super-resolution "
                          "and restoration models can be used.")
    if desc.input_channels != desc.output_channels:
        raise PluginError(f"{label}: {desc.architecture.name} takes {desc.input_channels} channel(s) but returns "
                          f"{desc.output_channels}; the studio needs as many output as input channels.")
    if desc.input_channels not in (1, 3):
        raise PluginError(f"{label}: {desc.input_channels}-channel input; the studio feeds 1 (grayscale) or 3 (RGB).")
    return SpandrelNet(desc, receptive_margin).eval().requires_grad_(False)


# --- ONNX graphs -------------------------------------------------------------------------------


def _external_tensors(model: Any) -> list[str]:
    """Names of the tensors of an ONNX model (subgraphs included) stored in external files."""
    import onnx

    found: list[str] = []

    def tensors_of(graph: Any) -> None:
        for t in list(graph.initializer) + [s.values for s in graph.sparse_initializer]:
            if t.data_location == onnx.TensorProto.EXTERNAL:
                found.append(t.name or "?")
        for node in graph.node:
            for a in node.attribute:
                for t in ([a.t] if a.HasField("t") else []) + list(a.tensors):
                    if t.data_location == onnx.TensorProto.EXTERNAL:
                        found.append(t.name or "?")
                for g in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                    tensors_of(g)

    tensors_of(model.graph)
    return found


def _dynamic(dim: Any) -> bool:
    return dim is None or isinstance(dim, str)


class OnnxNet(nn.Module):
    """An ONNX image-to-image graph run by ONNX Runtime (CPU) behind the :mod:`models.arch` contract.

    ``forward``: (N, C, h, w) float in [0, 1] on any device -> (N, C, h * scale, w * scale) float32 on
    the same device (the session runs on the CPU). ``onnx_export = False``: it is a graph already, so
    :mod:`models.onnx_backend` never exports it again; ``runs_itself = True``: precision and layout
    plans do not apply (ONNX Runtime runs the graph in its own precision), so
    :func:`models.device.pick_plan` gives it the reference plan only.
    """

    onnx_export = False
    runs_itself = True

    def __init__(self, data: bytes, label: str, in_channels: int | None = None,
                 receptive_margin: int | None = None) -> None:
        super().__init__()
        try:
            import onnx
            import onnxruntime as ort
        except ImportError:
            raise PluginError(f"{label}: ONNX files need the onnx and onnxruntime packages "
                              "(pip install onnx onnxruntime).") from None
        try:
            proto = onnx.load_model_from_string(data)
        except Exception as e:  # noqa: BLE001 - protobuf DecodeError and friends
            raise PluginError(f"{label}: not a readable ONNX model (truncated or damaged?): {_first_line(e)[:200]}") from None
        external = _external_tensors(proto)
        if external:
            raise PluginError(f"{label}: its weights live in external files ({', '.join(external[:3])}); save the "
                              "model as one self-contained .onnx file.")
        self.n_params = int(sum(int(np.prod(t.dims)) if len(t.dims) else 1 for t in proto.graph.initializer))
        del proto
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = torch.get_num_threads()
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3  # errors only
        try:
            self._sess = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - invalid graph, unknown (custom) operator, bad opset
            raise PluginError(f"{label}: ONNX Runtime cannot run this graph: {_first_line(e)[:240]}") from None
        inputs = self._sess.get_inputs()
        if len(inputs) != 1:
            raise PluginError(f"{label}: the graph takes {len(inputs)} inputs; an image model takes one (N, C, H, W).")
        inp = inputs[0]
        shape = list(inp.shape)
        if len(shape) != 4:
            raise PluginError(f"{label}: the input has shape {shape}; an image model takes (N, C, H, W).")
        if inp.type != "tensor(float)":
            raise PluginError(f"{label}: the input is {inp.type}; export the model with float32 input.")
        if not (_dynamic(shape[2]) and _dynamic(shape[3])):
            raise PluginError(f"{label}: the input size is fixed at {shape[2]} x {shape[3]} px; export it with "
                              "dynamic height and width axes, e.g. torch.onnx.export(..., dynamic_axes="
                              "{'input': {2: 'h', 3: 'w'}, 'output': {2: 'oh', 3: 'ow'}}).")
        self._input, self._output = inp.name, self._sess.get_outputs()[0].name
        self._batch_one = shape[0] == 1  # a graph exported for batch 1 runs tile by tile
        channels = shape[1] if isinstance(shape[1], int) else (in_channels or 3)
        if in_channels is not None and channels != in_channels:
            raise PluginError(f"{label}: the graph takes {channels} channel(s), its sidecar says {in_channels}.")
        if channels not in (1, 3):
            raise PluginError(f"{label}: {channels}-channel input; the studio feeds 1 (grayscale) or 3 (RGB).")
        self.in_channels = int(channels)
        self.scale = self._probe_scale(label)
        self.receptive_margin = int(receptive_margin if receptive_margin is not None else 32)
        self.tile_align = 1
        self.arch_name = "ONNX graph"

    def _probe_scale(self, label: str) -> int:
        """The whole output/input size ratio, measured on two odd-sized inputs (same in both axes)."""
        scales = set()
        for h, w in ((21, 26), (17, 31)):
            x = np.random.default_rng(0).random((1, self.in_channels, h, w), dtype=np.float32)
            try:
                y = self._sess.run([self._output], {self._input: x})[0]
            except Exception as e:  # noqa: BLE001 - onnxruntime's errors are not Python's
                raise PluginError(f"{label}: the graph fails on a {w} x {h} px input: {_first_line(e)[:240]}") from None
            ok = (y.ndim == 4 and y.shape[:2] == (1, self.in_channels) and y.shape[2] % h == 0
                  and y.shape[3] % w == 0 and y.shape[2] // h == y.shape[3] // w)
            if not ok:
                raise PluginError(f"{label}: output shape {tuple(y.shape)} for an input of {(1, self.in_channels, h, w)}: "
                                  "not the input size times one whole scale, with the input's channels.")
            scales.add(y.shape[2] // h)
        if len(scales) != 1:
            raise PluginError(f"{label}: the output/input size ratio changes with the input size ({sorted(scales)}).")
        return scales.pop()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        device = x.device
        a = x.detach().to("cpu", torch.float32).contiguous().numpy()
        try:
            if self._batch_one and a.shape[0] > 1:
                y = np.concatenate([self._sess.run([self._output], {self._input: a[i:i + 1]})[0]
                                    for i in range(a.shape[0])])
            else:
                y = self._sess.run([self._output], {self._input: a})[0]
        except Exception as e:  # noqa: BLE001 - callers expect a RuntimeError from a failing forward
            raise RuntimeError(f"ONNX Runtime failed: {_first_line(e)}") from e
        return torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32)).to(device)


# --- checking a built network ---------------------------------------------------------------------


@torch.no_grad()
def check_output_shape(module: nn.Module, label: str) -> None:
    """Run ``module`` on a small odd-sized input; PluginError unless the output is (1, C, h*s, w*s) and finite."""
    c, s = int(module.in_channels), int(module.scale)
    if s not in SCALES:
        raise PluginError(f"{label}: scale x{s}; the studio offers x1 (restoration), x2 and x4.")
    h, w = 23, 19
    x = torch.rand(1, c, h, w, generator=torch.Generator().manual_seed(0))
    try:
        y = module(x)
    except Exception as e:  # noqa: BLE001 - any failure of a foreign network on a plain input
        raise PluginError(f"{label}: the network fails on a {w} x {h} px input ({type(e).__name__}: "
                          f"{_first_line(e)[:200]}).") from None
    if not isinstance(y, torch.Tensor) or tuple(y.shape) != (1, c, h * s, w * s):
        got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise PluginError(f"{label}: output {got} for an input of {(1, c, h, w)}; expected {(1, c, h * s, w * s)}.")
    if not torch.isfinite(y).all():
        raise PluginError(f"{label}: the output holds NaN or infinite values.")


def param_count(module: nn.Module) -> int:
    """Parameters of a user network: torch parameters, or the ONNX graph's initializer elements."""
    n = getattr(module, "n_params", None)
    return int(n) if n is not None else sum(p.numel() for p in module.parameters())
