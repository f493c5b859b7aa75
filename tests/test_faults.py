"""Faults (issue #8): missing and tampered weights, a full or read-only disk, running out of memory.

The real weights are never touched: checksum tests use small files in a temporary folder, and
``models.loading.WEIGHTS_DIR`` is pointed there where a test needs it.
"""

from __future__ import annotations

import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported

import errno  # noqa: E402
import logging  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from models import checksums, loading  # noqa: E402
from models.enhance import enhance  # noqa: E402
from studio import handlers  # noqa: E402


REPO = Path(__file__).resolve().parent.parent
CT = None
try:
    from pydicom.data import get_testdata_file

    CT = get_testdata_file("CT_small.dcm", download=False)
except Exception:  # noqa: BLE001 - pydicom-data missing: the DICOM cases skip
    pass
needs_ct = pytest.mark.skipif(CT is None, reason="pydicom test file CT_small.dcm not available")


pytestmark = pytest.mark.usefixtures("results_dir")  # each test writes into its own empty dir


@pytest.fixture
def weights_dir(tmp_path: Path) -> Path:
    """A weights folder with two small fake weights files (the checksum logic only hashes bytes)."""
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "srcnn_x2.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      " + bytes(range(200)))
    (folder / "srcnn_x4.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      " + bytes(range(100)))
    return folder


def _png(path: Path, size: int = 48) -> str:
    yy, xx = np.mgrid[0:size, 0:size]
    Image.fromarray(((xx * 5 + yy * 3) % 256).astype(np.uint8)).save(path)
    return str(path)


# --- weights: checksum manifest ----------------------------------------------------------------

def test_manifest_is_sha256sum_format_and_verifies(weights_dir: Path) -> None:
    out = checksums.write_manifest(weights_dir)
    lines = out.read_text().splitlines()
    assert [line.split("  ")[1] for line in lines] == ["srcnn_x2.safetensors", "srcnn_x4.safetensors"]
    assert all(re.fullmatch(r"[0-9a-f]{64}  \S+", line) for line in lines)
    assert checksums.verify_weights(weights_dir) == []
    if shutil.which("sha256sum"):  # the standard tool agrees with the format
        subprocess.run(["sha256sum", "--check", "--quiet", out.name], cwd=weights_dir, check=True)


def test_tampered_weights_are_fatal_other_problems_are_warnings(weights_dir: Path) -> None:
    checksums.write_manifest(weights_dir)
    data = bytearray((weights_dir / "srcnn_x4.safetensors").read_bytes())
    data[-1] ^= 1  # one flipped bit
    (weights_dir / "srcnn_x4.safetensors").write_bytes(bytes(data))
    (weights_dir / "vdsr_x2.safetensors").write_bytes(b"new, not in the manifest")
    (weights_dir / "srcnn_x2.safetensors").unlink()
    problems = {p.file: p for p in checksums.verify_weights(weights_dir)}
    assert problems["srcnn_x4.safetensors"].kind == "mismatch" and problems["srcnn_x4.safetensors"].fatal
    assert problems["vdsr_x2.safetensors"].kind == "unlisted" and not problems["vdsr_x2.safetensors"].fatal
    assert problems["srcnn_x2.safetensors"].kind == "missing" and not problems["srcnn_x2.safetensors"].fatal
    (weights_dir / checksums.MANIFEST_NAME).write_text("not a checksum line\n")
    assert any(p.kind == "bad manifest" and p.fatal for p in checksums.verify_weights(weights_dir))


def test_no_manifest_is_a_warning_and_missing_models_are_listed(weights_dir: Path, monkeypatch, caplog) -> None:
    import app

    monkeypatch.setattr(loading, "WEIGHTS_DIR", weights_dir)
    assert [p.kind for p in checksums.verify_weights()] == ["no manifest"]
    assert "srcnn_x2" not in checksums.unavailable_models() and "vdsr_x2" in checksums.unavailable_models()
    with caplog.at_level(logging.INFO):
        app.check_weights()  # must not raise: the app starts before the lead writes the manifest
    lines = [r.getMessage() for r in caplog.records if r.name == "medenhance.startup"]
    assert any("not verified" in line for line in lines)
    unavailable = next(line for line in lines if "unavailable (weights missing)" in line)
    assert "vdsr_x2" in unavailable and "srcnn_x2," not in unavailable and "\n" not in unavailable
    assert "Traceback" not in caplog.text


