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
  :mod:`models.deid` (the studio's copies are), the header is de-identified
  with the options' key before anything is written. Dates are the source's
  (shifted) dates; the processing time is not written, as it would reveal the
  shift.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ExportError
from .io import ImageMeta, display_to_raw
from .loading import sha256, weights_path
from .registry import ModelSpec, get_spec

__all__ = ["ExportOptions", "export_derived_dicom", "derivation_description", "weights_sha256"]

_SC = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture Image Storage
_US = "1.2.840.10008.5.1.4.1.1.6.1"  # Ultrasound Image Storage
_US_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.3.1"

# Single-frame IODs whose modules stay valid for a derived, resized, one-frame image.
_KEEP_CLASS = {
    "1.2.840.10008.5.1.4.1.1.2": "CT Image Storage",
    "1.2.840.10008.5.1.4.1.1.4": "MR Image Storage",
    "1.2.840.10008.5.1.4.1.1.1": "Computed Radiography Image Storage",
    "1.2.840.10008.5.1.4.1.1.1.1": "Digital X-Ray Image Storage - For Presentation",
    "1.2.840.10008.5.1.4.1.1.1.1.1": "Digital X-Ray Image Storage - For Processing",
    "1.2.840.10008.5.1.4.1.1.1.2": "Digital Mammography X-Ray Image Storage - For Presentation",
    "1.2.840.10008.5.1.4.1.1.1.2.1": "Digital Mammography X-Ray Image Storage - For Processing",
    _US: "Ultrasound Image Storage",
    _SC: "Secondary Capture Image Storage",
}

# Lossy transfer syntaxes: a derived image of lossy data is itself lossy (PS3.3 C.7.6.1.1.5).
_LOSSY_TS = {
    "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.81",
    "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.93", "1.2.840.10008.1.2.4.203",
    "1.2.840.10008.1.2.4.100", "1.2.840.10008.1.2.4.101", "1.2.840.10008.1.2.4.102",
    "1.2.840.10008.1.2.4.103", "1.2.840.10008.1.2.4.104", "1.2.840.10008.1.2.4.105",
    "1.2.840.10008.1.2.4.106", "1.2.840.10008.1.2.4.107", "1.2.840.10008.1.2.4.108",
}

# Attributes describing the source's pixel data or frames: rewritten or dropped.
_DROP = (
    "PixelData", "FloatPixelData", "DoubleFloatPixelData", "NumberOfFrames", "FrameIncrementPointer",
    "FrameTime", "FrameTimeVector", "FrameDelay", "StartTrim", "StopTrim", "RecommendedDisplayFrameRate",
    "CineRate", "ActualFrameDuration", "PerFrameFunctionalGroupsSequence",
    "SharedFunctionalGroupsSequence", "DimensionOrganizationSequence", "DimensionIndexSequence",
    "DimensionOrganizationType", "ConcatenationUID", "ConcatenationFrameOffsetNumber",
    "InConcatenationNumber", "InConcatenationTotalNumber", "SmallestImagePixelValue",
    "LargestImagePixelValue", "SmallestPixelValueInSeries", "LargestPixelValueInSeries",
    "PixelPaddingValue", "PixelPaddingRangeLimit", "PlanarConfiguration", "PixelAspectRatio",
    "RedPaletteColorLookupTableDescriptor", "GreenPaletteColorLookupTableDescriptor",
    "BluePaletteColorLookupTableDescriptor", "AlphaPaletteColorLookupTableDescriptor",
    "RedPaletteColorLookupTableData", "GreenPaletteColorLookupTableData",
    "BluePaletteColorLookupTableData", "AlphaPaletteColorLookupTableData",
    "SegmentedRedPaletteColorLookupTableData", "SegmentedGreenPaletteColorLookupTableData",
    "SegmentedBluePaletteColorLookupTableData", "PaletteColorLookupTableUID", "IconImageSequence",
    "WindowCenterWidthExplanation", "VOILUTFunction", "SourceImageSequence", "DerivationCodeSequence",
    "DerivationDescription", "InstanceCreationDate", "InstanceCreationTime", "ExtendedOffsetTable",
    "ExtendedOffsetTableLengths", "LossyImageCompressionRatio", "LossyImageCompressionMethod",
    # display shutters are in source pixel coordinates
    "ShutterShape", "ShutterLeftVerticalEdge", "ShutterRightVerticalEdge", "ShutterUpperHorizontalEdge",
    "ShutterLowerHorizontalEdge", "CenterOfCircularShutter", "RadiusOfCircularShutter",
    "VerticesOfThePolygonalShutter", "ShutterPresentationValue", "ShutterOverlayGroup",
    "ShutterPresentationColorCIELabValue", "MaskSubtractionSequence",
)

# What a Secondary Capture built from another IOD keeps: patient, study,
# series, equipment and de-identification records (the rest is rewritten).
_SC_KEEP = (
    "SpecificCharacterSet", "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientAge",
    "PatientSize", "PatientWeight", "PatientIdentityRemoved", "DeidentificationMethod",
    "DeidentificationMethodCodeSequence", "LongitudinalTemporalInformationModified", "StudyInstanceUID",
    "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber", "StudyDescription",
    "Modality", "SeriesInstanceUID", "SeriesNumber", "SeriesDate", "SeriesTime", "ContentDate",
    "ContentTime", "Manufacturer", "ManufacturerModelName", "SoftwareVersions", "BodyPartExamined",
    "Laterality", "ImageLaterality", "PatientOrientation", "InstanceNumber", "ImageType",
    "BurnedInAnnotation", "RecognizableVisualFeatures", "LossyImageCompression", "PresentationLUTShape",
    "ModalityLUTSequence", "RescaleType", "VOILUTSequence", "SOPClassUID", "SOPInstanceUID",
)

_DERIVATION_CODES = {
    "sr": ("113085", "Spatial resampling"),
    "denoise": ("113087", "Smoothing"),
    "enhance": ("110001", "Image Processing"),
}


@dataclass(frozen=True)
class ExportOptions:
    """How :func:`export_derived_dicom` writes a file.

    Attributes:
        deidentify: de-identify the header unless the source already was (by
            :mod:`models.deid`). On by default; turn off only for data that
            never leaves the site.
        deid_key: the de-identification session key (:func:`models.deid.new_key`);
            reuse one key so the derived files of a study share one (remapped)
            StudyInstanceUID and patient pseudonym. None: a fresh key per call.
        dates: ``"shift"`` or ``"remove"`` (see :func:`models.deid.deidentify`).
        series_number_offset: added to the source's SeriesNumber.
        series_description: default ``"<model> (MedEnhance derived)"``.
    """

    deidentify: bool = True
    deid_key: str | None = None
    dates: str = "shift"
    series_number_offset: int = 1000
    series_description: str | None = None


# ----------------------------------------------------------------- provenance


@functools.lru_cache(maxsize=64)
def _file_sha256(path: str, mtime_ns: int, size: int) -> str:
    return sha256(path)  # (mtime, size) in the key: retrained weights are hashed again


def weights_sha256(spec: ModelSpec) -> str | None:
    """Hex SHA-256 of a network's weights file (cached per file version); None for classical methods.

    Raises:
        WeightsError: a network whose weights file is missing.
    """
    if spec.kind != "network":
        return None
    path = weights_path(spec)
    try:
        stat = path.stat()
    except OSError:
        from .errors import WeightsError

        raise WeightsError(f"weights file for {spec.name!r} is missing: {path.name}") from None
    return _file_sha256(str(path), stat.st_mtime_ns, stat.st_size)


def derivation_description(spec: ModelSpec, meta: ImageMeta) -> str:
    """DerivationDescription text: model, kind, task, weights hash and window (ST, < 1024 chars)."""
    task = f"{spec.task} x{spec.scale}" if spec.task == "sr" else spec.task
    if spec.kind == "network":
        what = f"network, weights {spec.weights} SHA-256 {weights_sha256(spec)}"
    else:
        what = "classical method, no learned weights"
    window = ""
    if not meta.is_colour:
        window = f"; display window C {meta.window_center:.6g} W {meta.window_width:.6g}"
    return f"MedEnhance {spec.name} ({task}; {what}){window}. Research output, not for diagnosis."


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
    import pydicom

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


def _blank_dataset(meta: ImageMeta) -> Any:
    """Patient/study skeleton for a non-DICOM source: empty type-2 identity, new study."""
    from pydicom.dataset import Dataset
    from pydicom.uid import generate_uid

    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                    "ReferringPhysicianName", "StudyID", "AccessionNumber", "Laterality", "PatientOrientation"):
        setattr(ds, keyword, "")
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "OT"
    ds.SeriesNumber = 0
    ds.InstanceNumber = 1
    ds.ImageType = ["DERIVED", "SECONDARY"]
    # No BurnedInAnnotation: we cannot vouch for the pixels of a screenshot or photo.
    return ds


