"""Study bundle files (studio.study.bundle): one zip with a study's rows and images, between engines.

* round trip SQLite -> PostgreSQL -> SQLite: images byte for byte and rows identical (modulo ids),
  and a reader of the original study signs in to each copy and goes on where they stopped;
* bad bundles (a wrong hash, an unknown format version, a truncated or foreign file, a clash with
  an existing file, a refused row import) are refused with a clear error and leave nothing behind;
* the CLI (``python -m studio.study.bundle``) and the admin endpoints (``/admin_export_bundle``,
  ``/admin_import_bundle``, admin password checked).

Images: tiny generated PNGs; classical models only.
"""

from __future__ import annotations

import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported

import hashlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import tracemalloc  # noqa: E402
import zipfile  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable  # noqa: E402

import pytest  # noqa: E402
from study_helpers import ADMIN, SCORES, png_cases  # noqa: E402

import db  # noqa: E402
from studio import study  # noqa: E402
from studio.study import bundle, reading  # noqa: E402
from studio.study.bundle import StudyBundleError  # noqa: E402
from studio.study.store import StudySettings, StudyStore, open_store  # noqa: E402


def _store(tmp_path: Path, name: str, url: str | None) -> StudyStore:
    return open_store(StudySettings(data_dir=tmp_path / name, database_url=url, admin_password=ADMIN))


def _images(store: StudyStore) -> dict[str, bytes]:
    return {f"{d}/{p.name}": p.read_bytes() for d in bundle.FOLDERS for p in sorted((store.data_dir / d).iterdir())}


def _rows(store: StudyStore, study_id: int) -> dict[str, Any]:
    """The study's rows with bundle-local ids: equal for two copies of one study, whatever their ids."""
    with store.db.read() as s:
        rows = db.export_study(s, study_id)
    rows.pop("exported_at")
    rows.pop("source")
    return rows


def _answer(store: StudyStore, code: str, n: int) -> None:
    for _ in range(n):
        v = reading.next_item(store, code)
        if v.kind == "likert":
            reading.submit_rating(store, code, v.item_key, SCORES)
        else:
            reading.submit_preference(store, code, v.item_key, "left", 4)


def _pilot(store: StudyStore, tmp_path: Path, name: str = "pilot") -> study.CreatedStudy:
    return study.create_study(store, study.StudyDesign(name=name, design="both", models=("clahe",), readers=2, seed=3),
                              png_cases(tmp_path / f"img-{name}", 2))


def _state(store: StudyStore) -> tuple[dict[str, bytes], list[dict[str, Any]], list[str]]:
    """What a refused import must leave unchanged: the images, the studies, and no staging leftovers."""
    return _images(store), study.list_studies(store), sorted(p.name for p in store.data_dir.iterdir())


def test_round_trip_sqlite_postgresql_sqlite(tmp_path: Path, make_database_url: Callable[[str], str]) -> None:
    laptop = _store(tmp_path, "laptop", make_database_url("sqlite"))
    server = _store(tmp_path, "server", make_database_url("postgresql"))
    back = _store(tmp_path, "back", make_database_url("sqlite"))
    try:
        created = _pilot(laptop, tmp_path)
        r1, r2 = created.codes["R01"], created.codes["R02"]
        _answer(laptop, r1, 3)
        where_r1 = reading.next_item(laptop, r1)
        manifest = bundle.export_bundle(laptop, created.study_id, tmp_path / "pilot.zip")
        assert len(manifest["files"]) == 2 * (1 + 2)  # 2 cases, 2 variants each (original, clahe)

        # Laptop -> server: another engine, other ids (a study exists there already).
        _pilot(server, tmp_path, name="unrelated")
        before = _images(server)
        on_server = bundle.import_bundle(server, tmp_path / "pilot.zip", keep_codes=True).study_id
        assert on_server != created.study_id
        assert _rows(server, on_server) == _rows(laptop, created.study_id)
        assert {k: v for k, v in _images(server).items() if k not in before} == _images(laptop)
        view = reading.next_item(server, r1)  # the reader's own code, where they stopped
        assert (view.item_key, view.answered, view.number) == (where_r1.item_key, 3, 4)
        assert reading.submit_rating(server, r1, view.item_key, SCORES)["duplicate"] is False \
            if view.kind == "likert" else reading.submit_preference(server, r1, view.item_key, "right", 2)["duplicate"] is False
        _answer(server, r2, 2)
        assert study.study_progress(server, on_server)["ratings"] + study.study_progress(server, on_server)["preferences"] == 6

        # Server -> a fresh laptop: what the server added comes along.
        bundle.export_bundle(server, on_server, tmp_path / "from-server.zip")
        home = bundle.import_bundle(back, tmp_path / "from-server.zip", keep_codes=True).study_id
        assert _rows(back, home) == _rows(server, on_server)
        assert _images(back) == _images(laptop)  # the same files, byte for byte
        assert reading.next_item(back, r1).answered == 4 and reading.next_item(back, r2).answered == 2
        # The originals are untouched by all of this.
        assert reading.next_item(laptop, r1).answered == 3
    finally:
        for s in (laptop, server, back):
            s.close()


