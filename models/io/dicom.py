"""DICOM specifics of :func:`models.io.read_image`.

Pipeline for one frame (PS3.3 C.11 / C.7.6.3):

1. ``pydicom.dcmread`` the dataset (``force=True`` only for headerless files
   that look like DICOM) through :class:`models.io.limits.BoundedFile`, with values over
   :data:`_DEFER_BYTES` (the pixel data) left on disk. Then check - from the
   header, before decoding - that it is a displayable image (below), with a
   known transfer syntax, a sane size, the requested frame, and (for native
   transfer syntaxes) as many pixel bytes as Rows*Columns*Samples*Bits say.
2. Decode only the requested frame, straight from the file:
   ``pydicom.pixels.pixel_array(file, index=frame)`` reads that frame's bytes
   only, so one frame of a 100-frame file costs one frame of memory.
   Compressed transfer syntaxes (JPEG baseline/extended/
   lossless, JPEG-LS, JPEG 2000, RLE) go through the pylibjpeg plugins.
   YBR_FULL / YBR_FULL_422 come back as RGB (pydicom's default ``raw=False``);
   JPEG 2000 YBR_RCT / YBR_ICT are converted by the codec.
3. Grayscale: modality LUT (rescale slope/intercept, per-frame functional
   groups for enhanced multi-frame, or a Modality LUT Sequence), then the VOI
   window (see :func:`models.io.window.apply_window`) or the file's VOI LUT; then
   MONOCHROME1 is inverted so that high attenuation (bone) is white.
4. Colour (RGB, YBR_*, PALETTE COLOR via ``apply_color_lut``): RGB samples,
   scaled by the full range of their bit depth unless a window is requested;
   DICOM windows do not apply to colour images (PS3.3 C.11.2.1).

Displayable: a dataset is an image when it has pixel data (PixelData,
FloatPixelData or DoubleFloatPixelData), the header to decode it, and its
pixels are intensities. RT Dose grids are shown as a grayscale image of their
stored values (DoseGridScaling not applied; the window is automatic).
Segmentations (SEG, label maps) have pixel data but hold labels, which no
model should super-resolve or denoise: refused like RT Structure Sets, RT
Plans, SR documents and waveforms, which have no pixels at all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from models.errors import ImageReadError
from models.io.dicom_pixels import _colour_image, _grayscale_image, _palette_image, _pixel_spacing
from models.io.limits import BoundedFile, _first_line, check_frame_index, check_pixel_count, display_name
from models.io.meta import ImageMeta
from models.io.window import WindowSpec

__all__ = ["read_dicom"]

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")

# Values longer than this stay on disk when parsing (in practice: the pixel data).
_DEFER_BYTES = 256 * 1024

# SOP classes whose pixel data are labels, not intensities (see the module docstring).
_LABEL_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.66.4": "Segmentation Storage",
    "1.2.840.10008.5.1.4.1.1.66.7": "Label Map Segmentation Storage",
    "1.2.840.10008.5.1.4.1.1.66.8": "Heightmap Segmentation Storage",
}
_VALID_BITS_ALLOCATED = (1, 8, 16, 32, 64)


def read_dicom(
    path: Path, frame: int = 0, window: WindowSpec = None, *, force: bool = False
) -> tuple[np.ndarray, ImageMeta]:
    """Read one frame of a DICOM file; contract as :func:`models.io.read_image`.

    Args:
        path: DICOM file.
        frame: 0-based frame index.
        window: see :func:`models.io.read_image`.
        force: parse a file without the 'DICM' preamble (pydicom ``force=True``);
            the result must then contain pixel data or it is rejected as "not an
            image".

    Returns:
        ``(image, meta)``: float32 [0, 1] image (H, W) or (H, W, 3) and its meta.
    """
    with BoundedFile(path) as fh:
        ds = _parse(fh, display_name(path), force, defer=True)
        keyword = _pixel_keyword(ds, path, force)
        _check_displayable(ds)
        rows, cols, samples, frame_count = _geometry(ds, keyword)
        check_pixel_count(cols, rows)
        frame = check_frame_index(frame, frame_count)
        _check_pixel_data_length(ds, keyword, rows, cols, samples, frame_count, fh.size)
        arr = _decode_frame(fh, ds, frame, frame_count)
    if arr.shape[:2] != (rows, cols):
        raise ImageReadError(
            f"decoded frame has shape {arr.shape}, but the header says {rows}x{cols}; "
            "the file is inconsistent"
        )
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ImageReadError("DICOM float pixel data contains NaN or infinite values")

    photometric = str(ds.get("PhotometricInterpretation", "") or "").strip().upper()
    common = dict(
        source_format="dicom",
        modality=str(ds.get("Modality", "") or ""),
        photometric=photometric,
        bits_allocated=int(ds.get("BitsAllocated", arr.dtype.itemsize * 8) or 0),
        frame_count=frame_count,
        frame=frame,
        pixel_spacing=_pixel_spacing(ds, frame),
        transfer_syntax=_transfer_syntax_name(ds),
        sop_class=_sop_class_name(ds),
    )
    if photometric == "PALETTE COLOR":
        return _palette_image(arr, ds, window, common)
    if arr.ndim == 3:
        return _colour_image(arr, ds, window, common)
    return _grayscale_image(arr, ds, frame, window, common, inverted=photometric == "MONOCHROME1")


# ------------------------------------------------------------------ reading


def _read_dataset(path: Path, force: bool) -> Any:
    """The whole dataset of ``path``, every value in memory (for de-identification and export)."""
    with BoundedFile(path) as fh:
        return _parse(fh, display_name(path), force, defer=False)


def _parse(fh: BoundedFile, name: str, force: bool, *, defer: bool) -> Any:
    """``pydicom.dcmread`` with every failure as an :class:`ImageReadError`.

    Args:
        fh: the open file; with ``defer`` it must stay open while the dataset
            is used (deferred values are read from it).
        name: the file's display name for messages.
        force: parse without the 'DICM' preamble.
        defer: leave values over :data:`_DEFER_BYTES` on disk.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(fh, force=force, defer_size=_DEFER_BYTES if defer else None)
        _convert_elements(ds.file_meta)
        _convert_elements(ds)
    except InvalidDicomError as exc:
        raise ImageReadError(f"{name} is not a valid DICOM file: {exc}") from None
    except MemoryError:
        raise
    except Exception as exc:  # struct.error, EOFError, ValueError, ... on corrupt headers
        raise ImageReadError(
            f"{name} could not be parsed as DICOM (corrupt or truncated header): "
            f"{type(exc).__name__}: {_first_line(exc)}"
        ) from None
    _ensure_transfer_syntax(ds)
    _check_transfer_syntax(ds)
    return ds


