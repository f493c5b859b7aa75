"""Study bundle files: one reader study, rows and images, in ONE zip to move it between installations.

    python -m studio.study.bundle export --study ID OUT.zip
    python -m studio.study.bundle import IN.zip [--name NEW]

Both use the app's own storage: ``STUDIO_DATA_DIR`` (the images) and ``DATABASE_URL`` (else the
SQLite file of the data directory), so the same commands move a study from a laptop's SQLite file
to a hospital's PostgreSQL server and back.

What the zip holds:

* ``study.json``: the study's rows (:func:`db.bundle.export_study`: design, cases, variants,
  readers with their access-code hashes, assignments, ratings, preferences);
* ``sources/<name>.png`` and ``variants/<name>.png``: every image file the rows name;
* ``manifest.json``: the format and its version, and the SHA-256 of every other member.

Import checks everything before it changes anything: the format version, that the members are
exactly the files the rows name, every SHA-256 (and the zip's own CRCs, which catch truncation),
and that no existing file of the same name differs. The files are then written (same-content
files already present are kept as they are), and the rows are imported in one transaction; if
that fails (e.g. the name is taken), the files written by this import are removed again.

Readers keep their access codes: a reader of the original study signs in to the imported copy with
the same code and goes on where they stopped. Readers added by Hugging Face username get codes
derived from the study id and the server's secret, so on the target they must be added again.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import uuid
import zipfile
import zlib
from pathlib import Path
from typing import Any, BinaryIO

import db
from db.bundle import FORMAT as ROWS_FORMAT
from db.bundle import SUPPORTED_FORMAT_VERSIONS as ROWS_FORMAT_VERSIONS
from studio.study.checks import StudyError
from studio.study.manage import study_id_of
from studio.study.store import StudySettings, StudyStore, open_store

FORMAT = "medenhance-study-zip"
FORMAT_VERSION = 1
SUPPORTED_FORMAT_VERSIONS = (1,)
MANIFEST = "manifest.json"
ROWS = "study.json"
FOLDERS = ("sources", "variants")
_CHUNK = 1 << 20


class StudyBundleError(StudyError):
    """The bundle file cannot be written or imported (message meant for the admin); nothing was changed."""


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _referenced(rows: dict[str, Any]) -> dict[str, str]:
    """Member name -> SHA-256 the rows record, for every image file the study's rows name."""
    files = {f"sources/{c['stored_name']}": c["stored_sha256"] for c in rows.get("cases", [])}
    files.update({f"variants/{v['file_name']}": v["file_sha256"] for v in rows.get("variants", [])})
    return files


def _local_path(store: StudyStore, member: str) -> Path:
    """Where a member lives in ``store``'s data directory (generated names only: ValueError otherwise)."""
    folder, _, name = member.partition("/")
    if folder == "sources":
        return store.source_path(name)
    if folder == "variants":
        return store.variant_path(name)
    raise ValueError(f"not an image member: {member!r}")


def export_bundle(store: StudyStore, study_id: Any, out: str | os.PathLike[str]) -> dict[str, Any]:
    """Write study ``study_id`` (rows and images) to the zip file ``out``; returns the manifest.

    The zip is written to a temporary name next to ``out`` and renamed at the end, so ``out`` is
    either the complete bundle or untouched.

    Raises:
        StudyBundleError: no such study, or an image file is missing or differs from its recorded hash
            (a bundle must never carry a damaged image silently).
    """
    sid = study_id_of(study_id)
    try:
        with store.db.read() as s:
            rows = db.export_study(s, sid)
    except LookupError:
        raise StudyBundleError(f"No study with id {sid}.") from None
    except db.BundleError as e:
        raise StudyBundleError(f"Study {sid} cannot be exported: {e}") from None
    files: dict[str, str] = {}
    for member, recorded in sorted(_referenced(rows).items()):
        path = _local_path(store, member)
        if not path.is_file():
            raise StudyBundleError(f"Study {sid} cannot be exported: its image {member} is missing from "
                                   f"{store.data_dir}.")
        digest = _sha256_file(path)
        if digest != recorded:
            raise StudyBundleError(f"Study {sid} cannot be exported: its image {member} in {store.data_dir} "
                                   "does not match the hash recorded when it was stored (damaged or replaced).")
        files[member] = digest
    rows_bytes = json.dumps(rows, indent=1, sort_keys=True).encode()
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, "study": rows["study"]["name"],
                "exported_at": rows["exported_at"], "rows": {ROWS: hashlib.sha256(rows_bytes).hexdigest()},
                "files": files}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.part")
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr(MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))
            z.writestr(ROWS, rows_bytes)
            for member in files:
                # PNGs are compressed already: stored as they are, deflating them again gains nothing.
                z.write(_local_path(store, member), member, compress_type=zipfile.ZIP_STORED)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return manifest