def test_app_refuses_to_start_on_a_checksum_mismatch(weights_dir: Path) -> None:
    checksums.write_manifest(weights_dir)
    (weights_dir / "srcnn_x2.safetensors").write_bytes(b"swapped")
    code = ("import pathlib, sys; import models.loading as l; l.WEIGHTS_DIR = pathlib.Path(sys.argv[1]); "
            "import app; app.main()")
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_SERVER_PORT": "1"}  # never reached
    proc = subprocess.run([sys.executable, "-c", code, str(weights_dir)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode != 0
    assert "refuses to start" in proc.stderr and "srcnn_x2.safetensors" in proc.stderr
    assert "does not match the checksum manifest" in proc.stderr  # the log line
    assert "Traceback" not in proc.stderr


@needs_ct
def test_missing_weights_file_is_a_clear_request_error(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(loading, "WEIGHTS_DIR", tmp_path)  # empty: every network's weights are missing
    loading.clear_cache()
    try:
        with pytest.raises(gr.Error) as info:
            handlers.enhance_file(CT, "Super-resolution x2", "srcnn_x2")
    finally:
        loading.clear_cache()
    assert info.value.title == "Model not available"
    assert "weights" in info.value.message and "missing" in info.value.message
    assert "Traceback" not in info.value.message


# --- disk full / read-only ----------------------------------------------------------------------

@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "disk is full"), (errno.EROFS, "read-only"),
                                          (errno.EACCES, "not writable")])
def test_result_write_failure_is_a_clear_error(tmp_path: Path, monkeypatch, caplog, code: int, words: str) -> None:
    # Tests run as root, where chmod 0o500 does not stop writes: the write itself fails instead.
    def full(*_a, **_k):
        raise OSError(code, os.strerror(code))

    src = _png(tmp_path / "in.png")
    monkeypatch.setattr(handlers.enhance, "save_png", full)
    with pytest.raises(gr.Error) as info:
        handlers.enhance_file(src, "Denoise", "gaussian")
    assert info.value.title == "Cannot save"
    assert info.value.message.startswith("Could not write the result:") and words in info.value.message
    assert "internal error" not in info.value.message.lower()
    assert list(handlers.results._RESULTS_DIR.iterdir()) == []  # nothing half-written left behind
    assert "could not write" in caplog.text and "Traceback" not in caplog.text
    monkeypatch.undo()  # the disk has room again: the next request works
    _, _, png = handlers.enhance_file(src, "Denoise", "gaussian")
    assert Path(png).is_file()


@needs_ct
def test_full_disk_while_deidentifying_a_dicom_upload(tmp_path: Path, monkeypatch) -> None:
    import pydicom

    def full(*_a, **_k):
        raise OSError(errno.ENOSPC, "No space left on device")

    upload = tmp_path / "scan.dcm"
    shutil.copy(CT, upload)
    monkeypatch.setattr(pydicom.dataset.Dataset, "save_as", full)
    with pytest.raises(gr.Error) as info:
        handlers.enhance_file(str(upload), "Super-resolution x2", "bicubic_x2")
    assert info.value.title == "Cannot save" and "disk is full" in info.value.message
    assert [p.name for p in handlers.results._RESULTS_DIR.iterdir()] == []  # no partial de-identified copy


# --- out of memory ------------------------------------------------------------------------------

def test_out_of_memory_tiles_fall_back_to_smaller_tiles(monkeypatch) -> None:
    image = np.random.default_rng(0).random((150, 170), dtype=np.float32)
    reference = enhance(image, "srcnn_x2", tile=1024)  # one tile, no fallback
    import models.device as device_module  # forward_tiled runs each tile through models.device.run

    real_run, calls, sizes = device_module.run, {"n": 0}, []

    def flaky(module, x, plan, **kwargs):
        calls["n"] += 1
        sizes.append(tuple(x.shape[-2:]))
        if calls["n"] <= 2:  # the first two tiles (of the 256 px, then the 128 px attempt) run out of memory
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_run(module, x, plan, **kwargs)

    monkeypatch.setattr(device_module, "run", flaky)
    out = enhance(image, "srcnn_x2")
    assert out.shape == reference.shape == (300, 340)
    np.testing.assert_allclose(out, reference, atol=1e-4)
    assert max(sizes[2:]) < max(sizes[:1])  # the successful pass used smaller tiles


def test_out_of_memory_at_the_last_resort_is_a_clear_error(tmp_path: Path, monkeypatch) -> None:
    def oom(*_a, **_k):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(handlers.enhance, "enhance", oom)
    with pytest.raises(gr.Error) as info:
        handlers.enhance_file(_png(tmp_path / "in.png"), "Denoise", "gaussian")
    assert info.value.title == "Out of memory" and "smaller image" in info.value.message
