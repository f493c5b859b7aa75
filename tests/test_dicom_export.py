"""Derived-DICOM export (models.io.dicom_export) round trips on real files, and the studio's DICOM download.

Every exported file must open with pydicom and read back through models.read_image
with the enhanced geometry (size x scale, spacing / scale) and the same display
within one stored value. Files come from pydicom's bundled test data (no network).
"""

from __future__ import annotations

import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported (studio tests below)

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pydicom  # noqa: E402
import pytest  # noqa: E402
from pydicom.pixels import apply_modality_lut  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian  # noqa: E402

from models import enhance, get_spec, read_image  # noqa: E402
from models.io.deid import remap_uid  # noqa: E402
from models.io.dicom_export import ExportOptions, export_derived_dicom  # noqa: E402
from models.errors import ExportError  # noqa: E402
from models.loading import sha256, weights_path  # noqa: E402


from conftest import testdata as _testdata  # noqa: E402


NAMES = ["CT_small.dcm", "MR_small.dcm", "RG1_UNCR.dcm", "US1_UNCR.dcm", "emri_small.dcm", "693_UNCR.dcm"]
FILES = {n: _testdata(n) for n in NAMES}
pytestmark = pytest.mark.skipif(None in FILES.values(), reason="pydicom test data not available")
KEY = "export-test-key"
SC = "1.2.840.10008.5.1.4.1.1.7"

# (file, frame, model): SR where cheap; the 1955x1841 radiograph at scale 1 (the model
# name only labels the output: these tests pass the pixels themselves).
CASES = [
    ("CT_small.dcm", 0, "bicubic_x2"),
    ("MR_small.dcm", 0, "bicubic_x2"),
    ("RG1_UNCR.dcm", 0, "median"),  # CR, MONOCHROME1, 15 bits
    ("US1_UNCR.dcm", 0, "bicubic_x2"),  # RGB ultrasound
    ("emri_small.dcm", 3, "bicubic_x2"),  # enhanced MR, 10 frames -> one frame, Secondary Capture
    ("693_UNCR.dcm", 0, "median"),  # CT with rescale and a file window
]


def _export(tmp_path: Path, name: str, frame: int, model: str, window=None, image_fn=None):
    src = FILES[name]
    image, meta = read_image(src, frame=frame, window=window)
    spec = get_spec(model)
    out = image_fn(image) if image_fn else (enhance(image, "bicubic_x2") if spec.scale == 2 else image)
    dst = tmp_path / f"{name}.{model}.dcm"
    assert export_derived_dicom(src, out, meta, model, dst, ExportOptions(deid_key=KEY)) == dst
    return src, image, meta, out, dst


@pytest.mark.parametrize("name,frame,model", CASES)
def test_round_trip_geometry_display_and_provenance(tmp_path: Path, name: str, frame: int, model: str) -> None:
    src, image, meta, out, dst = _export(tmp_path, name, frame, model)
    scale = get_spec(model).scale
    source = pydicom.dcmread(src, stop_before_pixels=True)
    ds = pydicom.dcmread(dst)

    # Geometry: size x scale, spacing / scale, one frame, uncompressed.
    back, meta2 = read_image(dst)
    assert back.shape == out.shape == (image.shape[0] * scale, image.shape[1] * scale, *image.shape[2:])
    if meta.pixel_spacing:
        assert meta2.pixel_spacing == pytest.approx([s / scale for s in meta.pixel_spacing], rel=1e-5)
    assert "NumberOfFrames" not in ds and meta2.frame_count == 1
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian

    # Display: same within one stored value (the window is written; colour within 1/255).
    step = (1.0 / 255) if meta.is_colour else abs(meta.rescale_slope or 1.0) / meta.window_width
    assert np.abs(back - out).max() <= step * 0.5 + 1e-4
    assert meta2.photometric == ("RGB" if meta.is_colour else meta.photometric)  # MONOCHROME1 stays
    assert meta2.bits_stored == meta.bits_stored and meta2.raw_dtype == meta.raw_dtype

    # Provenance: same (de-identified) study, new series and instance, the source referenced.
    assert list(ds.ImageType)[:2] == ["DERIVED", "SECONDARY"]
    assert ds.StudyInstanceUID == remap_uid(source.StudyInstanceUID, KEY)
    assert ds.SeriesInstanceUID not in (source.SeriesInstanceUID, remap_uid(source.SeriesInstanceUID, KEY))
    assert ds.SOPInstanceUID not in (source.SOPInstanceUID, remap_uid(source.SOPInstanceUID, KEY))
    ref = ds.SourceImageSequence[0]
    assert ref.ReferencedSOPInstanceUID == remap_uid(source.SOPInstanceUID, KEY)
    assert ref.ReferencedSOPClassUID == source.SOPClassUID
    assert model in ds.DerivationDescription
    assert ds.SOPClassUID == (SC if name == "emri_small.dcm" else source.SOPClassUID)
    if name == "emri_small.dcm":
        assert ref.ReferencedFrameNumber == frame + 1 and ds.InstanceNumber == frame + 1
    # De-identified on the way out.
    assert ds.PatientIdentityRemoved == "YES" and str(ds.PatientID).startswith("ANON-")
    assert str(source.PatientName) == "" or ds.PatientName != source.PatientName
    assert not any(e.tag.is_private for e in ds.iterall())
    assert not list(tmp_path.glob(".*partial*"))