def _read_json(z: zipfile.ZipFile, member: str) -> tuple[Any, bytes]:
    try:
        data = z.read(member)
    except KeyError:
        raise StudyBundleError(f"Not a study bundle: {member} is missing.") from None
    try:
        return json.loads(data), data
    except (ValueError, UnicodeDecodeError):
        raise StudyBundleError(f"Not a study bundle: {member} is not valid JSON.") from None


def _check_manifest(manifest: Any) -> None:
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise StudyBundleError(f"Not a study bundle ({MANIFEST} is not a {FORMAT} manifest).")
    version = manifest.get("format_version")
    if version not in SUPPORTED_FORMAT_VERSIONS:
        raise StudyBundleError(f"Study bundle format version {version!r} is not supported here (this version reads "
                               f"{', '.join(map(str, SUPPORTED_FORMAT_VERSIONS))}): import it with the MedEnhance "
                               "version that exported it, or a newer one.")
    if not isinstance(manifest.get("files"), dict) or not isinstance(manifest.get("rows"), dict):
        raise StudyBundleError(f"Not a study bundle ({MANIFEST} lists no files).")


def _copy_hashed(src: BinaryIO, dst: Path) -> str:
    h = hashlib.sha256()
    with open(dst, "wb") as f:
        while chunk := src.read(_CHUNK):
            h.update(chunk)
            f.write(chunk)
    return h.hexdigest()


