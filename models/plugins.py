"""User models: the model files of one folder, registered explicitly beside the zoo's.

Our own registry stays explicit (:mod:`models.zoo`). User models come from exactly one folder,
read only when asked: at start-up (``app.py``, the CLIs' ``--models-dir``) and on the Study admin
tab's "Reload models". :func:`load_user_models` scans it, checks every file and registers each
good one as a :class:`~models.registry.ModelSpec` with ``source="user"``, its file's ``sha256``
and ``path``; a bad file is listed in the :class:`PluginReport` and never stops the others (or
the app).

The folder (``MEDENHANCE_MODELS_DIR``; default ``/data/medenhance/user-models`` when a writable
``/data`` exists, as on a Hugging Face Space with persistent storage, else ``./user-models``)::

    user-models/
      RealESRGAN_x2plus.pth              weights; architecture detected by spandrel
      RealESRGAN_x2plus.json             optional sidecar: name, task, scale, title, licence, ...
      RealESRGAN_x2plus.scores.json      written by `python -m train eval --models NAME --write-cards`
      my_denoiser.onnx                   an ONNX graph (dynamic H, W), run by ONNX Runtime

Sidecar keys (all optional): ``name`` (the registry name, default the file's stem), ``task``
(``sr``, ``denoise`` or ``enhance``; default from spandrel's purpose or the scale), ``scale`` (checked
against the network), ``title``, ``licence``, ``source`` (where it came from), ``trained_on``,
``description``, ``fails`` (where it fails), ``in_channels`` (ONNX graphs with a dynamic channel
axis), ``receptive_margin`` (tile context in input pixels).

Limits: ``MEDENHANCE_MAX_MODEL_SIZE`` (default ``512mb``) per file, :data:`MAX_MODEL_FILES` files.
``MEDENHANCE_SPANDREL_EXTRA=1`` adds the architectures of ``spandrel_extra_arches`` (non-commercial
licences; not installed by requirements.txt).
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch

from . import device as _device
from . import loading
from .errors import PluginError, printable
from .registry import TASKS, ModelSpec, get_spec, list_models, register, unregister
from .user_nets import MODEL_SUFFIXES, ONNX_SUFFIXES, OnnxNet, check_output_shape, param_count, read_state_dict, spandrel_net

log = logging.getLogger(__name__)

ENV_DIR = "MEDENHANCE_MODELS_DIR"
ENV_MAX_SIZE = "MEDENHANCE_MAX_MODEL_SIZE"
ENV_EXTRA = "MEDENHANCE_SPANDREL_EXTRA"
DEFAULT_MAX_BYTES = 512 * 2**20
SIDECAR_MAX_BYTES = 64 * 1024
SCORES_MAX_BYTES = 1 * 2**20
MAX_MODEL_FILES = 64
MAX_TEXT = 500
# Registry names of user models: also file names of results and variant names of studies.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,47}")
# Names the studio uses for other things (a study's reference variant, the Compare tab's rows).
RESERVED = frozenset({"original", "input", "reference", "baseline"})
SCORES_SUFFIX = ".scores.json"
_TEXT_KEYS = ("title", "licence", "source", "trained_on", "description", "fails")
_SIDECAR_KEYS = frozenset({"name", "task", "scale", "in_channels", "receptive_margin", "license", *_TEXT_KEYS})

_lock = threading.Lock()
_last: "PluginReport | None" = None


@dataclass(frozen=True)
class Problem:
    """A file of the folder that was not registered, and why (one line, for logs and the admin tab)."""

    file: str
    message: str


@dataclass
class PluginReport:
    """What a scan of the models folder did: the names registered and the files refused."""

    folder: str
    loaded: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    seconds: float = 0.0
    at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return {"folder": self.folder, "loaded": list(self.loaded), "seconds": round(self.seconds, 3),
                "problems": [{"file": p.file, "message": p.message} for p in self.problems]}


# --- settings ------------------------------------------------------------------------------


def default_models_dir(mount: str | os.PathLike[str] = "/data") -> Path:
    """``MEDENHANCE_MODELS_DIR``, else ``<mount>/medenhance/user-models`` on a writable mount, else ``./user-models``."""
    explicit = os.environ.get(ENV_DIR, "").strip()
    if explicit:
        return Path(explicit)
    m = Path(mount)
    if m.is_dir() and os.access(m, os.W_OK):
        return m / "medenhance" / "user-models"
    return Path("user-models")


def parse_size(text: str) -> int:
    """``"512mb"``, ``"2gb"``, ``"100k"`` or a byte count -> bytes (ValueError otherwise)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmg]?)i?b?\s*", str(text).lower())
    if not m:
        raise ValueError(f"not a size: {text!r} (use e.g. 512mb)")
    return int(float(m.group(1)) * {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}[m.group(2)])


