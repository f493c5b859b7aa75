"""models.io.read_image on bad input: every case raises ImageReadError, fast,
with a message a person can act on, and without allocating the claimed size."""

from __future__ import annotations

import struct
import time
import tracemalloc
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from models.errors import ImageReadError
from models.io import read_image


def dcm(name: str) -> str:
    """Path of a pydicom test file, never downloading it."""
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name, download=False)
    assert path is not None, f"pydicom test file {name!r} missing; install pydicom-data"
    return str(path)


@pytest.fixture(autouse=True)
def _fast() -> Iterator[None]:
    """Bad input must be refused quickly (< 2 s), not after decoding it."""
    start = time.perf_counter()
    yield
    assert time.perf_counter() - start < 2.0


def refused(path: str | Path, *fragments: str, **kwargs) -> str:
    """Assert read_image raises a readable ImageReadError containing ``fragments``."""
    with pytest.raises(ImageReadError) as info:
        read_image(path, **kwargs)
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert 10 < len(message) < 600, message
    assert "Traceback" not in message and "\n" not in message, message
    for fragment in fragments:
        assert fragment.lower() in message.lower(), message
    return message


def edited_dicom(tmp_path: Path, name: str = "CT_small.dcm", **changes) -> Path:
    """Copy of a pydicom test file with header elements changed (None deletes)."""
    import pydicom

    ds = pydicom.dcmread(dcm(name))
    for keyword, value in changes.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    out = tmp_path / "edited.dcm"
    ds.save_as(out)
    return out


