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
that every image decodes as the PNG it claims to be (and a case's variants share one size), and
that no existing file of the same name differs. The files are then written (same-content
files already present are kept as they are), and the rows are imported in one transaction; if
that fails (e.g. the name is taken), the files written by this import are removed again.

Limits (a zip bomb is refused before more than a bounded amount is read or written): at most
:data:`MAX_MEMBERS` members; each member's uncompressed size at most :data:`MAX_MANIFEST_BYTES`
(``manifest.json``), :data:`MAX_ROWS_BYTES` (``study.json``) or :data:`MAX_IMAGE_BYTES` (an image),
and all together at most :data:`MAX_TOTAL_BYTES` and what the disk has free. Sizes are checked in
the zip's directory before anything is read, and again while each member is streamed (a member
whose data inflates beyond its declared size is cut there and refused). Images are decoded within
the app's pixel limit (``MEDENHANCE_MAX_PIXELS``).

Reader codes are **re-issued** on import: whoever holds the bundle (it carries the codes' hashes) cannot
sign in to the imported copy, and the new codes are shown once to the admin who imported it. With
``keep_codes`` (``--keep-codes``, the admin tab's checkbox) readers keep their old codes and go on
where they stopped. Readers added by Hugging Face username get codes derived from the study id and
the server's secret, so on the target they sign in with a re-issued code or must be added again.
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
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from PIL import Image

import db
from db.bundle import FORMAT as ROWS_FORMAT
from db.bundle import MAX_JSON_BYTES
from db.bundle import SUPPORTED_FORMAT_VERSIONS as ROWS_FORMAT_VERSIONS
from models.io.limits import max_pixels
from studio.study.auth import hash_code, new_access_code
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

# Import limits (see the module docstring). A study of 1000 cases with 10 variants each is ~11,000
# members and an 1.2 MB manifest; a 2048² variant PNG is at most ~12 MB, a 16-bit source of the
# largest image the app reads (80 Mpx) ~160 MB.
MAX_MEMBERS = 100_000
MAX_MANIFEST_BYTES = 32 * 2**20
MAX_ROWS_BYTES = MAX_JSON_BYTES  # 256 MiB: the db package's limit on a bundle's rows
MAX_IMAGE_BYTES = 256 * 2**20
MAX_TOTAL_BYTES = 64 * 2**30
DISK_MARGIN_BYTES = 256 * 2**20  # left free on the data disk after an import
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # the last chunk; nothing may follow it
# What the app writes: 16-bit (or 8-bit) grayscale and 8-bit colour sources, 8-bit display variants.
SOURCE_MODES = ("I;16", "I;16B", "I", "L", "RGB")
VARIANT_MODES = ("L", "RGB")


class StudyBundleError(StudyError):
    """The bundle file cannot be written or imported (message meant for the admin); nothing was changed."""


@dataclass(frozen=True)
class ImportedStudy:
    """What :func:`import_bundle` did.

    Attributes:
        study_id: the new study's id.
        codes: {reader label: new access code}, shown once (empty when the old codes were kept).
    """

    study_id: int
    codes: dict[str, str] = field(default_factory=dict)


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


def _size(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB" if n >= 2**20 else f"{n:,} bytes"


def _member_limit(name: str) -> int | None:
    """The uncompressed size limit of a member called ``name``; None: not a member a bundle has."""
    if name == MANIFEST:
        return MAX_MANIFEST_BYTES
    if name == ROWS:
        return MAX_ROWS_BYTES
    folder, _, rest = name.partition("/")
    if folder in FOLDERS and rest and "/" not in rest:
        return MAX_IMAGE_BYTES
    return None


def _declared_members(path: str | os.PathLike[str]) -> int | None:
    """The member count in a zip's end-of-central-directory record (None: no such record).

    Read before ``zipfile`` parses the directory, which would hold every entry in memory: a crafted
    zip can declare millions of tiny entries.
    """
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        tail_start = max(0, size - (22 + 65535 + 20))  # the record, its longest comment, a zip64 locator
        f.seek(tail_start)
        tail = f.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < 22:
        return None
    entries = int.from_bytes(tail[at + 10:at + 12], "little")
    locator = at - 20
    if entries == 0xFFFF and locator >= 0 and tail[locator:locator + 4] == b"PK\x06\x07":
        with open(path, "rb") as f:  # zip64: the count is in the zip64 record the locator points at
            f.seek(int.from_bytes(tail[locator + 8:locator + 16], "little"))
            record = f.read(56)
        if record[:4] == b"PK\x06\x06" and len(record) == 56:
            entries = int.from_bytes(record[32:40], "little")
    return entries


def _check_directory(z: zipfile.ZipFile, free_bytes: int) -> dict[str, zipfile.ZipInfo]:
    """Every member checked from the zip's directory alone (nothing is read yet): name -> entry."""
    infos = z.infolist()
    if len(infos) > MAX_MEMBERS:
        raise StudyBundleError(f"Refusing the bundle: it has {len(infos):,} members, more than the "
                               f"{MAX_MEMBERS:,} a study bundle may have.")
    members: dict[str, zipfile.ZipInfo] = {}
    total = 0
    for info in infos:
        name = info.filename
        if name.endswith("/") and info.file_size == 0:  # a folder entry (some zip tools add them)
            continue
        limit = _member_limit(name)
        if limit is None:
            raise StudyBundleError(f"Refusing the bundle: {name[:80]!r} is not a member a study bundle has.")
        if name in members:
            raise StudyBundleError(f"Refusing the bundle: {name} is in it twice.")
        if info.flag_bits & 0x1:
            raise StudyBundleError(f"Refusing the bundle: {name} is encrypted.")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise StudyBundleError(f"Refusing the bundle: {name} uses a compression this version does not read.")
        if info.file_size > limit:
            raise StudyBundleError(f"Refusing the bundle: {name} would unpack to {_size(info.file_size)}, more "
                                   f"than the {_size(limit)} allowed.")
        total += info.file_size
        members[name] = info
    if total > MAX_TOTAL_BYTES:
        raise StudyBundleError(f"Refusing the bundle: it would unpack to {_size(total)}, more than the "
                               f"{_size(MAX_TOTAL_BYTES)} allowed.")
    if total > free_bytes - DISK_MARGIN_BYTES:
        raise StudyBundleError(f"Not enough disk space to import the bundle: it unpacks to {_size(total)}, "
                               f"{_size(max(0, free_bytes))} are free.")
    return members


def _read_limited(z: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes:
    """A member's bytes, streamed: never more than ``limit`` (or its declared size) read."""
    with z.open(info) as f:
        data = f.read(min(limit, info.file_size) + 1)
    if len(data) != info.file_size:
        raise StudyBundleError(f"Refusing the bundle: {info.filename} does not unpack to its declared size.")
    return data


def _read_json(z: zipfile.ZipFile, members: dict[str, zipfile.ZipInfo], member: str) -> tuple[Any, bytes]:
    info = members.get(member)
    if info is None:
        raise StudyBundleError(f"Not a study bundle: {member} is missing.")
    data = _read_limited(z, info, _member_limit(member) or 0)
    try:
        return json.loads(data), data
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise StudyBundleError(f"Not a study bundle: {member} is not valid JSON.") from None


def _check_png(path: Path, member: str, modes: tuple[str, ...]) -> tuple[int, int]:
    """Decode the staged image ``path``: the PNG it claims to be, within the pixel limit; returns (w, h)."""
    with open(path, "rb") as f:
        head = f.read(len(PNG_SIGNATURE))
        f.seek(max(0, os.fstat(f.fileno()).st_size - len(PNG_IEND)))
        tail = f.read()
    if head != PNG_SIGNATURE or tail != PNG_IEND:
        raise StudyBundleError(f"Refusing the bundle: {member} is not a PNG file (or has data after its end).")
    try:
        with Image.open(path, formats=["PNG"]) as im:
            w, h = im.size
            if w * h > max_pixels():
                raise StudyBundleError(f"Refusing the bundle: {member} is {w}x{h} pixels, more than the "
                                       f"{max_pixels():,} this server reads (MEDENHANCE_MAX_PIXELS).")
            if im.mode not in modes:
                raise StudyBundleError(f"Refusing the bundle: {member} is a {im.mode} image; study images are "
                                       f"{', '.join(modes)}.")
            im.load()  # the whole image decodes (truncated or corrupt data raise here)
    except StudyBundleError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise StudyBundleError(f"Refusing the bundle: {member} cannot be decoded as a PNG ({e}).") from None
    return w, h


def _check_images(rows: dict[str, Any], sizes: dict[str, tuple[int, int]]) -> None:
    """Each source has its case's recorded size, and the variants of a case share one size (blinding)."""
    try:
        cases = {c["id"]: c for c in rows["cases"]}
        for c in cases.values():
            got, recorded = sizes[f"sources/{c['stored_name']}"], (c["width"], c["height"])
            if got != recorded:
                raise StudyBundleError(f"Refusing the bundle: the source image of case {c.get('label')!r} is "
                                       f"{got[0]}x{got[1]}, its row says {recorded[0]}x{recorded[1]}.")
        per_case: dict[Any, set[tuple[int, int]]] = defaultdict(set)
        for v in rows["variants"]:
            per_case[v["case_id"]].add(sizes[f"variants/{v['file_name']}"])
    except (TypeError, KeyError, AttributeError):
        raise StudyBundleError(f"Not a study bundle: {ROWS} has malformed cases or variants.") from None
    mixed = [cases.get(cid, {}).get("label", cid) for cid, s in per_case.items() if len(s) > 1]
    if mixed:
        raise StudyBundleError(f"Refusing the bundle: the variants of case {mixed[0]!r} differ in size, which "
                               "would tell readers which is which.")


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


def _copy_hashed(src: BinaryIO, dst: Path, info: zipfile.ZipInfo) -> str:
    """Stream a member to ``dst``; refused as soon as it exceeds its declared size or the image limit."""
    h = hashlib.sha256()
    limit, written = min(info.file_size, MAX_IMAGE_BYTES), 0
    with open(dst, "wb") as f:
        while chunk := src.read(_CHUNK):
            written += len(chunk)
            if written > limit:
                raise StudyBundleError(f"Refusing the bundle: {info.filename} unpacks to more than its declared "
                                       "size.")
            h.update(chunk)
            f.write(chunk)
    if written != info.file_size:
        raise StudyBundleError(f"Refusing the bundle: {info.filename} does not unpack to its declared size.")
    return h.hexdigest()


def _reissue_codes(rows: dict[str, Any]) -> dict[str, str]:
    """Give every reader of ``rows`` a new access code (its hash replaces the old one); {label: code}."""
    codes = {}
    for reader in rows.get("readers") or []:
        if isinstance(reader, dict):
            code = new_access_code()
            reader["code_hash"] = hash_code(code)
            codes[str(reader.get("label"))] = code
    return codes


def import_bundle(store: StudyStore, bundle: str | os.PathLike[str], name: str | None = None,
                  keep_codes: bool = False) -> ImportedStudy:
    """Import the study in the zip file ``bundle`` into ``store`` as a new study.

    Args:
        name: the imported study's name (default: the bundle's); needed when that name is taken.
        keep_codes: readers keep their old access codes; by default every reader gets a new one.
    Returns:
        The new study's id and, unless ``keep_codes``, the readers' new codes (shown once).
    Raises:
        StudyBundleError: not a (complete) bundle, over a limit (see the module docstring), an image
            that is not the PNG it claims, an unknown format version, a hash mismatch, an existing
            different file of the same name, or rows the database refuses (name taken, imported here
            before). Nothing is left written in any of these cases.
    """
    if name is not None and not str(name).strip():
        name = None
    staging = Path(tempfile.mkdtemp(prefix=".bundle-import-", dir=store.data_dir))  # same filesystem: rename
    written: list[Path] = []
    try:
        try:
            declared = _declared_members(bundle)
            if declared is not None and declared > MAX_MEMBERS:
                raise StudyBundleError(f"Refusing the bundle: it has {declared:,} members, more than the "
                                       f"{MAX_MEMBERS:,} a study bundle may have.")
            with zipfile.ZipFile(bundle) as z:
                members = _check_directory(z, shutil.disk_usage(store.data_dir).free)
                manifest, _ = _read_json(z, members, MANIFEST)
                _check_manifest(manifest)
                rows, rows_bytes = _read_json(z, members, ROWS)
                if hashlib.sha256(rows_bytes).hexdigest() != manifest["rows"].get(ROWS):
                    raise StudyBundleError(f"The bundle is damaged: {ROWS} does not match its SHA-256 in {MANIFEST}.")
                del rows_bytes
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
                sizes: dict[str, tuple[int, int]] = {}
                for i, member in enumerate(sorted(listed)):
                    try:
                        target = _local_path(store, member)
                    except ValueError:
                        raise StudyBundleError(f"The bundle names a file that is not a generated image name: "
                                               f"{member!r}.") from None
                    info = members.get(member)
                    if info is None:
                        raise StudyBundleError(f"The bundle is incomplete: {member} is missing.")
                    part = staging / f"{i}.png"
                    with z.open(info) as src:
                        digest = _copy_hashed(src, part, info)  # the zip's CRC check raises BadZipFile if cut short
                    if digest != listed[member] or digest != wanted[member]:
                        raise StudyBundleError(f"The bundle is damaged: {member} does not match its SHA-256.")
                    sizes[member] = _check_png(part, member, SOURCE_MODES if member.startswith("sources/")
                                               else VARIANT_MODES)
                    if target.exists() and _sha256_file(target) != digest:
                        raise StudyBundleError(f"Refusing to overwrite {member} in {store.data_dir}: a different "
                                               "file of that name is there already.")
                    staged[member] = part
                _check_images(rows, sizes)
        except (zipfile.BadZipFile, EOFError, zlib.error) as e:  # zlib: a cut-short deflated member
            raise StudyBundleError(f"Not a readable study bundle (truncated or not a zip file: {e}).") from None
        except OSError as e:
            raise StudyBundleError(f"Cannot read the study bundle: {e.strerror or e}.") from None
        codes = {} if keep_codes else _reissue_codes(rows)
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
                return ImportedStudy(db.import_study(s, rows, name=name), codes)
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
    imp.add_argument("--keep-codes", action="store_true",
                     help="readers keep their access codes (default: new codes, printed once)")
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
            imported = import_bundle(store, args.bundle, args.name, keep_codes=args.keep_codes)
            print(f"{args.bundle} -> study {imported.study_id} in {where}")
            if imported.codes:
                print("new reader access codes (shown once; give one to each reader):")
                for label, code in imported.codes.items():
                    print(f"  {label}  {code}")
        return 0
    except StudyError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        store.close()


if __name__ == "__main__":
    sys.exit(main())