def max_model_bytes() -> int:
    """Largest model file accepted (``MEDENHANCE_MAX_MODEL_SIZE``, default 512 MB)."""
    raw = os.environ.get(ENV_MAX_SIZE, "").strip()
    if not raw:
        return DEFAULT_MAX_BYTES
    try:
        return parse_size(raw)
    except ValueError:
        log.warning("%s=%r is not a size; using %d MB", ENV_MAX_SIZE, raw, DEFAULT_MAX_BYTES // 2**20)
        return DEFAULT_MAX_BYTES


def _extra_enabled() -> bool:
    return os.environ.get(ENV_EXTRA, "").strip().lower() in ("1", "true", "yes")


# --- text that came from a user --------------------------------------------------------------


def md_text(value: Any, limit: int = MAX_TEXT) -> str:
    """User text for a markdown card: one line, control characters escaped, markdown/HTML syntax escaped.

    Sidecar values and file names are hostile when shown: ``<script>``, ``[link](javascript:...)``,
    table pipes and headings become literal text (a backslash before each such character).
    """
    text = " ".join(printable(str(value)).split())[:limit]
    return re.sub(r"([\\`*_{}\[\]()<>#+!|~=&-])", r"\\\1", text)


def md_code(value: Any, limit: int = 120) -> str:
    """User text for inside a markdown code span: one line, control characters escaped, backticks and
    pipes dropped (a span shows everything else literally; a backtick would end it, a pipe a table cell)."""
    return " ".join(printable(str(value)).split())[:limit].replace("`", "").replace("|", "")


def _clean(value: Any, what: str, label: str) -> str:
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise PluginError(f"{label}: sidecar {what!r} must be text, got {type(value).__name__}.")
    return " ".join(printable(str(value)).split())[:MAX_TEXT]


# --- reading one file ---------------------------------------------------------------------------


def _read_bytes(path: Path, limit: int, label: str) -> bytes:
    try:
        size = path.stat().st_size
    except OSError as e:
        raise PluginError(f"{label}: cannot be read ({e.strerror or e}).") from None
    if size > limit:
        raise PluginError(f"{label}: {size / 2**20:.1f} MB, over the limit of {limit / 2**20:.0f} MB "
                          f"({ENV_MAX_SIZE}).")
    if size == 0:
        raise PluginError(f"{label}: the file is empty.")
    with path.open("rb") as f:
        data = f.read(limit + 1)  # never more than the limit, even if the file grew meanwhile
    if len(data) > limit:
        raise PluginError(f"{label}: over the limit of {limit / 2**20:.0f} MB ({ENV_MAX_SIZE}).")
    return data


def sidecar_path(path: Path) -> Path:
    """``NAME.json`` beside ``NAME.<ext>``."""
    return path.with_suffix(".json")


def read_sidecar(path: Path) -> dict[str, Any]:
    """The checked sidecar of a model file ({} when there is none).

    Raises:
        PluginError: too large, not JSON, not an object, unknown keys or values of the wrong type.
    """
    side = sidecar_path(path)
    label = printable(side.name)
    if not side.is_file():
        return {}
    raw = _read_bytes(side, SIDECAR_MAX_BYTES, label)
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PluginError(f"{label}: not valid JSON ({e}).") from None
    if not isinstance(obj, dict):
        raise PluginError(f"{label}: must be a JSON object of keys such as name, task, scale, licence.")
    unknown = sorted(set(obj) - _SIDECAR_KEYS)
    if unknown:
        raise PluginError(f"{label}: unknown key(s) {', '.join(printable(str(k))[:40] for k in unknown[:5])}; "
                          f"known: {', '.join(sorted(_SIDECAR_KEYS - {'license'}))}.")
    out: dict[str, Any] = {}
    if "license" in obj and "licence" not in obj:
        obj["licence"] = obj.pop("license")
    for key in _TEXT_KEYS + ("name", "task"):
        if key in obj and obj[key] is not None:
            out[key] = _clean(obj[key], key, label)
    for key, lo, hi in (("scale", 1, 8), ("in_channels", 1, 3), ("receptive_margin", 0, 512)):
        if key in obj and obj[key] is not None:
            v = obj[key]
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise PluginError(f"{label}: {key!r} must be a whole number from {lo} to {hi}, got {printable(str(v))[:20]}.")
            out[key] = v
    if "task" in out and out["task"] not in TASKS:
        raise PluginError(f"{label}: task must be one of {', '.join(TASKS)}, got {out['task']!r}.")
    return out


def model_name(path: Path, sidecar: dict[str, Any]) -> str:
    """The registry name: the sidecar's ``name``, else the file stem with odd characters made ``_``."""
    if "name" in sidecar:
        name = sidecar["name"]
        if not NAME_RE.fullmatch(name):
            raise PluginError(f"{printable(path.name)}: name {name!r} must be 1 to 48 letters, digits, '_', '.' "
                              "or '-', starting with a letter or digit.")
        return name
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", path.stem).strip("._-")[:48]
    if not name:
        raise PluginError(f"{printable(path.name)}: no usable name in the file name; give one in a sidecar "
                          f"{printable(sidecar_path(path).name)} ({{\"name\": \"...\"}}).")
    return name


def build_network(data: bytes, suffix: str, label: str, options: dict[str, Any]) -> torch.nn.Module:
    """The network of a model file's bytes: :class:`~models.user_nets.SpandrelNet` or :class:`~models.user_nets.OnnxNet`.

    ``options``: the sidecar's ``in_channels`` / ``receptive_margin``. Checks the output shape.

    Raises:
        PluginError: see :mod:`models.user_nets`.
    """
    margin = options.get("receptive_margin")
    if suffix.lower() in ONNX_SUFFIXES:
        module: torch.nn.Module = OnnxNet(data, label, options.get("in_channels"), margin)
    else:
        state = read_state_dict(data, suffix, label)
        module = spandrel_net(state, label, extra=bool(options.get("extra")), receptive_margin=margin)
    check_output_shape(module, label)
    return module


def _load_registered(path: str, sha256: str, options: dict[str, Any]) -> torch.nn.Module:
    """``ModelSpec.build`` of a user model: read the file again, insist on the registered SHA-256, build.

    Raises:
        PluginError: the file changed or vanished since it was registered, or no longer loads.
    """
    import hashlib

    p = Path(path)
    label = printable(p.name)
    data = _read_bytes(p, max_model_bytes(), label)
    if hashlib.sha256(data).hexdigest() != sha256:
        raise PluginError(f"{label} changed since it was registered (SHA-256 {sha256[:12]}...); "
                          "reload the models (Study admin tab) to use the new file.")
    return build_network(data, p.suffix, label, options)


def inspect_file(path: Path, taken: set[str]) -> ModelSpec:
    """Check one model file and describe it as a spec (not registered yet).

    ``taken``: names already used (zoo models and user models found earlier in this scan).

    Raises:
        PluginError: everything that keeps the file out of the registry, with a clear message.
    """
    import hashlib

    label = printable(path.name)
    sidecar = read_sidecar(path)
    name = model_name(path, sidecar)
    if name.lower() in RESERVED:
        raise PluginError(f"{label}: the name {name!r} is reserved; give another in its sidecar.")
    if name in taken:
        raise PluginError(f"{label}: the name {name!r} is already taken by another model; give another in "
                          f"{printable(sidecar_path(path).name)} ({{\"name\": \"...\"}}).")
    data = _read_bytes(path, max_model_bytes(), label)
    digest = hashlib.sha256(data).hexdigest()
    options = {k: sidecar[k] for k in ("in_channels", "receptive_margin") if k in sidecar}
    if path.suffix.lower() not in ONNX_SUFFIXES and _extra_enabled():
        options["extra"] = True
    module = build_network(data, path.suffix, label, options)
    del data
    scale = int(module.scale)
    if "scale" in sidecar and sidecar["scale"] != scale:
        raise PluginError(f"{label}: the sidecar says x{sidecar['scale']} but the network's output is x{scale} its input.")
    purpose = getattr(module, "purpose", None)
    task = sidecar.get("task") or ("sr" if scale > 1 else "denoise")
    if (task == "sr") != (scale > 1):
        raise PluginError(f"{label}: task {task!r} with scale x{scale}: super-resolution enlarges (x2, x4), "
                          "denoise and enhance keep the size.")
    info = {
        "format": "onnx" if path.suffix.lower() in ONNX_SUFFIXES else path.suffix.lower().lstrip("."),
        "architecture": str(getattr(module, "arch_name", "?")),
        "tags": list(getattr(module, "tags", [])),
        "purpose": purpose,
        "params": param_count(module),
        "file": path.name,
        "size_bytes": path.stat().st_size,
        "receptive_margin": int(module.receptive_margin),
        "tile_align": int(getattr(module, "tile_align", 1)),
        **{k: sidecar[k] for k in _TEXT_KEYS if sidecar.get(k)},
    }
    return ModelSpec(
        name=name, task=task, scale=scale, in_channels=int(module.in_channels), card=_summary(name, info, digest),
        fails=md_text(info["fails"]) if info.get("fails") else ("Not known: a model from outside this project, not evaluated here on medical "
                                    "images until `python -m train eval --models NAME` is run on it. Compare its "
                                    "output with the original before trusting it."),
        weights=path.name, build=partial(_load_registered, str(path.resolve()), digest, options),
        source="user", sha256=digest, path=str(path.resolve()), info=info,
    )


def _summary(name: str, info: dict[str, Any], digest: str) -> str:
    """The card's summary (markdown; every user-given value escaped)."""
    title = md_text(info["title"]) + ": " if info.get("title") else ""
    arch = md_text(info["architecture"]) + (f" ({md_text(', '.join(info['tags']))})" if info.get("tags") else "")
    parts = [f"{title}**your model**, {arch}, {info['params']:,} parameters, from the models folder "
             f"(file `{md_code(info['file'])}`, {info['format']}).",
             f"SHA-256 `{digest}`."]
    if info.get("description"):
        parts.append(md_text(info["description"]))
    parts.append("Licence: " + (md_text(info["licence"]) if info.get("licence") else "not given") + ". "
                 "Source: " + (md_text(info["source"]) if info.get("source") else "not given") + ". "
                 "Trained on: " + (md_text(info["trained_on"]) if info.get("trained_on") else "not given") + ".")
    return " ".join(parts)


# --- the folder ------------------------------------------------------------------------------


def model_files(folder: Path) -> list[Path]:
    """Model files directly in ``folder`` (hidden ones skipped), sorted by name."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir()
                  if not p.name.startswith(".") and p.suffix.lower() in MODEL_SUFFIXES and p.is_file())


def user_models() -> list[ModelSpec]:
    """The registered user models, in registration order."""
    return [s for s in list_models() if s.source == "user"]


def _forget(name: str) -> None:
    loading.forget(name)
    _device.forget_plans(name)


def load_user_models(folder: str | os.PathLike[str] | None = None) -> PluginReport:
    """(Re)register every good model file of ``folder`` (default :func:`default_models_dir`).

    Every file is checked first; then, in one quick step, the user models registered before are
    removed (their loaded networks and plans forgotten) and the new ones registered, so requests
    running meanwhile keep finding the old models until the new ones are ready. Zoo models are never
    touched. A missing folder registers nothing and is not a problem. Never raises for a bad file:
    it goes into the report's ``problems`` (and the log).
    """
    global _last
    folder = Path(folder) if folder is not None else default_models_dir()
    t0 = time.perf_counter()
    with _lock:
        report = PluginReport(folder=str(folder))
        files = model_files(folder)
        if len(files) > MAX_MODEL_FILES:
            report.problems.append(Problem(printable(folder.name), f"{len(files)} model files; only the first "
                                           f"{MAX_MODEL_FILES} (by name) are read."))
            files = files[:MAX_MODEL_FILES]
        taken = {s.name for s in list_models() if s.source != "user"}
        found: list[ModelSpec] = []
        for path in files:
            try:
                spec = inspect_file(path, taken)
            except (PluginError, ValueError, OSError) as e:
                report.problems.append(Problem(printable(path.name), str(e)))
                log.warning("user model %s not registered: %s", printable(path.name), e)
                continue
            except Exception as e:  # noqa: BLE001 - one odd file must never stop the app from starting
                report.problems.append(Problem(printable(path.name), f"internal error: {type(e).__name__}: {e}"))
                log.exception("user model %s not registered", printable(path.name))
                continue
            taken.add(spec.name)
            found.append(spec)
        for old in user_models():
            unregister(old.name)
            _forget(old.name)
        for spec in found:
            register(spec)
            report.loaded.append(spec.name)
            log.info("user model %s registered from %s (%s, x%d, SHA-256 %s)", spec.name, printable(Path(spec.path).name),
                     spec.info.get("architecture"), spec.scale, spec.sha256)
        report.seconds = time.perf_counter() - t0
        _last = report
    return report


def last_report() -> PluginReport | None:
    """The report of the latest :func:`load_user_models` of this process (None before the first)."""
    return _last


# --- measured scores, kept beside the file ---------------------------------------------------------


def scores_path(spec: ModelSpec) -> Path:
    """``NAME.scores.json`` beside a user model's file."""
    if spec.source != "user" or not spec.path:
        raise PluginError(f"{spec.name} is not a user model; its scores live in its weights metadata.")
    p = Path(spec.path)
    return p.with_name(p.stem + SCORES_SUFFIX)


def read_scores(spec: ModelSpec) -> dict[str, Any]:
    """Scores measured on *this* file (``{"test_sr_x2": {...}, ...}``), {} if none or measured on another file."""
    p = scores_path(spec)
    try:
        if not p.is_file() or p.stat().st_size > SCORES_MAX_BYTES:
            return {}
        obj = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    if not isinstance(obj, dict) or obj.get("sha256") != spec.sha256 or not isinstance(obj.get("scores"), dict):
        return {}
    return {k: v for k, v in obj["scores"].items() if isinstance(k, str) and isinstance(v, dict)}


def write_scores(name: str, key: str, scores: dict[str, Any]) -> Path:
    """Store one evaluation (``key`` such as ``"test_sr_x2"``) of user model ``name`` beside its file.

    Scores of an older file (another SHA-256) are dropped. Written to a temporary name, then renamed.
    """
    spec = get_spec(name)
    p = scores_path(spec)
    current = read_scores(spec)
    current[key] = scores
    tmp = p.with_name(f".{p.name}.partial")
    tmp.write_text(json.dumps({"model": spec.name, "file": Path(spec.path or "").name, "sha256": spec.sha256,
                               "scores": current}, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, p)
    return p