def write_1bit_png(path: Path, width: int, height: int) -> None:
    """A valid all-black 1-bit PNG of any size, written without materialising it.

    20000 x 20000 compresses to ~50 kB: a classic decompression bomb.
    """
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    block = row * 256
    parts = [compressor.compress(block) for _ in range(height // 256)]
    parts += [compressor.compress(row * (height % 256)), compressor.flush()]

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)


@pytest.fixture(scope="module")
def png_bomb(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bomb") / "bomb.png"
    write_1bit_png(path, 20000, 20000)
    assert path.stat().st_size < 200_000
    return path


def peak_bytes_while(func) -> int:
    """Peak Python/numpy allocation while ``func`` runs."""
    tracemalloc.start()
    try:
        func()
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak


# --------------------------------------------------------------- not images


@pytest.mark.parametrize("suffix", [".dcm", ".png", ""])
def test_text_file_renamed(tmp_path, suffix: str) -> None:
    path = tmp_path / f"notes{suffix}"
    path.write_text("Patient notes: not an image at all.\n" * 20)
    refused(path, "not a recognised image")


def test_zip_renamed_dcm(tmp_path) -> None:
    path = tmp_path / "study.dcm"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("IM0001.dcm", b"\x00" * 1000)
    refused(path, "not a recognised image")


def test_garbage_after_dicom_preamble(tmp_path) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "garbage.dcm"
    path.write_bytes(b"\x00" * 128 + b"DICM" + rng.integers(0, 256, 4000, dtype=np.uint8).tobytes())
    refused(path)


def test_garbage_that_looks_like_headerless_dicom(tmp_path) -> None:
    rng = np.random.default_rng(1)
    path = tmp_path / "IM0001"
    path.write_bytes(b"\x08\x00\x05\x00" + rng.integers(0, 256, 4000, dtype=np.uint8).tobytes())
    refused(path)


def test_empty_file(tmp_path) -> None:
    path = tmp_path / "empty.dcm"
    path.write_bytes(b"")
    refused(path, "empty")


def test_missing_file_and_directory(tmp_path) -> None:
    refused(tmp_path / "nope.png", "not found")
    refused(tmp_path, "not a regular file")


# ------------------------------------------------------------ broken DICOM


@pytest.mark.parametrize(
    "name, fraction",
    [
        ("693_UNCR.dcm", 0.0003),  # inside the file meta
        ("693_UNCR.dcm", 0.002),  # inside the data set header
        ("693_UNCR.dcm", 0.5),  # inside the pixel data
        ("693_UNCR.dcm", 0.999),
        ("RG1_UNCR.dcm", 0.5),
        ("693_J2KR.dcm", 0.5),  # encapsulated JPEG 2000
        ("MR_small_RLE.dcm", 0.5),  # encapsulated RLE
        ("emri_small_jpeg_ls_lossless.dcm", 0.9),  # multi-frame JPEG-LS
    ],
)
def test_truncated_dicom(tmp_path, name: str, fraction: float) -> None:
    data = Path(dcm(name)).read_bytes()
    path = tmp_path / f"cut_{name}"
    path.write_bytes(data[: int(len(data) * fraction)])
    refused(path, "truncated")


def test_truncated_within_preamble(tmp_path) -> None:
    path = tmp_path / "cut.dcm"
    path.write_bytes(Path(dcm("CT_small.dcm")).read_bytes()[:100])
    refused(path, "not a recognised image")


def test_pydicom_truncated_test_file() -> None:
    refused(dcm("MR_truncated.dcm"), "too short")


def test_dicom_without_pixel_data(tmp_path) -> None:
    path = edited_dicom(tmp_path, PixelData=None)
    refused(path, "no pixel data", "CT Image Storage")


@pytest.mark.parametrize(
    "name, sop_class",
    [
        ("rtstruct.dcm", "RT Structure Set Storage"),  # also has no 'DICM' preamble
        ("test-SR.dcm", "Comprehensive SR Storage"),
        ("rtplan.dcm", "RT Plan Storage"),
    ],
)
def test_non_image_dicom(name: str, sop_class: str) -> None:
    refused(dcm(name), "no pixel data", sop_class, "nothing to display")


def test_dicom_header_claims_huge_image(tmp_path) -> None:
    # Rows/Columns are US (<= 65535): 65535^2 = 4.3 Gpx, 8.6 GB at 16 bits.
    path = edited_dicom(tmp_path, Rows=65535, Columns=65535)
    peak = peak_bytes_while(lambda: refused(path, "65535x65535", "limit"))
    assert peak < 32 * 2**20


def test_dicom_pixel_data_length_mismatch(tmp_path) -> None:
    refused(edited_dicom(tmp_path, Rows=200), "too short")
    refused(edited_dicom(tmp_path, Columns=32), "longer than its header")


def test_dicom_incomplete_or_odd_header(tmp_path) -> None:
    refused(edited_dicom(tmp_path, Rows=None), "incomplete", "Rows")
    refused(edited_dicom(tmp_path, SamplesPerPixel=4), "SamplesPerPixel")


def test_dicom_too_small(tmp_path) -> None:
    refused(edited_dicom(tmp_path, Rows=1, Columns=1), "1x1", "2x2")


def test_undecodable_dicom_is_an_image_read_error() -> None:
    # Corrupt 12-bit JPEG in pydicom's test data; no installed codec decodes it.
    # If a future codec does, a valid image is fine too - just never a crash.
    try:
        image, _ = read_image(dcm("JPEG-lossy.dcm"))
    except ImageReadError as exc:
        assert "JPEG Extended" in str(exc)
    else:
        assert image.dtype == np.float32


# ----------------------------------------------------------- plain images


def test_one_pixel_png(tmp_path) -> None:
    path = tmp_path / "dot.png"
    Image.fromarray(np.zeros((1, 1), np.uint8)).save(path)
    refused(path, "1x1", "2x2")


def test_one_row_png(tmp_path) -> None:
    path = tmp_path / "row.png"
    Image.fromarray(np.zeros((1, 50), np.uint8)).save(path)
    refused(path, "50x1")


def test_png_decompression_bomb(png_bomb: Path) -> None:
    peak = peak_bytes_while(lambda: refused(png_bomb, "too large"))
    assert peak < 32 * 2**20


def test_png_just_over_pixel_limit(tmp_path) -> None:
    # 9000^2 = 81 Mpx: above MAX_PIXELS (80 M) but below Pillow's own limit,
    # so our header check is what refuses it.
    path = tmp_path / "big.png"
    write_1bit_png(path, 9000, 9000)
    peak = peak_bytes_while(lambda: refused(path, "9000x9000", "MEDENHANCE_MAX_PIXELS"))
    assert peak < 32 * 2**20


def test_pixel_limit_from_environment(tmp_path, monkeypatch) -> None:
    path = tmp_path / "img.png"
    Image.fromarray(np.zeros((100, 100), np.uint8)).save(path)
    read_image(path)  # fine by default
    monkeypatch.setenv("MEDENHANCE_MAX_PIXELS", "5000")
    refused(path, "100x100", "5,000")
    refused(dcm("CT_small.dcm"), "128x128", "5,000")


def test_file_size_limit_from_environment(monkeypatch) -> None:
    monkeypatch.setenv("MEDENHANCE_MAX_FILE_BYTES", "1000")
    refused(dcm("CT_small.dcm"), "MiB", "MEDENHANCE_MAX_FILE_BYTES")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_float_tiff_non_finite(tmp_path, bad: float) -> None:
    data = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    data[3, 4] = bad
    path = tmp_path / "bad.tif"
    Image.fromarray(data).save(path)
    refused(path, "NaN or infinite")


def test_truncated_png(tmp_path) -> None:
    rng = np.random.default_rng(2)
    path = tmp_path / "cut.png"
    Image.fromarray(rng.integers(0, 256, (64, 64), dtype=np.uint8)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    refused(path, "cut.png")


def test_truncated_jpeg(tmp_path) -> None:
    rng = np.random.default_rng(3)
    path = tmp_path / "cut.jpg"
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    refused(path, "cut.jpg")
