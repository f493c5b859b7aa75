"""Creating and running reader studies: import cases, render variants, plan each reader's list.

Plain functions over a :class:`~studio.study_store.StudyStore`; the admin tab,
tests and scripts call them directly. Every bad request raises
:class:`StudyError` (a ``ValueError``) with a message meant for the user.

What a study holds:

* **cases**: the source images, stored de-identified: the pixels as the
  models see them (windowed to [0, 1], 16-bit PNG for grayscale), no DICOM
  header, under a generated name; plus the upload's SHA-256 for provenance;
* **variants**: per case, the identity ``"original"`` and one image per model,
  all made the same way (read the stored case, run ``models.enhance`` or the
  identity, bring to the case's common display size, write an 8-bit PNG)
  so size or format never tells a reader which variant is which;
* **readers** with an access code each and their own randomized list
  (:func:`plan_assignments`).
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import random
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
from PIL import Image
from sqlalchemy import func, select

from db import DESIGNS, ORIGINAL, Assignment, Case, Preference, Rating, Reader, Study, Variant, utcnow
from models import enhance, get_spec, list_models, model_card, read_image, validate_image
from models.export import save_png
from models.loading import sha256, weights_path

from . import render
from . import auth
from .auth import hash_code, new_access_code
from .study_store import StudyStore

logger = logging.getLogger("medenhance.studio.study")

PAIR_MODES = ("all", "reference")  # 2AFC pairs: every pair of variants, or each model vs the original
MAX_FILES = 1000
MAX_READERS = 500
MAX_NAME = 200


class StudyError(ValueError):
    """A request about a study that cannot be done; the message says why (shown to the user)."""


@dataclass(frozen=True)
class StudyDesign:
    """What the admin chooses when creating a study.

    Attributes:
        name: shown to the admin and in exports (never to readers as a hint of models).
        design: ``"likert"`` (rate single images), ``"2afc"`` (pairwise forced choice) or ``"both"``.
        models: registered model names (``"original"`` is always added as the reference).
        readers: reader codes generated now (more can be added later).
        repeat_cases: cases each reader reads a second time (intra-reader agreement), 0 = none.
        washout_days: the repeat block opens this many days after the reader's first pass.
        pair_mode: ``"all"`` pairs of variants, or ``"reference"`` (each model vs the original).
        seed: seeds every reader's order and left/right draws (recorded with the study).
        window: ``read_image`` window used to read DICOM sources (None: the file's own, else auto).
        frame: frame of multi-frame sources.
    """

    name: str
    design: str = "both"
    models: tuple[str, ...] = ()
    readers: int = 3
    repeat_cases: int = 0
    washout_days: float = 0.0
    pair_mode: str = "all"
    seed: int = 0
    window: Any = None
    frame: int = 0


@dataclass
class CreatedStudy:
    """The result of :func:`create_study`; ``codes`` (label -> access code) exist only here, never stored."""

    study_id: int
    name: str
    cases: int
    variants: int
    items_per_reader: int
    codes: dict[str, str]
    skipped: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PlannedItem:
    """One item of a reader's list before it is stored (see :class:`db.Assignment`)."""

    case_id: int
    block: str
    kind: str
    replicate: int = 0
    variant_id: int | None = None
    left_variant_id: int | None = None
    right_variant_id: int | None = None


# --- checking requests ---------------------------------------------------------------------

def whole_number(value: Any, what: str, lo: int, hi: int) -> int:
    """A whole number in [lo, hi] from an API value (int, float 3.0, "3")."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise StudyError(f"{what} must be a whole number, got {value!r}.") from None
    if isinstance(value, bool) or not f.is_integer() or not lo <= f <= hi:
        raise StudyError(f"{what} must be a whole number from {lo} to {hi}, got {value!r}.")
    return int(f)


def ready_models() -> list[str]:
    """Registered models that can run now (classical, or networks whose weights exist)."""
    out = []
    for spec in list_models():
        card = model_card(spec.name)
        if card["kind"] == "classical" or card.get("weights_present"):
            out.append(spec.name)
    return out


def check_design(design: StudyDesign) -> StudyDesign:
    """Validate and normalize a design; :class:`StudyError` says what is wrong."""
    name = str(design.name or "").strip()
    if not name or len(name) > MAX_NAME:
        raise StudyError(f"Give the study a name (1 to {MAX_NAME} characters).")
    kind = str(design.design or "").strip().lower()
    if kind not in DESIGNS:
        raise StudyError(f"Design must be one of {', '.join(DESIGNS)}, got {design.design!r}.")
    if isinstance(design.models, str):
        raise StudyError("Models must be a list of model names.")
    models: list[str] = []
    for m in design.models or ():
        m = str(m).strip()
        if not m or m in models:
            continue
        if m == ORIGINAL:  # always included; listing it is harmless
            continue
        try:
            get_spec(m)
        except ValueError as e:
            raise StudyError(str(e)) from None
        card = model_card(m)
        if card["kind"] == "network" and not card.get("weights_present"):
            raise StudyError(f"Model {m!r} has no trained weights yet; choose another.")
        models.append(m)
    if not models:
        raise StudyError("Choose at least one model (the original image is added as the reference).")
    pair_mode = str(design.pair_mode or "all").strip().lower()
    if pair_mode not in PAIR_MODES:
        raise StudyError(f"Pair mode must be one of {', '.join(PAIR_MODES)}, got {design.pair_mode!r}.")
    try:
        washout = float(design.washout_days or 0)
    except (TypeError, ValueError):
        raise StudyError(f"Washout must be a number of days, got {design.washout_days!r}.") from None
    if not 0 <= washout <= 365:
        raise StudyError("Washout must be between 0 and 365 days.")
    return StudyDesign(
        name=name, design=kind, models=tuple(models),
        readers=whole_number(design.readers, "Number of readers", 1, MAX_READERS),
        repeat_cases=whole_number(design.repeat_cases or 0, "Repeated cases", 0, 10_000),
        washout_days=washout, pair_mode=pair_mode,
        seed=whole_number(design.seed or 0, "Seed", 0, 2**31 - 1),
        window=design.window, frame=whole_number(design.frame or 0, "Frame", 0, 100_000),
    )


# --- sources ---------------------------------------------------------------------------------

def folder_files(import_root: Path | None, folder: Any, limit: int = MAX_FILES) -> list[Path]:
    """Files under ``folder``, which must lie inside ``import_root`` (``STUDIO_IMPORT_ROOT``).

    ``folder`` may be relative to the root or absolute. Symbolic links are
    resolved first, so neither ``..`` nor a link can reach outside the root;
    hidden files and folders are skipped.

    Raises:
        StudyError: import disabled, folder outside the root, missing, or with no files.
    """
    if import_root is None:
        raise StudyError("Importing from a server folder is disabled: the operator must set STUDIO_IMPORT_ROOT.")
    try:
        root = Path(import_root).resolve(strict=True)
        given = Path(str(folder or "").strip() or ".")
        target = (given if given.is_absolute() else root / given).resolve()
    except (OSError, ValueError, RuntimeError):  # missing root, NUL bytes, symlink loops
        raise StudyError("That folder cannot be used.") from None
    if not target.is_relative_to(root):
        raise StudyError("That folder is outside the allowed import folder (STUDIO_IMPORT_ROOT).")
    if not target.is_dir():
        raise StudyError("No such folder inside the import folder.")
    files = []
    for path in sorted(target.rglob("*")):
        rel = path.relative_to(target)
        if any(part.startswith(".") for part in rel.parts):
            continue
        try:
            real = path.resolve(strict=True)
        except (OSError, RuntimeError):
            continue
        if real.is_file() and real.is_relative_to(root):  # a link pointing outside the root is ignored
            files.append(real)
        if len(files) > limit:
            raise StudyError(f"More than {limit} files in that folder; split the study.")
    if not files:
        raise StudyError("That folder holds no files.")
    return files


@dataclass
class _Source:
    stored_name: str
    upload_sha256: str
    stored_sha256: str
    width: int
    height: int
    info: dict[str, Any]


# Technical facts kept about a source; everything else in a DICOM header (names, IDs, dates) is dropped.
_KEPT_META = ("source_format", "modality", "bits_stored", "photometric", "window_center", "window_width",
              "window_source", "frame", "frame_count", "is_colour")


def store_source(store: StudyStore, path: str | Path, window: Any = None, frame: int = 0) -> _Source:
    """Read an image and keep only its pixels, as the models will see them, under a generated name.

    Raises:
        StudyError: the file is not a readable image (message without the file's name).
    """
    path = Path(path)
    try:
        image, meta = read_image(path, frame=frame, window=window)
    except ValueError as e:  # ImageReadError, bad window
        msg = str(e).replace(str(path), "the file").replace(path.name, "the file")
        raise StudyError(f"cannot read it as an image ({msg})") from None
    name = f"{uuid.uuid4().hex}.png"
    target = store.source_path(name)
    # 16-bit grayscale keeps the windowed precision of CT/MR; colour is 8-bit like its source.
    save_png(image, target, bits=16 if image.ndim == 2 else 8)
    meta_d = meta.to_dict()
    info = {k: meta_d.get(k) for k in _KEPT_META if meta_d.get(k) is not None}
    return _Source(name, sha256(path), sha256(target), int(image.shape[1]), int(image.shape[0]), info)


# --- rendering variants ----------------------------------------------------------------------

@dataclass
class _Rendered:
    model: str
    file_name: str
    file_sha256: str
    output_width: int
    output_height: int
    seconds: float
    weights_sha256: str | None
    options: dict[str, Any]


def _provenance(model: str) -> tuple[str | None, dict[str, Any]]:
    """(weights SHA-256 or None, options) of a variant's model."""
    if model == ORIGINAL:
        return None, {}
    spec = get_spec(model)
    if spec.kind == "network":
        return sha256(weights_path(spec)), {}
    return None, dict(spec.options)


def _to_display(image: np.ndarray, size: tuple[int, int]) -> Image.Image:
    """[0, 1] image -> 8-bit PIL of ``size`` (w, h): bicubic when enlarging, area average when shrinking."""
    pil = render.to_display(image)
    if pil.size == size:
        return pil
    up = size[0] > pil.size[0] or size[1] > pil.size[1]
    return pil.resize(size, Image.Resampling.BICUBIC if up else Image.Resampling.BOX)


def render_variants(store: StudyStore, image: np.ndarray, models: Sequence[str], max_side: int) -> list[_Rendered]:
    """Render one case: the original and every model, at one common display size.

    Args:
        image: the stored case read back with ``read_image``, float32 [0, 1], (H, W[, 3]).
        models: model names (without ``"original"``).
        max_side: cap on the display's long side.
    Returns:
        One entry per variant, ``"original"`` first; the PNGs are written to ``variants/``.
        The display size is the largest model output (e.g. 2H x 2W when a x2 model
        takes part), so every variant of a case is shown at the same size.
    """
    outputs = []
    for model in (ORIGINAL, *models):
        t0 = time.perf_counter()
        # The original takes the same path minus the model: same checks, same resize, same PNG writer.
        out = validate_image(image) if model == ORIGINAL else enhance(image, model)
        outputs.append((model, out, time.perf_counter() - t0))
    h = max(o.shape[0] for _, o, _ in outputs)
    w = max(o.shape[1] for _, o, _ in outputs)
    f = min(1.0, max_side / max(h, w))
    size = (max(1, round(w * f)), max(1, round(h * f)))
    rendered = []
    for model, out, seconds in outputs:
        name = f"{uuid.uuid4().hex}.png"
        path = store.variant_path(name)
        _to_display(out, size).save(path, format="PNG")
        weights, options = _provenance(model)
        rendered.append(_Rendered(model, name, sha256(path), int(out.shape[1]), int(out.shape[0]),
                                  seconds, weights, options))
    return rendered


# --- planning reader lists -------------------------------------------------------------------

def reader_seed(study_seed: int, index: int) -> int:
    """The seed of reader number ``index`` (1-based): a fixed function of the study seed."""
    digest = hashlib.sha256(f"medenhance-reader-order:{study_seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def _spread(items: list[PlannedItem]) -> list[PlannedItem]:
    """Reorder so that two items of the same case are not adjacent where avoidable.

    Seeing two variants of one case in a row invites comparing them, which a
    single-image rating must not be.
    """
    items = list(items)
    for i in range(1, len(items)):
        if items[i].case_id != items[i - 1].case_id:
            continue
        for j in range(i + 1, len(items)):
            if items[j].case_id != items[i - 1].case_id:
                items[i], items[j] = items[j], items[i]
                break
    return items


def _pairs(variants: Sequence[tuple[int, str]], pair_mode: str) -> list[tuple[int, int]]:
    """Unordered variant-id pairs of one case; ``variants`` as (id, model) with the original among them."""
    if pair_mode == "reference":
        ref = [vid for vid, m in variants if m == ORIGINAL]
        return [(ref[0], vid) for vid, m in variants if m != ORIGINAL] if ref else []
    return list(itertools.combinations([vid for vid, _ in variants], 2))


def plan_assignments(
    seed: int,
    cases: Sequence[tuple[int, Sequence[tuple[int, str]]]],
    design: str,
    pair_mode: str = "all",
    repeat_cases: int = 0,
) -> list[PlannedItem]:
    """One reader's randomized reading list.

    Args:
        seed: the reader's seed (:func:`reader_seed`).
        cases: (case id, [(variant id, model), ...]) for every case of the study.
        design: ``"likert"``, ``"2afc"`` or ``"both"``.
        pair_mode: see :data:`PAIR_MODES`.
        repeat_cases: cases drawn for a second reading (all their items again).
    Returns:
        Items in reading order: the Likert block (every variant once, shuffled),
        then the pairs block (every pair once, shuffled, sides drawn per item),
        then the repeat block (``replicate=1``: the drawn cases' items, reshuffled,
        sides drawn again). Same seed and inputs -> same list.
    """
    rng = random.Random(seed)
    likert: list[PlannedItem] = []
    pairs: list[PlannedItem] = []
    for case_id, variants in cases:
        if design in ("likert", "both"):
            likert += [PlannedItem(case_id, "likert", "likert", variant_id=vid) for vid, _ in variants]
        if design in ("2afc", "both"):
            pairs += [PlannedItem(case_id, "pairs", "pair", left_variant_id=a, right_variant_id=b)
                      for a, b in _pairs(variants, pair_mode)]

    def shuffled(items: list[PlannedItem], block: str, replicate: int) -> list[PlannedItem]:
        items = list(items)
        rng.shuffle(items)
        out = []
        for it in items:
            if it.kind == "pair" and rng.random() < 0.5:  # left/right drawn per item
                it = PlannedItem(it.case_id, block, "pair", replicate,
                                 left_variant_id=it.right_variant_id, right_variant_id=it.left_variant_id)
            else:
                it = PlannedItem(it.case_id, block, it.kind, replicate, it.variant_id,
                                 it.left_variant_id, it.right_variant_id)
            out.append(it)
        return _spread(out)

    plan = shuffled(likert, "likert", 0) + shuffled(pairs, "pairs", 0)
    n_rep = min(max(0, int(repeat_cases)), len(cases))
    if n_rep:
        chosen = set(rng.sample([cid for cid, _ in cases], n_rep))
        again = [it for it in likert + pairs if it.case_id in chosen]
        plan += shuffled(again, "repeat", 1)
    return plan


def _case_structure(session: Any, study_id: int) -> list[tuple[int, list[tuple[int, str]]]]:
    """(case id, [(variant id, model), ...]) of a study, in id order (original first within a case)."""
    rows = session.execute(
        select(Case.id, Variant.id, Variant.model).join(Variant, Variant.case_id == Case.id)
        .where(Case.study_id == study_id).order_by(Case.id, Variant.id)).all()
    out: dict[int, list[tuple[int, str]]] = {}
    for case_id, vid, model in rows:
        out.setdefault(case_id, []).append((vid, model))
    return list(out.items())


def _add_readers(session: Any, study: Study, count: int, codes_given: list[str] | None = None) -> dict[str, str]:
    """Create ``count`` readers with codes and assignment lists; returns {label: code} (codes shown once).

    ``codes_given``: use these codes (one reader each; ``count`` is ignored) instead of new random ones.
    """
    if codes_given is not None:
        count = len(codes_given)
    structure = _case_structure(session, study.id)
    existing = session.scalar(select(func.count()).select_from(Reader).where(Reader.study_id == study.id)) or 0
    codes = {}
    opts = study.options or {}
    for index in range(existing + 1, existing + count + 1):
        code = codes_given[index - existing - 1] if codes_given is not None else new_access_code()
        seed = reader_seed(study.seed, index)
        reader = Reader(study_id=study.id, label=f"R{index:02d}", code_hash=hash_code(code), seed=seed)
        session.add(reader)
        session.flush()
        plan = plan_assignments(seed, structure, study.design, opts.get("pair_mode", "all"),
                                int(opts.get("repeat_cases", 0)))
        session.add_all([
            Assignment(reader_id=reader.id, case_id=it.case_id, position=pos, block=it.block, kind=it.kind,
                       replicate=it.replicate, variant_id=it.variant_id, left_variant_id=it.left_variant_id,
                       right_variant_id=it.right_variant_id, item_key=uuid.uuid4().hex)
            for pos, it in enumerate(plan)])
        codes[reader.label] = code
    return codes


# --- the operations ---------------------------------------------------------------------------

def create_study(
    store: StudyStore,
    design: StudyDesign,
    files: Iterable[str | Path],
    progress: Callable[[float, str], None] | None = None,
) -> CreatedStudy:
    """Create a study: store the sources, render every variant, create readers and their lists.

    Args:
        store: the opened data directory.
        design: see :class:`StudyDesign` (checked here).
        files: image files (uploads or :func:`folder_files`); unreadable ones are
            skipped and listed in ``skipped``; duplicates (same bytes) are kept once.
        progress: optional ``progress(fraction, text)`` callback.
    Returns:
        :class:`CreatedStudy`, with the readers' access codes (the only time they exist in clear).
    Raises:
        StudyError: bad design, no readable image, or a model failing on an image.
    """
    d = check_design(design)
    files = [Path(f) for f in files if f]
    if not files:
        raise StudyError("No images given: upload images or name a server folder.")
    if len(files) > MAX_FILES:
        raise StudyError(f"At most {MAX_FILES} images per study.")
    say = progress or (lambda f, t: None)
    written: list[Path] = []
    with store.create_lock:
        try:
            sources: list[_Source] = []
            skipped: list[str] = []
            seen: set[str] = set()
            for i, f in enumerate(files):
                say(0.3 * i / len(files), f"reading image {i + 1} of {len(files)}")
                try:
                    src = store_source(store, f, d.window, d.frame)
                except StudyError as e:
                    skipped.append(f"image {i + 1}: {e}")
                    continue
                written.append(store.source_path(src.stored_name))
                if src.upload_sha256 in seen:
                    skipped.append(f"image {i + 1}: same file as an earlier one")
                    continue
                seen.add(src.upload_sha256)
                sources.append(src)
            if not sources:
                raise StudyError("None of the images could be read: " + "; ".join(skipped[:5]))
            renders: list[list[_Rendered]] = []
            for i, src in enumerate(sources):
                say(0.3 + 0.6 * i / len(sources), f"rendering case {i + 1} of {len(sources)}")
                image, _ = read_image(store.source_path(src.stored_name))
                try:
                    r = render_variants(store, image, d.models, store.settings.max_display_side)
                except ValueError as e:  # a model refusing the image (size, channels, weights)
                    raise StudyError(f"case {i + 1}: {e}") from None
                written += [store.variant_path(v.file_name) for v in r]
                renders.append(r)
            say(0.9, "saving the study")
            with store.db.write() as s:
                study = Study(name=d.name, design=d.design, seed=d.seed, models=list(d.models), status="open",
                              options={"pair_mode": d.pair_mode, "repeat_cases": d.repeat_cases,
                                       "washout_days": d.washout_days, "window": _json_window(d.window),
                                       "frame": d.frame, "max_display_side": store.settings.max_display_side})
                s.add(study)
                s.flush()
                for i, (src, rend) in enumerate(zip(sources, renders), start=1):
                    case = Case(study_id=study.id, label=f"C{i:03d}", stored_name=src.stored_name,
                                upload_sha256=src.upload_sha256, stored_sha256=src.stored_sha256,
                                width=src.width, height=src.height, info=src.info)
                    s.add(case)
                    s.flush()
                    s.add_all([Variant(case_id=case.id, model=v.model, weights_sha256=v.weights_sha256,
                                       model_options=v.options, file_name=v.file_name, file_sha256=v.file_sha256,
                                       output_width=v.output_width, output_height=v.output_height,
                                       render_seconds=v.seconds) for v in rend])
                s.flush()
                codes = _add_readers(s, study, d.readers)
                items = s.scalar(select(func.count()).select_from(Assignment).join(Reader)
                                 .where(Reader.study_id == study.id)) or 0
                study_id = study.id
        except BaseException:
            for p in written:  # nothing half-made stays on disk
                p.unlink(missing_ok=True)
            raise
    kept = {store.source_path(s_.stored_name) for s_ in sources}
    for p in written:  # sources of skipped duplicates
        if p.parent == store.sources_dir and p not in kept:
            p.unlink(missing_ok=True)
    say(1.0, "done")
    logger.info("study %s created: %d cases, %d models, %d readers", study_id, len(sources), len(d.models), d.readers)
    return CreatedStudy(study_id, d.name, len(sources), sum(len(r) for r in renders),
                        items // max(1, d.readers), codes, skipped)


def _json_window(window: Any) -> Any:
    return list(window) if isinstance(window, tuple) else window


def study_id_of(value: Any) -> int:
    """A study id from an API value; :class:`StudyError` if it is not a positive whole number."""
    return whole_number(value, "Study id", 1, 2**31 - 1)


def _get_study(session: Any, study_id: Any) -> Study:
    study = session.get(Study, study_id_of(study_id))
    if study is None:
        raise StudyError(f"No study with id {study_id}.")
    return study


def add_readers(store: StudyStore, study_id: Any, count: Any) -> dict[str, str]:
    """Add readers (with codes and lists) to an open study; returns {label: code}, shown once."""
    n = whole_number(count, "Number of readers", 1, MAX_READERS)
    with store.db.write() as s:
        study = _get_study(s, study_id)
        if study.status != "open":
            raise StudyError("This study is closed; open a new study instead.")
        return _add_readers(s, study, n)


def add_hf_readers(store: StudyStore, study_id: Any, usernames: Any) -> dict[str, str]:
    """Add readers who sign in with their Hugging Face account (on a Space) to an open study.

    Args:
        usernames: Hugging Face usernames, as a list or one text (separated by lines, commas or spaces).
    Returns:
        {reader label: username} for the readers added now; users already readers of the study are
        skipped. Shown once: the database keeps only the hash of each derived code, not the username.
    Raises:
        StudyError: no or invalid username, too many readers, closed or unknown study.
    """
    text = " ".join(usernames) if isinstance(usernames, (list, tuple)) else str(usernames or "")
    first: dict[str, str] = {}  # lower case -> first spelling: usernames are case-insensitive
    for n in re.split(r"[\s,;]+", text):
        if n.strip():
            first.setdefault(n.lstrip("@").lower(), n.lstrip("@"))
    names = list(first.values())
    if not names:
        raise StudyError("Give at least one Hugging Face username.")
    bad = [n for n in names if not auth.HF_USERNAME.fullmatch(n)]
    if bad:
        raise StudyError(f"Not a Hugging Face username: {', '.join(bad[:5])}.")
    whole_number(len(names), "Number of readers", 1, MAX_READERS)
    key = auth.hf_signin_key(store.data_dir)
    with store.db.write() as s:
        study = _get_study(s, study_id)
        if study.status != "open":
            raise StudyError("This study is closed; open a new study instead.")
        codes = {n: auth.hf_access_code(key, study.id, n) for n in names}
        known = set(s.scalars(select(Reader.code_hash).where(Reader.code_hash.in_([hash_code(c) for c in codes.values()]))))
        new = [n for n in names if hash_code(codes[n]) not in known]
        labels = _add_readers(s, study, 0, [codes[n] for n in new])
        return dict(zip(labels, new))


def close_study(store: StudyStore, study_id: Any) -> dict[str, Any]:
    """Close a study: readers can no longer answer (stored answers stay). Idempotent."""
    with store.db.write() as s:
        study = _get_study(s, study_id)
        if study.status != "closed":
            study.status = "closed"
            study.closed_at = utcnow()
        return {"study_id": study.id, "status": study.status, "closed_at": study.closed_at.isoformat()}


def list_studies(store: StudyStore) -> list[dict[str, Any]]:
    """Every study with its size and answer counts (for the admin)."""
    with store.db.read() as s:
        studies = s.scalars(select(Study).order_by(Study.id)).all()
        out = []
        for st in studies:
            n_cases = s.scalar(select(func.count()).select_from(Case).where(Case.study_id == st.id))
            n_readers = s.scalar(select(func.count()).select_from(Reader).where(Reader.study_id == st.id))
            n_items = s.scalar(select(func.count()).select_from(Assignment).join(Reader).where(Reader.study_id == st.id))
            n_done = s.scalar(select(func.count()).select_from(Assignment).join(Reader)
                              .where(Reader.study_id == st.id, Assignment.answered_at.is_not(None)))
            out.append({"study_id": st.id, "name": st.name, "design": st.design, "status": st.status,
                        "models": list(st.models), "cases": n_cases, "readers": n_readers,
                        "items": n_items, "answered": n_done, "created_at": st.created_at.isoformat()})
        return out


def study_progress(store: StudyStore, study_id: Any) -> dict[str, Any]:
    """Per-reader progress of a study (answered / total per block, last activity); no answers shown."""
    with store.db.read() as s:
        study = _get_study(s, study_id)
        rows = s.execute(
            select(Reader.label, Reader.last_seen_at, Assignment.block,
                   func.count(Assignment.id), func.count(Assignment.answered_at), func.max(Assignment.answered_at))
            .join(Assignment, Assignment.reader_id == Reader.id)
            .where(Reader.study_id == study.id)
            .group_by(Reader.id, Reader.label, Reader.last_seen_at, Assignment.block)
            .order_by(Reader.id)).all()
        readers: dict[str, dict[str, Any]] = {}
        for label, seen, block, total, done, last in rows:
            r = readers.setdefault(label, {"reader": label, "answered": 0, "total": 0, "last_answer": None,
                                           "last_seen": seen.isoformat() if seen else None})
            r["answered"] += done
            r["total"] += total
            r[f"{block}_answered"] = done
            r[f"{block}_total"] = total
            if last is not None and (r["last_answer"] is None or last.isoformat() > r["last_answer"]):
                r["last_answer"] = last.isoformat()
        for r in readers.values():
            r["status"] = "finished" if r["answered"] == r["total"] else ("not started" if r["answered"] == 0 else "reading")
        n_ratings = s.scalar(select(func.count()).select_from(Rating).join(Reader).where(Reader.study_id == study.id))
        n_prefs = s.scalar(select(func.count()).select_from(Preference).join(Reader).where(Reader.study_id == study.id))
        return {"study_id": study.id, "name": study.name, "design": study.design, "status": study.status,
                "models": list(study.models), "options": dict(study.options or {}),
                "ratings": n_ratings, "preferences": n_prefs, "readers": list(readers.values())}
