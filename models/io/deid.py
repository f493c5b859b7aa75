"""De-identification of DICOM headers (a subset of the DICOM PS3.15 Annex E profiles).

:func:`deidentify` applies, in place and recursively into sequences, the
*Basic Application Level Confidentiality Profile* (PS3.15 E.1) for the
attributes listed below, with two of its options:

* *Retain Longitudinal Temporal Information with Modified Dates* (default,
  ``dates="shift"``): every date (VR DA, and the date part of DT) moves back by
  the same keyed number of days for one patient, so intervals between studies
  survive; with ``dates="remove"`` dates and times are emptied instead.
* *Retain Patient Characteristics*: sex, age (capped at 90 years, which
  HIPAA treats as identifying), size and weight stay; they matter for image
  interpretation and identify nobody on their own.

What happens to the header:

* PatientName and PatientID become the same keyed pseudonym (``ANON-`` and
  10 hex digits): one patient keeps one pseudonym under one key, so images of
  a patient can still be grouped. PatientBirthDate/Time are emptied.
* Every person name (VR PN) anywhere else is emptied (physicians, operators...).
* Other identifiers, addresses, institution/station/device names and serial
  numbers, free-text descriptions and comments (which often carry names) are
  removed; AccessionNumber and StudyID (type 2) are emptied.
* Instance UIDs (VR UI, anything that is not a DICOM-registered UID such as a
  SOP class or transfer syntax) are remapped through a keyed hash,
  ``generate_uid(entropy_srcs=[key, uid])``: the same UID maps to the same new
  UID under the same key, so study/series/instance relations and references
  between files survive, while the originals cannot be recovered without the key.
* Private tags, overlays (groups 60xx), curves (50xx) and icon images are removed.
* The result is recorded in the file: PatientIdentityRemoved ``YES``,
  DeidentificationMethod and DeidentificationMethodCodeSequence (113100, plus
  113107 / 113108 for the options), LongitudinalTemporalInformationModified.

Not done: the pixel data is not touched. Text burned into the pixels (common in
ultrasound and secondary captures) is *detected as a risk* by
:func:`burned_in_warning` and reported, never claimed to be removed.

Nothing here logs or returns an identifying value: :class:`DeidResult` holds
counts and warnings only.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DeidentificationError, ImageReadError

__all__ = [
    "DeidResult",
    "burned_in_warning",
    "deidentify",
    "deidentify_file",
    "is_deidentified",
    "new_key",
    "pseudonym",
    "remap_uid",
]

#: Values written to DeidentificationMethod (LO: at most 64 characters each).
METHOD_BASIC = "MedEnhance: PS3.15 E.1 basic profile subset, keyed UIDs"
METHOD_SHIFTED = "dates shifted by a keyed per-patient offset"
METHOD_REMOVED = "dates and times removed"
METHOD_PIXELS = "pixel data not cleaned (burned-in text not removed)"

# Type 3 (or retired) attributes whose value may identify the patient, a
# person or a place: removed (PS3.15 Table E.1-1 action X, or X/Z/D where the
# attribute is optional in every image IOD we read).
_REMOVE = (
    # patient
    "OtherPatientIDs", "OtherPatientIDsSequence", "OtherPatientNames", "PatientBirthName",
    "PatientMotherBirthName", "PatientAddress", "PatientTelephoneNumbers", "PatientTelecomInformation",
    "MilitaryRank", "BranchOfService", "MedicalRecordLocator", "MedicalAlerts", "Allergies",
    "CountryOfResidence", "RegionOfResidence", "EthnicGroup", "Occupation", "AdditionalPatientHistory",
    "PatientComments", "PatientReligiousPreference", "PatientInsurancePlanCodeSequence",
    "InsurancePlanIdentification", "ResponsiblePerson", "ResponsiblePersonRole", "ResponsibleOrganization",
    "IssuerOfPatientID", "IssuerOfPatientIDQualifiersSequence", "PatientBirthTime", "PatientState",
    "LastMenstrualDate", "ReferencedPatientSequence", "ReferencedPatientPhotoSequence",
    "PatientInstitutionResidence", "CurrentPatientLocation", "AdmissionID", "IssuerOfAdmissionIDSequence",
    "ServiceEpisodeID", "ServiceEpisodeDescription", "VisitComments", "AdmittingDiagnosesDescription",
    "AdmittingDiagnosesCodeSequence", "PatientSexNeutered",
    # people and places
    "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName", "InstitutionCodeSequence",
    "InstitutionalDepartmentTypeCodeSequence", "ReferringPhysicianAddress",
    "ReferringPhysicianTelephoneNumbers", "ReferringPhysicianIdentificationSequence", "PhysiciansOfRecord",
    "PhysiciansOfRecordIdentificationSequence", "PerformingPhysicianName",
    "PerformingPhysicianIdentificationSequence", "NameOfPhysiciansReadingStudy",
    "PhysiciansReadingStudyIdentificationSequence", "OperatorsName", "OperatorIdentificationSequence",
    "RequestingPhysician", "RequestingService", "ScheduledPerformingPhysicianName", "StationName",
    "DeviceSerialNumber", "DeviceUID", "PlateID", "DetectorID", "CassetteID", "GantryID",
    # requests, procedures and free text
    "StudyDescription", "SeriesDescription", "ImageComments", "FrameComments", "ProtocolName",
    "DerivationDescription", "RequestedProcedureDescription", "RequestedProcedureID",
    "PerformedProcedureStepDescription", "PerformedProcedureStepID", "ScheduledProcedureStepDescription",
    "ScheduledProcedureStepID", "RequestAttributesSequence", "ReferencedStudySequence",
    "ReferencedPerformedProcedureStepSequence", "TextComments", "TextString", "AcquisitionComments",
    "InterpretationText", "ReasonForTheRequestedProcedure",
    "ReasonForStudy", "RequestedContrastAgent", "StudyComments", "ImagePresentationComments",
    "DischargeDiagnosisDescription", "PerformedLocation", "ScheduledStudyLocation",
    "ScheduledStudyLocationAETitle", "ScheduledStationName", "PerformedStationName",
    "PerformedStationAETitle", "ScheduledStationAETitle", "OriginalAttributesSequence",
    "ModifiedAttributesSequence", "DigitalSignaturesSequence", "IconImageSequence",
    "PersonAddress", "PersonTelephoneNumbers", "PersonTelecomInformation", "OrderCallbackPhoneNumber",
    "OrderEnteredBy", "OrderEntererLocation", "TimezoneOffsetFromUTC",
)

# Type 2 attributes that must stay present: emptied (action Z).
_EMPTY = ("AccessionNumber", "StudyID", "PatientBirthDate", "ReferringPhysicianName")

# UI attributes that name a class, syntax or software, not an instance: never remapped.
_UID_KEEP = frozenset({
    "SOPClassUID", "ReferencedSOPClassUID", "AffectedSOPClassUID", "RequestedSOPClassUID",
    "MediaStorageSOPClassUID", "TransferSyntaxUID", "ImplementationClassUID", "CodingSchemeUID",
    "RelatedGeneralSOPClassUID", "OriginalSpecializedSOPClassUID", "ReferencedTransferSyntaxUIDInFile",
    "SOPClassesInStudy", "ContextGroupExtensionCreatorUID", "MappingResourceUID",
    "PrivateInformationCreatorUID", "ReferencedSOPClassUIDInFile", "SOPClassUIDInFile",
})

_PSEUDONYM_PREFIX = "ANON-"
_MAX_SHIFT_DAYS = 3650
_AGE_CAP = "090Y"

# Modalities whose images often carry text burned into the pixels (patient
# name, dates, operator), as PS3.15 E.1 "Clean Pixel Data Option" warns.
_BURNED_IN_MODALITIES = {"US": "Ultrasound", "SC": "Secondary capture", "XC": "External camera",
                         "ES": "Endoscopy", "OT": "Other", "DOC": "Document", "GM": "General microscopy"}


@dataclass
class DeidResult:
    """What :func:`deidentify` did, without any identifying value.

    Attributes:
        dates: ``"shift"`` or ``"remove"``.
        date_shift_days: days every date moved back (0 when removed).
        uids_remapped: number of UID values replaced.
        elements_cleaned: number of attributes removed or emptied (private tags included).
        warnings: human-readable warnings (burned-in text risk).
    """

    dates: str
    date_shift_days: int = 0
    uids_remapped: int = 0
    elements_cleaned: int = 0
    warnings: list[str] = field(default_factory=list)


# ----------------------------------------------------------------- keyed maps


def new_key() -> str:
    """A random 128-bit key (hex). One key = one de-identification session:
    keep it secret, and reuse it where UIDs and pseudonyms must stay consistent."""
    return secrets.token_hex(16)


def _key_text(key: str | bytes) -> str:
    if isinstance(key, bytes):
        key = key.hex()
    key = str(key)
    if not key:
        raise DeidentificationError("de-identification needs a non-empty key")
    return key


def remap_uid(uid: str, key: str | bytes) -> str:
    """The keyed replacement of ``uid``: same (uid, key) -> same new UID; 64 characters at most."""
    from pydicom.uid import generate_uid

    return str(generate_uid(entropy_srcs=[_key_text(key), str(uid).strip()]))


def _digest(key: str | bytes, *parts: str) -> bytes:
    return hashlib.sha256("\x1f".join([_key_text(key), *parts]).encode("utf-8")).digest()


def pseudonym(patient_id: str, key: str | bytes) -> str:
    """Keyed pseudonym of a patient identifier, e.g. ``"ANON-3f9a0c21be"``."""
    return _PSEUDONYM_PREFIX + _digest(key, "patient", str(patient_id).strip()).hex()[:10]


def _shift_days(patient_id: str, key: str | bytes) -> int:
    """Keyed per-patient date offset in days, 1 .. 3650 (dates move back)."""
    return 1 + int.from_bytes(_digest(key, "dates", str(patient_id).strip())[:8], "big") % _MAX_SHIFT_DAYS


# --------------------------------------------------------------------- checks


def is_deidentified(ds: Any) -> bool:
    """True when ``ds`` was de-identified by :func:`deidentify` (PatientIdentityRemoved
    ``YES`` and our method recorded). Another tool's ``YES`` is not trusted: its
    profile may keep what ours removes (private tags, descriptions, UIDs)."""
    if str(ds.get("PatientIdentityRemoved", "") or "").strip().upper() != "YES":
        return False
    return METHOD_BASIC in [str(v) for v in _values(ds.get("DeidentificationMethod", ""))]


def burned_in_warning(ds: Any) -> str | None:
    """A warning when the pixels may hold burned-in text (name, dates), else None.

    ``BurnedInAnnotation == "YES"``: the file says so. Absent tag on ultrasound,
    secondary capture and other camera/document modalities (or a Secondary
    Capture SOP class): such images often have it. De-identification here edits
    the header only; this function only warns.
    """
    flag = str(ds.get("BurnedInAnnotation", "") or "").strip().upper()
    if flag == "YES":
        return ("Burned-in annotation: the file says its pixels contain text (BurnedInAnnotation = YES), "
                "which may include the patient's name or dates. De-identification cleans the header only; "
                "it does not remove text from the image. Check the pixels before sharing.")
    if flag:
        return None  # "NO": the writer vouches for clean pixels
    modality = str(ds.get("Modality", "") or "").strip().upper()
    sop = ds.get("SOPClassUID")
    sop_name = str(getattr(sop, "name", "") or "")
    kind = _BURNED_IN_MODALITIES.get(modality) or ("Secondary capture" if "Secondary Capture" in sop_name else None)
    if kind is None:
        return None
    return (f"Possible burned-in text: {kind.lower()} images often carry the patient's name, dates or other "
            "text in the pixels, and this file does not say whether it does (no BurnedInAnnotation). "
            "De-identification cleans the header only; it does not remove text from the image. "
            "Check the pixels before sharing.")


# ------------------------------------------------------------------ deidentify


def deidentify(ds: Any, key: str | bytes, *, dates: str = "shift") -> DeidResult:
    """De-identify a pydicom ``Dataset`` in place (see the module docstring).

    Args:
        ds: a ``pydicom.Dataset`` (with or without pixel data; ``file_meta``
            is cleaned too when present).
        key: secret of this de-identification session (:func:`new_key`);
            the same key gives the same UIDs, pseudonyms and date offsets.
        dates: ``"shift"`` (keyed per-patient offset, times kept) or
            ``"remove"`` (dates and times emptied).

    Returns:
        a :class:`DeidResult` (counts and warnings; no identifying values).

    Raises:
        DeidentificationError: bad ``dates`` or key, or a header that cannot be processed.
    """
    if dates not in ("shift", "remove"):
        raise DeidentificationError(f"dates must be 'shift' or 'remove', got {dates!r}")
    key = _key_text(key)
    # The pseudonym and date offset follow the patient: PatientID, else the name.
    original_id = str(ds.get("PatientID", "") or "").strip() or str(ds.get("PatientName", "") or "").strip()
    shift = _shift_days(original_id, key) if dates == "shift" else 0
    result = DeidResult(dates=dates, date_shift_days=shift)
    warning = burned_in_warning(ds)  # before cleaning: it reads Modality/SOP class only
    if warning:
        result.warnings.append(warning)
    try:
        _clean(ds, key, shift, result)
        _clean_file_meta(ds, key, result)
        _record(ds, original_id, key, dates)
    except DeidentificationError:
        raise
    except Exception as exc:  # a malformed element: refuse rather than pass identifiers on
        raise DeidentificationError(
            f"the DICOM header could not be de-identified ({type(exc).__name__}); it will not be used"
        ) from None
    return result


def _clean(ds: Any, key: str, shift: int, result: DeidResult) -> None:
    before = _count_private(ds)
    ds.remove_private_tags()
    result.elements_cleaned += before
    _clean_level(ds, key, shift, result)


def _count_private(ds: Any) -> int:
    n = 0
    for elem in ds.iterall():
        n += int(elem.tag.is_private)
    return n


def _clean_level(ds: Any, key: str, shift: int, result: DeidResult) -> None:
    """One dataset level: remove, empty, rename, shift dates, remap UIDs; recurse into sequences."""
    for keyword in _REMOVE:
        if keyword in ds:
            del ds[keyword]
            result.elements_cleaned += 1
    for elem in list(ds):
        group = elem.tag.group
        if 0x5000 <= group <= 0x50FF or 0x6000 <= group <= 0x60FF:  # curves and overlays
            del ds[elem.tag]
            result.elements_cleaned += 1
    for keyword in _EMPTY:
        if keyword in ds and ds[keyword].value not in (None, ""):
            ds[keyword].value = ""
            result.elements_cleaned += 1
    for elem in list(ds):
        vr = elem.VR
        if vr == "SQ":
            for item in elem.value or []:
                _clean_level(item, key, shift, result)
        elif vr == "PN" and elem.keyword != "PatientName":
            if elem.value not in (None, ""):
                elem.value = ""
                result.elements_cleaned += 1
        elif vr in ("DA", "DT"):
            _clean_date(elem, shift, result)
        elif vr == "TM" and shift == 0:
            if elem.value not in (None, ""):
                elem.value = ""
                result.elements_cleaned += 1
        elif vr == "UI":
            _remap_element(elem, key, result)
    if "PatientAge" in ds:
        ds.PatientAge = _cap_age(ds.PatientAge)


def _cap_age(value: Any) -> str:
    """``"093Y"`` -> ``"090Y"``: ages over 89 years identify (HIPAA); others unchanged."""
    text = str(value or "").strip().upper()
    if len(text) == 4 and text[:3].isdigit() and text[3] == "Y" and int(text[:3]) > 89:
        return _AGE_CAP
    return text


def _values(value: Any) -> list[Any]:
    from pydicom.multival import MultiValue

    if isinstance(value, (list, tuple, MultiValue)):
        return list(value)
    return [value]


def _set_values(elem: Any, values: list[Any]) -> None:
    elem.value = values if len(values) > 1 else (values[0] if values else "")


def _clean_date(elem: Any, shift: int, result: DeidResult) -> None:
    if elem.value in (None, ""):
        return
    if shift == 0:
        elem.value = ""
        result.elements_cleaned += 1
        return
    out = [_shift_date_text(str(v), shift, elem.VR == "DT") for v in _values(elem.value)]
    _set_values(elem, out)
    result.elements_cleaned += 1


def _shift_date_text(text: str, days: int, is_datetime: bool) -> str:
    """``"20040119"`` -> the date ``days`` earlier (DT keeps its time part); unparsable -> ``""``."""
    text = text.strip()
    digits = text[:10].replace(".", "") if not is_datetime else text  # old ACR-NEMA "YYYY.MM.DD"
    try:
        date = _dt.date(int(digits[0:4]), int(digits[4:6]), int(digits[6:8]))
    except (ValueError, IndexError):
        return ""  # a value we cannot shift must not survive unchanged
    shifted = (date - _dt.timedelta(days=days)).strftime("%Y%m%d")
    return shifted + (digits[8:] if is_datetime else "")


def _remap_element(elem: Any, key: str, result: DeidResult) -> None:
    from pydicom.uid import UID_dictionary

    if elem.keyword in _UID_KEEP or elem.value in (None, ""):
        return
    out = []
    for v in _values(elem.value):
        text = str(v).strip()
        if text and text not in UID_dictionary:  # registered UIDs (classes, syntaxes) name no one
            text = remap_uid(text, key)
            result.uids_remapped += 1
        out.append(text)
    _set_values(elem, out)


def _clean_file_meta(ds: Any, key: str, result: DeidResult) -> None:
    """Keep only what a reader needs in group 0002 (AE titles can name a hospital)."""
    from pydicom.dataset import FileMetaDataset

    old = getattr(ds, "file_meta", None)
    if old is None:
        return
    meta = FileMetaDataset()
    for keyword in ("FileMetaInformationVersion", "MediaStorageSOPClassUID", "TransferSyntaxUID",
                    "ImplementationClassUID", "ImplementationVersionName"):
        if keyword in old:
            meta[keyword] = old[keyword]
    if "SOPInstanceUID" in ds:
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID  # already remapped
    elif "MediaStorageSOPInstanceUID" in old:
        meta.MediaStorageSOPInstanceUID = remap_uid(old.MediaStorageSOPInstanceUID, key)
        result.uids_remapped += 1
    if "MediaStorageSOPClassUID" not in meta and "SOPClassUID" in ds:
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
    result.elements_cleaned += max(0, len(old) - len(meta))
    ds.file_meta = meta


def _record(ds: Any, original_id: str, key: str, dates: str) -> None:
    """Pseudonymise the patient and say in the file what was done (PS3.15 E.1 / C.7.1.1)."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    alias = pseudonym(original_id, key) if original_id or "PatientName" in ds else None
    if alias is not None:
        ds.PatientName = alias
        ds.PatientID = alias
    ds.PatientIdentityRemoved = "YES"
    previous = [str(v) for v in _values(ds.get("DeidentificationMethod", "")) if str(v).strip()]
    ours = [METHOD_BASIC, METHOD_SHIFTED if dates == "shift" else METHOD_REMOVED, METHOD_PIXELS]
    ds.DeidentificationMethod = previous + [m for m in ours if m not in previous]
    codes = list(ds.get("DeidentificationMethodCodeSequence", None) or [])
    have = {str(c.get("CodeValue", "")) for c in codes}
    wanted = [("113100", "Basic Application Confidentiality Profile"),
              ("113108", "Retain Patient Characteristics Option")]
    if dates == "shift":
        wanted.append(("113107", "Retain Longitudinal Temporal Information Modified Dates Option"))
    for value, meaning in wanted:
        if value not in have:
            item = Dataset()
            item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
            codes.append(item)
    ds.DeidentificationMethodCodeSequence = Sequence(codes)
    ds.LongitudinalTemporalInformationModified = "MODIFIED" if dates == "shift" else "REMOVED"