@pytest.mark.parametrize("name", ["CT_small.dcm", "693_UNCR.dcm"])
def test_hounsfield_units_preserved_inside_window(tmp_path: Path, name: str) -> None:
    center, width = 40.0, 400.0
    src, image, meta, out, dst = _export(tmp_path, name, 0, "median", window=(center, width))
    original, exported = pydicom.dcmread(src), pydicom.dcmread(dst)
    hu_in = apply_modality_lut(original.pixel_array, original).astype(np.float64)
    hu_out = apply_modality_lut(exported.pixel_array, exported).astype(np.float64)
    inside = np.abs(hu_in - center) < width / 2
    assert inside.mean() > 0.05  # the test covers real tissue
    assert np.abs(hu_out - hu_in)[inside].max() <= 1.0
    # Outside the window the display clipped: values land on the window edges.
    assert hu_out.min() >= center - width / 2 - 1 and hu_out.max() <= center + width / 2 + 1
    assert float(exported.RescaleSlope) == float(original.RescaleSlope)
    assert float(exported.RescaleIntercept) == float(original.RescaleIntercept)
    assert exported.BitsStored == original.BitsStored and exported.PixelRepresentation == original.PixelRepresentation
    assert (float(exported.WindowCenter), float(exported.WindowWidth)) == (center, width)


def test_sr_moves_image_position_to_new_first_pixel(tmp_path: Path) -> None:
    src, *_, dst = _export(tmp_path, "CT_small.dcm", 0, "bicubic_x2")
    a, b = pydicom.dcmread(src), pydicom.dcmread(dst)
    spacing = float(a.PixelSpacing[0])
    # Axial CT (orientation 1,0,0 / 0,1,0): the new first pixel centre is a quarter source pixel up-left.
    assert [float(v) for v in b.ImagePositionPatient] == pytest.approx(
        [float(a.ImagePositionPatient[0]) - spacing / 4, float(a.ImagePositionPatient[1]) - spacing / 4,
         float(a.ImagePositionPatient[2])], abs=1e-4)


def test_derivation_description_names_weights_hash_or_classical(tmp_path: Path) -> None:
    spec = get_spec("srcnn_x2")
    if not weights_path(spec).is_file():
        pytest.skip("srcnn_x2 weights not trained")
    # The pixels come from bicubic: the description is what is tested here, not the network.
    *_, dst = _export(tmp_path, "MR_small.dcm", 0, "srcnn_x2")
    text = pydicom.dcmread(dst).DerivationDescription
    assert "srcnn_x2" in text and sha256(weights_path(spec)) in text
    *_, dst = _export(tmp_path, "MR_small.dcm", 0, "bicubic_x2")
    ds = pydicom.dcmread(dst)
    assert "classical" in ds.DerivationDescription and "SHA-256" not in ds.DerivationDescription
    assert ds.DerivationCodeSequence[0].CodeValue == "113085"  # spatial resampling


def test_series_uid_groups_exports_of_one_series(tmp_path: Path) -> None:
    *_, first = _export(tmp_path, "CT_small.dcm", 0, "bicubic_x2")
    second = tmp_path / "again.dcm"
    image, meta = read_image(FILES["CT_small.dcm"])
    export_derived_dicom(FILES["CT_small.dcm"], enhance(image, "bicubic_x2"), meta, "bicubic_x2", second,
                         ExportOptions(deid_key=KEY))
    a, b = pydicom.dcmread(first), pydicom.dcmread(second)
    assert a.SeriesInstanceUID == b.SeriesInstanceUID and a.SOPInstanceUID != b.SOPInstanceUID


def test_non_dicom_source_becomes_secondary_capture(tmp_path: Path) -> None:
    from PIL import Image

    png = tmp_path / "photo.png"
    Image.fromarray(np.arange(40 * 50, dtype=np.uint16).reshape(40, 50) * 20).save(png)
    image, meta = read_image(png)
    out = enhance(image, "bicubic_x2")
    dst = export_derived_dicom(None, out, meta, "bicubic_x2", tmp_path / "photo.dcm")
    ds = pydicom.dcmread(dst)
    assert ds.SOPClassUID == SC and ds.ConversionType == "WSD" and "SourceImageSequence" not in ds
    back, meta2 = read_image(dst)
    assert back.shape == (80, 100) and meta2.bits_stored == 16
    assert np.abs(back - out).max() <= 0.5 / 65535 + 1e-4


