"""Study bundles (db.bundle): export, import into the other engine, re-export, compare.

A small study is built row by row through the ORM (no studio code): two cases with three
variants each, two readers, Likert, pair and repeat items, ratings and preferences, a closed
study with timestamps in another timezone. Every database is fresh (tests/pg.py).
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path
from typing import Any, Callable

import pytest
from sqlalchemy import func, select

import db
from db import Assignment, Case, Preference, Rating, Reader, Study, Variant, open_database
from db.__main__ import main as db_main
from db.bundle import (
    FORMAT,
    FORMAT_VERSION,
    TABLES,
    BundleError,
    BundleVersionError,
    DuplicateStudyError,
    bundle_columns,
    export_study,
    import_study,
)
from tests.pg import ENGINES

OTHER = {"sqlite": "postgresql", "postgresql": "sqlite"}
T0 = dt.datetime(2024, 5, 1, 9, 0, 0, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2)))


def _at(minutes: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def build_study(database: db.Database, name: str = "pilot", salt: str = "a") -> int:
    """A small, complete study; ``salt`` makes its globally unique keys differ from another build's."""
    with database.write() as s:
        st = Study(name=name, design="both", status="closed", seed=42, models=["clahe", "median"],
                   options={"pair_mode": "vs_original", "repeats": 1, "washout_days": 0, "window": [40, 400]},
                   created_at=_at(0), closed_at=_at(600))
        s.add(st)
        s.flush()
        variants: dict[tuple[int, str], Variant] = {}
        cases = []
        for c in range(2):
            case = Case(study_id=st.id, label=f"C{c + 1:03d}", stored_name=f"{salt}{c:031x}.png",
                        upload_sha256=f"{salt}{c:063x}", stored_sha256=f"{c:064x}", width=64 + c, height=48,
                        info={"modality": "CT", "bits": 12, "window": None}, created_at=_at(1))
            s.add(case)
            s.flush()
            cases.append(case)
            for m, model in enumerate(("original", "clahe", "median")):
                v = Variant(case_id=case.id, model=model, weights_sha256=None if model == "original" else "f" * 64,
                            model_options={"clip": 2.0} if model == "clahe" else {}, file_name=f"{salt}{c}{m:030x}.png",
                            file_sha256=f"{m:064x}", output_width=64, output_height=48, render_seconds=0.25 * m,
                            created_at=_at(2))
                s.add(v)
                variants[(c, model)] = v
        s.flush()
        for r in range(2):
            reader = Reader(study_id=st.id, label=f"R{r + 1:02d}", code_hash=f"{salt}{r:063x}", seed=100 + r,
                            created_at=_at(3), last_seen_at=_at(500) if r == 0 else None)
            s.add(reader)
            s.flush()
            position = 0
            for c in range(2):
                for model in ("original", "clahe", "median"):
                    a = Assignment(reader_id=reader.id, case_id=cases[c].id, position=position, block="likert",
                                   kind="likert", variant_id=variants[(c, model)].id,
                                   item_key=f"{salt}{r}{position:014x}", last_shown_at=_at(10 + position))
                    s.add(a)
                    s.flush()
                    if r == 0 or position < 2:  # reader 2 stopped early: open items stay open
                        a.answered_at = _at(11 + position)
                        s.add(Rating(assignment_id=a.id, reader_id=reader.id, variant_id=a.variant_id, replicate=0,
                                     overall=1 + position % 5, noise=2, sharpness=3, contrast=4, artefacts=5,
                                     confidence=3, comment="Rauschen ↑ – ok" if position == 1 else "",
                                     seconds=1.5 + position, created_at=a.answered_at))
                    position += 1
                left, right = variants[(c, "clahe")], variants[(c, "original")]
                a = Assignment(reader_id=reader.id, case_id=cases[c].id, position=position, block="pairs",
                               kind="pair", left_variant_id=left.id, right_variant_id=right.id,
                               item_key=f"{salt}{r}{position:014x}", last_shown_at=_at(20 + position))
                s.add(a)
                s.flush()
                if r == 0:
                    a.answered_at = _at(21 + position)
                    s.add(Preference(assignment_id=a.id, reader_id=reader.id, case_id=cases[c].id, replicate=0,
                                     left_variant_id=left.id, right_variant_id=right.id, chosen_variant_id=right.id,
                                     choice="right", confidence=4, comment="", seconds=None,
                                     created_at=a.answered_at))
                position += 1
            # One repeat item (intra-reader agreement), answered by reader 1.
            a = Assignment(reader_id=reader.id, case_id=cases[0].id, position=position, block="repeat",
                           kind="likert", replicate=1, variant_id=variants[(0, "clahe")].id,
                           item_key=f"{salt}{r}{position:014x}")
            s.add(a)
            s.flush()
            if r == 0:
                a.answered_at = _at(400)
                s.add(Rating(assignment_id=a.id, reader_id=reader.id, variant_id=a.variant_id, replicate=1,
                             overall=4, noise=4, sharpness=4, contrast=4, artefacts=4, confidence=4,
                             created_at=a.answered_at))
        return st.id