# ------------------------------------------------------------------------ files


def deidentify_file(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], key: str | bytes, *, dates: str = "shift"
) -> DeidResult:
    """De-identify a DICOM file into ``dst`` (written to a temp name, then renamed).

    The pixel data and its transfer syntax are kept as they are. Files without
    the 'DICM' preamble are written with a standard file meta header when they
    have a SOP class and instance, otherwise as they came.

    Raises:
        ImageReadError: ``src`` is not a readable DICOM file.
        DeidentificationError: the header could not be cleaned or written.
        OSError: ``dst`` could not be written (disk full, read-only folder, ...).
    """
    from models.io.dicom import _read_dataset
    from models.io.limits import display_name

    src, dst = Path(os.fspath(src)), Path(os.fspath(dst))
    try:
        with src.open("rb") as fh:
            head = fh.read(132)
    except OSError as exc:
        raise ImageReadError(f"cannot read {display_name(src)}: {exc.strerror or exc}") from None
    ds = _read_dataset(src, force=head[128:132] != b"DICM")
    if len(ds) == 0:
        raise ImageReadError(
            f"{display_name(src)} has no readable DICOM data elements; it is probably truncated or corrupt"
        )
    _check_pixel_encapsulation(ds)
    result = deidentify(ds, key, dates=dates)
    meta = getattr(ds, "file_meta", None)
    standard = meta is not None and all(k in meta for k in ("MediaStorageSOPClassUID",
                                                            "MediaStorageSOPInstanceUID",
                                                            "TransferSyntaxUID"))
    tmp = dst.with_name(f".{dst.name}.partial-{os.getpid()}")
    try:
        ds.save_as(tmp, enforce_file_format=standard)
        os.replace(tmp, dst)
    except OSError:  # disk full, read-only folder...: a resource problem, reported as such by the caller
        tmp.unlink(missing_ok=True)
        raise
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        raise DeidentificationError(
            f"the de-identified DICOM could not be written ({type(exc).__name__}: {exc})"
        ) from None
    return result


def _check_pixel_encapsulation(ds: Any) -> None:
    """Raw pixel bytes under a compressed transfer syntax cannot be written back: say so plainly.

    (pydicom's writer would refuse with a message about ``encapsulate()``.)
    """
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    elem = ds["PixelData"] if "PixelData" in ds else None
    if ts is not None and ts.is_encapsulated and elem is not None and not elem.is_undefined_length:
        raise ImageReadError(
            f"DICOM pixel data is not encapsulated as {ts.name} requires; the header's transfer syntax "
            "is wrong or the file is corrupt"
        )


