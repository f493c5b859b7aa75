"""Reader studies from precomputed results: any tool's outputs become variants beside the registered models.

A results set is a zip upload or a server folder (inside ``STUDIO_IMPORT_ROOT``) laid out as::

    CASE/original.(dcm|png|tif|tiff|jpg|jpeg)      the source image of one case
    CASE/METHOD.(png|tif|tiff|dcm|jpg|jpeg)        one tool's result for that case (one file per method)

or with a CSV manifest at its top (``case,method,path``; method ``original`` marks the source, paths
relative to the manifest). One top folder wrapping everything (a zipped folder) is allowed. Every
case needs its original and a result of every method; method names come from the file names
(letters, digits, ``_ . -``; not the name of a registered model) and are what the analysis calls
them. Sizes are checked when the study is made (:mod:`studio.study.design`).

Readers never see any of these names: the images are re-read as pixels and re-rendered as PNGs
under random names, exactly like the studio's own variants. The tool's case names are not stored
(they may be patient identifiers); the admin sees them once, next to the generated case labels.

Zip handling is bounded: :data:`MAX_MEMBERS` members, :data:`MAX_MEMBER_BYTES` per member and
:data:`MAX_TOTAL_BYTES` in all (counted while extracting, not trusted from the header), no absolute
paths, ``..``, backslashes, drive letters or links; members are written under generated names.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
import stat
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from models import list_models, read_image
from models.errors import printable
from models.loading import sha256
from studio.study.cases import folder_members
from studio.study.checks import MAX_FILES, StudyError

ORIGINAL_STEM = "original"
ORIGINAL_SUFFIXES = (".dcm", ".dicom", ".png", ".tif", ".tiff", ".jpg", ".jpeg")
RESULT_SUFFIXES = (".png", ".tif", ".tiff", ".dcm", ".dicom", ".jpg", ".jpeg")
METHOD_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,47}")
MAX_METHODS = 12
MAX_MEMBERS = 20_000
MAX_MEMBER_BYTES = 256 * 2**20
MAX_TOTAL_BYTES = 4 * 2**30
MAX_MANIFEST_BYTES = 5 * 2**20
MAX_RESULT_SCALE = 8  # a result may be up to 8x its original (each side)
# Top-level files a results folder may carry besides the cases (notes, the tool's own logs).
_IGNORED_TOP = (".txt", ".md", ".json", ".log", ".yaml", ".yml")
_JUNK = ("__MACOSX", "Thumbs.db", "desktop.ini")


@dataclass
class ResultCase:
    """One case of a results set: the tool's case name (never stored), its source, and method -> result file."""

    name: str
    original: Path
    results: dict[str, Path] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # "original" / method -> the file's name in the set

    def file_label(self, method: str) -> str:
        """How an error names one of the case's files (its path in the zip or folder)."""
        return _shown(self.files.get(method, f"{self.name}/{method}"))


@dataclass
class ResultSet:
    """Cases (in the tool's name order) and method names (sorted); ``workdir`` holds extracted zip members."""

    cases: list[ResultCase]
    methods: list[str]
    workdir: Path | None = None

    def cleanup(self) -> None:
        """Remove the extracted members of a zip (a folder import extracted nothing)."""
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None


def _shown(name: str) -> str:
    return printable(name)[:120]


# --- zip members -------------------------------------------------------------------------------


def _member_path(info: zipfile.ZipInfo) -> PurePosixPath | None:
    """The member's path if it is a regular file with a safe name; None for folders and junk.

    Raises:
        StudyError: an absolute path, ``..``, a backslash, a drive letter, a NUL or a link.
    """
    name = info.filename
    if info.is_dir():
        return None
    if "\x00" in name or "\\" in name or name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise StudyError(f"The zip holds an unsafe member name ({_shown(name)!r}): absolute paths, drive letters "
                         "and backslashes are refused.")
    parts = PurePosixPath(name).parts
    if any(p in ("..", ".") for p in parts):
        raise StudyError(f"The zip holds a member outside its folder ({_shown(name)!r}): '..' is refused.")
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise StudyError(f"The zip holds a link ({_shown(name)!r}); links are refused.")
    if any(p.startswith(".") or p in _JUNK for p in parts):
        return None
    return PurePosixPath(*parts)


