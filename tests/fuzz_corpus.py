"""A deterministic corpus of hostile and broken image files, built into a folder by the tests.

Nothing here is committed as binary: every file is generated from pydicom's
test data (``pydicom`` / ``pydicom-data``, read with ``download=False``) or
from scratch, the same bytes on every run. :func:`build_corpus` returns one
:class:`Case` per file, saying what :func:`models.read_image` must do with it:

* ``"refused"``: raise :class:`~models.errors.ImageReadError` whose message
  contains every string in ``fragments`` (case-insensitive);
* ``"image"``: return a valid image (float32, finite, [0, 1]);
* ``"either"``: one of the two, never another exception (inputs whose
  correct reading is debatable, e.g. a wrong transfer syntax pydicom repairs).

Categories (``Case.category``): truncated, transfer syntax, lying header,
huge, not an image, tiny, numeric, multi-frame, non-image DICOM, file name.

"Displayable" (the non-image DICOM category): a dataset is an image when it
has pixel data (PixelData, FloatPixelData or DoubleFloatPixelData) and the
header to decode it, and its pixels are intensities. RT Dose grids qualify
(shown as a grayscale image of the stored dose values); RT Structure Sets,
RT Plans, SR documents, waveforms and Segmentations (label masks, not
intensities: super-resolving or denoising them is meaningless) do not.
"""

from __future__ import annotations

import io
import struct
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

__all__ = ["CATEGORIES", "Case", "build_corpus", "dcm", "seed_files", "write_1bit_png"]

CATEGORIES = (
    "truncated",
    "transfer syntax",
    "lying header",
    "huge",
    "not an image",
    "tiny",
    "numeric",
    "multi-frame",
    "non-image DICOM",
    "file name",
)


@dataclass(frozen=True)
class Case:
    """One corpus file and what reading it must give.

    Attributes:
        id: stable, unique test id (ASCII).
        category: one of :data:`CATEGORIES`.
        path: the file (under the corpus root; for the traversal case a path with ``..`` in it).
        expect: ``"refused"``, ``"image"`` or ``"either"``.
        fragments: lower-case strings the refusal message must contain.
        frame: frame index to request.
        max_seconds: time limit of one read (generous: the test machine is shared).
        max_peak_mb: limit of the traced (Python/numpy) peak allocation of one read.
    """

    id: str
    category: str
    path: Path
    expect: str
    fragments: tuple[str, ...] = ()
    frame: int = 0
    max_seconds: float = 3.0
    max_peak_mb: float = 48.0


def dcm(name: str) -> str:
    """Path of a pydicom test file, never downloading it."""
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name, download=False)
    assert path is not None, f"pydicom test file {name!r} missing; install pydicom-data"
    return str(path)


# ------------------------------------------------------------------ helpers


