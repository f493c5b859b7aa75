"""Signal-domain sources: DICOM raw values kept, the display mapping matches the reader, manifest, tiny real fits."""

import json
import random
import shutil

import numpy as np
import pydicom
import pytest
import torch
from PIL import Image
from pydicom.data import get_testdata_file

from conftest import smooth_test_image
from models import read_image
from models.loading import read_metadata
from train.__main__ import main as train_main
from train.config import DEFAULT_MANIFEST
from train.data import augmentation
from train.evaluate import evaluate
from train.signal import PNG_TABLE, SignalImage, load_signal, resize_signal, to_display, to_display_tensor
from train.sources import manifest_paths, multiscale, png_sources, sample_signal_patches

# MONOCHROME1 CR (10 bit, file window), tiny MONOCHROME1 CR with rescale slope 0.684, MONOCHROME2 CT with
# rescale and no window (auto), MR with a file window, an 8-bit image with a VOI LUT Sequence.
DICOMS = ["RG3_UNCR.dcm", "6154", "CT_small.dcm", "MR_small.dcm", "vlut_04.dcm"]


def _path(name):
    return get_testdata_file(name, download=False)


@pytest.mark.parametrize("name", DICOMS)
def test_dicom_signal_keeps_raw_values_and_reproduces_the_readers_display(name):
    ds = pydicom.dcmread(_path(name))
    im = load_signal(_path(name))
    stored = ds.pixel_array.astype(np.float64)
    slope, intercept = float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0)
    # raw modality values exactly (stored values of up to 16 bits, then rescale), not an 8-bit display copy
    assert np.allclose(im.raw, stored * slope + intercept, atol=1e-3 * max(slope, 1.0))
    assert im.signal.dtype == np.float32 and 0.0 <= im.signal.min() and im.signal.max() <= 1.0
    if ds.BitsStored > 8 and im.signal.size > 10_000:
        assert len(np.unique(im.signal)) > 256  # more grey levels than any 8-bit image holds
    display, _ = read_image(_path(name))
    assert np.abs(im.display() - display).max() < 1e-5  # the same mapping the studio shows


def test_monochrome1_signal_is_bright_where_exposure_is_high():
    """MONOCHROME1 stores exposure as is: signal rises with the stored value while the display falls."""
    im = load_signal(_path("RG3_UNCR.dcm"))
    order = np.argsort(im.raw.ravel()[::997])
    s, d = im.signal.ravel()[::997][order], im.display().ravel()[::997][order]
    assert np.all(np.diff(s) >= 0) and d[0] >= d[-1]


def test_png_signal_round_trip_and_torch_window(tmp_path):
    img = smooth_test_image(40, 48, seed=1)
    Image.fromarray((img * 255).round().astype(np.uint8)).save(tmp_path / "a.png")
    im = load_signal(tmp_path / "a.png")
    shown, _ = read_image(tmp_path / "a.png")
    assert im.table is PNG_TABLE and np.abs(im.display() - shown).max() < 1e-6
    win = torch.tensor([[0.2, 0.7]])
    s = torch.from_numpy(im.signal)[None, None]
    table = (np.array([0.2, 0.7]), np.array([1.0, 0.0]))
    assert np.allclose(to_display_tensor(s, win)[0, 0].numpy(), to_display(im.signal, table), atol=1e-6)


def test_multiscale_copies_and_patch_batches_carry_their_windows():
    im = load_signal(_path("RG3_UNCR.dcm"))
    copies = multiscale(im, (1, 4))
    assert [c.id for c in copies] == ["RG3_UNCR@1/1", "RG3_UNCR@1/4"] and copies[1].signal.shape == (440, 440)
    png = SignalImage("p", np.full((80, 80), 0.3, np.float32), PNG_TABLE)
    sig, win = sample_signal_patches([png], copies, 32, 0.5, augmentation(32), random.Random(0))
    assert sig.shape == (32, 1, 32, 32) and win.shape == (32, 2)
    from_dicom = (win[:, 0] != 0).sum().item()
    assert 5 < from_dicom < 27  # about half the samples from the DICOM pool
    assert torch.allclose(win[win[:, 0] != 0][0], torch.tensor(copies[0].window, dtype=torch.float32))
    small = resize_signal(im, 200)
    assert max(small.signal.shape) == 200 and small.table is im.table