def _comparable(bundle: dict[str, Any]) -> dict[str, Any]:
    """The bundle without what legitimately differs between two exports (when, and from where)."""
    return {k: v for k, v in bundle.items() if k not in ("exported_at", "source")}


def _export(database: db.Database, study_id: int) -> dict[str, Any]:
    with database.read() as s:
        bundle = export_study(s, study_id)
    return json.loads(json.dumps(bundle))  # as a file would carry it: JSON types only


def _open(tmp_path: Path, url: str) -> db.Database:
    return open_database(tmp_path, url)


@pytest.mark.parametrize("source", ENGINES)
def test_round_trip_to_the_other_engine_and_back(tmp_path: Path, make_database_url: Callable[[str], str],
                                                 source: str) -> None:
    src = _open(tmp_path, make_database_url(source))
    study_id = build_study(src)
    first = _export(src, study_id)

    dst = _open(tmp_path, make_database_url(OTHER[source]))
    build_study(dst, name="unrelated", salt="b")  # rows first, so the imported ids differ from the source's
    with dst.write() as s:
        new_id = import_study(s, first)
    assert new_id != study_id
    second = _export(dst, new_id)
    assert _comparable(second) == _comparable(first)
    assert second["source"] == {"backend": OTHER[source], "study_id": new_id}

    back = _open(tmp_path, make_database_url(source))
    with back.write() as s:
        back_id = import_study(s, second)
    assert _comparable(_export(back, back_id)) == _comparable(first)

    # The foreign keys point at the new rows: every answer's reader, item and variants are the new study's.
    with dst.read() as s:
        readers = set(s.scalars(select(Reader.id).where(Reader.study_id == new_id)))
        variants = set(s.scalars(select(Variant.id).join(Case).where(Case.study_id == new_id)))
        for r in s.scalars(select(Rating).where(Rating.reader_id.in_(readers))):
            item = s.get(Assignment, r.assignment_id)
            assert item.reader_id == r.reader_id and r.variant_id == item.variant_id and r.variant_id in variants
        for p in s.scalars(select(Preference).where(Preference.reader_id.in_(readers))):
            assert {p.left_variant_id, p.right_variant_id, p.chosen_variant_id} <= variants
        assert s.scalar(select(func.count()).select_from(Rating).where(Rating.reader_id.in_(readers))) == 9
    for d in (src, dst, back):
        d.dispose()