def _convert_elements(ds: Any) -> None:
    """Convert every element that is in memory now, recursing into sequences.

    pydicom converts raw elements lazily, on first access: a corrupt one
    (e.g. an unknown VR) would raise NotImplementedError or ValueError deep in
    whichever helper reads it first. Converting here makes it a parse error.
    Deferred values (the pixel data) stay on disk; private elements are never
    read here, so a corrupt one does not cost the image (and is not converted).
    """
    for tag in list(ds.keys()):
        if tag.is_private:
            continue
        raw = ds.get_item(tag, keep_deferred=True)
        if getattr(raw, "value", b"") is None and getattr(raw, "length", 0):
            continue  # deferred: measured and read later
        elem = ds[tag]
        if elem.VR == "SQ":
            for item in elem.value:
                _convert_elements(item)


def _check_transfer_syntax(ds: Any) -> None:
    """Refuse transfer syntax UIDs pydicom does not know (private or made up): nothing could decode them."""
    from pydicom.uid import AllTransferSyntaxes

    ts = ds.file_meta.get("TransferSyntaxUID") if getattr(ds, "file_meta", None) is not None else None
    if ts is not None and str(ts) not in AllTransferSyntaxes:
        raise ImageReadError(
            f"DICOM transfer syntax {str(ts)[:64]!r} is not a standard one; its pixel data cannot be decoded"
        )


def _ensure_transfer_syntax(ds: Any) -> None:
    """Give headerless (no file meta) datasets the transfer syntax they were read with.

    pydicom needs ``file_meta.TransferSyntaxUID`` to decode pixels; for raw
    datasets the parser already detected the encoding.
    """
    from pydicom import uid

    file_meta = getattr(ds, "file_meta", None)
    if file_meta is not None and "TransferSyntaxUID" in file_meta:
        return
    implicit, little = getattr(ds, "original_encoding", (None, None))
    if implicit is None:
        return
    if implicit:
        ts = uid.ImplicitVRLittleEndian
    else:
        ts = uid.ExplicitVRLittleEndian if little else uid.ExplicitVRBigEndian
    from pydicom.dataset import FileMetaDataset

    if file_meta is None:
        ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ts


def _pixel_keyword(ds: Any, path: Path, forced: bool) -> str:
    """Keyword of the dataset's pixel data element, or a clear ImageReadError."""
    for keyword in _PIXEL_KEYWORDS:
        if keyword in ds:
            return keyword
    if forced and "SOPClassUID" not in ds:
        # pydicom's force=True parses almost anything; without pixels or a SOP
        # class there is no sign this was DICOM at all.
        raise ImageReadError(
            f"{display_name(path)} is not a recognised image: expected DICOM, PNG, JPEG, TIFF or BMP"
        )
    if len(ds) == 0:
        # pydicom returns an empty dataset when e.g. encapsulated pixel data
        # ends before its sequence delimiter.
        raise ImageReadError(
            "DICOM file has a header but no readable data elements; it is probably truncated or corrupt"
        )
    sop = _sop_class_name(ds) or "unknown"
    hint = ""
    if "Image" in sop or "Rows" in ds:
        hint = "; this SOP class should hold an image, so the file is probably truncated"
    raise ImageReadError(f"DICOM file has no pixel data (SOP class {sop}); nothing to display{hint}")