def _save(ds, path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.save_as(path, enforce_file_format=False)
    return path


def _edited(name: str, **changes) -> Any:
    """A pydicom test file with header elements changed (None deletes)."""
    import pydicom

    ds = pydicom.dcmread(dcm(name))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the invalid values these cases need
        for keyword, value in changes.items():
            if value is None:
                delattr(ds, keyword)
            else:
                setattr(ds, keyword, value)
    return ds


def _payload_end(data: bytes, ds) -> int:
    """Offset where a file's content ends, ignoring trailing padding and the last delimiter.

    Cutting a file inside its DataSetTrailingPadding or the final sequence
    delimiter loses nothing, so the truncation cut points stay before this.
    """
    end = len(data)
    pad = ds.get((0xFFFC, 0xFFFC))
    if pad is not None:
        end -= 12 + len(pad.value or b"")  # explicit VR OB header + value
    if ds.file_meta.get("TransferSyntaxUID") is not None and ds.file_meta.TransferSyntaxUID.is_compressed:
        end -= 8  # (FFFE,E0DD) sequence delimiter of the encapsulated pixel data
    return end


def retag_transfer_syntax(data: bytes, new_uid: str) -> bytes:
    """Rewrite a Part 10 file's TransferSyntaxUID without touching the data set.

    pydicom refuses to write raw pixel data under a compressed transfer syntax,
    so the file meta (explicit VR little endian, starting at byte 132) is
    patched by hand: the (0002,0010) value is replaced and the group length
    (0002,0000) fixed.
    """
    value = new_uid.encode("ascii")
    if len(value) % 2:
        value += b"\x00"
    pos, out, group_length_at = 132, bytearray(data[:132]), None
    while pos < len(data):
        group, elem = struct.unpack_from("<HH", data, pos)
        if group != 0x0002:
            break
        vr = data[pos + 4 : pos + 6]
        if vr in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN"):
            (length,), header = struct.unpack_from("<I", data, pos + 8), 12
        else:
            (length,), header = struct.unpack_from("<H", data, pos + 6), 8
        if elem == 0x0000:
            group_length_at = len(out) + header
        if elem == 0x0010:
            out += data[pos : pos + 6] + struct.pack("<H", len(value)) + value
        else:
            out += data[pos : pos + header + length]
        pos += header + length
    meta_end = len(out)
    out += data[pos:]
    if group_length_at is not None:
        struct.pack_into("<I", out, group_length_at, meta_end - (group_length_at + 4))
    return bytes(out)


def write_1bit_png(path: Path, width: int, height: int, rows: int | None = None) -> Path:
    """A valid all-black 1-bit PNG of any size, written without materialising it.

    20000 x 20000 compresses to ~50 kB: a classic decompression bomb. With
    ``rows`` only that many rows of data are written (the header still claims
    ``height``), so even a 100000 x 100000 header costs nothing to build.
    """
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    n = height if rows is None else rows
    block = row * 256
    parts = [compressor.compress(block) for _ in range(n // 256)]
    parts += [compressor.compress(row * (n % 256)), compressor.flush()]

    def chunk(tag: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(tag + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + tag + payload + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


def _tiff_header_only(path: Path, width: int, height: int) -> Path:
    """A little-endian 8-bit grayscale TIFF whose IFD claims ``width`` x ``height`` but holds 64 bytes."""
    entries = [
        (256, 4, 1, width),  # ImageWidth, LONG
        (257, 4, 1, height),  # ImageLength
        (258, 3, 1, 8),  # BitsPerSample
        (259, 3, 1, 1),  # Compression: none
        (262, 3, 1, 1),  # Photometric: BlackIsZero
        (273, 4, 1, 8),  # StripOffsets: right after the header
        (278, 4, 1, height),  # RowsPerStrip
        (279, 4, 1, 64),  # StripByteCounts
    ]
    ifd_offset = 8 + 64
    out = bytearray(b"II*\x00" + struct.pack("<I", ifd_offset) + bytes(64))
    out += struct.pack("<H", len(entries))
    for tag, typ, count, value in entries:
        packed = struct.pack("<I", value) if typ == 4 else struct.pack("<HH", value, 0)
        out += struct.pack("<HHI", tag, typ, count) + packed
    out += struct.pack("<I", 0)
    path.write_bytes(bytes(out))
    return path


def _png(path: Path, array: np.ndarray) -> Path:
    Image.fromarray(array).save(path, format="PNG")
    return path


def _tiff(path: Path, array: np.ndarray) -> Path:
    Image.fromarray(array).save(path, format="TIFF")
    return path


def _ramp(h: int, w: int) -> np.ndarray:
    """A deterministic uint8 test pattern (gradient + checker)."""
    yy, xx = np.mgrid[0:h, 0:w]
    return ((xx * 255 // max(w - 1, 1) + 32 * ((yy // 4 + xx // 4) % 2)) % 256).astype(np.uint8)


def seed_files(root: Path) -> dict[str, bytes]:
    """Small valid files (name -> bytes) the Hypothesis fuzzer mutates.

    Real DICOMs of several encodings (native, RLE, JPEG 2000, JPEG-LS
    multi-frame, RGB, JPEG baseline, headerless, RT Dose) and generated
    PNG/TIFF files (8/16-bit, RGB, palette, float).
    """
    seeds = {
        name: Path(dcm(name)).read_bytes()
        for name in ("MR_small.dcm", "MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "JPEG2000.dcm",
                     "SC_rgb_small_odd.dcm", "SC_rgb_jpeg.dcm", "rtdose_1frame.dcm", "rtstruct.dcm",
                     "emri_small_jpeg_ls_lossless.dcm")
    }
    root.mkdir(parents=True, exist_ok=True)
    ramp = _ramp(24, 20)
    builders: dict[str, Callable[[Path], Path]] = {
        "gray8.png": lambda p: _png(p, ramp),
        "gray16.png": lambda p: Image.fromarray(ramp.astype(np.uint16) * 257).save(p, format="PNG") or p,
        "rgb.png": lambda p: _png(p, np.stack([ramp, ramp[::-1], 255 - ramp], axis=-1)),
        "palette.png": lambda p: Image.fromarray(ramp).convert("P").save(p, format="PNG") or p,
        "float.tif": lambda p: _tiff(p, ramp.astype(np.float32) / 255.0),
        "int32.tif": lambda p: _tiff(p, ramp.astype(np.int32) * 1000 - 100_000),
    }
    for name, build in builders.items():
        build(root / name)
        seeds[name] = (root / name).read_bytes()
    return seeds


# ------------------------------------------------------------------ categories


_TRUNCATE_FILES = ("CT_small.dcm", "MR_small.dcm", "693_J2KR.dcm", "MR_small_RLE.dcm",
                   "emri_small_jpeg_ls_lossless.dcm", "SC_rgb.dcm")
_TRUNCATE_FRACTIONS = (0.004, 0.05, 0.3, 0.7, 0.995)


def _truncated(root: Path) -> list[Case]:
    """6 files x 5 cut points = 30: inside the file meta, the header and the pixel data."""
    import pydicom

    cases = []
    for name in _TRUNCATE_FILES:
        data = Path(dcm(name)).read_bytes()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            end = _payload_end(data, pydicom.dcmread(dcm(name)))
        for fraction in _TRUNCATE_FRACTIONS:
            cut = max(int(end * fraction), 1)
            path = root / f"cut{cut}_{name}"
            path.write_bytes(data[:cut])
            cases.append(Case(f"truncated-{name}-{cut}", "truncated", path, "refused"))
    return cases


def _transfer_syntax(root: Path) -> list[Case]:
    import pydicom
    from pydicom import uid
    from pydicom.encaps import encapsulate

    cases = []
    raw = Path(dcm("CT_small.dcm")).read_bytes()

    def add(id_: str, path: Path, expect: str = "refused", *fragments: str) -> None:
        cases.append(Case(f"ts-{id_}", "transfer syntax", path, expect, fragments))

    # Raw (defined-length) pixel bytes under a compressed transfer syntax.
    for ts, tag in ((uid.JPEG2000Lossless, "j2k"), (uid.JPEGBaseline8Bit, "jpeg"), (uid.RLELossless, "rle")):
        add(f"raw-as-{tag}", _write(root / f"raw_as_{tag}.dcm", retag_transfer_syntax(raw, ts)), "refused",
            "not encapsulated")
    # Raw pixel bytes wrapped as one encapsulated fragment, declared JPEG 2000 / JPEG-LS.
    for ts, tag in ((uid.JPEG2000Lossless, "j2k"), (uid.JPEGLSLossless, "jpegls")):
        ds = pydicom.dcmread(dcm("CT_small.dcm"))
        ds.PixelData = encapsulate([ds.PixelData])
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = ts
        add(f"raw-fragment-as-{tag}", _save(ds, root / f"raw_fragment_{tag}.dcm"), "refused", "transfer syntax")
    # A JPEG 2000 codestream declared as uncompressed, as JPEG baseline and as RLE.
    j2k = Path(dcm("693_J2KR.dcm")).read_bytes()
    add("j2k-as-explicit-le", _write(root / "j2k_as_raw.dcm", retag_transfer_syntax(j2k, uid.ExplicitVRLittleEndian)))
    # (Pillow used to decode the first one with the wrong sign handling: a plausible, wrong image.)
    add("j2k-as-jpeg", _write(root / "j2k_as_jpeg.dcm", retag_transfer_syntax(j2k, uid.JPEGBaseline8Bit)), "refused",
        "looks like jpeg 2000")
    add("j2k-as-rle", _write(root / "j2k_as_rle.dcm", retag_transfer_syntax(j2k, uid.RLELossless)), "refused",
        "looks like jpeg 2000")
    rle = Path(dcm("MR_small_RLE.dcm")).read_bytes()
    add("rle-as-jpegls", _write(root / "rle_as_jpegls.dcm", retag_transfer_syntax(rle, uid.JPEGLSLossless)), "refused",
        "looks like rle")
    # Little-endian data declared big endian / deflated; an unknown transfer syntax.
    add("le-as-big-endian", _write(root / "le_as_be.dcm", retag_transfer_syntax(raw, uid.ExplicitVRBigEndian)))
    add("plain-as-deflated", _write(root / "plain_as_deflate.dcm",
                                    retag_transfer_syntax(raw, uid.DeflatedExplicitVRLittleEndian)))
    # pydicom notices implicit VR data under an explicit VR syntax and reads it anyway: fine either way.
    implicit = Path(dcm("MR_small_implicit.dcm")).read_bytes() if _has("MR_small_implicit.dcm") else None
    if implicit is not None:
        add("implicit-as-explicit", _write(root / "implicit_as_explicit.dcm",
                                           retag_transfer_syntax(implicit, uid.ExplicitVRLittleEndian)), "either")
    add("unknown-uid", _write(root / "unknown_ts.dcm", retag_transfer_syntax(raw, "1.2.3.4.5.6.7")))
    return cases


def _has(name: str) -> bool:
    from pydicom.data import get_testdata_file

    try:
        return get_testdata_file(name, download=False) is not None
    except Exception:  # noqa: BLE001 - missing test file: the case is skipped
        return False


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _lying_header(root: Path) -> list[Case]:
    """CT_small (128x128, 16 bit, native) and SC_rgb with header values that do not fit the data."""
    edits: list[tuple[str, str, dict, str, tuple[str, ...]]] = [
        ("bits32", "CT_small.dcm", {"BitsAllocated": 32}, "refused", ("too short",)),
        ("bits8", "CT_small.dcm", {"BitsAllocated": 8}, "refused", ("longer",)),
        ("bits12", "CT_small.dcm", {"BitsAllocated": 12}, "refused", ("bitsallocated is 12",)),
        ("bits0", "CT_small.dcm", {"BitsAllocated": 0}, "refused", ("bitsallocated is 0",)),
        ("bits1", "CT_small.dcm", {"BitsAllocated": 1}, "refused", ()),
        ("bits64", "CT_small.dcm", {"BitsAllocated": 64}, "refused", ()),
        ("rows200", "CT_small.dcm", {"Rows": 200}, "refused", ("too short",)),
        ("cols32", "CT_small.dcm", {"Columns": 32}, "refused", ("longer",)),
        ("rows0", "CT_small.dcm", {"Rows": 0}, "refused", ("2x2",)),
        ("samples3", "CT_small.dcm", {"SamplesPerPixel": 3}, "refused", ("too short",)),
        ("frames10", "CT_small.dcm", {"NumberOfFrames": 10}, "refused", ("too short",)),
        ("frames0", "CT_small.dcm", {"NumberOfFrames": 0}, "image", ()),  # 0 is seen in the wild: one frame
        ("frames-neg", "CT_small.dcm", {"NumberOfFrames": "-3"}, "refused", ("numberofframes is -3",)),
        ("bits-stored-20", "CT_small.dcm", {"BitsStored": 20}, "refused", ("bits stored",)),
        ("high-bit-40", "CT_small.dcm", {"HighBit": 40}, "either", ()),
        ("pixel-rep-5", "CT_small.dcm", {"PixelRepresentation": 5}, "refused", ("pixel representation",)),
        ("palette-without-lut", "CT_small.dcm", {"PhotometricInterpretation": "PALETTE COLOR"}, "refused",
         ("palette",)),
        ("photometric-nonsense", "CT_small.dcm", {"PhotometricInterpretation": "NONSENSE"}, "refused",
         ("photometric",)),
        ("window-width-0", "CT_small.dcm", {"WindowWidth": 0}, "image", ()),
        ("window-nan", "CT_small.dcm", {"WindowCenter": "NaN", "WindowWidth": "inf"}, "image", ()),
        ("rescale-huge", "CT_small.dcm", {"RescaleSlope": "1e300"}, "refused", ("rescale",)),
        ("rescale-nan", "CT_small.dcm", {"RescaleSlope": "NaN", "RescaleIntercept": "inf"}, "image", ()),
        ("rgb-planar", "SC_rgb.dcm", {"PlanarConfiguration": 1}, "image", ()),
        ("rgb-as-mono", "SC_rgb.dcm", {"SamplesPerPixel": 1}, "refused", ("longer",)),
        ("no-pixel-rep", "CT_small.dcm", {"PixelRepresentation": None}, "refused", ("incomplete",)),
        ("no-photometric", "CT_small.dcm", {"PhotometricInterpretation": None}, "refused", ("incomplete",)),
    ]
    cases = []
    for id_, name, changes, expect, fragments in edits:
        path = _save(_edited(name, **changes), root / f"lying_{id_}.dcm")
        cases.append(Case(f"lying-{id_}", "lying header", path, expect, fragments))
    return cases


def _huge(root: Path) -> list[Case]:
    from pydicom.tag import Tag

    cases = []
    # DICOM Rows/Columns are US (<= 65535); written as UL the header can say 100000 x 100000.
    ds = _edited("CT_small.dcm", Rows=None, Columns=None)
    ds.add_new(Tag(0x0028, 0x0010), "UL", 100_000)
    ds.add_new(Tag(0x0028, 0x0011), "UL", 100_000)
    cases.append(Case("huge-dicom-100000", "huge", _save(ds, root / "huge_100000.dcm"), "refused",
                      ("100000x100000", "limit")))
    cases.append(Case("huge-dicom-65535", "huge",
                      _save(_edited("CT_small.dcm", Rows=65535, Columns=65535), root / "huge_65535.dcm"),
                      "refused", ("65535x65535", "limit")))
    cases.append(Case("huge-png-header-100000", "huge", write_1bit_png(root / "huge_header.png", 100_000, 100_000,
                                                                       rows=16), "refused", ("too large",)))
    cases.append(Case("huge-tiff-header-100000", "huge", _tiff_header_only(root / "huge_header.tif", 100_000, 100_000),
                      "refused", ("too large",)))
    cases.append(Case("png-bomb-20000", "huge", write_1bit_png(root / "bomb.png", 20_000, 20_000), "refused",
                      ("too large",)))
    cases.append(Case("png-9000-over-limit", "huge", write_1bit_png(root / "big9000.png", 9000, 9000, rows=64),
                      "refused", ("9000x9000", "limit")))
    return cases


def _not_an_image(root: Path) -> list[Case]:
    rng = np.random.default_rng(7)
    files: dict[str, bytes] = {
        "empty.dcm": b"",
        "notes.dcm": b"Patient notes: not an image at all.\n" * 20,
        "page.png": b"<!doctype html><html><body>not a png</body></html>\n",
        "report.dcm": b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n" * 4,
        "data.json": b'{"Rows": 512, "Columns": 512, "PixelData": "AAAA"}',
        "random.bin": rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        "preamble_only.dcm": b"\x00" * 128 + b"DICM",
        "preamble_garbage.dcm": b"\x00" * 128 + b"DICM" + rng.integers(0, 256, 2048, dtype=np.uint8).tobytes(),
        "png_signature_only.png": b"\x89PNG\r\n\x1a\n",
        "tiff_signature_only.tif": b"II*\x00\x08\x00\x00\x00",
        "jpeg_soi_only.jpg": b"\xff\xd8\xff\xe0" + b"\x00" * 16,
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        # A fixed timestamp: writestr(name, ...) would stamp the current time (not deterministic).
        member = zipfile.ZipInfo("IM0001.dcm", date_time=(2024, 1, 1, 0, 0, 0))
        zf.writestr(member, Path(dcm("MR_small.dcm")).read_bytes())
    files["study.dcm"] = buf.getvalue()
    cases = []
    for name, data in files.items():
        path = _write(root / name, data)
        fragments = ("empty",) if not data else ()
        cases.append(Case(f"not-image-{name}", "not an image", path, "refused", fragments))
    return cases


def _tiny(root: Path) -> list[Case]:
    import pydicom

    cases = [
        Case("tiny-png-1x1", "tiny", _png(root / "dot.png", np.zeros((1, 1), np.uint8)), "refused", ("1x1", "2x2")),
        Case("tiny-png-1x50", "tiny", _png(root / "row.png", _ramp(1, 50)), "refused", ("50x1",)),
        Case("tiny-png-50x1", "tiny", _png(root / "col.png", _ramp(50, 1)), "refused", ("1x50",)),
        Case("tiny-tiff16-1x7", "tiny", _tiff(root / "row16.tif", np.arange(7, dtype=np.uint16)[None]), "refused",
             ("7x1",)),
        Case("tiny-png-2x2", "tiny", _png(root / "two.png", np.array([[0, 255], [128, 64]], np.uint8)), "image"),
    ]
    ds = pydicom.dcmread(dcm("CT_small.dcm"))
    for id_, (rows, cols) in {"1x1": (1, 1), "1x64": (1, 64)}.items():
        ds.Rows, ds.Columns = rows, cols
        ds.PixelData = np.arange(rows * cols, dtype=np.int16).tobytes()
        cases.append(Case(f"tiny-dicom-{id_}", "tiny", _save(ds, root / f"tiny_{id_}.dcm"), "refused", ("2x2",)))
    return cases


def _numeric(root: Path) -> list[Case]:
    ramp = _ramp(16, 16).astype(np.float32) / 255.0
    cases = []
    for id_, bad in (("nan", np.nan), ("inf", np.inf), ("neg-inf", -np.inf)):
        data = ramp.copy()
        data[5, 7] = bad
        cases.append(Case(f"float-{id_}", "numeric", _tiff(root / f"float_{id_}.tif", data), "refused",
                          ("nan or infinite",)))
    all_nan = np.full((8, 8), np.nan, np.float32)
    cases.append(Case("float-all-nan", "numeric", _tiff(root / "float_all_nan.tif", all_nan), "refused",
                      ("nan or infinite",)))
    # The float32 range end to end: (x - lower) / width overflowed float32 and came out NaN.
    extreme = np.linspace(-3.4e38, 3.4e38, 256).reshape(16, 16).astype(np.float32)
    cases.append(Case("float-extreme", "numeric", _tiff(root / "float_extreme.tif", extreme), "image"))
    cases.append(Case("float-constant", "numeric", _tiff(root / "float_const.tif", np.full((8, 8), 7.5, np.float32)),
                      "image"))
    cases.append(Case("float-denormal", "numeric", _tiff(root / "float_tiny.tif", ramp * np.float32(1e-40)), "image"))
    int32 = (_ramp(16, 16).astype(np.int64) * 16_000_000 - 2_000_000_000).astype(np.int32)
    cases.append(Case("int32-full-range", "numeric", _tiff(root / "int32.tif", int32), "image"))
    extremes = np.array([[np.iinfo(np.int32).min, np.iinfo(np.int32).max], [0, -1]], np.int32)
    cases.append(Case("int32-extremes", "numeric", _tiff(root / "int32_extremes.tif", extremes), "image"))
    cases.append(Case("int32-constant", "numeric", _tiff(root / "int32_const.tif", np.full((4, 4), -5, np.int32)),
                      "image"))
    return cases


def _multiframe(root: Path) -> list[Case]:
    """A generated 100-frame 256x256 16-bit MR (13 MB), native and RLE-compressed."""
    import pydicom
    from pydicom import uid

    ds = pydicom.dcmread(dcm("MR_small.dcm"))
    tile = np.tile(ds.pixel_array, (4, 4))  # 256 x 256
    frames = np.stack([np.roll(tile, 3 * i, axis=1) for i in range(100)]).astype(np.uint16)
    ds.Rows, ds.Columns, ds.NumberOfFrames = 256, 256, 100
    ds.PixelRepresentation = 0
    ds.PixelData = frames.tobytes()
    native = _save(ds, root / "mf100.dcm")
    rle = pydicom.dcmread(native)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rle.compress(uid.RLELossless, frames, generate_instance_uid=False)
    rle_path = _save(rle, root / "mf100_rle.dcm")
    return [
        Case("mf100-frame0", "multi-frame", native, "image", max_peak_mb=8.0),
        Case("mf100-frame57", "multi-frame", native, "image", frame=57, max_peak_mb=8.0),
        Case("mf100-frame99", "multi-frame", native, "image", frame=99, max_peak_mb=8.0),
        Case("mf100-rle-frame73", "multi-frame", rle_path, "image", frame=73, max_peak_mb=8.0),
        Case("mf100-frame100", "multi-frame", native, "refused", ("frame 100", "100 frame"), frame=100),
        Case("mf100-frame-neg", "multi-frame", native, "refused", ("frame -1",), frame=-1),
    ]


def _non_image(root: Path) -> list[Case]:
    from pydicom import uid
    from pydicom.dataset import Dataset, FileMetaDataset

    def minimal(sop_class: str, modality: str) -> Dataset:
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = sop_class
        ds.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.8.498.1"
        ds.file_meta.TransferSyntaxUID = uid.ExplicitVRLittleEndian
        ds.SOPClassUID = sop_class
        ds.SOPInstanceUID = "1.2.826.0.1.3680043.8.498.1"
        ds.Modality = modality
        ds.PatientName = "Fuzz^Corpus"
        return ds

    cases = []
    for name, sop in (("rtstruct.dcm", "RT Structure Set Storage"), ("rtplan.dcm", "RT Plan Storage"),
                      ("test-SR.dcm", "Comprehensive SR Storage"), ("waveform_ecg.dcm", "ECG")):
        if _has(name):
            cases.append(Case(f"nonimage-{name}", "non-image DICOM", Path(dcm(name)), "refused",
                              ("no pixel data", sop.lower(), "nothing to display")))
    rtdose = minimal(uid.RTDoseStorage, "RTDOSE")
    cases.append(Case("nonimage-rtdose-no-pixels", "non-image DICOM", _save(rtdose, root / "rtdose_empty.dcm"),
                      "refused", ("no pixel data", "rt dose storage")))
    # A float dose grid (FloatPixelData, 32-bit IEEE): an image of dose values, displayable.
    grid = minimal(uid.RTDoseStorage, "RTDOSE")
    grid.Rows, grid.Columns, grid.NumberOfFrames = 12, 10, 3
    grid.SamplesPerPixel, grid.PhotometricInterpretation = 1, "MONOCHROME2"
    grid.BitsAllocated = 32
    grid.DoseUnits, grid.DoseType = "GY", "PHYSICAL"
    yy, xx = np.mgrid[0:12, 0:10]
    dose = np.stack([np.exp(-((yy - 6) ** 2 + (xx - 5) ** 2) / (8.0 + k)) * 2.5 for k in range(3)]).astype(np.float32)
    grid.FloatPixelData = dose.astype("<f4").tobytes()
    cases.append(Case("rtdose-float-grid", "non-image DICOM", _save(grid, root / "rtdose_float.dcm"), "image",
                      frame=1))
    if _has("rtdose.dcm"):
        cases.append(Case("rtdose-uint32-grid", "non-image DICOM", Path(dcm("rtdose.dcm")), "image", frame=4))
    # A binary Segmentation: pixels are labels, refused as not displayable.
    seg = minimal(uid.SegmentationStorage, "SEG")
    seg.Rows, seg.Columns, seg.NumberOfFrames = 16, 16, 2
    seg.SamplesPerPixel, seg.PhotometricInterpretation = 1, "MONOCHROME2"
    seg.BitsAllocated, seg.BitsStored, seg.HighBit, seg.PixelRepresentation = 1, 1, 0, 0
    seg.SegmentationType = "BINARY"
    mask = np.zeros((2, 16, 16), np.uint8)
    mask[:, 4:12, 5:11] = 1
    seg.PixelData = np.packbits(mask.ravel(), bitorder="little").tobytes()
    cases.append(Case("nonimage-seg-binary", "non-image DICOM", _save(seg, root / "seg.dcm"), "refused",
                      ("segmentation", "not an image")))
    return cases


def _file_names(root: Path) -> list[Case]:
    """Unicode, control characters, traversal-looking and format-string names; good and broken files."""
    good = _ramp(12, 10)
    broken = b"Not an image; its name is echoed in the refusal.\n" * 4
    names = {
        "unicode": "résumé 🩻 Ünïcödé.png",
        "newline": "line1\nline2.png",
        "carriage-return": "Doe^John\rPatient.png",
        "tab-and-escape": "tab\there\x1b[31mred.png",
        "backslash-traversal": "..\\..\\etc\\passwd.png",
        "format-string": "%s%n%(name)s{0}.png",
        "long": "n" * 240 + ".png",
        "dot-dot-prefix": "..png",
        "leading-dash": "-rf.png",
    }
    cases = []
    for id_, name in names.items():
        cases.append(Case(f"name-{id_}-good", "file name", _png(root / name, good), "image"))
        bad = root / ("broken " + name.replace(".png", ".dcm"))
        cases.append(Case(f"name-{id_}-broken", "file name", _write(bad, broken), "refused",
                          ("not a recognised image",)))
    # A path that climbs out of a nested folder ("../../etc/passwd.dcm" relative to it).
    nested = root / "a" / "b"
    nested.mkdir(parents=True, exist_ok=True)
    (root / "etc").mkdir(exist_ok=True)
    _write(root / "etc" / "passwd.dcm", broken)
    cases.append(Case("name-path-traversal", "file name", nested / ".." / ".." / "etc" / "passwd.dcm", "refused",
                      ("passwd.dcm is not a recognised image",)))
    return cases


_BUILDERS: dict[str, Callable[[Path], list[Case]]] = {
    "truncated": _truncated,
    "transfer syntax": _transfer_syntax,
    "lying header": _lying_header,
    "huge": _huge,
    "not an image": _not_an_image,
    "tiny": _tiny,
    "numeric": _numeric,
    "multi-frame": _multiframe,
    "non-image DICOM": _non_image,
    "file name": _file_names,
}


def build_corpus(root: Path, categories: tuple[str, ...] = CATEGORIES) -> list[Case]:
    """Write the corpus under ``root`` (one sub-folder per category) and return its cases.

    Deterministic: the same files, ids and expectations on every run.
    """
    cases: list[Case] = []
    for category in categories:
        folder = root / category.replace(" ", "_")
        folder.mkdir(parents=True, exist_ok=True)
        cases += _BUILDERS[category](folder)
    ids = [c.id for c in cases]
    assert len(ids) == len(set(ids)), "corpus ids must be unique"
    return cases
