"""A study's design and creation: check the design, import the cases, plan each reader's randomized list.

Every bad request raises :class:`~studio.study.checks.StudyError` with a message meant for the user.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import random
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from sqlalchemy import func, select

from db import DESIGNS, ORIGINAL, Assignment, Case, Reader, Study, Variant
from models import get_spec, list_models, model_card, read_image
from models.auto import automatic_entry
from models.errors import printable
from studio.study.auth import hash_code, new_access_code
from studio.study.cases import _Rendered, _Source, render_variants, store_source
from studio.study.checks import MAX_FILES, MAX_NAME, MAX_READERS, StudyError, whole_number
from studio.study.results_import import ResultCase, ResultSet, read_case_results
from studio.study.store import StudyStore

logger = logging.getLogger("medenhance.studio.study")

PAIR_MODES = ("all", "reference")  # 2AFC pairs: every pair of variants, or each model vs the original


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
    case_names: dict[str, str] = field(default_factory=dict)  # results studies: "C001" -> the tool's case name


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


def ready_models() -> list[str]:
    """Registered models that can run now (classical, or networks and automatic entries whose weights exist);
    automatic entries first."""
    out = []
    for spec in sorted(list_models(), key=lambda s: s.kind != "auto"):
        card = model_card(spec.name)
        if card["kind"] == "classical" or card.get("weights_present"):
            out.append(spec.name)
    return out


def default_models() -> list[str]:
    """The models preselected for a new study: the automatic entry of the studio's default task (x2
    super-resolution; it measures each case's noise and runs the clean or the noise-aware network), if it can run."""
    auto = automatic_entry("sr", 2)
    return [auto] if auto else []


def check_design(design: StudyDesign, methods: Sequence[str] = ()) -> StudyDesign:
    """Validate and normalize a design; :class:`StudyError` says what is wrong.

    ``methods``: names of another tool's precomputed results taking part
    (:func:`create_study_from_results`); with them, registered models are optional.
    """
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
        if card["kind"] in ("network", "auto") and not card.get("weights_present"):
            raise StudyError(f"Model {m!r} has no trained weights yet; choose another.")
        models.append(m)
    if not models and not methods:
        raise StudyError("Choose at least one model (the original image is added as the reference).")
    clash = sorted(set(models) & set(methods))
    if clash:
        raise StudyError(f"{', '.join(clash)}: both a chosen model and a method of the results; rename the results.")
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
    return _create(store, d, [_Input(f, f"image {i + 1}") for i, f in enumerate(files)], (), progress)


def create_study_from_results(
    store: StudyStore,
    design: StudyDesign,
    results: ResultSet,
    progress: Callable[[float, str], None] | None = None,
) -> CreatedStudy:
    """Create a study whose variants are another tool's precomputed results (plus any registered models).

    Args:
        design: as for :func:`create_study`; ``models`` may be empty (the methods are the variants).
        results: :func:`studio.study.results_import.open_results`: cases of an original and one
            result per method. Each method becomes a variant named after it (what the analysis
            calls it); readers see only re-rendered pixels under random names, as for every variant.
    Returns:
        :class:`CreatedStudy`; ``case_names`` maps the generated case labels to the tool's case
        names (shown to the admin once, never stored: they may identify patients).
    Raises:
        StudyError: bad design, an unreadable original or result, a result whose size is neither the
            original's nor a whole multiple of it (the message names the file), duplicate originals.
    """
    d = check_design(design, results.methods)
    items = [_Input(c.original, f"case {printable(c.name)[:80]!r}", c) for c in results.cases]
    return _create(store, d, items, tuple(results.methods), progress)


@dataclass
class _Input:
    """One would-be case: its source file, how messages name it, and its precomputed results (if any)."""

    path: Path
    label: str
    results: ResultCase | None = None


def _create(store: StudyStore, d: StudyDesign, inputs: list[_Input], methods: tuple[str, ...],
            progress: Callable[[float, str], None] | None) -> CreatedStudy:
    """The work of both create functions: sources, renders, rows, readers; nothing half-made stays.

    With precomputed results (``methods``) every input must become a case: an unreadable original
    or a duplicate is an error instead of a skip, so no method's result is silently dropped.
    """
    strict = bool(methods)
    say = progress or (lambda f, t: None)
    written: list[Path] = []
    with store.create_lock:
        try:
            sources: list[tuple[_Source, _Input]] = []
            skipped: list[str] = []
            seen: dict[str, str] = {}
            for i, item in enumerate(inputs):
                say(0.3 * i / len(inputs), f"reading image {i + 1} of {len(inputs)}")
                try:
                    src = store_source(store, item.path, d.window, d.frame)
                except StudyError as e:
                    if strict:
                        raise StudyError(f"{item.label}: the original: {e}") from None
                    skipped.append(f"{item.label}: {e}")
                    continue
                written.append(store.source_path(src.stored_name))
                if src.upload_sha256 in seen:
                    if strict:
                        raise StudyError(f"{item.label}: the same original as {seen[src.upload_sha256]}.")
                    skipped.append(f"{item.label}: same file as an earlier one")
                    continue
                seen[src.upload_sha256] = item.label
                sources.append((src, item))
            if not sources:
                raise StudyError("None of the images could be read: " + "; ".join(skipped[:5]))
            renders: list[list[_Rendered]] = []
            scales: dict[str, int] = {}
            for i, (src, item) in enumerate(sources):
                say(0.3 + 0.6 * i / len(sources), f"rendering case {i + 1} of {len(sources)}")
                image, _ = read_image(store.source_path(src.stored_name))
                pre = read_case_results(item.results, image, d.window, scales) if item.results is not None else None
                try:
                    r = render_variants(store, image, d.models, store.settings.max_display_side, pre)
                except ValueError as e:  # a model refusing the image (size, channels, weights)
                    raise StudyError(f"case {i + 1}: {e}") from None
                written += [store.variant_path(v.file_name) for v in r]
                renders.append(r)
            say(0.9, "saving the study")
            with store.db.write() as s:
                options = {"pair_mode": d.pair_mode, "repeat_cases": d.repeat_cases,
                           "washout_days": d.washout_days, "window": _json_window(d.window),
                           "frame": d.frame, "max_display_side": store.settings.max_display_side}
                if methods:  # the variants that are another tool's results, not registered models
                    options["precomputed_methods"] = list(methods)
                study = Study(name=d.name, design=d.design, seed=d.seed, models=[*d.models, *methods], status="open",
                              options=options)
                s.add(study)
                s.flush()
                case_names = {}
                for i, ((src, item), rend) in enumerate(zip(sources, renders), start=1):
                    case = Case(study_id=study.id, label=f"C{i:03d}", stored_name=src.stored_name,
                                upload_sha256=src.upload_sha256, stored_sha256=src.stored_sha256,
                                width=src.width, height=src.height, info=src.info)
                    s.add(case)
                    s.flush()
                    if item.results is not None:
                        case_names[case.label] = item.results.name
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
    kept = {store.source_path(src.stored_name) for src, _ in sources}
    for p in written:  # sources of skipped duplicates
        if p.parent == store.sources_dir and p not in kept:
            p.unlink(missing_ok=True)
    say(1.0, "done")
    logger.info("study %s created: %d cases, %d models, %d precomputed methods, %d readers", study_id, len(sources),
                len(d.models), len(methods), d.readers)
    return CreatedStudy(study_id, d.name, len(sources), sum(len(r) for r in renders),
                        items // max(1, d.readers), codes, skipped, case_names)


def _json_window(window: Any) -> Any:
    return list(window) if isinstance(window, tuple) else window


