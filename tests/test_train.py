"""Training package: patient-level splits, degradations, a tiny real fit, resume, evaluation table."""

import csv
import json

import numpy as np
import pytest
from PIL import Image

from conftest import smooth_test_image
from models.loading import read_metadata
from train.__main__ import main as train_main
from train.data import find_images, load_or_make_split, make_split, sample_patches_on
from train.degrade import bicubic_down


@pytest.fixture
def tiny_dataset(tmp_path):
    """12 small PNGs of 6 patients, with a data.csv mapping image -> patient."""
    root = tmp_path / "data"
    (root / "png" / "sub").mkdir(parents=True)
    rows = []
    for i in range(12):
        img = smooth_test_image(72, 80, seed=i)
        folder = root / "png" / ("sub" if i % 2 else "")
        Image.fromarray((img * 255).round().astype(np.uint8)).save(folder / f"img{i:02d}.png")
        rows.append({"patient_id": f"p{i // 2}", "image_id": f"img{i:02d}"})
    with open(root / "data.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["patient_id", "image_id"])
        w.writeheader()
        w.writerows(rows)
    return root / "png"


def test_split_is_by_patient_and_deterministic(tiny_dataset, tmp_path):
    files = find_images(tiny_dataset)
    assert len(files) == 12  # recursive
    patients = {f"img{i:02d}": f"p{i // 2}" for i in range(12)}
    a = make_split(files, patients, seed=1)
    assert a == make_split(files, patients, seed=1)
    seen = {}
    for part in ("train", "val", "test"):
        for img in a[part]:
            pid = patients[img]
            assert seen.setdefault(pid, part) == part, f"patient {pid} is in two splits"
    assert sorted(a["train"] + a["val"] + a["test"]) == sorted(patients)
    split_file = tmp_path / "split.json"
    s1 = load_or_make_split(tiny_dataset, split_file, seed=1)
    assert json.loads(split_file.read_text())["test"] == s1["test"]


def test_device_patch_sampler_cuts_real_crops_in_all_eight_orientations():
    """The GPU path's sampler (run here on CPU tensors): every patch is a flip/rot90 of a crop of an input image."""
    import random

    import torch

    imgs = [torch.from_numpy(smooth_test_image(40, 50, seed=s))[None] for s in range(3)]
    a = sample_patches_on(imgs, 64, 16, random.Random(0), torch.Generator().manual_seed(0))
    b = sample_patches_on(imgs, 64, 16, random.Random(0), torch.Generator().manual_seed(0))
    assert a.shape == (64, 1, 16, 16) and a.dtype == torch.float32 and torch.equal(a, b)  # seeded
    variants = [(t, fh, fv) for t in (0, 1) for fh in (0, 1) for fv in (0, 1)]
    seen = set()
    for p in a:
        found = None
        for k, (t, fh, fv) in enumerate(variants):
            q = p.transpose(-1, -2) if t else p  # undo in reverse order: the transpose was applied last
            q = q.flip(-2) if fv else q
            q = q.flip(-1) if fh else q
            if any(torch.equal(q, im[:, y : y + 16, x : x + 16]) for im in imgs
                   for y in range(im.shape[1] - 15) for x in range(im.shape[2] - 15)):
                found = k
                break
        assert found is not None, "a patch is not an augmented crop of any input image"
        seen.add(found)
    assert len(seen) == 8
    with pytest.raises(ValueError, match="smaller than"):
        sample_patches_on(imgs, 1, 64, random.Random(0), torch.Generator())


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_bicubic_down_shapes(scale):
    img = smooth_test_image(50, 63)
    lr = bicubic_down(img, scale)
    assert lr.shape == (50 // scale, 63 // scale) and lr.dtype == np.float32
    assert abs(lr.mean() - img[: 50 - 50 % scale, : 63 - 63 % scale].mean()) < 0.01  # antialiased: mean kept


def test_fit_resume_and_eval(tiny_dataset, tmp_path):
    out = tmp_path / "srcnn.safetensors"
    common = ["--model", "srcnn_x2", "--data", str(tiny_dataset), "--split-file", str(tmp_path / "s.json"),
              "--batch", "4", "--patch", "32", "--val-every", "2", "--ckpt-every", "2", "--val-crop", "0",
              "--ckpt-dir", str(tmp_path / "ck"), "--out", str(out), "--threads", "1", "--warmup", "1"]
    assert train_main(["fit", *common, "--steps", "2"]) == 0
    assert (tmp_path / "ck" / "srcnn_x2.ckpt.safetensors").is_file()
    assert train_main(["fit", *common, "--steps", "4", "--resume"]) == 0
    meta = read_metadata(out)
    assert meta["model"] == "srcnn_x2" and meta["training"]["steps"] == 4
    assert meta["training"]["train_patients"] >= 1 and meta["val"]["baseline_name"] == "bicubic" and "psnr" in meta["val"]["baseline"]
    assert meta["val"]["border_crop"] == 2 and meta["val"]["data_range"] == 1.0

    res = tmp_path / "res"
    assert train_main(["eval", "--models", "bicubic_x2", "--scale", "2", "--data", str(tiny_dataset),
                       "--split-file", str(tmp_path / "s.json"), "--out", str(res)]) == 0
    rows = list(csv.DictReader(open(res / "sr_x2_test.csv")))
    assert [r["model"] for r in rows] == ["bicubic_x2", "lanczos_x2"]
    assert float(rows[0]["gain_vs_bicubic_db"]) == 0.0
    assert 20 < float(rows[0]["psnr"]) < 60
    assert "| bicubic_x2 |" in (res / "sr_x2_test.md").read_text()


# --- degradations -----------------------------------------------------------------

from train import degrade  # noqa: E402


@pytest.mark.parametrize("name", sorted(degrade.DEGRADATIONS))
@pytest.mark.parametrize("colour", [False, True], ids=["gray", "rgb"])
def test_degradations_are_seeded_and_keep_the_convention(name, colour):
    img = smooth_test_image(48, 56, colour=colour)
    fn = degrade.DEGRADATIONS[name]
    a, b = fn(img, seed=5), fn(img, seed=5)
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32 and a.min() >= 0 and a.max() <= 1
    if name in degrade.DOWNSCALING:  # x2 by default
        assert a.shape == (24, 28) + img.shape[2:]
    else:
        assert a.shape == img.shape
        assert not np.array_equal(a, img)


def test_noise_levels_follow_their_conventions():
    flat = np.full((200, 200), 0.5, np.float32)
    assert degrade.gaussian_noise(flat, sigma=0.05).std() == pytest.approx(0.05, rel=0.05)
    # Poisson: variance of counts = mean, so std on [0,1] = sqrt(0.5 * peak) / peak
    assert degrade.poisson_noise(flat, peak=100).std() == pytest.approx(np.sqrt(50) / 100, rel=0.05)
    assert degrade.rician_noise(np.zeros((200, 200), np.float32), sigma=0.05).mean() == pytest.approx(0.05 * np.sqrt(np.pi / 2), rel=0.05)
    assert degrade.gaussian_noise(flat, seed=1).tolist() != degrade.gaussian_noise(flat, seed=2).tolist()


def test_compose_chains_in_order_and_is_reproducible():
    img = smooth_test_image()
    chain = degrade.compose([("low_contrast", {"factor": 0.5}), ("gaussian_noise", {"sigma": 0.02})])
    out = chain(img, seed=3)
    np.testing.assert_array_equal(out, chain(img, seed=3))
    assert out.std() < img.std()
    with pytest.raises(KeyError):
        degrade.compose([("sharpen", {})])


def _fit_args(tiny_dataset, tmp_path, model, *extra):
    return ["fit", "--model", model, "--data", str(tiny_dataset), "--split-file", str(tmp_path / "s.json"),
            "--batch", "2", "--patch", "32", "--val-every", "2", "--ckpt-every", "2", "--val-crop", "0",
            "--ckpt-dir", str(tmp_path / "ck"), "--out", str(tmp_path / f"{model}.safetensors"),
            "--threads", "1", "--warmup", "1", *extra]


def test_gan_fit_from_init_with_relativistic_loss_and_resume(tiny_dataset, tmp_path):
    # PSNR-oriented generator first, then GAN fine-tuning from it (the ESRGAN recipe), then resume.
    assert train_main(_fit_args(tiny_dataset, tmp_path, "rrdbnet_x4", "--steps", "1")) == 0
    gan = _fit_args(tiny_dataset, tmp_path, "esrgan_x4", "--init", str(tmp_path / "rrdbnet_x4.safetensors"),
                    "--gan", "relativistic", "--loss", "l1+0.5*perceptual", "--select-by", "perceptual", "--amp", "bf16")
    assert train_main([*gan, "--steps", "2"]) == 0
    assert train_main([*gan, "--steps", "3", "--resume"]) == 0
    meta = read_metadata(tmp_path / "esrgan_x4.safetensors")
    assert meta["training"]["gan"] == "relativistic" and meta["training"]["init"] == "rrdbnet_x4.safetensors"
    assert meta["training"]["mixed_precision"] == "bf16 autocast"
    assert "perceptual" in meta["val"]


def test_bad_loss_and_gan_names_are_refused(tiny_dataset, tmp_path):
    with pytest.raises(ValueError, match="loss term"):
        train_main(_fit_args(tiny_dataset, tmp_path, "srcnn_x2", "--loss", "l1+0.1*lpips", "--steps", "1"))
    with pytest.raises(ValueError, match="--gan"):
        train_main(_fit_args(tiny_dataset, tmp_path, "srcnn_x2", "--gan", "wgan", "--steps", "1"))


def test_ddp_with_torchrun_on_cpu(tiny_dataset, tmp_path):
    """The same command launched by torchrun (2 CPU processes, gloo) trains and exports once."""
    import subprocess
    import sys

    # --standalone picks a free port, so a busy fixed port on the CI host cannot fail the test.
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "train", *_fit_args(tiny_dataset, tmp_path, "srcnn_x2", "--steps", "2", "--device", "cpu")]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=str(__import__("pathlib").Path(__file__).parents[1]))
    # The worker's own traceback comes before torchrun's summary: show the lines that name an error.
    errors = [line for line in res.stderr.splitlines() if "Error" in line or "error:" in line]
    assert res.returncode == 0, "\n".join(errors[:20]) + "\n...\n" + res.stderr[-1500:]
    meta = read_metadata(tmp_path / "srcnn_x2.safetensors")
    assert meta["training"]["world_size"] == 2