def test_bundle_contents(tmp_path: Path, database_url: str) -> None:
    d = _open(tmp_path, database_url)
    bundle = _export(d, build_study(d))
    d.dispose()
    assert (bundle["format"], bundle["format_version"], bundle["schema_version"]) == (FORMAT, FORMAT_VERSION, 1)
    counts = {t: len(bundle[t]) for t, _, _ in TABLES}
    assert counts == {"cases": 2, "variants": 6, "readers": 2, "assignments": 18, "ratings": 9, "preferences": 2}
    study = bundle["study"]
    assert study["name"] == "pilot" and study["status"] == "closed" and study["options"]["window"] == [40, 400]
    # Datetimes: ISO 8601 in UTC with the offset written out, the instant preserved to the microsecond.
    assert study["created_at"] == "2024-05-01T07:00:00.123456+00:00"
    assert dt.datetime.fromisoformat(study["closed_at"]) == _at(600)
    # Readers: the access-code hash, never a plaintext code (none is stored anywhere).
    assert set(bundle["readers"][0]) == {"id", "label", "code_hash", "seed", "created_at", "last_seen_at"}
    assert bundle["readers"][1]["last_seen_at"] is None
    # Bundle-local ids: 1..n per table; foreign keys use them.
    assert [a["id"] for a in bundle["assignments"]] == list(range(1, 19))
    pair = next(a for a in bundle["assignments"] if a["kind"] == "pair")
    assert pair["left_variant_id"] == 2 and pair["right_variant_id"] == 1 and pair["variant_id"] is None
    assert bundle["ratings"][1]["comment"] == "Rauschen ↑ – ok"


def test_the_format_has_every_column_of_every_table() -> None:
    """A schema change must change the bundle format too (and FORMAT_VERSION with it)."""
    assert set(bundle_columns(Study)) == set(Study.__table__.columns.keys()) - {"id"}
    for _, model, fks in TABLES:
        table = model.__table__
        fk_columns = {fk.parent.name for fk in table.foreign_keys}
        assert set(fks) == fk_columns, f"{table.name}: every foreign key must be remapped"
        study_fks = {c for c, target in fks.items() if target == "study"}
        assert set(bundle_columns(model)) == set(table.columns.keys()) - study_fks


@pytest.mark.parametrize("engine", ENGINES)
def test_duplicates_are_refused(tmp_path: Path, make_database_url: Callable[[str], str], engine: str) -> None:
    d = _open(tmp_path, make_database_url(engine))
    bundle = _export(d, build_study(d))
    with pytest.raises(DuplicateStudyError, match="a study named 'pilot' exists already.*new name"):
        with d.write() as s:
            import_study(s, bundle)
    with pytest.raises(DuplicateStudyError, match="imported here before"):  # a new name, but the same rows
        with d.write() as s:
            import_study(s, bundle, name="pilot 2")
    # Another site's study that only shares the name goes in under a new name.
    other = _open(tmp_path, make_database_url(engine))
    other_bundle = _export(other, build_study(other, salt="c"))
    other.dispose()
    with d.write() as s:
        new_id = import_study(s, other_bundle, name="pilot (site B)")
    with d.read() as s:
        assert s.get(Study, new_id).name == "pilot (site B)"
        assert s.scalar(select(func.count()).select_from(Study)) == 2
    d.dispose()


def _count_studies(database: db.Database) -> int:
    with database.read() as s:
        return s.scalar(select(func.count()).select_from(Study))


@pytest.mark.parametrize("damage,error,match", [
    (lambda b: b.update(format_version=FORMAT_VERSION + 1), BundleVersionError, "format version 2 is not supported"),
    (lambda b: b.update(format="something-else"), BundleVersionError, "not a medenhance-study-bundle"),
    (lambda b: b["cases"][0].pop("width"), BundleError, r"cases\[0\]: missing columns \['width'\]"),
    (lambda b: b["readers"][0].update(extra=1), BundleError, r"unknown columns \['extra'\]"),
    (lambda b: b["ratings"][0].update(assignment_id=999), BundleError, "not a row of the bundle's assignments"),
    (lambda b: b["study"].update(created_at="2024-05-01T07:00:00"), BundleError, "has no UTC offset"),
    (lambda b: b["cases"][0].update(width="64"), BundleError, "is not an integer"),
    (lambda b: b["ratings"][0].update(overall=9), BundleError, "the database refused"),
    (lambda b: b["variants"][1].update(id=1), BundleError, "row ids are not unique"),
    # Limits (issue 36): what SQLite would store and PostgreSQL refuse, and unbounded text or JSON.
    (lambda b: b["study"].update(name="x" * 201), BundleError, "study: name is 201 characters, more than 200"),
    (lambda b: b["ratings"][0].update(comment="=" * 100_001), BundleError, "comment is 100,001 characters"),
    (lambda b: b["study"].update(options={"pad": "x" * 2**20}), BundleError, "options is 1,048,5.. bytes of JSON"),
])
def test_bad_bundles_are_refused_and_leave_nothing(tmp_path: Path, make_database_url: Callable[[str], str],
                                                   damage: Callable[[dict], Any], error: type, match: str) -> None:
    src = _open(tmp_path, make_database_url("sqlite"))
    bundle = _export(src, build_study(src))
    src.dispose()
    damage(bundle)
    dst = _open(tmp_path, make_database_url("sqlite"))
    with pytest.raises(error, match=match):
        with dst.write() as s:
            import_study(s, copy.deepcopy(bundle))
    assert issubclass(error, ValueError)
    assert _count_studies(dst) == 0
    dst.dispose()