def _derived_class(source_class: str) -> str:
    if source_class in _KEEP_CLASS:
        return source_class
    if source_class == _US_MULTIFRAME:
        return _US
    return _SC


def _secondary_capture_base(ds: Any) -> Any:
    from pydicom.dataset import Dataset

    out = Dataset()
    for keyword in _SC_KEEP:
        if keyword in ds:
            out[keyword] = ds[keyword]
    if getattr(ds, "file_meta", None) is not None:
        out.file_meta = ds.file_meta
    return out


def _set_identity(ds: Any, spec: ModelSpec, meta: ImageMeta, options: ExportOptions, sop_class: str,
                  source_series: str, is_dicom_source: bool) -> None:
    from pydicom.uid import generate_uid

    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    # One derived series per (source series, model, weights, window): a series
    # exported image by image still forms one series.
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[
        source_series or str(ds.SOPInstanceUID), spec.name, weights_sha256(spec) or "classical",
        f"{meta.window_center:.6g}/{meta.window_width:.6g}",
    ])
    try:
        number = int(ds.get("SeriesNumber", 0) or 0)
    except (TypeError, ValueError):
        number = 0
    ds.SeriesNumber = number + int(options.series_number_offset) if is_dicom_source else number
    ds.SeriesDescription = (options.series_description or f"{spec.name} (MedEnhance derived)")[:64]
    if meta.frame_count > 1:
        ds.InstanceNumber = meta.frame + 1  # frames of one file become instances of the derived series
    elif "InstanceNumber" not in ds or ds.InstanceNumber in (None, ""):
        ds.InstanceNumber = 1
    # Values 3+ (e.g. AXIAL, LOCALIZER) still describe the image; 1-2 become DERIVED\SECONDARY.
    ds.ImageType = ["DERIVED", "SECONDARY", *_strings(ds.get("ImageType"))[2:]]
    ds.ImageComments = "MedEnhance research output, not for diagnosis."
    if meta.source_format == "dicom" and "Modality" not in ds:
        ds.Modality = meta.modality or "OT"


