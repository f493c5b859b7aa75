"""De-identification (models.io.deid) on pydicom's real test files, and the studio's header panel.

CPU-only and fast; files come from pydicom's bundled test data (no network).
"""

from __future__ import annotations

import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported (studio tests below)

import datetime as dt  # noqa: E402
import logging  # noqa: E402
import shutil  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pydicom  # noqa: E402
import pytest  # noqa: E402
from pydicom.dataset import Dataset  # noqa: E402
from pydicom.sequence import Sequence  # noqa: E402

from models import read_image  # noqa: E402
from models.io import deid, dicom_header  # noqa: E402
from models.errors import DeidentificationError  # noqa: E402


from conftest import testdata as _testdata  # noqa: E402


CT = _testdata("CT_small.dcm")
US = _testdata("US1_UNCR.dcm")
MR = _testdata("MR_small.dcm")
pytestmark = pytest.mark.skipif(None in (CT, US, MR), reason="pydicom test data not available")

KEY = "test-key-0001"
# Identifying values present in the originals (CT_small / US1_UNCR / MR_small).
CT_SECRETS = ["CompressedSamples^CT1", "1CT1", "JFK IMAGING CENTER", "CT01_OC0", "ABCD1234", "1234ABCD",
              "GEMS_IDEN_01"]
US_SECRETS = ["CompressedSamples^US1", "13US1", "BAPTIST MED CTR", "mvme22", "4121885"]


def _read(path: str) -> Dataset:
    return pydicom.dcmread(path)


def _days(a: str, b: str) -> int:
    fmt = "%Y%m%d"
    return (dt.datetime.strptime(a, fmt) - dt.datetime.strptime(b, fmt)).days


def test_identifiers_gone_from_written_file(tmp_path: Path) -> None:
    for src, secrets in ((CT, CT_SECRETS), (US, US_SECRETS)):
        original = _read(src)
        dst = tmp_path / "out.dcm"
        deid.deidentify_file(src, dst, KEY)
        data = dst.read_bytes()
        for secret in secrets + [original.StudyInstanceUID, original.SOPInstanceUID]:
            assert secret.encode() not in data, secret  # nowhere in the file, sequences and file meta included
        ds = _read(str(dst))
        assert ds.PatientName == ds.PatientID and str(ds.PatientID).startswith("ANON-")
        assert ds.PatientBirthDate == "" and ds.AccessionNumber == "" and ds.ReferringPhysicianName == ""
        for keyword in ("InstitutionName", "InstitutionAddress", "StationName", "OtherPatientIDsSequence",
                        "StudyDescription", "ImageComments", "OperatorsName", "DeviceSerialNumber"):
            assert keyword not in ds, keyword
        assert not any(e.tag.is_private for e in ds.iterall())
        assert ds.PatientSex == original.PatientSex  # Retain Patient Characteristics option
        assert "SourceApplicationEntityTitle" not in ds.file_meta


def test_pixels_untouched_and_readable(tmp_path: Path) -> None:
    dst = tmp_path / "ct.dcm"
    deid.deidentify_file(CT, dst, KEY)
    a, meta_a = read_image(CT)
    b, meta_b = read_image(dst)
    assert np.array_equal(a, b) and meta_a.pixel_spacing == meta_b.pixel_spacing
    assert not list(tmp_path.glob(".*partial*"))  # written via a temp name and renamed


def test_dates_shifted_consistently_or_removed() -> None:
    original = _read(CT)
    shifted = _read(CT)
    result = deid.deidentify(shifted, KEY)
    assert result.dates == "shift" and 1 <= result.date_shift_days <= 3650
    assert shifted.StudyDate != original.StudyDate
    # Intervals survive (Retain Longitudinal Temporal Information with Modified Dates).
    assert _days(shifted.StudyDate, shifted.SeriesDate) == _days(original.StudyDate, original.SeriesDate)
    assert _days(original.StudyDate, shifted.StudyDate) == result.date_shift_days
    assert shifted.StudyTime == original.StudyTime
    assert shifted.LongitudinalTemporalInformationModified == "MODIFIED"

    removed = _read(CT)
    deid.deidentify(removed, KEY, dates="remove")
    assert removed.StudyDate == "" and removed.StudyTime == "" and removed.ContentDate == ""
    assert removed.LongitudinalTemporalInformationModified == "REMOVED"
    assert "113107" not in [c.CodeValue for c in removed.DeidentificationMethodCodeSequence]
    with pytest.raises(DeidentificationError):
        deid.deidentify(_read(CT), KEY, dates="keep")


def test_uids_remapped_consistently() -> None:
    a, b, other_key = _read(CT), _read(CT), _read(CT)
    original = _read(CT)
    deid.deidentify(a, KEY)
    deid.deidentify(b, KEY)
    deid.deidentify(other_key, "another-key")
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID"):
        assert a[keyword].value != original[keyword].value
        assert a[keyword].value == b[keyword].value == deid.remap_uid(original[keyword].value, KEY)
        assert other_key[keyword].value != a[keyword].value
        assert pydicom.uid.UID(a[keyword].value).is_valid
    assert a.SOPClassUID == original.SOPClassUID  # classes and syntaxes are not identifiers
    assert a.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
    assert a.file_meta.MediaStorageSOPInstanceUID == a.SOPInstanceUID
    assert a.PatientID == b.PatientID != other_key.PatientID  # one pseudonym per patient and key


