"""The DICOM header panel: a few technical attributes of a de-identified dataset, as text rows.

Only de-identified datasets are shown (:func:`header_rows` refuses others), so no patient identifier
ever reaches the page.
"""

from __future__ import annotations

from typing import Any, Iterable

from models.io.deid import _values, is_deidentified

from ..errors import DeidentificationError

# Public, non-identifying attributes shown in the studio's header panel, in order.
_HEADER_KEYWORDS = (
    "PatientIdentityRemoved", "DeidentificationMethod", "PatientName", "PatientID", "PatientSex",
    "PatientAge", "StudyDate", "Modality", "SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID",
    "SOPInstanceUID", "ImageType", "Manufacturer", "ManufacturerModelName", "BodyPartExamined",
    "Rows", "Columns", "NumberOfFrames", "SamplesPerPixel", "PhotometricInterpretation", "BitsAllocated",
    "BitsStored", "PixelRepresentation", "PixelSpacing", "ImagerPixelSpacing", "SliceThickness", "KVP",
    "RescaleSlope", "RescaleIntercept", "RescaleType", "WindowCenter", "WindowWidth", "BurnedInAnnotation",
    "LossyImageCompression",
)


_MAX_VALUE_CHARS = 160


def header_rows(ds: Any) -> list[tuple[str, str]]:
    """(keyword, value) rows of the main public attributes of a *de-identified* dataset.

    UIDs of registered classes show their name (e.g. "CT Image Storage"); the
    transfer syntax comes last. Long values are shortened.

    Raises:
        DeidentificationError: ``ds`` was not de-identified by :func:`deidentify`:
            a header with identifiers must never be displayed.
    """
    if not is_deidentified(ds):
        raise DeidentificationError("refusing to display a DICOM header that is not de-identified")
    rows = []
    for keyword in _HEADER_KEYWORDS:
        if keyword in ds:
            rows.append((keyword, _show(ds[keyword].value, keyword == "SOPClassUID")))
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if ts:
        rows.append(("TransferSyntaxUID", str(getattr(ts, "name", ts))))
    return rows


def _show(value: Any, by_name: bool = False) -> str:
    if by_name and value is not None:
        value = getattr(value, "name", value)
    values: Iterable[Any] = _values(value)
    text = "\\".join("" if v is None else str(v) for v in values)
    return text if len(text) <= _MAX_VALUE_CHARS else text[: _MAX_VALUE_CHARS - 1] + "…"