def extract_zip(zip_path: str | Path, workdir: Path) -> dict[str, Path]:
    """Extract a results zip's regular files into ``workdir`` under generated names.

    Returns {member path (posix, relative): extracted file}. Sizes are counted while reading,
    so a member whose header lies about its size is stopped at the limit.

    Raises:
        StudyError: not a zip, too many members, a member or the whole too large, unsafe names.
    """
    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError, ValueError):
        raise StudyError("The results upload is not a readable zip file.") from None
    out: dict[str, Path] = {}
    total = 0
    with zf:
        infos = zf.infolist()
        if len(infos) > MAX_MEMBERS:
            raise StudyError(f"The zip holds {len(infos):,} members; at most {MAX_MEMBERS:,}.")
        for i, info in enumerate(infos):
            rel = _member_path(info)
            if rel is None:
                continue
            key = rel.as_posix()
            if key in out:
                raise StudyError(f"The zip holds {_shown(key)!r} twice.")
            if info.file_size > MAX_MEMBER_BYTES:
                raise StudyError(f"{_shown(key)} is {info.file_size / 2**20:.0f} MB; at most "
                                 f"{MAX_MEMBER_BYTES // 2**20} MB per file.")
            dst = workdir / f"{i:05d}{''.join(PurePosixPath(rel.name).suffixes[-1:]).lower()[:8]}"
            written = 0
            try:
                with zf.open(info) as src, dst.open("wb") as f:
                    while chunk := src.read(1 << 20):
                        written += len(chunk)
                        total += len(chunk)
                        if written > MAX_MEMBER_BYTES or written > info.file_size:
                            raise StudyError(f"{_shown(key)} is larger than its zip header says; refused.")
                        if total > MAX_TOTAL_BYTES:
                            raise StudyError(f"The zip unpacks to more than {MAX_TOTAL_BYTES // 2**30} GB; split it.")
                        f.write(chunk)
            except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError) as e:
                # RuntimeError: an encrypted member; NotImplementedError: an unsupported compression.
                raise StudyError(f"{_shown(key)} cannot be read from the zip ({type(e).__name__}).") from None
            out[key] = dst
    return out


# --- the layout ------------------------------------------------------------------------------------


def _strip_wrapper(members: dict[str, Path]) -> dict[str, Path]:
    """Remove one top folder that wraps every member (a zipped folder), repeatedly.

    ``TOP/CASE/FILE`` everywhere, or ``TOP/manifest.csv`` beside ``TOP/...``: a single case's
    ``CASE/FILE`` alone is not a wrapper.
    """
    while members:
        parts = [PurePosixPath(k).parts for k in members]
        first = {p[0] for p in parts}
        manifest_below = any(len(p) == 2 and p[1].lower().endswith(".csv") for p in parts)
        if len(first) != 1 or any(len(p) < 2 for p in parts) or (any(len(p) < 3 for p in parts)
                                                                 and not manifest_below):
            return members
        members = {PurePosixPath(*PurePosixPath(k).parts[1:]).as_posix(): v for k, v in members.items()}
    return members


def _check_method(name: str, where: str, registered: set[str]) -> str:
    if not METHOD_RE.fullmatch(name):
        raise StudyError(f"{_shown(where)}: the method name {_shown(name)!r} must be 1 to 48 letters, digits, "
                         "'_', '.' or '-', starting with a letter or digit (rename the file).")
    if name in registered:
        raise StudyError(f"{_shown(where)}: {name!r} is the name of a registered model; rename the tool's files "
                         f"(e.g. {name}_tool) so the analysis cannot confuse the two.")
    return name