# --- site variation of denoising targets and external evaluation ---------------------

import torch  # noqa: E402

from train.evaluate import fit_side  # noqa: E402
from train.fit import varied_copies  # noqa: E402
from train.data import Image as DataImage  # noqa: E402
from train.tasks import TASKS, random_site_tensor  # noqa: E402


def _hannover_like(n: int = 64, size: int = 48) -> torch.Tensor:
    """Mid-grey patches (a 0.3 ramp of anatomy plus fine texture), as the CLAHE-processed training
    PNGs are: values 0.1-0.6, never near 0 or 1."""
    g = torch.Generator().manual_seed(0)
    ramp = torch.linspace(-0.15, 0.15, size).view(1, 1, 1, size)
    return (0.35 + ramp + 0.03 * torch.randn(n, 1, size, size, generator=g)).clamp(0.1, 0.6)


def test_site_variation_is_seeded_and_covers_smooth_and_saturated_images():
    x = _hannover_like()
    assert torch.equal(random_site_tensor(x, torch.Generator().manual_seed(1), p=0.0), x)
    y = random_site_tensor(x, torch.Generator().manual_seed(1))
    assert torch.equal(y, random_site_tensor(x, torch.Generator().manual_seed(1)))
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
    # Blurred samples: the pixel-to-pixel texture drops (sigma >= 0.5 px removes over a third of it).
    def texture(t):
        return (t[..., 1:, :] - t[..., :-1, :]).std(dim=(1, 2, 3)) / t.std(dim=(1, 2, 3)).clamp_min(1e-6)
    assert (texture(y) < 0.65 * texture(x)).float().mean() > 0.3
    # New windows: some samples now reach the ends of the range, which the inputs never do.
    assert ((y <= 0.01) | (y >= 0.99)).flatten(1).any(1).float().mean() > 0.1
    assert 0.2 < (y - x).abs().flatten(1).amax(1).lt(1e-7).float().mean() < 0.35  # about a quarter unchanged (p 0.5 x 0.5)