def _check_displayable(ds: Any) -> None:
    """Refuse pixel data that are labels rather than an image (see the module docstring)."""
    sop = str(ds.get("SOPClassUID", "") or "")
    if sop in _LABEL_SOP_CLASSES or str(ds.get("Modality", "") or "").upper() == "SEG":
        name = _LABEL_SOP_CLASSES.get(sop, "Segmentation")
        raise ImageReadError(
            f"DICOM file is a segmentation (SOP class {name}): its pixels are labels, not an image; "
            "nothing to display or enhance"
        )


def _geometry(ds: Any, keyword: str) -> tuple[int, int, int, int]:
    """(rows, columns, samples per pixel, number of frames) from the header."""
    required = ["Rows", "Columns", "BitsAllocated", "PhotometricInterpretation"]
    if keyword == "PixelData":  # float pixel data has no PixelRepresentation
        required.append("PixelRepresentation")
    missing = [k for k in required if ds.get(k) in (None, "")]
    if missing:
        raise ImageReadError(
            f"DICOM image header is incomplete (missing {', '.join(missing)}); cannot decode"
        )
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        bits = int(ds.BitsAllocated)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError) as exc:
        raise ImageReadError(f"DICOM image header has invalid values: {_first_line(exc)}") from None
    if samples not in (1, 3):
        raise ImageReadError(f"DICOM SamplesPerPixel is {samples}; only 1 or 3 are supported")
    if bits not in _VALID_BITS_ALLOCATED:
        raise ImageReadError(
            f"DICOM BitsAllocated is {bits}; only {', '.join(map(str, _VALID_BITS_ALLOCATED))} are valid"
        )
    if frames < 0:  # 0 (seen in the wild) means one frame
        raise ImageReadError(f"DICOM NumberOfFrames is {frames}; the header is corrupt")
    return rows, cols, samples, max(frames, 1)