def _from_tree(members: dict[str, Path], registered: set[str]) -> dict[str, ResultCase]:
    cases: dict[str, ResultCase] = {}
    for key, path in sorted(members.items()):
        parts = PurePosixPath(key).parts
        if len(parts) == 1 and PurePosixPath(key).suffix.lower() in _IGNORED_TOP:
            continue
        if len(parts) != 2:
            raise StudyError(f"Unexpected file {_shown(key)!r}: expected CASE/original.png (or .dcm, .tif, .jpg) "
                             "and CASE/METHOD.png files, or a manifest.csv (case,method,path).")
        case, file_name = parts
        stem, suffix = PurePosixPath(file_name).stem, PurePosixPath(file_name).suffix.lower()
        c = cases.setdefault(case, ResultCase(case, Path()))
        if stem.lower() == ORIGINAL_STEM:
            if suffix not in ORIGINAL_SUFFIXES:
                raise StudyError(f"{_shown(key)}: an original must be {', '.join(ORIGINAL_SUFFIXES)}.")
            if c.original != Path():
                raise StudyError(f"Case {_shown(case)!r} has two originals.")
            c.original, c.files[ORIGINAL_STEM] = path, key
            continue
        if suffix not in RESULT_SUFFIXES:
            raise StudyError(f"{_shown(key)}: a result must be {', '.join(RESULT_SUFFIXES)}.")
        _add_result(c, _check_method(stem, key, registered), path, key)
    return cases


def _add_result(case: ResultCase, method: str, path: Path, where: str) -> None:
    if any(m.lower() == method.lower() for m in case.results):
        raise StudyError(f"{_shown(where)}: case {_shown(case.name)!r} has two results of method {method!r}.")
    case.results[method] = path
    case.files[method] = where


def _from_manifest(members: dict[str, Path], manifest: str, registered: set[str]) -> dict[str, ResultCase]:
    path = members[manifest]
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise StudyError(f"{_shown(manifest)} is over {MAX_MANIFEST_BYTES // 2**20} MB.")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError):
        raise StudyError(f"{_shown(manifest)} is not UTF-8 text.") from None
    reader = csv.DictReader(io.StringIO(text))
    fields = [f.strip().lower() for f in (reader.fieldnames or [])]
    if fields[:3] != ["case", "method", "path"]:
        raise StudyError(f"{_shown(manifest)}: the first line must be the header case,method,path.")
    base = PurePosixPath(manifest).parent
    cases: dict[str, ResultCase] = {}
    for n, row in enumerate(reader, start=2):
        if n > MAX_MEMBERS + 1:
            raise StudyError(f"{_shown(manifest)}: more than {MAX_MEMBERS:,} rows.")
        values = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
        case, method, rel = values.get("case", ""), values.get("method", ""), values.get("path", "")
        if not case or not method or not rel:
            raise StudyError(f"{_shown(manifest)} line {n}: case, method and path are all needed.")
        rel_path = PurePosixPath(rel.replace("\\", "/"))
        if rel_path.is_absolute() or ".." in rel_path.parts:
            raise StudyError(f"{_shown(manifest)} line {n}: the path must stay inside the results folder.")
        key = (base / rel_path).as_posix() if str(base) != "." else rel_path.as_posix()
        if key not in members:
            raise StudyError(f"{_shown(manifest)} line {n}: no file {_shown(rel)!r} in the results.")
        suffix = rel_path.suffix.lower()
        c = cases.setdefault(case, ResultCase(case, Path()))
        if method.lower() == ORIGINAL_STEM:
            if suffix not in ORIGINAL_SUFFIXES:
                raise StudyError(f"{_shown(manifest)} line {n}: an original must be {', '.join(ORIGINAL_SUFFIXES)}.")
            if c.original != Path():
                raise StudyError(f"{_shown(manifest)} line {n}: case {_shown(case)!r} has two originals.")
            c.original, c.files[ORIGINAL_STEM] = members[key], key
            continue
        if suffix not in RESULT_SUFFIXES:
            raise StudyError(f"{_shown(manifest)} line {n}: a result must be {', '.join(RESULT_SUFFIXES)}.")
        _add_result(c, _check_method(method, f"{manifest} line {n}", registered), members[key], key)
    return cases