def test_denoising_varies_its_targets_and_validates_on_varied_copies():
    assert TASKS["denoise"].train_target is random_site_tensor
    assert TASKS["sr"].train_target is None and TASKS["enhance"].train_target is None
    ims = [DataImage(f"i{k}", _hannover_like(1, 40)[0, 0].numpy()) for k in range(3)]
    copies = varied_copies(ims, "denoise")
    assert [c.id for c in copies] == ["i0~varied", "i1~varied", "i2~varied"]
    assert all(c.pixels.shape == (40, 40) and c.pixels.dtype == np.float32 for c in copies)
    assert [c.id for c in varied_copies(ims, "denoise")] == [c.id for c in copies]
    assert all(np.array_equal(a.pixels, b.pixels) for a, b in zip(copies, varied_copies(ims, "denoise")))
    assert varied_copies(ims, "sr") == []


def test_fit_side_downscales_the_longer_side_and_keeps_small_images():
    im = DataImage("a", smooth_test_image(300, 120))
    small = fit_side(im, 100)
    assert small.pixels.shape == (100, 40) and small.pixels.dtype == np.float32
    assert abs(float(small.pixels.mean()) - float(im.pixels.mean())) < 0.01
    assert fit_side(im, 0) is im and fit_side(im, 300) is im


