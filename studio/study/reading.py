"""What a reader does: sign in with an access code, get the next item, answer it.

Every function takes the reader's access code and checks it against the
database on each call: nothing the browser holds (hidden fields, session
state) is trusted for identity. An item is addressed by its random
``item_key``, which is also the idempotency key of its answer:

* an answer is committed (its own transaction) before the next item is read;
* a second submission for an answered item (double click, retry after a
  network error) stores nothing and returns the stored answer, marked
  ``duplicate`` (the first answer wins);
* an item of another reader is "unknown", exactly like a made-up key.

What a reader is told never names a model, a variant, a case or another
reader: :class:`ReaderView` carries images, the item key and progress only.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from db import CRITERIA, Assignment, Preference, Rating, Reader, Study, Variant, utcnow
from studio.study.auth import hash_code, hf_access_code, hf_signin_key, normalize_code
from studio.study.checks import StudyError
from studio.study.store import StudyStore

MAX_COMMENT = 2000
CHOICES = ("left", "right")


class AccessError(StudyError):
    """The access code does not belong to any reader (one message for every reason)."""

    def __init__(self) -> None:
        super().__init__("Unknown access code. Check the code you were given (dashes and case do not matter).")


@dataclass
class ReaderView:
    """What the reader's screen (or API client) gets.

    Attributes:
        status: ``"item"`` (an item to answer), ``"done"`` (all answered),
            ``"waiting"`` (the repeat block opens after the washout) or ``"closed"``.
        item_key: the item to answer (and the idempotency key of the answer); "" when none.
        kind: ``"likert"`` (rate the left image) or ``"pair"`` (choose left or right); "" when none.
        number: 1-based number of this item in the reader's list ("case 7 of 40").
        total: items in the reader's list (repeats included).
        answered: items answered so far.
        message: one line for the reader.
        left / right: paths of the images to show (right only for pairs); never sent as paths to a browser.
        saved: the stored answer when this view follows a submission, with ``duplicate``.
        available_at: when ``status == "waiting"``, ISO time the repeat block opens.
    """

    status: str
    item_key: str = ""
    kind: str = ""
    number: int = 0
    total: int = 0
    answered: int = 0
    message: str = ""
    left: Path | None = None
    right: Path | None = None
    saved: dict[str, Any] | None = None
    available_at: str | None = None

    def public(self) -> dict[str, Any]:
        """The view without file paths (what the JSON output shows)."""
        d = asdict(self)
        d.pop("left")
        d.pop("right")
        return {k: v for k, v in d.items() if v is not None}


# --- helpers -------------------------------------------------------------------------------------

def _reader(session: Any, code: Any) -> tuple[Reader, Study]:
    """The reader with this access code and their study; :class:`AccessError` otherwise."""
    if not normalize_code(code):
        raise AccessError()
    row = session.execute(select(Reader, Study).join(Study, Study.id == Reader.study_id)
                          .where(Reader.code_hash == hash_code(code))).first()
    if row is None:
        raise AccessError()
    return row[0], row[1]


def _item(session: Any, reader: Reader, item_key: Any) -> Assignment:
    """The reader's own item with this key; unknown keys and other readers' keys look the same."""
    if not isinstance(item_key, str) or not item_key or len(item_key) > 64:
        raise StudyError("Unknown item: reload to get your next case.")
    item = session.scalar(select(Assignment).where(Assignment.item_key == item_key,
                                                   Assignment.reader_id == reader.id))
    if item is None:
        raise StudyError("Unknown item: reload to get your next case.")
    return item


def _washout_opens(session: Any, reader: Reader, study: Study) -> dt.datetime | None:
    """When this reader's repeat block opens: last first-pass answer + washout (None: no washout)."""
    days = float((study.options or {}).get("washout_days") or 0)
    if days <= 0:
        return None
    last = session.scalar(select(func.max(Assignment.answered_at))
                          .where(Assignment.reader_id == reader.id, Assignment.replicate == 0))
    if last is None:
        return None
    return last + dt.timedelta(days=days)


def _counts(session: Any, reader: Reader) -> tuple[int, int]:
    total = session.scalar(select(func.count()).select_from(Assignment).where(Assignment.reader_id == reader.id)) or 0
    done = session.scalar(select(func.count()).select_from(Assignment)
                          .where(Assignment.reader_id == reader.id, Assignment.answered_at.is_not(None))) or 0
    return int(total), int(done)


def _rating_dict(item: Assignment, r: Rating) -> dict[str, Any]:
    return {"item_key": item.item_key, "kind": "likert", **{c: getattr(r, c) for c in CRITERIA},
            "comment": r.comment, "seconds": r.seconds, "saved_at": r.created_at.isoformat()}


