"""Building the dataset of a derived DICOM: identity, source reference, derivation, geometry, pixels, LUT.

:func:`models.io.dicom_export.export_derived_dicom` calls these in order; :class:`ExportOptions` says
what the user chose. Each ``_set_*`` function sets one group of attributes and nothing else.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..loading import sha256, weights_path
from ..registry import ModelSpec, get_spec
from .meta import ImageMeta

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


# Lossy transfer syntaxes: a derived image of lossy data is itself lossy (PS3.3 C.7.6.1.1.5).
_LOSSY_TS = {
    "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.81",
    "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.93", "1.2.840.10008.1.2.4.203",
    "1.2.840.10008.1.2.4.100", "1.2.840.10008.1.2.4.101", "1.2.840.10008.1.2.4.102",
    "1.2.840.10008.1.2.4.103", "1.2.840.10008.1.2.4.104", "1.2.840.10008.1.2.4.105",
    "1.2.840.10008.1.2.4.106", "1.2.840.10008.1.2.4.107", "1.2.840.10008.1.2.4.108",
}


@dataclass(frozen=True)
class ExportOptions:
    """How :func:`export_derived_dicom` writes a file.

    Attributes:
        deidentify: de-identify the header unless the source already was (by
            :mod:`models.io.deid`). On by default; turn off only for data that
            never leaves the site.
        deid_key: the de-identification session key (:func:`models.io.deid.new_key`);
            reuse one key so the derived files of a study share one (remapped)
            StudyInstanceUID and patient pseudonym. None: a fresh key per call.
        dates: ``"shift"`` or ``"remove"`` (see :func:`models.io.deid.deidentify`).
        series_number_offset: added to the source's SeriesNumber.
        series_description: default ``"<model> (MedEnhance derived)"``.
    """

    deidentify: bool = True
    deid_key: str | None = None
    dates: str = "shift"
    series_number_offset: int = 1000
    series_description: str | None = None


@functools.lru_cache(maxsize=64)
def _file_sha256(path: str, mtime_ns: int, size: int) -> str:
    return sha256(path)  # (mtime, size) in the key: retrained weights are hashed again


def weights_sha256(spec: ModelSpec) -> str | None:
    """Hex SHA-256 of a network's weights file (cached per file version); for an automatic entry the SHA-256 of
    the hashes of every weights file it may use; None for classical methods.

    Raises:
        WeightsError: a network (or an automatic entry's network or probe) whose weights file is missing.
    """
    if spec.kind == "auto":  # its identity: the weights of every network and probe it may run
        from ..auto import members, missing_weights, probe_path  # models.auto -> enhance -> io: imported when needed
        from ..errors import WeightsError

        if missing := missing_weights(spec.name):
            raise WeightsError(f"weights for {spec.name!r} are missing: {', '.join(missing)}")
        parts = [weights_sha256(get_spec(m)) for m in members(spec.name)]
        probe = probe_path(spec.name)
        if probe is not None:
            parts.append(_file_sha256(str(probe), probe.stat().st_mtime_ns, probe.stat().st_size))
        return hashlib.sha256(" ".join(p or "" for p in parts).encode()).hexdigest()
    if spec.kind != "network":
        return None
    path = weights_path(spec)
    try:
        stat = path.stat()
    except OSError:
        from ..errors import WeightsError

        raise WeightsError(f"weights file for {spec.name!r} is missing: {path.name}") from None
    return _file_sha256(str(path), stat.st_mtime_ns, stat.st_size)


def derivation_description(spec: ModelSpec, meta: ImageMeta) -> str:
    """DerivationDescription text: model, kind, task, weights hash and window (ST, < 1024 chars)."""
    task = f"{spec.task} x{spec.scale}" if spec.task == "sr" else spec.task
    if spec.kind == "network":
        what = f"network, weights {spec.weights} SHA-256 {weights_sha256(spec)}"
    elif spec.kind == "auto":
        from ..auto import members

        what = f"automatic choice among {', '.join(members(spec.name))}, combined SHA-256 {weights_sha256(spec)}"
    else:
        what = "classical method, no learned weights"
    window = ""
    if not meta.is_colour:
        window = f"; display window C {meta.window_center:.6g} W {meta.window_width:.6g}"
    return f"MedEnhance {spec.name} ({task}; {what}){window}. Research output, not for diagnosis."