def test_external_eval_scores_every_image_and_ignores_the_split(tiny_dataset, tmp_path):
    res = tmp_path / "ext"
    assert train_main(["eval", "--task", "denoise", "--models", "dncnn", "--subset", "external",
                       "--data", str(tiny_dataset), "--max-side", "64", "--maps", "0", "--out", str(res)]) == 0
    rows = {r["model"]: r for r in csv.DictReader(open(res / "denoise_gaussian_external.csv"))}
    assert rows["dncnn"]["images"] == "12" and rows["dncnn"]["patients"] == "6"  # all images, grouped by data.csv
    assert float(rows["dncnn"]["psnr"]) > float(rows["input (no processing)"]["psnr"])
    md = (res / "denoise_gaussian_external.md").read_text()
    assert "never used for training or selection" in md and "longer side <= 64 px" in md
    assert not (tmp_path / "s.json").exists()  # no split file was made or needed


def test_denoiser_fit_validates_on_plain_and_varied_crops(tiny_dataset, tmp_path):
    assert train_main(_fit_args(tiny_dataset, tmp_path, "dncnn", "--steps", "1")) == 0
    t = read_metadata(tmp_path / "dncnn.safetensors")["training"]
    assert t["val_images"] >= 1 and t["val_varied_copies"] == t["val_images"]  # copies counted apart
    assert "clean targets varied" in t["degradation"]


def test_eval_ensemble_adds_an_x8_row_per_network(tiny_dataset, tmp_path):
    res = tmp_path / "ens"
    assert train_main(["eval", "--task", "denoise", "--models", "dncnn", "--ensemble", "--subset", "external",
                       "--data", str(tiny_dataset), "--max-side", "48", "--limit", "3", "--maps", "0",
                       "--out", str(res)]) == 0
    rows = {r["model"]: r for r in csv.DictReader(open(res / "denoise_gaussian_external.csv"))}
    assert "dncnn+x8" in rows and "nlm+x8" not in rows  # only networks get an ensemble row
    assert rows["dncnn+x8"]["params"] == rows["dncnn"]["params"] and rows["dncnn+x8"]["kind"] == "network"
    # Same weights averaged over orientations: close to the plain row, far above the noisy input.
    assert abs(float(rows["dncnn+x8"]["psnr"]) - float(rows["dncnn"]["psnr"])) < 0.5
    assert float(rows["dncnn+x8"]["psnr"]) > float(rows["input (no processing)"]["psnr"]) + 3