def test_references_between_files_stay_consistent() -> None:
    """A UID referenced in a sequence maps like the instance it points to."""
    source, derived = _read(MR), _read(CT)
    ref = Dataset()
    ref.ReferencedSOPClassUID = source.SOPClassUID
    ref.ReferencedSOPInstanceUID = source.SOPInstanceUID
    derived.SourceImageSequence = Sequence([ref])
    deid.deidentify(source, KEY)
    deid.deidentify(derived, KEY)
    item = derived.SourceImageSequence[0]
    assert item.ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert item.ReferencedSOPClassUID == source.SOPClassUID


def test_method_recorded() -> None:
    ds = _read(MR)
    deid.deidentify(ds, KEY)
    assert ds.PatientIdentityRemoved == "YES" and deid.is_deidentified(ds)
    assert deid.METHOD_BASIC in list(ds.DeidentificationMethod)
    codes = [c.CodeValue for c in ds.DeidentificationMethodCodeSequence]
    assert {"113100", "113107", "113108"} <= set(codes)
    # Another tool's YES is not trusted (its profile may keep what ours removes).
    foreign = _read(MR)
    foreign.PatientIdentityRemoved = "YES"
    assert not deid.is_deidentified(foreign)


def test_age_capped_and_result_has_no_identifiers() -> None:
    ds = _read(CT)
    ds.PatientAge = "093Y"
    result = deid.deidentify(ds, KEY)
    assert ds.PatientAge == "090Y"
    assert "CompressedSamples" not in repr(result) and "1CT1" not in repr(result)


def test_burned_in_warning() -> None:
    us = _read(US)
    assert "BurnedInAnnotation" not in us
    assert "burned-in" in deid.burned_in_warning(us).lower()
    assert deid.deidentify(us, KEY).warnings  # reported, and not claimed removed
    assert "does not remove" in deid.deidentify(_read(US), KEY).warnings[0]
    ct = _read(CT)
    assert deid.burned_in_warning(ct) is None and deid.deidentify(ct, KEY).warnings == []
    ct.BurnedInAnnotation = "YES"
    assert "BurnedInAnnotation = YES" in deid.burned_in_warning(ct)
    us.BurnedInAnnotation = "NO"
    assert deid.burned_in_warning(us) is None


def test_header_rows_only_for_deidentified() -> None:
    ds = _read(CT)
    with pytest.raises(DeidentificationError):
        dicom_header.header_rows(ds)
    deid.deidentify(ds, KEY)
    rows = dict(dicom_header.header_rows(ds))
    assert rows["PatientIdentityRemoved"] == "YES" and rows["Modality"] == "CT"
    assert rows["SOPClassUID"] == "CT Image Storage" and rows["Rows"] == "128"
    assert "CompressedSamples" not in " ".join(rows.values())


# --- the studio: uploads are de-identified first, and the header panel shows the result ----------------


@pytest.fixture
def handlers(tmp_path: Path):
    from studio import handlers as h

    saved, uploads = h.results._RESULTS_DIR, dict(h.uploads._UPLOADS)
    h.results._RESULTS_DIR = tmp_path / "results"
    h.results._RESULTS_DIR.mkdir()
    h.uploads._UPLOADS.clear()
    yield h
    h.results._RESULTS_DIR = saved
    h.uploads._UPLOADS.clear()
    h.uploads._UPLOADS.update(uploads)


def test_studio_deidentifies_upload_before_use(handlers, tmp_path: Path, caplog) -> None:
    upload = tmp_path / "CompressedSamples_CT1.dcm"  # a patient's name in the file name, as users do
    shutil.copy(CT, upload)
    before = upload.read_bytes()
    caplog.set_level(logging.DEBUG)
    prepared = handlers.prepare_upload(str(upload))
    assert prepared.is_dicom and Path(prepared.path).parent == handlers.results._RESULTS_DIR
    assert "CompressedSamples" not in prepared.path
    stored = Path(prepared.path).read_bytes()
    assert all(s.encode() not in stored for s in CT_SECRETS)
    assert upload.read_bytes() == before  # Gradio's temp file is left alone
    assert handlers.prepare_upload(str(upload)) is prepared  # once per upload
    preview, md, frames = handlers.inspect_upload(str(upload), 0, "default")
    assert frames == 1 and "de-identified" in md
    assert "CompressedSamples" not in caplog.text


def test_studio_header_panel(handlers, tmp_path: Path) -> None:
    md = handlers.header_panel(CT)
    assert "| PatientIdentityRemoved | YES |" in md and "ANON-" in md and "CT Image Storage" in md
    assert not any(s in md for s in CT_SECRETS)
    assert "⚠" not in md  # CT: no burned-in text warning
    us = handlers.header_panel(US)
    assert "burned-in" in us.lower() and "⚠" in us and "does not remove" in us
    from PIL import Image

    png = tmp_path / "plain.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(png)
    assert "No DICOM header" in handlers.header_panel(str(png))
    assert handlers.header_panel(None) == ""