def _rewrite(src: Path, dst: Path, change: Callable[[str, bytes], bytes | None]) -> None:
    """Copy the zip ``src`` to ``dst`` with each member's bytes passed through ``change`` (None: dropped)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = change(info.filename, zin.read(info.filename))
            if data is not None:
                zout.writestr(info.filename, data)


def _with_rows(change: Callable[[dict[str, Any]], None]) -> Callable[[str, bytes], bytes]:
    """A ``_rewrite`` change editing study.json but not its hash in the manifest (a hand edit)."""

    def fn(member: str, data: bytes) -> bytes:
        if member == bundle.ROWS:
            rows = json.loads(data)
            change(rows)
            return json.dumps(rows).encode()
        return data

    return fn


def test_bad_bundles_are_refused_and_leave_nothing(tmp_path: Path, database_url: str) -> None:
    source = _store(tmp_path, "source", None)
    target = _store(tmp_path, "target", database_url)
    try:
        created = _pilot(source, tmp_path)
        good = tmp_path / "good.zip"
        manifest = bundle.export_bundle(source, created.study_id, good)
        a_variant = next(m for m in manifest["files"] if m.startswith("variants/"))
        _pilot(target, tmp_path, name="resident")  # the target holds a study of its own
        before = _state(target)

        bad: dict[str, tuple[Path, str]] = {}

        def make(name: str, match: str, change: Callable[[str, bytes], bytes | None] | None = None,
                 raw: bytes | None = None) -> None:
            path = tmp_path / f"{name}.zip"
            if raw is not None:
                path.write_bytes(raw)
            else:
                assert change is not None
                _rewrite(good, path, change)
            bad[name] = (path, match)

        make("wrong-hash", f"damaged: {a_variant} does not match its SHA-256",
             lambda m, d: d + b"tampered" if m == a_variant else d)
        make("unknown-version", "format version 99 is not supported",
             lambda m, d: json.dumps({**json.loads(d), "format_version": 99}).encode() if m == bundle.MANIFEST else d)
        make("truncated", "truncated or not a zip", raw=good.read_bytes()[: good.stat().st_size // 2])
        make("not-a-zip", "truncated or not a zip", raw=b"PK\x03\x04 certainly not a zip")
        make("missing-image", f"incomplete: {a_variant} is missing", lambda m, d: None if m == a_variant else d)
        make("rows-edited", f"{bundle.ROWS} does not match its SHA-256",
             _with_rows(lambda rows: rows["readers"].pop()))
        # A well-formed bundle (hashes updated) whose rows are in a format version this code does not read.
        path = tmp_path / "rows-v99.zip"
        with zipfile.ZipFile(good) as zin:
            rows = json.loads(zin.read(bundle.ROWS))
            rows["format_version"] = 99
            rows_bytes = json.dumps(rows).encode()
            man = json.loads(zin.read(bundle.MANIFEST))
            man["rows"][bundle.ROWS] = hashlib.sha256(rows_bytes).hexdigest()
            with zipfile.ZipFile(path, "w") as zout:
                for info in zin.infolist():
                    data = {bundle.MANIFEST: json.dumps(man).encode(), bundle.ROWS: rows_bytes}.get(
                        info.filename, zin.read(info.filename))
                    zout.writestr(info.filename, data)
        bad["rows-v99"] = (path, "rows are in format version 99")

        for name, (path, match) in bad.items():
            with pytest.raises(StudyBundleError, match=match):
                bundle.import_bundle(target, path)
            assert _state(target) == before, name  # no image, no study, no staging folder left

        # A different file under one of the bundle's names is never overwritten.
        clash = target.variant_path(a_variant.split("/")[1])
        clash.write_bytes(b"another image")
        with pytest.raises(StudyBundleError, match="Refusing to overwrite"):
            bundle.import_bundle(target, good)
        assert clash.read_bytes() == b"another image"
        clash.unlink()
        assert _state(target) == before

        # The rows refused after the files were written (the name is taken): the files go again.
        with target.db.write() as s:
            s.get(db.Study, before[1][0]["study_id"]).name = "pilot"
        with pytest.raises(StudyBundleError, match="exists already.*new name"):
            bundle.import_bundle(target, good)
        assert _images(target) == before[0]
        new_id = bundle.import_bundle(target, good, name="pilot (site B)", keep_codes=True).study_id
        assert _rows(target, new_id)["study"]["name"] == "pilot (site B)"
        imported = _images(target)
        # Imported twice: refused by the rows; the first copy's files (same content) stay.
        with pytest.raises(StudyBundleError, match="imported here before"):
            bundle.import_bundle(target, good, name="pilot 3")
        assert _images(target) == imported
        assert reading.next_item(target, created.codes["R01"]).status == "item"
    finally:
        source.close()
        target.close()


def test_cli_export_and_import(tmp_path: Path, make_database_url: Callable[[str], str],
                               monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    source = _store(tmp_path, "laptop", None)
    try:
        created = _pilot(source, tmp_path)
    finally:
        source.close()
    monkeypatch.setenv("STUDIO_ADMIN_PASSWORD", ADMIN)
    monkeypatch.setenv("STUDIO_DATA_DIR", str(tmp_path / "laptop"))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    out = tmp_path / "pilot.zip"
    assert bundle.main(["export", "--study", str(created.study_id), str(out)]) == 0
    assert "6 images" in capsys.readouterr().out
    assert bundle.main(["export", "--study", "999", str(tmp_path / "none.zip")]) == 1
    assert "No study with id 999" in capsys.readouterr().err and not (tmp_path / "none.zip").exists()
    url = make_database_url("postgresql")
    monkeypatch.setenv("STUDIO_DATA_DIR", str(tmp_path / "server"))
    monkeypatch.setenv("DATABASE_URL", url)
    assert bundle.main(["import", str(out), "--name", "pilot on the server", "--keep-codes"]) == 0
    assert "-> study 1" in capsys.readouterr().out
    assert bundle.main(["import", str(out)]) == 1
    assert "imported here before" in capsys.readouterr().err
    server = _store(tmp_path, "server", url)
    try:
        assert study.list_studies(server)[0]["name"] == "pilot on the server"
        assert reading.next_item(server, created.codes["R02"]).number == 1
    finally:
        server.close()


@pytest.mark.slow
def test_admin_endpoints_export_and_import_bundles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    import studio
    from bench.servers import free_port

    demos = []

    def serve(name: str) -> tuple[Client, StudyStore]:
        monkeypatch.setenv("STUDIO_DATA_DIR", str(tmp_path / name))
        monkeypatch.setenv("STUDIO_ADMIN_PASSWORD", ADMIN)
        monkeypatch.delenv("DATABASE_URL", raising=False)
        monkeypatch.delenv("STUDIO_IMPORT_ROOT", raising=False)
        demo = studio.build_app()
        demo.queue()
        demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), quiet=True)
        demos.append(demo)
        client = Client(demo.local_url, verbose=False, analytics_enabled=False,
                        download_files=str(tmp_path / f"{name}-downloads"))
        return client, _store(tmp_path, name, None)

    stores = []
    try:
        one, one_store = serve("one")
        two, two_store = serve("two")
        stores += [one_store, two_store]
        created = _pilot(one_store, tmp_path)
        for pw in ("", "wrong", created.codes["R01"]):
            with pytest.raises(AppError, match="Wrong admin password"):
                one.predict(pw, created.study_id, api_name="/admin_export_bundle")
        path = one.predict(ADMIN, created.study_id, api_name="/admin_export_bundle")
        with pytest.raises(AppError, match="No study with id 42"):
            one.predict(ADMIN, 42, api_name="/admin_export_bundle")
        with pytest.raises(AppError, match="Wrong admin password"):
            two.predict("wrong", handle_file(path), "", api_name="/admin_import_bundle")
        assert study.list_studies(two_store) == []
        md, new_id = two.predict(ADMIN, handle_file(path), "", True, api_name="/admin_import_bundle")
        assert int(new_id) == 1 and "pilot" in md and "2 readers" in md and "old codes" in md
        assert _rows(two_store, 1) == _rows(one_store, created.study_id)
        assert _images(two_store) == _images(one_store)
        with pytest.raises(AppError, match="imported here before"):
            two.predict(ADMIN, handle_file(path), "again", api_name="/admin_import_bundle")
        # Into a third installation without keeping the codes: new ones, shown once in the answer.
        three, three_store = serve("three")
        stores.append(three_store)
        md, _ = three.predict(ADMIN, handle_file(path), "", api_name="/admin_import_bundle")
        shown = re.findall(r"`([A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4})`", md)
        assert len(shown) == 2 and not set(shown) & set(created.codes.values())
        assert reading.next_item(three_store, shown[0]).status == "item"
        junk = tmp_path / "junk.zip"
        junk.write_bytes(b"nothing")
        with pytest.raises(AppError, match="truncated or not a zip"):
            two.predict(ADMIN, handle_file(str(junk)), "", api_name="/admin_import_bundle")
    finally:
        for d in demos:
            d.close()
        for s in stores:
            s.close()


# --- reader codes re-issued on import; limits and image checks (issue 36) ---------------------------

def test_import_reissues_reader_codes_unless_kept(tmp_path: Path) -> None:
    source, target = _store(tmp_path, "source", None), _store(tmp_path, "target", None)
    try:
        created = _pilot(source, tmp_path)
        _answer(source, created.codes["R01"], 2)
        bundle.export_bundle(source, created.study_id, tmp_path / "pilot.zip")
        imported = bundle.import_bundle(target, tmp_path / "pilot.zip")
        assert set(imported.codes) == {"R01", "R02"} and not set(imported.codes.values()) & set(created.codes.values())
        for old in created.codes.values():  # whoever holds the bundle (it carries the old hashes) cannot sign in
            with pytest.raises(reading.AccessError):
                reading.next_item(target, old)
        view = reading.next_item(target, imported.codes["R01"])
        assert view.answered == 2 and view.number == 3  # the reader goes on where they stopped, with the new code
        assert reading.next_item(source, created.codes["R01"]).answered == 2  # the source keeps its codes
        kept = bundle.import_bundle(_store(tmp_path, "kept", None), tmp_path / "pilot.zip", keep_codes=True)
        assert kept.codes == {}
    finally:
        source.close()
        target.close()


def _rebuild(good: Path, dst: Path, replace: dict[str, bytes], add: dict[str, bytes] | None = None) -> None:
    """A copy of the bundle ``good`` with members replaced and every hash updated (a consistent fake)."""
    with zipfile.ZipFile(good) as z:
        members = {i.filename: z.read(i.filename) for i in z.infolist()}
    members.update(replace)
    man, rows = json.loads(members[bundle.MANIFEST]), json.loads(members[bundle.ROWS])
    for member, data in replace.items():
        digest = hashlib.sha256(data).hexdigest()
        man["files"][member] = digest
        folder, name = member.split("/")
        for row in rows["cases"] if folder == "sources" else rows["variants"]:
            if row.get("stored_name", row.get("file_name")) == name:
                row["stored_sha256" if folder == "sources" else "file_sha256"] = digest
    members[bundle.ROWS] = json.dumps(rows).encode()
    man["rows"][bundle.ROWS] = hashlib.sha256(members[bundle.ROWS]).hexdigest()
    members[bundle.MANIFEST] = json.dumps(man).encode()
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in {**members, **(add or {})}.items():
            z.writestr(name, data)


def _lie_about_size(path: Path, member: str, size: int) -> None:
    """Patch the zip so ``member``'s local and central headers declare ``size`` uncompressed bytes."""
    data = bytearray(path.read_bytes())
    name = member.encode()
    for sig, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):  # local header, central directory entry
        at = 0
        while (at := data.find(sig, at)) >= 0:
            name_at = at + (30 if sig == b"PK\x03\x04" else 46)
            if data[name_at:name_at + len(name)] == name:
                data[at + offset:at + offset + 4] = size.to_bytes(4, "little")
            at += 4
    path.write_bytes(bytes(data))