def test_weight_average_is_what_gets_validated_exported_and_resumed(tiny_dataset, tmp_path):
    import torch
    from safetensors.torch import load_file

    from train.fit import ema_update

    avg, net = torch.nn.Conv2d(1, 1, 3), torch.nn.Conv2d(1, 1, 3)
    before = avg.weight.detach().clone()
    ema_update(avg, net, 0.9)
    assert torch.allclose(avg.weight, 0.9 * before + 0.1 * net.weight)

    args = _fit_args(tiny_dataset, tmp_path, "srcnn_x2", "--ema", "0.5", "--val-every", "4", "--ckpt-every", "4",
                     "--zoom", "0.1")
    assert train_main([*args, "--steps", "4"]) == 0
    ck = load_file(str(tmp_path / "ck" / "srcnn_x2.ckpt.safetensors"))
    exported = load_file(str(tmp_path / "srcnn_x2.safetensors"))
    # One validation, at step 4: the exported weights are the average then, not the raw model.
    assert all(torch.equal(exported[k], ck[f"ema.{k}"]) for k in exported)
    assert not all(torch.equal(ck[f"ema.{k}"], ck[f"model.{k}"]) for k in exported)
    assert train_main([*args, "--steps", "8", "--resume"]) == 0
    assert read_metadata(tmp_path / "srcnn_x2.safetensors")["training"]["ema"] == 0.5
    with pytest.raises(ValueError, match="--ema"):
        train_main([*args, "--steps", "1", "--ema", "1.0"])


def test_zoom_augmentation_changes_the_pixel_spacing_within_its_range():
    import torch

    from train.data import ZoomCrop, augmentation

    ramp = torch.linspace(0, 1, 200).expand(1, 200, 200).clone()  # slope 1/199 per pixel along x
    torch.manual_seed(0)
    crop = ZoomCrop(48, 0.2)
    slopes = []
    for _ in range(200):
        p = crop(ramp)
        assert p.shape == (1, 48, 48) and 0.0 <= p.min() and p.max() <= 1.0
        slopes.append(float((p[0, :, 40] - p[0, :, 8]).mean() / 32 * 199))  # zoom factor seen by the patch
    slopes = np.array(slopes)
    assert 0.79 < slopes.min() < 0.85 and 1.15 < slopes.max() < 1.21  # f uniform in [0.8, 1.2]
    torch.manual_seed(1)
    plain = augmentation(48)(ramp)
    torch.manual_seed(1)
    assert torch.equal(augmentation(48, 0.0)(ramp), plain)  # zoom 0 is the plain random crop
    with pytest.raises(ValueError, match="zoom"):
        ZoomCrop(48, 1.0)