def _strings(value: Any) -> list[str]:
    """A (possibly multi-valued, possibly absent) element value as a list of strings."""
    if value is None or value == "":
        return []
    if isinstance(value, (str, bytes)):
        return [str(value)]
    return [str(v) for v in value]


def _code_item(value: str, scheme: str, meaning: str) -> Any:
    from pydicom.dataset import Dataset

    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def _set_source_reference(ds: Any, source_class: str, source_instance: str, meta: ImageMeta) -> None:
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    item = Dataset()
    item.ReferencedSOPClassUID = source_class
    item.ReferencedSOPInstanceUID = source_instance
    if meta.frame_count > 1:
        item.ReferencedFrameNumber = meta.frame + 1  # DICOM frame numbers start at 1
    item.PurposeOfReferenceCodeSequence = Sequence(
        [_code_item("121322", "DCM", "Source image for image processing operation")])
    ds.SourceImageSequence = Sequence([item])


def _set_derivation(ds: Any, spec: ModelSpec, meta: ImageMeta) -> None:
    from pydicom.sequence import Sequence

    ds.DerivationDescription = derivation_description(spec, meta)
    value, meaning = _DERIVATION_CODES.get(spec.task, _DERIVATION_CODES["enhance"])
    ds.DerivationCodeSequence = Sequence([_code_item(value, "DCM", meaning)])


def _ds(value: float) -> Any:
    from pydicom.valuerep import DSfloat

    return DSfloat(float(value), auto_format=True)


def _set_geometry(ds: Any, meta: ImageMeta, scale: int, *, keep_plane: bool) -> None:
    """Spacing / scale, position of the new first pixel, US regions; drop the plane module for SC."""
    if not keep_plane:
        for keyword in ("ImagePositionPatient", "ImageOrientationPatient", "SliceLocation",
                        "FrameOfReferenceUID", "PositionReferenceIndicator"):
            if keyword in ds:
                del ds[keyword]
        if meta.pixel_spacing is not None:
            ds.PixelSpacing = [_ds(s / scale) for s in meta.pixel_spacing]
        return
    if scale == 1:
        return
    for keyword in ("PixelSpacing", "ImagerPixelSpacing", "NominalScannedPixelSpacing"):
        values = _floats(ds.get(keyword))
        if values is not None and len(values) == 2:
            ds[keyword].value = [_ds(v / scale) for v in values]
    _shift_position(ds, scale)
    _scale_us_regions(ds, scale)


def _floats(value: Any) -> list[float] | None:
    if value is None or value == "":
        return None
    try:
        values = [float(v) for v in (value if not isinstance(value, (str, bytes)) else [value])]
    except (TypeError, ValueError):
        return None
    return values if all(np.isfinite(values)) else None


def _shift_position(ds: Any, scale: int) -> None:
    """ImagePositionPatient is the *centre* of the first pixel: after upscaling
    by s it moves by (1/s - 1)/2 source pixels along both image axes."""
    pos = _floats(ds.get("ImagePositionPatient"))
    ori = _floats(ds.get("ImageOrientationPatient"))
    spacing = _floats(ds.get("PixelSpacing"))  # already divided by the scale
    if not (pos and ori and spacing) or len(pos) != 3 or len(ori) != 6 or len(spacing) != 2:
        return
    row_dir, col_dir = np.array(ori[:3]), np.array(ori[3:])
    row_spacing, col_spacing = spacing[0] * scale, spacing[1] * scale  # source spacing
    offset = (1.0 / scale - 1.0) / 2.0
    new = np.array(pos) + offset * (col_spacing * row_dir + row_spacing * col_dir)
    ds.ImagePositionPatient = [_ds(v) for v in new]


