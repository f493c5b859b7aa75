"""Running studies: add readers (by code or Hugging Face username), close a study, list studies and progress."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import func, select

from db import Assignment, Case, Preference, Rating, Reader, Study, utcnow
from studio.study import auth
from studio.study.auth import hash_code
from studio.study.checks import MAX_READERS, StudyError, whole_number
from studio.study.design import _add_readers
from studio.study.store import StudyStore


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