def _check_pixel_data_length(
    ds: Any, keyword: str, rows: int, cols: int, samples: int, frames: int, file_size: int
) -> None:
    """Native (uncompressed) pixel data must hold every frame the header promises.

    Done before decoding: pydicom would raise deep inside, or for some layouts
    silently reshape garbage. Measured without loading deferred pixel data: a
    value left on disk counts up to the end of the file.
    """
    ts = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if ts is None or ts.is_compressed:
        return  # encapsulated data: the codec reports missing fragments
    from pydicom.pixels.utils import get_expected_length

    try:
        expected = int(get_expected_length(ds, unit="bytes"))
        actual = _value_length(ds, keyword, file_size)
    except Exception as exc:
        raise ImageReadError(f"DICOM pixel data cannot be measured: {_first_line(exc)}") from None
    bits = int(ds.get("BitsAllocated", 0) or 0)
    layout = f"{frames} frame(s) of {rows}x{cols}x{samples} at {bits} bits"
    if actual < expected:
        raise ImageReadError(
            f"DICOM pixel data is too short: {actual:,} bytes present, {expected:,} expected for "
            f"{layout}; the file is truncated or its header is wrong"
        )
    # Trailing padding (an even-length byte, or writers padding to a block) is
    # ignored by pydicom; a whole frame or more of excess means the header
    # describes a different image than the data, which would decode as garbage.
    if actual - expected >= max(expected // frames, 2):
        raise ImageReadError(
            f"DICOM pixel data is longer than its header says: {actual:,} bytes present, "
            f"{expected:,} expected for {layout}; the header does not match the data"
        )


def _value_length(ds: Any, keyword: str, file_size: int) -> int:
    """Bytes of element ``keyword`` present in the file, without reading a deferred value."""
    elem = ds.get_item(keyword, keep_deferred=True)
    value = getattr(elem, "value", None)
    if value is None and getattr(elem, "value_tell", None) is not None:  # deferred: still on disk
        return max(0, min(int(elem.length), file_size - int(elem.value_tell)))
    return len(value or b"")


def _decode_frame(fh: BoundedFile, ds: Any, frame: int, frame_count: int) -> np.ndarray:
    """Decode one frame only, reading only its bytes from the open file ``fh``."""
    from pydicom.pixels import pixel_array

    ts = ds.file_meta.TransferSyntaxUID
    index = frame if frame_count > 1 else None
    if ts.is_encapsulated:
        _check_codestream(fh, ds, ts)
    elem = next(ds.get_item(k, keep_deferred=True) for k in _PIXEL_KEYWORDS if k in ds)
    encoding = (getattr(elem, "is_implicit_VR", ts.is_implicit_VR),
                getattr(elem, "is_little_endian", ts.is_little_endian))
    try:
        if encoding == (ts.is_implicit_VR, ts.is_little_endian):
            # The transfer syntax is passed because headerless files have none in the file.
            arr = pixel_array(fh, index=index, transfer_syntax_uid=ts)
        else:  # pydicom found another VR/endianness than declared; only its dataset knows
            arr = pixel_array(ds, index=index)
    except MemoryError:
        raise
    except BaseException as exc:
        # A codec written in Rust (pylibjpeg-rle) panics on some corrupt data; pyo3 raises that as
        # PanicException, a BaseException that every `except Exception` up to the server would miss.
        if not isinstance(exc, Exception) and not is_codec_panic(exc):
            raise
        raise ImageReadError(
            f"could not decode the DICOM pixel data "
            f"({_transfer_syntax_name(ds) or 'unknown transfer syntax'}): {_first_line(exc)}"
        ) from None
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if not arr.dtype.isnative:  # big-endian transfer syntax: report and export native dtypes
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return arr


def is_codec_panic(exc: BaseException) -> bool:
    """True for a panic of a Rust extension (pyo3's ``PanicException``, not an ``Exception`` subclass)."""
    return type(exc).__name__ == "PanicException" and type(exc).__module__ == "pyo3_runtime"


def _codestream_kind(data: bytes) -> str | None:
    """What a compressed frame's first bytes look like: "JPEG", "JPEG 2000", "RLE" or None."""
    if data[:2] == b"\xff\xd8":  # SOI: JPEG baseline/extended/lossless and JPEG-LS
        return "JPEG"
    if data[:4] == b"\xff\x4f\xff\x51" or data[4:8] == b"jP  ":  # SOC + SIZ, or a JP2 box
        return "JPEG 2000"
    if len(data) >= 8 and 1 <= int.from_bytes(data[:4], "little") <= 15 and data[4:8] == b"\x40\x00\x00\x00":
        return "RLE"  # segment count, then the first segment at offset 64
    return None


def _check_codestream(fh: BoundedFile, ds: Any, ts: Any) -> None:
    """The first fragment must be what the transfer syntax says.

    A JPEG 2000 codestream declared as JPEG baseline is decoded by Pillow
    (which sniffs the format) with the wrong sign handling: a plausible but
    wrong image. Checking the codestream's magic bytes refuses it instead.
    Only the Basic Offset Table and the first fragment are read.
    """
    from pydicom import uid
    from pydicom.encaps import generate_fragments

    families = (("JPEG", uid.JPEGTransferSyntaxes + uid.JPEGLSTransferSyntaxes),
                ("JPEG 2000", uid.JPEG2000TransferSyntaxes), ("RLE", uid.RLETransferSyntaxes))
    declared = next((kind for kind, syntaxes in families if ts in syntaxes), None)
    if declared is None:
        return  # MPEG, JPEG XL, deflate...: left to the decoder
    elem = next(ds.get_item(k, keep_deferred=True) for k in _PIXEL_KEYWORDS if k in ds)
    source: Any = getattr(elem, "value", None)
    if source is None and getattr(elem, "value_tell", None) is not None:  # deferred: read from the file
        fh.seek(int(elem.value_tell))
        source = fh
    try:
        fragments = generate_fragments(source or b"")
        next(fragments)  # the Basic Offset Table
        first = next(fragments)
    except StopIteration:
        raise ImageReadError(
            f"DICOM pixel data has no {ts.name} fragments; the file is truncated or corrupt"
        ) from None
    except Exception:
        raise ImageReadError(
            f"DICOM pixel data is not encapsulated as {ts.name} requires; the header's transfer syntax is wrong "
            "or the file is corrupt"
        ) from None
    found = _codestream_kind(bytes(first[:8]))
    if found != declared:
        looks = f"it looks like {found}" if found else "it is not a known codestream"
        raise ImageReadError(
            f"DICOM pixel data is not {declared} data as its transfer syntax ({ts.name}) says: {looks}; "
            "the header's transfer syntax is wrong or the data is corrupt"
        )


# ------------------------------------------------------------ header helpers


def _transfer_syntax_name(ds: Any) -> str:
    ts = getattr(ds, "file_meta", None)
    ts = ts.get("TransferSyntaxUID") if ts is not None else None
    return str(ts.name) if ts is not None else ""


def _sop_class_name(ds: Any) -> str:
    """Name of the SOP class (its UID if unknown), for messages: at most 80 characters."""
    sop = ds.get("SOPClassUID")
    return str(getattr(sop, "name", sop))[:80] if sop else ""


