"""Tests of models.io.read_image / display_to_raw on real DICOMs and generated plain images.

Real DICOMs come from pydicom's test data (``pydicom`` itself and the
``pydicom-data`` package, both in requirements.txt); ``download=False`` keeps
the tests off the network. Plain images are generated into ``tmp_path``.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from models.errors import ImageReadError
from models.io import (
    WINDOW_PRESETS,
    ImageMeta,
    apply_window,
    display_to_raw,
    read_image,
)


def dcm(name: str) -> str:
    """Path of a pydicom test file, never downloading it."""
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name, download=False)
    assert path is not None, f"pydicom test file {name!r} missing; install pydicom-data"
    return str(path)


def stored_pixels(name: str, frame: int | None = None) -> np.ndarray:
    """Stored pixel values straight from pydicom, for comparison."""
    from pydicom.pixels import pixel_array

    return pixel_array(dcm(name), index=frame)


def assert_display_image(image: np.ndarray, meta: ImageMeta) -> None:
    """The read_image output convention."""
    assert image.dtype == np.float32
    assert image.flags.c_contiguous
    assert image.ndim in (2, 3) and (image.ndim == 2 or image.shape[2] == 3)
    assert np.isfinite(image).all()
    assert image.min() >= 0.0 and image.max() <= 1.0
    assert meta.shape == image.shape
    assert meta.is_colour == (image.ndim == 3)
    json.dumps(meta.to_dict())  # serialisable


def region(image: np.ndarray, r0: float, r1: float, c0: float, c1: float) -> float:
    """Mean of a region given as fractions of height/width."""
    h, w = image.shape[:2]
    return float(image[int(r0 * h) : int(r1 * h), int(c0 * w) : int(c1 * w)].mean())


# ------------------------------------------------------------------ DICOM: CR


@pytest.mark.parametrize(
    "name, center, width", [("RG1_UNCR.dcm", 15000, 30000), ("RG3_UNCR.dcm", 550, 1024)]
)
def test_cr_monochrome1_is_inverted(name: str, center: float, width: float) -> None:
    image, meta = read_image(dcm(name))
    assert_display_image(image, meta)
    assert meta.source_format == "dicom" and meta.modality == "CR"
    assert meta.photometric == "MONOCHROME1" and meta.inverted
    assert (meta.window_center, meta.window_width, meta.window_source) == (center, width, "dicom")
    # MONOCHROME1: high stored value = dark, so display falls as raw rises.
    raw = stored_pixels(name).astype(np.float64)
    corr = np.corrcoef(raw[::5, ::5].ravel(), image[::5, ::5].ravel())[0, 1]
    assert corr < -0.99


def test_cr_chest_polarity_bone_white() -> None:
    image, _ = read_image(dcm("RG1_UNCR.dcm"))  # PA chest
    spine = region(image, 0.30, 0.60, 0.46, 0.54)
    lungs = (region(image, 0.25, 0.45, 0.22, 0.32) + region(image, 0.25, 0.45, 0.68, 0.78)) / 2
    assert spine > lungs + 0.15


def test_cr_leg_polarity_direct_exposure_black() -> None:
    image, _ = read_image(dcm("RG3_UNCR.dcm"))  # lower leg, collimated
    tibia = region(image, 0.2, 0.4, 0.45, 0.55)
    collimated = region(image, 0.1, 0.9, 0.02, 0.2)  # no exposure: white on film
    # Narrow band of direct exposure (air) right of the leg: black.
    air = min(region(image, 0.1, 0.3, c, c + 0.01) for c in np.arange(0.60, 0.75, 0.01))
    assert collimated > 0.95 and tibia > 0.5 and air < 0.2


def test_cr_j2k_lossless_matches_uncompressed() -> None:
    ref, _ = read_image(dcm("RG1_UNCR.dcm"))
    image, meta = read_image(dcm("RG1_J2KR.dcm"))
    assert "JPEG 2000" in meta.transfer_syntax
    np.testing.assert_array_equal(image, ref)


# ------------------------------------------------------------------ DICOM: CT


def test_ct_693_rescale_to_hounsfield() -> None:
    image, meta = read_image(dcm("693_UNCR.dcm"))
    assert_display_image(image, meta)
    assert meta.modality == "CT" and meta.photometric == "MONOCHROME2" and not meta.inverted
    assert (meta.rescale_slope, meta.rescale_intercept, meta.modality_lut) == (1.0, -1024.0, "rescale")
    assert meta.raw_dtype == "int16" and meta.raw_signed and meta.bits_stored == 14
    # HU: padding/air at or below -1000, dense bone/skull below +4000.
    assert meta.raw_min <= -1000 and 1000 < meta.raw_max < 4000
    assert (meta.window_center, meta.window_width, meta.window_source) == (40, 100, "dicom")
    assert meta.pixel_spacing == pytest.approx((0.478516, 0.478516))
    # Corner (outside the head) is black, brain (centre) mid-grey in a 40/100 window.
    assert region(image, 0, 0.1, 0, 0.1) == 0.0
    assert 0.3 < region(image, 0.45, 0.55, 0.45, 0.55) < 0.9


def test_ct_j2k_lossless_matches_uncompressed() -> None:
    ref, ref_meta = read_image(dcm("693_UNCR.dcm"), window="bone")
    image, meta = read_image(dcm("693_J2KR.dcm"), window="bone")
    np.testing.assert_array_equal(image, ref)
    assert (meta.raw_min, meta.raw_max) == (ref_meta.raw_min, ref_meta.raw_max)


@pytest.mark.parametrize("preset", sorted(WINDOW_PRESETS))
def test_ct_window_presets_recorded(preset: str) -> None:
    image, meta = read_image(dcm("693_UNCR.dcm"), window=preset)
    assert_display_image(image, meta)
    assert (meta.window_center, meta.window_width) == WINDOW_PRESETS[preset]
    assert meta.window_source == "preset"


def test_ct_lung_and_bone_windows_differ() -> None:
    lung, _ = read_image(dcm("693_UNCR.dcm"), window="lung")
    bone, _ = read_image(dcm("693_UNCR.dcm"), window="Bone")  # names are case-insensitive
    assert np.abs(lung - bone).mean() > 0.05
    # Soft tissue around 40 HU: bright in the lung window, dark in the bone window.
    assert region(lung, 0.45, 0.55, 0.45, 0.55) > region(bone, 0.45, 0.55, 0.45, 0.55) + 0.2


def test_ct_window_forms() -> None:
    path = dcm("693_UNCR.dcm")
    _, meta = read_image(path, window=(100, 500))
    assert (meta.window_center, meta.window_width, meta.window_source) == (100, 500, "explicit")
    _, meta = read_image(path, window="soft_tissue")
    assert meta.window_source == "preset" and meta.window_width == 400
    _, auto = read_image(path, window="auto")
    assert auto.window_source == "auto"
    # Padding (-3024 HU outside the field of view) is excluded from the statistics.
    assert auto.window_center - auto.window_width / 2 > -1100
    _, full = read_image(path, window="full")
    assert full.window_source == "full" and full.window_width > auto.window_width
    for bad in ("lungs", (40, 0), (40, float("nan")), 40):
        with pytest.raises(ValueError):
            read_image(path, window=bad)


@pytest.mark.parametrize("window", ["soft tissue", "lung", None])
def test_ct_display_to_raw_round_trip(window: str | None) -> None:
    image, meta = read_image(dcm("693_UNCR.dcm"), window=window)
    stored = stored_pixels("693_UNCR.dcm").astype(np.int64)
    raw = display_to_raw(image, meta)
    assert raw.dtype == np.int16 and raw.shape == stored.shape
    hu = stored + meta.rescale_intercept
    lo = meta.window_center - meta.window_width / 2
    hi = meta.window_center + meta.window_width / 2
    inside = (hu > lo) & (hu < hi)
    assert inside.mean() > 0.1
    assert np.abs(raw.astype(np.int64) - stored)[inside].max() <= 1
    # Clipped values cannot be recovered: they come back at the window edges.
    below = hu < lo - 1
    assert np.all(raw[below] + meta.rescale_intercept >= lo - 1)


def test_display_to_raw_upscaled_and_inverted() -> None:
    image, meta = read_image(dcm("RG3_UNCR.dcm"))
    small = image[::8, ::8]
    up = np.repeat(np.repeat(small, 2, axis=0), 2, axis=1)  # stand-in for a x2 model output
    raw = display_to_raw(up, meta)
    assert raw.shape == up.shape and raw.dtype == np.uint16
    stored = stored_pixels("RG3_UNCR.dcm")[::8, ::8].astype(int)
    # The file's window 550/1024 spans raw 38..1062: recoverable inside, edges outside.
    inside = (stored > 38) & (stored < 1062)
    assert inside.mean() > 0.5
    assert np.abs(raw[::2, ::2].astype(int) - stored)[inside].max() <= 1
    assert raw[::2, ::2][stored <= 38].min() >= 37
    assert raw.max() <= 2**meta.bits_stored - 1
    with pytest.raises(ValueError):
        display_to_raw(np.zeros((4, 4, 3), np.float32), meta)


# ------------------------------------------------------------------ DICOM: MR


def test_mr2_rescale_and_window() -> None:
    image, meta = read_image(dcm("MR2_UNCI.dcm"))
    assert_display_image(image, meta)
    assert meta.modality == "MR" and image.shape == (1024, 1024)
    assert meta.rescale_slope == pytest.approx(3.774114) and meta.modality_lut == "rescale"
    assert (meta.window_center, meta.window_width, meta.window_source) == (1000, 2000, "dicom")
    expected_max = stored_pixels("MR2_UNCI.dcm").max() * meta.rescale_slope
    assert meta.raw_max == pytest.approx(expected_max, rel=1e-4)
    assert meta.pixel_spacing == pytest.approx((0.195313, 0.195313))
    raw = display_to_raw(image, meta)
    stored = stored_pixels("MR2_UNCI.dcm").astype(int)
    inside = stored * meta.rescale_slope < 2000  # window 1000/2000 spans 0..2000
    assert inside.mean() > 0.99
    assert np.abs(raw.astype(int) - stored)[inside].max() <= 1


def test_mr2_j2k_lossless_matches_uncompressed() -> None:
    ref, _ = read_image(dcm("MR2_UNCR.dcm"))
    image, _ = read_image(dcm("MR2_J2KR.dcm"))
    np.testing.assert_array_equal(image, ref)


# ------------------------------------------------------------- DICOM: colour


def test_us1_colour() -> None:
    image, meta = read_image(dcm("US1_UNCR.dcm"))
    assert_display_image(image, meta)
    assert image.shape == (480, 640, 3) and meta.is_colour and meta.modality == "US"
    assert meta.window_source == "dtype" and (meta.window_center, meta.window_width) == (127.5, 255)
    np.testing.assert_allclose(image, stored_pixels("US1_UNCR.dcm") / 255.0, atol=1e-6)
    assert np.abs(image[..., 0] - image[..., 1]).max() > 0.2  # real colour content
    raw = display_to_raw(image, meta)
    np.testing.assert_array_equal(raw, stored_pixels("US1_UNCR.dcm"))


@pytest.mark.parametrize("name, tolerance", [("US1_J2KR.dcm", 0.0), ("US1_J2KI.dcm", 0.02)])
def test_us1_jpeg2000_colour(name: str, tolerance: float) -> None:
    ref, _ = read_image(dcm("US1_UNCR.dcm"))
    image, meta = read_image(dcm(name))  # YBR_RCT / YBR_ICT, converted by the codec
    assert image.shape == ref.shape and "JPEG 2000" in meta.transfer_syntax
    assert np.abs(image - ref).mean() <= tolerance


@pytest.mark.parametrize(
    "name, mean_tolerance",
    [
        ("SC_rgb_jpeg_gdcm.dcm", 0.0),  # JPEG lossless, RGB
        ("SC_rgb_rle.dcm", 0.0),  # RLE, RGB
        ("SC_rgb_jpeg_dcmtk.dcm", 0.01),  # JPEG baseline, YBR_FULL
        ("SC_ybr_full_uncompressed.dcm", 0.01),  # native YBR_FULL
        ("SC_ybr_full_422_uncompressed.dcm", 0.01),  # native YBR_FULL_422 (subsampled)
    ],
)
def test_colour_transfer_syntaxes_match_rgb(name: str, mean_tolerance: float) -> None:
    ref, _ = read_image(dcm("SC_rgb.dcm"))
    image, meta = read_image(dcm(name))
    assert_display_image(image, meta)
    assert image.shape == (100, 100, 3)
    # Colour converted exactly once: YBR shown as YBR would differ by ~0.3.
    assert np.abs(image - ref).mean() <= mean_tolerance


def test_sc_rgb_colour_bars() -> None:
    image, _ = read_image(dcm("SC_rgb.dcm"))
    np.testing.assert_allclose(image[5, 50], [1, 0, 0])  # red band
    np.testing.assert_allclose(image[25, 50], [0, 1, 0])  # green band
    np.testing.assert_allclose(image[45, 50], [0, 0, 1])  # blue band


def test_palette_colour() -> None:
    image, meta = read_image(dcm("OBXXXX1A.dcm"))
    assert_display_image(image, meta)
    assert image.shape == (600, 800, 3) and meta.photometric == "PALETTE COLOR"
    assert meta.window_source == "dtype"


# ------------------------------------------------------- DICOM: multi-frame


def test_multiframe_frame_selection() -> None:
    path = dcm("emri_small.dcm")
    first, meta0 = read_image(path, frame=0)
    last, meta9 = read_image(path, frame=9)
    assert (meta0.frame_count, meta0.frame, meta9.frame) == (10, 0, 9)
    assert first.shape == last.shape == (64, 64)
    assert not np.array_equal(first, last)
    # Same window for both frames, so differences are the frames'.
    fixed = (200, 400)
    f3, _ = read_image(path, frame=3, window=fixed)
    np.testing.assert_allclose(f3, apply_window(stored_pixels("emri_small.dcm", frame=3), *fixed))
    for bad in (10, -1):
        with pytest.raises(ImageReadError, match="frame"):
            read_image(path, frame=bad)


@pytest.mark.parametrize(
    "name",
    ["emri_small_RLE.dcm", "emri_small_jpeg_ls_lossless.dcm", "emri_small_jpeg_2k_lossless.dcm"],
)
def test_multiframe_compressed_frames_match(name: str) -> None:
    ref, _ = read_image(dcm("emri_small.dcm"), frame=7, window=(200, 400))
    image, meta = read_image(dcm(name), frame=7, window=(200, 400))
    assert meta.frame_count == 10
    np.testing.assert_array_equal(image, ref)


def test_multiframe_colour_jpeg_baseline() -> None:
    image, meta = read_image(dcm("color3d_jpeg_baseline.dcm"), frame=60)
    assert image.shape == (480, 640, 3) and meta.frame_count == 120 and meta.frame == 60


# ---------------------------------------------- DICOM: compressed grayscale


@pytest.mark.parametrize(
    "name",
    [
        "MR_small_jpeg_ls_lossless.dcm",  # JPEG-LS lossless
        "MR_small_jp2klossless.dcm",  # JPEG 2000 lossless
        "MR_small_RLE.dcm",  # RLE lossless
        "MR_small_bigendian.dcm",  # explicit VR big endian
        "MR_small_expb.dcm",
    ],
)
def test_grayscale_transfer_syntaxes_match(name: str) -> None:
    ref, ref_meta = read_image(dcm("MR_small.dcm"))
    image, meta = read_image(dcm(name))
    np.testing.assert_array_equal(image, ref)
    assert meta.raw_dtype == ref_meta.raw_dtype == "int16"
    assert meta.window_source == "dicom"


@pytest.mark.parametrize(
    "name", ["JPGExtended.dcm", "JPEG-LL.dcm", "JPGLosslessP14SV1_1s_1f_8b.dcm", "JPEG2000.dcm"]
)
def test_jpeg_family_decodes(name: str) -> None:
    image, meta = read_image(dcm(name))
    assert_display_image(image, meta)
    assert image.std() > 0.01


# ------------------------------------------------------- DICOM: LUTs, misc


def test_voi_lut_sequence() -> None:
    image, meta = read_image(dcm("vlut_04.dcm"))
    assert_display_image(image, meta)
    assert meta.window_source == "voi_lut"
    raw = display_to_raw(image, meta)
    np.testing.assert_array_equal(raw, stored_pixels("vlut_04.dcm"))


def test_modality_lut_sequence() -> None:
    image, meta = read_image(dcm("mlut_18.dcm"))
    assert_display_image(image, meta)
    assert meta.modality_lut == "lut"
    raw = display_to_raw(image, meta)
    assert np.abs(raw.astype(int) - stored_pixels("mlut_18.dcm")).max() <= 1


def test_headerless_dicom_and_no_extension(tmp_path) -> None:
    # No 128-byte preamble / 'DICM' (old ACR-NEMA style), read via force=True.
    image, meta = read_image(dcm("OT-PAL-8-face.dcm"))
    assert image.shape == (480, 640, 3) and meta.source_format == "dicom"
    # A normal DICOM without any extension (PACS exports often look like this).
    target = tmp_path / "IM000001"
    shutil.copy(dcm("CT_small.dcm"), target)
    image, meta = read_image(target)
    assert image.shape == (128, 128) and meta.modality == "CT"
    assert meta.pixel_spacing == pytest.approx((0.661468, 0.661468))


def test_meta_to_dict() -> None:
    _, meta = read_image(dcm("693_UNCR.dcm"))
    data = json.loads(json.dumps(meta.to_dict()))
    for key in (
        "source_format modality photometric bits_stored raw_dtype raw_min raw_max rescale_slope "
        "rescale_intercept window_center window_width window_source inverted frame_count frame "
        "pixel_spacing is_colour shape"
    ).split():
        assert key in data, key
    assert data["shape"] == [512, 512] and data["window_source"] == "dicom"
    assert "voi_lut_table" not in data


# --------------------------------------------------------------- apply_window


def test_apply_window_linear_exact() -> None:
    out = apply_window(np.array([-10.0, 0.0, 50.0, 100.0, 200.0]), center=50, width=100)
    np.testing.assert_allclose(out, [0, 0, 0.5, 1, 1])
    assert out.dtype == np.float32
    with pytest.raises(ValueError):
        apply_window(np.zeros(3), 0, 0)


# ------------------------------------------------------------- plain images


def test_png_8bit_gray(tmp_path) -> None:
    data = np.arange(64 * 48, dtype=np.uint32).reshape(48, 64).astype(np.uint8)
    path = tmp_path / "gray.png"
    Image.fromarray(data).save(path)
    image, meta = read_image(path)
    assert_display_image(image, meta)
    assert image.shape == (48, 64)
    np.testing.assert_allclose(image, data / 255.0, atol=1e-7)
    assert (meta.source_format, meta.modality) == ("png", "OT")
    assert (meta.bits_stored, meta.raw_dtype) == (8, "uint8")
    assert meta.window_source == "dtype" and meta.rescale_slope == 1 and meta.rescale_intercept == 0
    np.testing.assert_array_equal(display_to_raw(image, meta), data)


def test_png_16bit_keeps_precision(tmp_path) -> None:
    data = np.full((32, 40), 1000, dtype=np.uint16)
    data[:, 20:] = 1001
    data[0, 0], data[-1, -1] = 0, 65535
    path = tmp_path / "gray16.png"
    Image.fromarray(data).save(path)
    image, meta = read_image(path)
    assert meta.bits_stored == 16 and meta.raw_dtype == "uint16"
    assert image[5, 5] == pytest.approx(1000 / 65535, abs=1e-7)
    assert image[5, 25] > image[5, 5]  # one 16-bit step survives
    np.testing.assert_array_equal(display_to_raw(image, meta), data)


def test_jpeg_rgb(tmp_path) -> None:
    yy, xx = np.mgrid[0:64, 0:96]
    data = np.stack([xx * 2, yy * 3, 255 - xx * 2], axis=-1).astype(np.uint8)
    path = tmp_path / "colour.jpg"
    Image.fromarray(data).save(path, quality=95)
    image, meta = read_image(path)
    assert_display_image(image, meta)
    assert image.shape == (64, 96, 3) and meta.source_format == "jpeg" and meta.is_colour
    assert np.abs(image - data / 255.0).mean() < 0.02


def test_gray_stored_as_rgb_is_grayscale(tmp_path) -> None:
    gray = np.random.default_rng(0).integers(0, 256, (20, 30), dtype=np.uint8)
    path = tmp_path / "rgbgray.png"
    Image.fromarray(np.stack([gray] * 3, axis=-1)).save(path)
    image, meta = read_image(path)
    assert image.shape == (20, 30) and not meta.is_colour
    assert any("grayscale" in note for note in meta.notes)


def test_tiff_16bit(tmp_path) -> None:
    data = (np.arange(50 * 60).reshape(50, 60) * 13).astype(np.uint16)
    path = tmp_path / "img16.tif"
    Image.fromarray(data).save(path)
    image, meta = read_image(path)
    assert meta.source_format == "tiff" and meta.bits_stored == 16
    np.testing.assert_allclose(image, data / 65535.0, atol=1e-7)


def test_tiff_float32(tmp_path) -> None:
    unit = np.linspace(0, 1, 40 * 30, dtype=np.float32).reshape(30, 40)
    path = tmp_path / "unit.tif"
    Image.fromarray(unit).save(path)
    image, meta = read_image(path)
    np.testing.assert_array_equal(image, unit)  # already in [0, 1]: kept
    assert meta.raw_dtype == "float32" and meta.window_source == "dtype"

    wide = unit * 3000 - 1000  # e.g. HU exported as float
    path = tmp_path / "wide.tif"
    Image.fromarray(wide).save(path)
    image, meta = read_image(path)
    assert meta.window_source == "full"
    assert (meta.raw_min, meta.raw_max) == pytest.approx((-1000, 2000))
    np.testing.assert_allclose(image, unit, atol=1e-6)
    np.testing.assert_allclose(display_to_raw(image, meta), wide, atol=1e-2)


def test_tiff_multipage(tmp_path) -> None:
    pages = [Image.fromarray(np.full((8, 8), v, np.uint8)) for v in (10, 20, 30)]
    path = tmp_path / "stack.tif"
    pages[0].save(path, save_all=True, append_images=pages[1:])
    image, meta = read_image(path, frame=2)
    assert meta.frame_count == 3 and meta.frame == 2
    assert image[0, 0] == pytest.approx(30 / 255)
    with pytest.raises(ImageReadError, match="frame"):
        read_image(path, frame=3)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "1", "I"])
def test_pillow_modes(tmp_path, mode: str) -> None:
    rng = np.random.default_rng(1)
    base = Image.fromarray(rng.integers(0, 256, (16, 24, 3), dtype=np.uint8))
    img = base.convert(mode)
    path = tmp_path / f"img_{mode}.png"
    img.save(path)
    image, meta = read_image(path)
    assert_display_image(image, meta)
    assert image.shape[:2] == (16, 24)
    if mode in ("RGBA", "P"):
        assert image.shape == (16, 24, 3)  # alpha dropped / palette expanded


def test_bmp_and_window_on_plain_image(tmp_path) -> None:
    data = np.tile(np.arange(100, 164, dtype=np.uint8), (10, 1))
    path = tmp_path / "img.bmp"
    Image.fromarray(data).save(path)
    image, meta = read_image(path, window="full")
    assert meta.source_format == "bmp" and meta.window_source == "full"
    assert image.min() == 0.0 and image.max() == 1.0  # min..max stretch
    image, meta = read_image(path, window=(132, 64))
    assert meta.window_source == "explicit"


def test_jpeg_exif_orientation(tmp_path) -> None:
    data = np.zeros((20, 40), np.uint8)
    data[:, :5] = 255
    img = Image.fromarray(data)
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 CW on display
    path = tmp_path / "rotated.jpg"
    img.save(path, exif=exif.tobytes(), quality=95)
    image, meta = read_image(path)
    assert image.shape == (40, 20)
    assert any("EXIF" in note for note in meta.notes)