def test_colour_set_mixes_in_grey_radiographs_of_training_patients_and_a_colour_net_trains_on_it(tiny_dataset, tmp_path):
    """train.colour_data: radiographs only from the split's train/val patients (never test), grey images
    loaded with three equal channels for a colour network, and a mixed colour + grey batch trains."""
    from train.colour_data import TEST, write_colour_set
    from train.data import load_images

    split_file = tmp_path / "s.json"
    xr = load_or_make_split(tiny_dataset, split_file)
    colour = write_colour_set(tmp_path / "colour", tiny_dataset, split_file, n_train=3, n_val=1)
    s = json.loads(colour.read_text())
    xr_train, xr_val = [i[3:] for i in s["train"] if i.startswith("xr_")], [i[3:] for i in s["val"] if i.startswith("xr_")]
    assert len(xr_train) == min(3, len(xr["train"])) and set(xr_train) <= set(xr["train"])
    assert len(xr_val) == 1 and set(xr_val) <= set(xr["val"])
    assert s["test"] == TEST  # the colour test set stays the two medical colour images
    grey = load_images(tmp_path / "colour", ["camera", f"xr_{xr_train[0]}"], grayscale=False)
    for im in grey:
        assert im.pixels.ndim == 3 and np.array_equal(im.pixels[..., 0], im.pixels[..., 2])
    assert load_images(tmp_path / "colour", ["astronaut"], grayscale=True)[0].pixels.ndim == 2
    other = tmp_path / "other.json"  # a split file of another dataset
    other.write_text(json.dumps({"train": ["nope"], "val": [], "test": []}))
    with pytest.raises(FileNotFoundError, match="radiograph-split"):
        write_colour_set(tmp_path / "other", tiny_dataset, other)

    out = tmp_path / "rgb.safetensors"
    assert train_main(["fit", "--model", "gated_enhance_rgb", "--data", str(tmp_path / "colour"), "--split-file", str(colour),
                       "--loss", "l1+0.5*delta_e", "--steps", "2", "--batch", "6", "--patch", "32", "--val-every", "2",
                       "--ckpt-dir", str(tmp_path / "ck"), "--out", str(out), "--threads", "1", "--warmup", "1"]) == 0
    meta = read_metadata(out)
    assert meta["training"]["train_images"] == len(s["train"]) and "delta_e" in meta["val"]


def test_oracle_split_trains_and_selects_on_the_test_images_only(tiny_dataset, tmp_path):
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import oracle_split

    real = load_or_make_split(tiny_dataset, tmp_path / "s.json", seed=1)
    oracle_split.main([str(tmp_path / "s.json"), str(tmp_path / "o.json")])
    o = json.loads((tmp_path / "o.json").read_text())
    assert o["train"] == o["val"] == o["test"] == real["test"] and "oracle" in o
    assert o["patients"]["train"] == o["patients"]["val"] == real["patients"]["test"]
    assert real["train"] != real["test"]  # the real split file is untouched
    out = tmp_path / "oracle.safetensors"
    assert train_main(["fit", "--model", "srcnn_x2", "--data", str(tiny_dataset), "--split-file", str(tmp_path / "o.json"),
                       "--batch", "2", "--patch", "32", "--steps", "2", "--val-every", "2", "--ckpt-dir", str(tmp_path / "ck"),
                       "--out", str(out), "--threads", "1", "--warmup", "1"]) == 0
    training = read_metadata(out)["training"]
    assert training["train_images"] == training["val_images"] == len(real["test"])


def test_known_gaussian_noise_trains_a_non_blind_denoiser_on_unvaried_targets(tiny_dataset, tmp_path):
    import torch
    from train.tasks import TASKS, known_gaussian

    task = known_gaussian(TASKS["denoise"], 0.05)
    x = torch.full((4, 1, 64, 64), 0.5)
    noisy = task.train_degrade(x, 1, torch.Generator().manual_seed(0))
    assert abs(float((noisy - x).std()) - 0.05) < 0.002 and task.train_target is None
    assert task.eval_degrade is TASKS["denoise"].eval_degrade  # scored exactly as the blind models
    out = tmp_path / "dn.safetensors"
    common = ["--data", str(tiny_dataset), "--split-file", str(tmp_path / "s.json"), "--batch", "2", "--patch", "32",
              "--steps", "2", "--val-every", "2", "--ckpt-dir", str(tmp_path / "ck"), "--out", str(out),
              "--threads", "1", "--warmup", "1", "--noise-sigma", "0.05"]
    assert train_main(["fit", "--model", "dncnn", *common]) == 0
    t = read_metadata(out)["training"]
    assert t["noise_sigma"] == 0.05 and t["val_varied_copies"] == 0 and "known level" in t["degradation"]
    with pytest.raises(ValueError, match="noise-sigma"):
        train_main(["fit", "--model", "srcnn_x2", *common])