def test_manifest_keeps_the_external_source_out_of_training():
    m = json.loads(DEFAULT_MANIFEST.read_text())
    train_pkgs = {e["package"] for e in m["train"]}
    ext_pkgs = {e["package"] for e in m["external"]}
    assert train_pkgs.isdisjoint(ext_pkgs)  # a whole source held out, not only files
    assert all(e["licence"] and e["modality"] in ("CR", "DX", "MG", "RG") for e in m["train"] + m["external"])
    ext = manifest_paths(DEFAULT_MANIFEST, "external")  # pydicom-data is a requirement
    assert [p.name for p in ext] == ["RG1_UNCR.dcm", "RG3_UNCR.dcm"]


@pytest.fixture
def real_setup(tmp_path):
    """8 PNGs of 8 patients and a one-file DICOM manifest (a pydicom-data CR)."""
    root = tmp_path / "png"
    root.mkdir()
    for i in range(8):
        Image.fromarray((smooth_test_image(72, 72, seed=i) * 255).round().astype(np.uint8)).save(root / f"i{i}.png")
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"train": [{"package": "pydicom-data", "module": "data_store",
                                               "path": "data/RG3_UNCR.dcm", "licence": "MIT", "modality": "CR",
                                               "what": "test"}], "external": []}))
    return root, manifest, tmp_path


@pytest.mark.parametrize("model", ["srcnn_x2_real", "dncnn_real"])
def test_tiny_fit_of_a_real_task_mixes_pngs_and_dicoms(real_setup, model):
    root, manifest, tmp = real_setup
    out = tmp / f"{model}.safetensors"
    rc = train_main(["fit", "--model", model, "--data", str(root), "--split-file", str(tmp / "split.json"),
                     "--out", str(out), "--ckpt-dir", str(tmp / "ck"), "--steps", "2", "--batch", "4",
                     "--patch", "32", "--val-every", "2", "--threads", "1", "--dicom-manifest", str(manifest),
                     "--dicom-fraction", "0.5"])
    assert rc == 0
    card = read_metadata(out)
    assert card["model"] == model
    assert card["training"]["task"] == ("sr_real" if model.startswith("srcnn") else "denoise_real")
    assert card["training"]["dicom_sources"][0]["copies"] == ["RG3_UNCR@1/1", "RG3_UNCR@1/2", "RG3_UNCR@1/4"]
    assert np.isfinite(card["val"]["psnr"]) and "Poisson-Gaussian" in card["training"]["degradation"]


def test_real_tasks_evaluate_on_dicoms_and_pngs_with_both_sr_baselines(real_setup):
    root, _, tmp = real_setup
    ext = tmp / "ext"
    ext.mkdir()
    shutil.copy(_path("RG3_UNCR.dcm"), ext)
    rows = evaluate([], task="sr_real", scale=2, data=str(ext), subset="external", out_dir=str(tmp / "r"),
                    max_side=128, maps=0)
    # Realistic SR also carries the denoise-then-enlarge baseline (a noisy input is not a bicubic one).
    assert [r["model"] for r in rows] == ["bicubic_x2", "lanczos_x2", "nlm_lanczos_x2"]
    assert "gain_vs_lanczos_db" in rows[0] and "gain_vs_nlm_lanczos_db" in rows[0]
    assert (tmp / "r" / "sr_real_x2_external.md").is_file()
    rows = evaluate([], task="denoise_real", noise="dose2000", data=str(root), split_file=str(tmp / "s.json"),
                    subset="test", out_dir=str(tmp / "r"), maps=0)
    by = {r["model"]: r for r in rows}
    assert by["nlm"]["psnr"] > by["input (no processing)"]["psnr"]  # NLM got the measured sigma and helps
    with pytest.raises(ValueError, match="dose"):
        evaluate([], task="denoise_real", noise="gaussian", data=str(root), split_file=str(tmp / "s.json"))