def parse_results(members: dict[str, Path]) -> ResultSet:
    """The cases and methods of a results set given as {relative posix path: file}.

    Raises:
        StudyError: no cases, a case without its original or missing a method's result, bad or
            registered method names, too many cases or methods, files that fit neither layout.
    """
    members = _strip_wrapper(members)
    registered = {s.name for s in list_models()}
    manifests = [k for k in members if len(PurePosixPath(k).parts) == 1 and k.lower().endswith(".csv")]
    if len(manifests) > 1:
        raise StudyError(f"More than one CSV manifest at the top: {', '.join(_shown(m) for m in manifests[:3])}.")
    cases = _from_manifest(members, manifests[0], registered) if manifests else _from_tree(members, registered)
    if not cases:
        raise StudyError("The results hold no cases: expected CASE/original.png and CASE/METHOD.png files.")
    if len(cases) > MAX_FILES:
        raise StudyError(f"{len(cases)} cases; at most {MAX_FILES} per study.")
    methods = sorted({m for c in cases.values() for m in c.results})
    if not methods:
        raise StudyError("The results hold originals only: add each method's result as CASE/METHOD.png.")
    if len(methods) > MAX_METHODS:
        raise StudyError(f"{len(methods)} methods; at most {MAX_METHODS} per study.")
    problems = [f"case {_shown(c.name)!r} has no original" for c in cases.values() if c.original == Path()]
    problems += [f"case {_shown(c.name)!r} has no result of {m!r}" for c in cases.values() for m in methods
                 if m not in c.results]
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise StudyError("Every case needs its original and a result of every method: "
                         + "; ".join(problems[:5]) + more + ".")
    return ResultSet([cases[k] for k in sorted(cases)], methods)


def open_results(upload: str | Path | None = None, import_root: Path | None = None, folder: Any = None) -> ResultSet:
    """A results set from a zip upload or a server folder (inside ``import_root``); one of them.

    The caller calls :meth:`ResultSet.cleanup` when done (a zip's members are extracted to a temp dir).

    Raises:
        StudyError: neither or both given, or see :func:`extract_zip`, :func:`parse_results`.
    """
    has_folder = folder is not None and str(folder).strip() != ""
    if (upload is None) == (not has_folder):
        raise StudyError("Give the results either as a zip upload or as a server folder (one of the two).")
    if upload is not None:
        workdir = Path(tempfile.mkdtemp(prefix="medenhance-results-"))
        try:
            results = parse_results(extract_zip(upload, workdir))
            results.workdir = workdir
            return results
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
    return parse_results(folder_members(import_root, folder, limit=MAX_MEMBERS))


# --- reading the results of one case --------------------------------------------------------------


def read_case_results(case: ResultCase, image: np.ndarray, window: Any,
                      scales: dict[str, int]) -> dict[str, tuple[np.ndarray, dict[str, Any]]]:
    """A case's results read as float32 [0, 1] images, checked against its original ``image`` (H, W[, 3]).

    ``scales`` (method -> scale) is filled across the cases of one study, so a method keeps one scale.
    Returns method -> (image, the provenance stored with its variant).

    DICOM results are read with the study's window, like the originals; raster results as they are
    (their own full range). A colour result of a grayscale original is reduced to its luma, so
    colour never tells a reader which variant is which.

    Raises:
        StudyError: unreadable, or neither the original's size nor one whole multiple of it
            (the same multiple for every case of a method); the message names the file.
    """
    h, w = image.shape[:2]
    out = {}
    for method, path in case.results.items():
        where = case.file_label(method)
        try:
            res, meta = read_image(path, window=window if _is_dicom(path) else None)
        except ValueError as e:
            raise StudyError(f"{where}: cannot be read as an image ({str(e).replace(str(path), 'the file')}).") from None
        if res.ndim == 3 and image.ndim == 2:
            res = (res @ np.array([0.299, 0.587, 0.114], dtype=np.float32)).astype(np.float32)
        rh, rw = res.shape[:2]
        s = rh // h if (rh % h == 0 and rw % w == 0 and rh // h == rw // w) else 0
        if not 1 <= s <= MAX_RESULT_SCALE:
            raise StudyError(f"{where}: {rw} × {rh} px, but the original is {w} × {h} px; a result must have the "
                             "original's size or a whole multiple of it (×2, ×4).")
        if scales.setdefault(method, s) != s:
            raise StudyError(f"{where}: ×{s} the original, but {method}'s other results are ×{scales[method]}.")
        out[method] = (res, {"precomputed": True, "scale": s, "result_sha256": sha256(path),
                             "result_format": str(meta.source_format)})
    return out


def _is_dicom(path: Path) -> bool:
    return path.suffix.lower() in (".dcm", ".dicom")