def import_bundle(store: StudyStore, bundle: str | os.PathLike[str], name: str | None = None) -> int:
    """Import the study in the zip file ``bundle`` into ``store``; returns the new study's id.

    Args:
        name: the imported study's name (default: the bundle's); needed when that name is taken.
    Raises:
        StudyBundleError: not a (complete) bundle, an unknown format version, a hash mismatch, an
            existing different file of the same name, or rows the database refuses (name taken,
            imported here before). Nothing is left written in any of these cases.
    """
    if name is not None and not str(name).strip():
        name = None
    staging = Path(tempfile.mkdtemp(prefix=".bundle-import-", dir=store.data_dir))  # same filesystem: rename
    written: list[Path] = []
    try:
        try:
            with zipfile.ZipFile(bundle) as z:
                manifest, _ = _read_json(z, MANIFEST)
                _check_manifest(manifest)
                rows, rows_bytes = _read_json(z, ROWS)
                if hashlib.sha256(rows_bytes).hexdigest() != manifest["rows"].get(ROWS):
                    raise StudyBundleError(f"The bundle is damaged: {ROWS} does not match its SHA-256 in {MANIFEST}.")
                if not isinstance(rows, dict) or rows.get("format") != ROWS_FORMAT or \
                        rows.get("format_version") not in ROWS_FORMAT_VERSIONS:
                    found = rows.get("format_version") if isinstance(rows, dict) else None
                    raise StudyBundleError(f"The bundle's rows are in format version {found!r}, which this version "
                                           f"does not read ({', '.join(map(str, ROWS_FORMAT_VERSIONS))}).")
                try:
                    wanted = _referenced(rows)
                except (TypeError, KeyError, AttributeError):
                    raise StudyBundleError(f"Not a study bundle: {ROWS} has malformed cases or variants.") from None
                listed = manifest["files"]
                if set(listed) != set(wanted):
                    extra, missing = sorted(set(listed) - set(wanted)), sorted(set(wanted) - set(listed))
                    raise StudyBundleError(f"The bundle's manifest does not match its rows (files not named by the "
                                           f"rows: {extra[:3]}, files the rows name but not listed: {missing[:3]}).")
                staged: dict[str, Path] = {}
                for i, member in enumerate(sorted(listed)):
                    try:
                        target = _local_path(store, member)
                    except ValueError:
                        raise StudyBundleError(f"The bundle names a file that is not a generated image name: "
                                               f"{member!r}.") from None
                    try:
                        src = z.open(member)
                    except KeyError:
                        raise StudyBundleError(f"The bundle is incomplete: {member} is missing.") from None
                    part = staging / f"{i}.png"
                    with src:
                        digest = _copy_hashed(src, part)  # the zip's CRC check raises BadZipFile if cut short
                    if digest != listed[member] or digest != wanted[member]:
                        raise StudyBundleError(f"The bundle is damaged: {member} does not match its SHA-256.")
                    if target.exists() and _sha256_file(target) != digest:
                        raise StudyBundleError(f"Refusing to overwrite {member} in {store.data_dir}: a different "
                                               "file of that name is there already.")
                    staged[member] = part
        except (zipfile.BadZipFile, EOFError, zlib.error) as e:  # zlib: a cut-short deflated member
            raise StudyBundleError(f"Not a readable study bundle (truncated or not a zip file: {e}).") from None
        except OSError as e:
            raise StudyBundleError(f"Cannot read the study bundle: {e.strerror or e}.") from None
        # Everything checked: the files first (the rows must never name an image that is not there) ...
        for member, part in staged.items():
            target = _local_path(store, member)
            if target.exists():  # the same content (checked above): another copy of this study, kept as it is
                continue
            _place(part, target)
            written.append(target)
        # ... then the rows, in one transaction.
        try:
            with store.db.write() as s:
                return db.import_study(s, rows, name=name)
        except db.BundleError as e:
            raise StudyBundleError(f"The study was not imported: {e}") from None
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _place(part: Path, target: Path) -> None:
    """Put the staged file at ``target`` without ever replacing a file that appeared there meanwhile."""
    try:
        os.link(part, target)  # atomic, and FileExistsError rather than an overwrite
    except FileExistsError:
        raise
    except OSError:  # a filesystem without hard links: exclusive create, then copy
        with open(part, "rb") as src, open(target, "xb") as dst:
            shutil.copyfileobj(src, dst, _CHUNK)


def main(argv: list[str] | None = None) -> int:
    """``python -m studio.study.bundle export|import``: see the module docstring."""
    ap = argparse.ArgumentParser(prog="python -m studio.study.bundle",
                                 description="Export a reader study (rows and images) to one zip file, or import "
                                             "one. Uses STUDIO_DATA_DIR and DATABASE_URL like the app.")
    sub = ap.add_subparsers(dest="command", required=True)
    exp = sub.add_parser("export", help="write a study to a zip file")
    exp.add_argument("--study", required=True, help="the study id (python -m db studies lists them)")
    exp.add_argument("out", type=Path, help="the zip file to write")
    imp = sub.add_parser("import", help="import a study from a zip file (as a new study)")
    imp.add_argument("bundle", type=Path, help="the zip file written by export")
    imp.add_argument("--name", default=None, help="a new name for the study (needed when its name is taken)")
    args = ap.parse_args(argv)
    try:
        store = open_store(StudySettings.from_env())
    except db.SchemaVersionError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    try:
        where = f"{store.db.describe()}, images in {store.data_dir}"
        if args.command == "export":
            manifest = export_bundle(store, args.study, args.out)
            print(f"study {args.study} ({manifest['study']!r}): {len(manifest['files'])} images and its rows "
                  f"from {where} -> {args.out}")
        else:
            new_id = import_bundle(store, args.bundle, args.name)
            print(f"{args.bundle} -> study {new_id} in {where}")
        return 0
    except StudyError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        store.close()


if __name__ == "__main__":
    sys.exit(main())