def _scale_us_regions(ds: Any, scale: int) -> None:
    for region in ds.get("SequenceOfUltrasoundRegions") or []:
        for keyword in ("RegionLocationMinX0", "RegionLocationMinY0"):
            if keyword in region:
                region[keyword].value = int(region[keyword].value) * scale
        for keyword in ("RegionLocationMaxX1", "RegionLocationMaxY1"):
            if keyword in region:
                region[keyword].value = (int(region[keyword].value) + 1) * scale - 1
        for keyword in ("ReferencePixelX0", "ReferencePixelY0"):
            if keyword in region:
                region[keyword].value = int(region[keyword].value) * scale
        for keyword in ("PhysicalDeltaX", "PhysicalDeltaY"):
            if keyword in region:
                region[keyword].value = float(region[keyword].value) / scale


def _set_pixels(ds: Any, raw: np.ndarray, meta: ImageMeta) -> None:
    """Image Pixel module for one frame of ``raw`` (native little-endian)."""
    colour = raw.ndim == 3
    bits_allocated = raw.dtype.itemsize * 8
    bits_stored = min(int(meta.bits_stored or bits_allocated), bits_allocated)
    if colour:
        photometric = "RGB"  # YBR and palette sources were converted to RGB by the reader
    else:
        photometric = meta.photometric if meta.photometric in ("MONOCHROME1", "MONOCHROME2") else "MONOCHROME2"
    ds.SamplesPerPixel = 3 if colour else 1
    ds.PhotometricInterpretation = photometric
    if colour:
        ds.PlanarConfiguration = 0  # RGBRGB...: numpy's (H, W, 3) order
    ds.Rows, ds.Columns = int(raw.shape[0]), int(raw.shape[1])
    ds.BitsAllocated = bits_allocated
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if raw.dtype.kind == "i" else 0
    data = np.ascontiguousarray(raw, dtype=raw.dtype.newbyteorder("<")).tobytes()
    ds.PixelData = data + (b"\x00" if len(data) % 2 else b"")  # even length (PS3.5 7.1)
    ds["PixelData"].VR = "OB" if bits_allocated == 8 else "OW"


def _set_lut(ds: Any, meta: ImageMeta, sop_class: str) -> None:
    """Modality LUT (rescale or table) and VOI (window or table) as used when the image was read."""
    for keyword in ("RescaleSlope", "RescaleIntercept"):
        if keyword in ds:
            del ds[keyword]
    if meta.modality_lut != "lut" and "ModalityLUTSequence" in ds:
        del ds.ModalityLUTSequence
    if meta.modality_lut == "rescale" and not meta.is_colour:
        ds.RescaleIntercept = _ds(meta.rescale_intercept)
        ds.RescaleSlope = _ds(meta.rescale_slope)
        if sop_class != "1.2.840.10008.5.1.4.1.1.2" and "RescaleType" not in ds:
            # Modality LUT module: RescaleType is required with a rescale (CT images imply HU).
            ds.RescaleType = "HU" if meta.modality.upper() == "CT" else "US"
    elif meta.modality_lut != "lut" and "RescaleType" in ds:
        del ds.RescaleType

    for keyword in ("WindowCenter", "WindowWidth"):
        if keyword in ds:
            del ds[keyword]
    if meta.is_colour:  # DICOM windows do not apply to colour images (PS3.3 C.11.2.1)
        if "VOILUTSequence" in ds:
            del ds.VOILUTSequence
        return
    if meta.window_source == "voi_lut" and "VOILUTSequence" in ds:
        return  # the file's own VOI LUT was used, and display_to_raw inverted it
    if "VOILUTSequence" in ds:
        del ds.VOILUTSequence
    ds.WindowCenter = _ds(meta.window_center)
    ds.WindowWidth = _ds(meta.window_width)
    # The reader maps with LINEAR_EXACT; saying so makes other viewers agree to the last grey level.
    ds.VOILUTFunction = "LINEAR_EXACT"


def _set_lossy_flag(ds: Any, source_ts: str) -> None:
    if source_ts in _LOSSY_TS:
        ds.LossyImageCompression = "01"  # once lossy, always lossy (PS3.3 C.7.6.1.1.5)
    elif str(ds.get("LossyImageCompression", "") or "") != "01":
        ds.LossyImageCompression = "00"


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