def _peak_mib(fn: Callable[[], Any]) -> float:
    """Peak memory traced while ``fn`` runs (it must raise StudyBundleError)."""
    tracemalloc.start()
    try:
        with pytest.raises(StudyBundleError) as info:
            fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    _peak_mib.message = str(info.value)  # type: ignore[attr-defined]
    return peak / 2**20


def test_bundle_bombs_are_refused_before_much_is_read_or_written(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    source, target = _store(tmp_path, "source", None), _store(tmp_path, "target", None)
    try:
        created = _pilot(source, tmp_path)
        good = tmp_path / "good.zip"
        manifest = bundle.export_bundle(source, created.study_id, good)
        a_variant = next(m for m in manifest["files"] if m.startswith("variants/"))
        before = _state(target)

        # manifest.json that unpacks to 40 MiB (deflated to ~40 kB): refused from the zip directory, unread.
        bomb = tmp_path / "manifest-bomb.zip"
        with zipfile.ZipFile(good) as zin, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zout:
            for info in zin.infolist():
                data = zin.read(info.filename)
                if info.filename == bundle.MANIFEST:
                    data = b'{"format": "' + b"A" * (40 * 2**20) + b'"}'
                zout.writestr(info.filename, data)
        assert bomb.stat().st_size < 2**20
        peak = _peak_mib(lambda: bundle.import_bundle(target, bomb))
        assert "manifest.json would unpack to 40.0 MiB, more than the 32.0 MiB allowed" in _peak_mib.message
        assert peak < 4, peak

        # The same bomb declaring 300 bytes in both headers: streamed, cut at the declared size, refused.
        _lie_about_size(bomb, bundle.MANIFEST, 300)
        peak = _peak_mib(lambda: bundle.import_bundle(target, bomb))
        assert "truncated or not a zip" in _peak_mib.message or "declared size" in _peak_mib.message
        assert peak < 4, peak

        # An image that unpacks to 16 MiB under a 1 MiB image limit: refused from the directory.
        monkeypatch.setattr(bundle, "MAX_IMAGE_BYTES", 2**20)
        image_bomb = tmp_path / "image-bomb.zip"
        _rebuild(good, image_bomb, {a_variant: b"\0" * (16 * 2**20)})
        with pytest.raises(StudyBundleError, match=f"{a_variant} would unpack to 16.0 MiB, more than the 1.0 MiB"):
            bundle.import_bundle(target, image_bomb)
        # ... and declaring 4 kB: the copy stops at the declared size (measured), then the CRC refuses it.
        _lie_about_size(image_bomb, a_variant, 4096)
        staged: list[int] = []
        real_copy = bundle._copy_hashed

        def measured(src: Any, dst: Path, info: zipfile.ZipInfo) -> str:
            try:
                return real_copy(src, dst, info)
            finally:
                staged.append(dst.stat().st_size if dst.exists() else 0)

        monkeypatch.setattr(bundle, "_copy_hashed", measured)
        with pytest.raises(StudyBundleError, match="truncated or not a zip|declared size"):
            bundle.import_bundle(target, image_bomb)
        assert staged and max(staged) <= 4096
        assert _state(target) == before  # nothing imported, no staging folder left

        # Too many members (counted from the end record, before zipfile reads the directory), a member
        # no bundle has, and a disk too small for what the directory declares.
        monkeypatch.setattr(bundle, "MAX_MEMBERS", 3)
        with pytest.raises(StudyBundleError, match="has 8 members, more than the 3"):
            bundle.import_bundle(target, good)
        monkeypatch.setattr(bundle, "MAX_MEMBERS", 100_000)
        extra = tmp_path / "extra.zip"
        _rebuild(good, extra, {}, add={"../../evil.sh": b"#!/bin/sh"})
        with pytest.raises(StudyBundleError, match="is not a member a study bundle has"):
            bundle.import_bundle(target, extra)
        monkeypatch.setattr(bundle.shutil, "disk_usage", lambda _p: shutil_usage(free=10 * 2**20))
        with pytest.raises(StudyBundleError, match="Not enough disk space"):
            bundle.import_bundle(target, good)
        monkeypatch.undo()
        assert _state(target) == before
    finally:
        source.close()
        target.close()


def shutil_usage(free: int) -> Any:
    import shutil

    return shutil._ntuple_diskusage(total=free * 2, used=free, free=free)  # type: ignore[attr-defined]


def test_images_must_be_the_pngs_they_claim(tmp_path: Path) -> None:
    from PIL import Image

    source, target = _store(tmp_path, "source", None), _store(tmp_path, "target", None)
    try:
        created = _pilot(source, tmp_path)
        good = tmp_path / "good.zip"
        manifest = bundle.export_bundle(source, created.study_id, good)
        a_variant = next(m for m in manifest["files"] if m.startswith("variants/"))
        a_source = next(m for m in manifest["files"] if m.startswith("sources/"))
        png = source.variant_path(a_variant.split("/")[1]).read_bytes()
        before = _state(target)

        def png_of(size: tuple[int, int], mode: str = "L") -> bytes:
            buf = io.BytesIO()
            Image.new(mode, size, 128).save(buf, format="PNG")
            return buf.getvalue()

        w, h = Image.open(io.BytesIO(png)).size
        cases = {
            "not-a-png": ({a_variant: b"\x00" * 5000}, "is not a PNG file"),
            "trailing-data": ({a_variant: png + b"<script>evil()</script>"}, "has data after its end"),
            "jpeg-named-png": ({a_variant: _jpeg(w, h)}, "is not a PNG file"),
            "other-size": ({a_variant: png_of((w + 2, h))}, "differ in size"),
            "wrong-mode": ({a_variant: png_of((w, h), "RGBA")}, "is a RGBA image"),
            "source-size": ({a_source: png_of((3, 3), "I;16")}, "its row says"),
            "truncated-png": ({a_variant: png[:-40] + png[-12:]}, "cannot be decoded"),
        }
        for name, (replace, match) in cases.items():
            path = tmp_path / f"{name}.zip"
            _rebuild(good, path, replace)
            with pytest.raises(StudyBundleError, match=match):
                bundle.import_bundle(target, path)
            assert _state(target) == before, name
        # The untouched bundle still imports (the checks pass on what export writes).
        assert bundle.import_bundle(target, good).study_id
    finally:
        source.close()
        target.close()


def _jpeg(w: int, h: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (w, h), 90).save(buf, format="JPEG")
    return buf.getvalue()