def test_bad_outputs_are_export_errors(tmp_path: Path) -> None:
    image, meta = read_image(FILES["CT_small.dcm"])
    dst = tmp_path / "x.dcm"
    with pytest.raises(ExportError, match="multiple"):
        export_derived_dicom(FILES["CT_small.dcm"], np.zeros((200, 200), np.float32), meta, "bicubic_x2", dst)
    with pytest.raises(ExportError, match="scale"):
        export_derived_dicom(FILES["CT_small.dcm"], image, meta, "bicubic_x2", dst)  # x1 output, x2 model
    with pytest.raises(ExportError, match="colour|grayscale"):
        export_derived_dicom(FILES["CT_small.dcm"], np.zeros((128, 128, 3), np.float32), meta, "median", dst)
    _, mr_meta = read_image(FILES["MR_small.dcm"])
    with pytest.raises(ExportError, match="belong"):
        export_derived_dicom(FILES["CT_small.dcm"], np.zeros((64, 64), np.float32), mr_meta, "median", dst)
    assert not dst.exists()


# --- the studio's DICOM download --------------------------------------------------------------------


@pytest.fixture
def handlers(tmp_path: Path):
    from studio import handlers as h

    saved = h.results._RESULTS_DIR
    h.results._RESULTS_DIR = tmp_path / "results"
    h.results._RESULTS_DIR.mkdir()
    yield h
    h.results._RESULTS_DIR = saved


def test_studio_enhance_gives_deidentified_dicom_download(handlers) -> None:
    r = handlers.enhance_upload(FILES["CT_small.dcm"], "Super-resolution x2", "bicubic_x2", 0, "default")
    assert r.dicom_path and r.dicom_path.endswith(".dcm") and Path(r.png_path).stem == Path(r.dicom_path).stem
    data = Path(r.dicom_path).read_bytes()
    assert b"CompressedSamples" not in data and b"JFK IMAGING" not in data
    ds = pydicom.dcmread(r.dicom_path)
    assert (ds.Rows, ds.Columns) == (256, 256) and ds.PatientIdentityRemoved == "YES"
    assert "bicubic_x2" in ds.DerivationDescription
    # It references the de-identified copy the studio worked from (same key, same study).
    upload = handlers.prepare_upload(FILES["CT_small.dcm"])
    copy = pydicom.dcmread(upload.path, stop_before_pixels=True)
    assert ds.SourceImageSequence[0].ReferencedSOPInstanceUID == copy.SOPInstanceUID
    assert ds.StudyInstanceUID == copy.StudyInstanceUID
    assert "derived DICOM" in r.markdown and "de-identified" in r.markdown


def test_studio_png_upload_has_no_dicom(handlers, tmp_path: Path) -> None:
    from PIL import Image

    png = tmp_path / "p.png"
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(png)
    r = handlers.enhance_upload(str(png), "Enhance", "clahe")
    assert r.dicom_path is None and Path(r.png_path).is_file()


def test_enhance_endpoint_unchanged_and_dicom_download_in_ui() -> None:
    import studio

    demo = studio.build_app()
    endpoint = demo.get_api_info()["named_endpoints"]["/enhance"]
    assert [p["parameter_name"] for p in endpoint["parameters"]] == ["file", "task", "model", "frame", "window", "strength", "ensemble", "noise_level"]
    assert len(endpoint["returns"]) == 3  # the DICOM path travels in a gr.State, outside the API
    labels = [c.get("props", {}).get("label") or "" for c in demo.get_config_file()["components"]]
    assert any("Result DICOM" in label for label in labels)
    assert any("DICOM header" in label for label in labels)


# --- Hugging Face Spaces: ZeroGPU wrapper and /data ---------------------------------------------------


def test_zero_gpu_decorator_and_data_dir(tmp_path: Path, monkeypatch, handlers) -> None:
    """spaces.GPU wraps the model call when ``spaces`` is importable; every request goes through run_model."""
    import sys
    import types

    fake = types.ModuleType("spaces")

    def gpu(duration: int = 60):
        def deco(fn):
            def wrapper(*a, **k):
                return fn(*a, **k)
            wrapper.zero_gpu_duration = duration
            return wrapper
        return deco

    fake.GPU = gpu
    monkeypatch.setitem(sys.modules, "spaces", fake)
    assert handlers.enhance._zero_gpu(30)(len).zero_gpu_duration == 30
    monkeypatch.delitem(sys.modules, "spaces")
    monkeypatch.setattr(sys, "path", [])  # no spaces package anywhere: the identity
    assert handlers.enhance._zero_gpu(30)(len) is len
    monkeypatch.undo()

    calls = []
    real = handlers.run_model
    monkeypatch.setattr(handlers.enhance, "run_model",
                        lambda image, name, strength=1.0, ensemble=False, **kw: calls.append(name) or real(image, name, strength, ensemble, **kw))
    handlers.enhance_upload(FILES["MR_small.dcm"], "Enhance", "clahe")
    assert calls == ["clahe"]

    monkeypatch.setenv("STUDIO_DATA_DIR", "")  # empty = unset; restored after the test even if app sets it
    import app

    (tmp_path / "data").mkdir()
    assert app.default_data_dir(tmp_path / "data") == str(tmp_path / "data" / "medenhance")
    assert app.default_data_dir(tmp_path / "absent") is None
    monkeypatch.setenv("STUDIO_DATA_DIR", str(tmp_path / "mine"))
    assert app.default_data_dir(tmp_path / "data") == str(tmp_path / "mine")