def _preference_dict(item: Assignment, p: Preference) -> dict[str, Any]:
    return {"item_key": item.item_key, "kind": "pair", "choice": p.choice, "confidence": p.confidence,
            "comment": p.comment, "seconds": p.seconds, "saved_at": p.created_at.isoformat()}


def _stored(session: Any, item: Assignment) -> dict[str, Any] | None:
    """The stored answer of an item, or None."""
    if item.kind == "likert":
        r = session.scalar(select(Rating).where(Rating.assignment_id == item.id))
        return _rating_dict(item, r) if r else None
    p = session.scalar(select(Preference).where(Preference.assignment_id == item.id))
    return _preference_dict(item, p) if p else None


def _score(value: Any, what: str) -> int:
    """A 1..5 score from an API value (3, 3.0, "3"); :class:`StudyError` otherwise."""
    if isinstance(value, bool) or value is None or value == "":
        raise StudyError(f"Give a score from 1 to 5 for {what}.")
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise StudyError(f"{what}: scores are whole numbers from 1 to 5, got {value!r}.") from None
    if not f.is_integer() or not 1 <= f <= 5:
        raise StudyError(f"{what}: scores are whole numbers from 1 to 5, got {value!r}.")
    return int(f)


def _comment(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise StudyError("The comment must be text.")
    value = "".join(ch for ch in value if ch.isprintable() or ch in "\n\t").strip()
    if len(value) > MAX_COMMENT:
        raise StudyError(f"Comments are limited to {MAX_COMMENT} characters.")
    return value


def _seconds(item: Assignment, now: dt.datetime) -> float | None:
    """Time spent on the item: from it last being shown to the answer, measured by the server."""
    if item.last_shown_at is None:
        return None
    return round(max(0.0, (now - item.last_shown_at).total_seconds()), 3)


# --- the reader's operations ------------------------------------------------------------------

def code_exists(store: StudyStore, code_hash: str) -> bool:
    """Whether some reader has the access code of this hash (:func:`~studio.study.auth.hash_code`).

    One indexed query; :mod:`studio.guard` asks it before queueing a reader request with a code it
    has not seen, so readers signing in are told apart from a flood of made-up codes.
    """
    with store.db.read() as s:
        return s.scalar(select(Reader.id).where(Reader.code_hash == code_hash).limit(1)) is not None


def hf_code(store: StudyStore, username: Any) -> str:
    """The access code of a signed-in Hugging Face user: their newest open study where the admin added them.

    The code is derived (see :func:`studio.study.auth.hf_access_code`), so the reader never types one; the
    page keeps it in the access-code box and every later request is checked like a typed code.

    Raises:
        StudyError: not signed in, or not a reader of any open study.
    """
    if not isinstance(username, str) or not username.strip():
        raise StudyError("Sign in with Hugging Face first (the button above), or type your access code.")
    key = hf_signin_key(store.data_dir)
    with store.db.read() as s:
        ids = s.scalars(select(Study.id).where(Study.status == "open").order_by(Study.id.desc())).all()
        codes = {hash_code(c): c for c in (hf_access_code(key, sid, username) for sid in ids)}
        hit = s.scalar(select(Reader.code_hash).join(Study, Study.id == Reader.study_id)
                       .where(Reader.code_hash.in_(list(codes))).order_by(Study.id.desc()).limit(1))
    if hit is None:
        raise StudyError(f"The Hugging Face account @{username.strip()} is not a reader of an open study. "
                         "Ask the study admin to add you, or type the access code you were given.")
    return codes[hit]


def next_item(store: StudyStore, code: Any, now: dt.datetime | None = None) -> ReaderView:
    """The reader's next unanswered item (resume = exactly where they stopped).

    Marks the item as shown now (the start of its time) and the reader as seen.

    Raises:
        AccessError: unknown code.
    """
    now = now or utcnow()
    with store.db.write() as s:
        reader, study = _reader(s, code)
        reader.last_seen_at = now
        total, done = _counts(s, reader)
        if study.status != "open":
            return ReaderView("closed", total=total, answered=done,
                              message="This study is closed. Thank you for taking part.")
        item = s.scalar(select(Assignment).where(Assignment.reader_id == reader.id, Assignment.answered_at.is_(None))
                        .order_by(Assignment.position).limit(1))
        if item is None:
            return ReaderView("done", total=total, answered=done,
                              message=f"All {total} cases are done. Thank you!")
        if item.replicate > 0:
            opens = _washout_opens(s, reader, study)
            if opens is not None and now < opens:
                return ReaderView("waiting", total=total, answered=done, available_at=opens.isoformat(),
                                  message=f"First pass complete ({done} of {total}). The remaining "
                                          f"{total - done} cases open on {opens:%Y-%m-%d %H:%M} UTC "
                                          "(a washout period, so you read them afresh).")
        item.last_shown_at = now
        if item.kind == "likert":
            names = [s.get(Variant, item.variant_id).file_name]
        else:
            names = [s.get(Variant, item.left_variant_id).file_name, s.get(Variant, item.right_variant_id).file_name]
        paths = [store.variant_path(n) for n in names]
        what = "rate this image" if item.kind == "likert" else "which image is better for diagnosis?"
        return ReaderView("item", item_key=item.item_key, kind=item.kind, number=done + 1, total=total,
                          answered=done, message=f"Case {done + 1} of {total}: {what}",
                          left=paths[0], right=paths[1] if len(paths) > 1 else None)


def _submit(store: StudyStore, code: Any, item_key: Any, kind: str, build: Any,
            now: dt.datetime | None) -> dict[str, Any]:
    """Store one answer idempotently; returns the stored answer with ``duplicate``.

    ``build(item, now)`` validates the payload and returns the row to insert;
    it runs only for unanswered items, so a retry is never re-validated.
    """
    now = now or utcnow()
    try:
        with store.db.write() as s:
            reader, study = _reader(s, code)
            item = _item(s, reader, item_key)
            stored = _stored(s, item)
            if stored is not None:
                return {**stored, "duplicate": True}
            if item.kind != kind:
                other = "/reader_rate" if item.kind == "likert" else "/reader_choose"
                raise StudyError(f"This item is a {'single-image rating' if item.kind == 'likert' else 'pair'}; "
                                 f"answer it with {other}.")
            if study.status != "open":
                raise StudyError("This study is closed; answers are no longer accepted.")
            if item.replicate > 0:
                opens = _washout_opens(s, reader, study)
                if opens is not None and now < opens:
                    raise StudyError(f"This case opens on {opens:%Y-%m-%d %H:%M} UTC (washout).")
            row = build(item, now)
            s.add(row)
            item.answered_at = now
            reader.last_seen_at = now
            s.flush()
            answer = _rating_dict(item, row) if kind == "likert" else _preference_dict(item, row)
            return {**answer, "duplicate": False}
    except IntegrityError:
        # Two submissions raced (possible on PostgreSQL; SQLite serializes writers): the other one won.
        with store.db.read() as s:
            reader, _ = _reader(s, code)
            item = _item(s, reader, item_key)
            stored = _stored(s, item)
        if stored is None:
            raise
        return {**stored, "duplicate": True}


def submit_rating(store: StudyStore, code: Any, item_key: Any, scores: Mapping[str, Any], comment: Any = "",
                  now: dt.datetime | None = None) -> dict[str, Any]:
    """Store the reader's Likert scores for a ``"likert"`` item.

    Args:
        scores: every criterion of :data:`db.CRITERIA` -> 1..5 (5 = best; for
            artefacts 5 = none disturbing).
        comment: optional free text (at most :data:`MAX_COMMENT` characters).
    Returns:
        The stored answer (scores, comment, seconds, saved_at, item_key) and
        ``duplicate`` (True when the item had been answered already: nothing changed).
    Raises:
        AccessError, StudyError: unknown code or item, missing or invalid score, closed study.
    """
    def build(item: Assignment, now: dt.datetime) -> Rating:
        if not isinstance(scores, Mapping):
            raise StudyError("Scores must be given per criterion.")
        values = {c: _score(scores.get(c), c) for c in CRITERIA}
        return Rating(assignment_id=item.id, reader_id=item.reader_id, variant_id=item.variant_id,
                      replicate=item.replicate, comment=_comment(comment), seconds=_seconds(item, now),
                      created_at=now, **values)

    return _submit(store, code, item_key, "likert", build, now)


def submit_preference(store: StudyStore, code: Any, item_key: Any, choice: Any, confidence: Any,
                      comment: Any = "", now: dt.datetime | None = None) -> dict[str, Any]:
    """Store the reader's forced choice for a ``"pair"`` item.

    Args:
        choice: ``"left"`` or ``"right"`` (the image preferred, as shown).
        confidence: 1 (guess) ... 5 (certain).
    Returns / Raises: as :func:`submit_rating`.
    """
    def build(item: Assignment, now: dt.datetime) -> Preference:
        side = str(choice or "").strip().lower()
        if side not in CHOICES:
            raise StudyError("Choose the left or the right image.")
        chosen = item.left_variant_id if side == "left" else item.right_variant_id
        return Preference(assignment_id=item.id, reader_id=item.reader_id, case_id=item.case_id,
                          replicate=item.replicate, left_variant_id=item.left_variant_id,
                          right_variant_id=item.right_variant_id, chosen_variant_id=chosen, choice=side,
                          confidence=_score(confidence, "confidence"), comment=_comment(comment),
                          seconds=_seconds(item, now), created_at=now)

    return _submit(store, code, item_key, "pair", build, now)

