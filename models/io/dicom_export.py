"""Writing an enhanced image back to DICOM as a *derived* image of its source.

:func:`export_derived_dicom` turns a model output (float [0, 1] display image)
into a DICOM file a PACS or viewer accepts next to the original:

* **Same study, new series.** StudyInstanceUID is kept (the derived image is
  about the same patient and examination, and belongs next to it in a
  viewer); SeriesInstanceUID is new, derived from (source series, model,
  weights, window) so every image of a series exported with the same model and
  settings lands in one derived series; SOPInstanceUID is new and random.
  SeriesNumber is the source's + 1000 and SeriesDescription names the model.
* **Provenance.** ImageType ``DERIVED\\SECONDARY\\...``; SourceImageSequence
  references the source instance (SOP Class/Instance UID, frame number for
  multi-frame sources, purpose 121322 "Source image for image processing
  operation"); DerivationDescription names the model and, for networks, the
  SHA-256 of its weights file ("classical" methods have none);
  DerivationCodeSequence says what kind of processing (113085 spatial
  resampling, 113087 smoothing, 110001 image processing).
* **SOP class.** Classic single-frame IODs (CT, MR, CR, DX, MG, US, SC) keep
  their SOP class: a derived CT with DERIVED\\SECONDARY is still a valid CT
  image, and viewers keep their CT tools (HU readout). Multi-frame ultrasound
  becomes single-frame US. Everything else (enhanced multi-frame CT/MR,
  XA, NM, ...) becomes Secondary Capture: one frame out of an enhanced
  multi-frame object would need functional groups we do not rebuild.
  Non-DICOM sources become a Secondary Capture in a new study.
* **Pixels in the source's units.** The display image is mapped back through
  the window and the rescale (:func:`models.io.display_to_raw`), so CT stays in
  Hounsfield units with the original RescaleSlope/Intercept, bit depth and
  signedness; MONOCHROME1 stays MONOCHROME1. The window used for display is
  written as WindowCenter/Width (VOILUTFunction LINEAR_EXACT, the function the
  reader uses), so the file opens looking as it did. Values the window
  clipped are lost: they come back at the window edges. Colour sources are
  written as 8-bit (or 16-bit) RGB.
* **Geometry.** Rows/Columns are the output's; for super-resolution
  PixelSpacing, ImagerPixelSpacing and NominalScannedPixelSpacing are divided
  by the scale, ImagePositionPatient moves to the centre of the new first
  pixel, and ultrasound regions are rescaled. Other pixel-coordinate
  attributes (display shutters, overlays, icons) are dropped.
* **Encoding.** One frame (the selected one), Explicit VR Little Endian,
  written to a temp name then renamed (never a half file).
* **De-identified.** Unless the source was already de-identified by
  :mod:`models.io.deid` (the studio's copies are), the header is de-identified
  with the options' key before anything is written. Dates are the source's
  (shifted) dates; the processing time is not written, as it would reveal the
  shift.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from models.io.dicom_dataset import (
    _DROP,
    _SC,
    ExportOptions,
    _blank_dataset,
    _derived_class,
    _secondary_capture_base,
    _set_derivation,
    _set_geometry,
    _set_identity,
    _set_lossy_flag,
    _set_lut,
    _set_pixels,
    _set_source_reference,
    derivation_description,
    weights_sha256,
)

from ..errors import ExportError
from ..registry import ModelSpec, get_spec
from .meta import ImageMeta
from .window import display_to_raw

__all__ = ["ExportOptions", "export_derived_dicom", "derivation_description", "weights_sha256"]


# --------------------------------------------------------------------- export


def export_derived_dicom(
    source_path: str | os.PathLike[str] | None,
    enhanced: np.ndarray,
    meta: ImageMeta,
    model_name: str,
    out_path: str | os.PathLike[str],
    options: ExportOptions | None = None,
) -> Path:
    """Write ``enhanced`` as a derived DICOM image of ``source_path`` (see the module docstring).

    Args:
        source_path: the DICOM file ``meta`` was read from (the studio passes
            its de-identified copy), or None / a non-DICOM file: then a
            Secondary Capture in a new study is written.
        enhanced: model output, float in [0, 1], (H*s, W*s) or (H*s, W*s, 3),
            where (H, W) is ``meta.shape`` and s the model's scale.
        meta: the :class:`ImageMeta` returned by ``read_image`` with the image
            the model was given (same frame and window).
        model_name: the registered model that produced ``enhanced``.
        out_path: file to write (parent folder must exist).
        options: :class:`ExportOptions`; defaults de-identify with a fresh key.

    Returns:
        ``Path(out_path)``.

    Raises:
        ExportError: the output does not fit the source (size not s times the
            source, wrong channels), float source data, or the file cannot be written.
        UnknownModelError: no such model. WeightsError: a network without weights.
    """

    from . import deid

    options = options or ExportOptions()
    spec = get_spec(model_name)
    raw, scale = _raw_pixels(enhanced, meta, spec)

    is_dicom_source = source_path is not None and meta.source_format == "dicom"
    ds = _read_header(Path(os.fspath(source_path))) if is_dicom_source else _blank_dataset(meta)
    if is_dicom_source:
        _check_source(ds, meta)
    if options.deidentify and not deid.is_deidentified(ds):
        deid.deidentify(ds, options.deid_key or deid.new_key(), dates=options.dates)

    source_class = str(ds.get("SOPClassUID", "") or "")
    source_instance = str(ds.get("SOPInstanceUID", "") or "")
    source_series = str(ds.get("SeriesInstanceUID", "") or "")
    source_ts = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
    sop_class = _derived_class(source_class) if is_dicom_source else _SC
    if sop_class == _SC and source_class != _SC:
        ds = _secondary_capture_base(ds)

    for keyword in _DROP:
        if keyword in ds:
            del ds[keyword]
    for elem in list(ds):
        if 0x6000 <= elem.tag.group <= 0x60FF:  # overlays: source pixel coordinates
            del ds[elem.tag]

    _set_identity(ds, spec, meta, options, sop_class, source_series, is_dicom_source)
    if is_dicom_source and source_instance:
        _set_source_reference(ds, source_class, source_instance, meta)
    _set_derivation(ds, spec, meta)
    _set_geometry(ds, meta, scale, keep_plane=sop_class != _SC or source_class == _SC)
    _set_pixels(ds, raw, meta)
    _set_lut(ds, meta, sop_class)
    _set_lossy_flag(ds, source_ts)
    if sop_class == _SC:
        ds.ConversionType = "WSD"  # workstation: SC Equipment module, type 1
        ds.SecondaryCaptureDeviceManufacturer = "MedEnhance"
        ds.SecondaryCaptureDeviceManufacturerModelName = spec.name[:64]
    return _write(ds, Path(os.fspath(out_path)))


def _raw_pixels(enhanced: Any, meta: ImageMeta, spec: ModelSpec) -> tuple[np.ndarray, int]:
    """Stored pixel values of the output, and the whole-number scale it has over the source."""
    arr = np.asarray(enhanced)
    if arr.dtype.kind != "f":
        raise ExportError(f"expected a float image in [0, 1], got dtype {arr.dtype}")
    src_h, src_w = (int(v) for v in meta.shape[:2])
    if arr.ndim != (3 if meta.is_colour else 2) or (meta.is_colour and arr.shape[-1] != 3):
        want = "(H, W, 3) colour" if meta.is_colour else "(H, W) grayscale"
        raise ExportError(f"the source is {want}, but the image has shape {arr.shape}")
    h, w = arr.shape[:2]
    if h % src_h or w % src_w or h // src_h != w // src_w or h < src_h:
        raise ExportError(f"output {w}x{h} is not a whole multiple of the source {src_w}x{src_h}")
    scale = h // src_h
    if scale != spec.scale:
        raise ExportError(f"{spec.name} has scale {spec.scale}, but the output is {scale}x the source")
    if np.dtype(meta.raw_dtype).kind == "f":
        raise ExportError("float pixel data cannot be exported as a derived DICOM image")
    try:
        raw = _display_to_raw_blocks(arr, meta)
    except ValueError as exc:
        raise ExportError(str(exc)) from None
    if raw.dtype.kind == "u" and meta.raw_signed:  # a signed range in an unsigned container
        raw = raw.astype(raw.dtype.str.replace("u", "i"))
    return raw, scale


_BLOCK_PIXELS = 1 << 18


def _display_to_raw_blocks(arr: np.ndarray, meta: ImageMeta) -> np.ndarray:
    """:func:`display_to_raw` over blocks of rows: it is elementwise, and its float64
    temporaries then stay small (a 4k x 4k radiograph: ~0.05 s instead of ~1 s)."""
    out = np.empty(arr.shape, dtype=np.dtype(meta.raw_dtype))
    rows = max(1, _BLOCK_PIXELS // max(1, arr.shape[1]))
    for r in range(0, arr.shape[0], rows):
        out[r:r + rows] = display_to_raw(arr[r:r + rows], meta)
    return out


def _read_header(path: Path) -> Any:
    """The source's header (no pixel data: multi-frame files can be huge)."""
    import pydicom

    try:
        with path.open("rb") as fh:
            preamble = fh.read(132)[128:132] == b"DICM"
        return pydicom.dcmread(path, stop_before_pixels=True, force=not preamble)
    except Exception as exc:
        raise ExportError(f"cannot read the source DICOM header: {type(exc).__name__}: {exc}") from None


def _check_source(ds: Any, meta: ImageMeta) -> None:
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    if (rows, cols) != tuple(int(v) for v in meta.shape[:2]):
        raise ExportError(f"the source is {cols}x{rows}, but the image meta says "
                          f"{meta.shape[1]}x{meta.shape[0]}: meta and file do not belong together")


def _write(ds: Any, out_path: Path) -> Path:
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    tmp = out_path.with_name(f".{out_path.name}.partial-{os.getpid()}")
    try:
        ds.save_as(tmp, enforce_file_format=True)
        os.replace(tmp, out_path)
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        raise ExportError(f"the DICOM file could not be written: {type(exc).__name__}: {exc}") from None
    return out_path