def test_refused_import_on_postgresql_leaves_nothing(tmp_path: Path, make_database_url: Callable[[str], str]) -> None:
    """A constraint failing half-way through (after rows were flushed) rolls the whole import back."""
    src = _open(tmp_path, make_database_url("sqlite"))
    bundle = _export(src, build_study(src))
    src.dispose()
    bundle["preferences"][-1]["choice"] = "middle"  # refused by the last table's check constraint
    dst = _open(tmp_path, make_database_url("postgresql"))
    with pytest.raises(BundleError, match="the database refused.*ck_preference_choice"):
        with dst.write() as s:
            import_study(s, bundle)
    assert _count_studies(dst) == 0
    with dst.read() as s:
        assert s.scalar(select(func.count()).select_from(Assignment)) == 0
    dst.dispose()


def test_bundle_files_over_the_size_limit_are_refused_unread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    big = tmp_path / "big.json"
    big.write_text('{"format": "' + "A" * 4096 + '"}')
    monkeypatch.setattr(db.bundle, "MAX_JSON_BYTES", 1024)
    with pytest.raises(BundleError, match="more than the 1,024 a bundle may have"):
        db.bundle.read_bundle_file(big)
    assert db_main(["import", str(big), "--url", f"sqlite:///{tmp_path / 'x.db'}"]) == 2
    assert "more than the 1,024" in capsys.readouterr().err
    monkeypatch.setattr(db.bundle, "MAX_JSON_BYTES", 10_000)
    database = _open(tmp_path, f"sqlite:///{tmp_path / 'y.db'}")
    with pytest.raises(BundleVersionError, match="not a medenhance-study-bundle"):  # read, then refused
        with database.write() as s:
            import_study(s, db.bundle.read_bundle_file(big))
    database.dispose()


def test_cli_export_and_import(tmp_path: Path, make_database_url: Callable[[str], str],
                               capsys: pytest.CaptureFixture[str]) -> None:
    src_url, dst_url = make_database_url("sqlite"), make_database_url("postgresql")
    src = _open(tmp_path, src_url)
    study_id = build_study(src)
    first = _export(src, study_id)
    src.dispose()
    out = tmp_path / "pilot.json"
    assert db_main(["studies", "--url", src_url]) == 0
    assert "1  'pilot'  both, closed, 2 readers, 11 answered items" in capsys.readouterr().out
    assert db_main(["export", str(study_id), "-o", str(out), "--url", src_url]) == 0
    assert db_main(["import", str(out), "--url", dst_url]) == 0  # the empty database gets its tables first
    assert "study id 1" in capsys.readouterr().out
    assert db_main(["import", str(out), "--url", dst_url]) == 2  # the second time: refused, says why
    assert "exists already" in capsys.readouterr().err
    assert db_main(["export", "999", "--url", dst_url]) == 2
    dst = _open(tmp_path, dst_url)
    assert _comparable(_export(dst, 1)) == _comparable(first)
    dst.dispose()
