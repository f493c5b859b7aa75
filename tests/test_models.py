"""Every registered model, network or classical, through the public API (parametrised over the registry)."""

import numpy as np
import pytest
import torch

from conftest import smooth_test_image
from models import (
    InvalidImageError,
    InvalidOptionError,
    UnknownModelError,
    WeightsError,
    enhance,
    get_spec,
    list_models,
    model_card,
)
from models.loading import read_metadata, weights_path
from models.registry import ModelSpec, register

ALL = [s.name for s in list_models()]
NETWORKS = [s.name for s in list_models() if s.kind == "network"]


def test_registry_has_the_required_models():
    required = {
        "bicubic_x2", "bicubic_x4", "lanczos_x2", "lanczos_x4", "histeq", "clahe", "contrast_stretch",
        "gamma", "unsharp", "gaussian", "median", "nlm", "srcnn_x2", "srcnn_x4", "vdsr_x2", "vdsr_x4",
    }
    assert required <= set(ALL)
    for s in list_models():
        assert s.task in ("sr", "denoise", "enhance")
        assert s.scale == 1 or s.task == "sr"
        assert s.card


def test_list_models_filters():
    assert {s.name for s in list_models(task="sr", scale=4)} >= {"bicubic_x4", "srcnn_x4", "vdsr_x4"}
    assert all(s.task == "denoise" for s in list_models(task="denoise"))


@pytest.mark.parametrize("name", NETWORKS)
def test_every_network_ships_trained_weights_with_a_card(name):
    path = weights_path(get_spec(name))
    assert path.is_file(), f"{name}: weights missing (train it: python -m train fit --model {name})"
    assert path.stat().st_size < 10 * 1024 * 1024  # a Space needs no LFS
    meta = read_metadata(path)
    assert meta["model"] == name and meta["scale"] == get_spec(name).scale
    assert meta["training"]["steps"] > 0 and meta["training"]["train_patients"] > 0
    # Trained to beat bicubic on held-out patients; the card says by how much.
    assert meta["val"]["psnr"] > meta["val"]["baseline"]["psnr"]
    card = model_card(name)
    assert card["weights_present"] and card["metadata"]["val"]["psnr"] == meta["val"]["psnr"]


@pytest.mark.parametrize("colour", [False, True], ids=["gray", "rgb"])
@pytest.mark.parametrize("name", ALL)
def test_output_shape_range_and_dtype(name, colour):
    img = smooth_test_image(40, 48, colour=colour)
    out = enhance(img, name)
    s = get_spec(name).scale
    assert out.shape == (40 * s, 48 * s) + ((3,) if colour else ())
    assert out.dtype == np.float32
    assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0
    assert out.std() > 0.01  # not a blank image


@pytest.mark.parametrize("name", [n for n in NETWORKS] + ["bicubic_x2"])
def test_sr_output_resembles_input(name):
    img = smooth_test_image(48, 48)
    out = enhance(img, name)
    s = get_spec(name).scale
    if s == 1:
        return
    back = out.reshape(48, s, 48, s).mean(axis=(1, 3))
    assert np.abs(back - img).mean() < 0.03  # an SR result must average back to its input


@pytest.mark.parametrize("name", NETWORKS)
def test_tiled_equals_untiled(name):
    img = smooth_test_image(70, 90, seed=3)
    whole = enhance(img, name, tile=4096)
    tiled = enhance(img, name, tile=24)
    assert np.abs(whole - tiled).max() < 1e-4


@pytest.mark.parametrize("name", NETWORKS)
def test_receptive_margin_covers_the_architecture(name):
    """With random weights (independent of training), tiles with the module's margin reproduce the whole image."""
    from models.resample import to_tensor
    from models.tiling import tiled_apply

    torch.manual_seed(0)
    spec = get_spec(name)
    module = spec.build().eval()
    for p in module.parameters():  # random but non-trivial weights that propagate far
        p.data.normal_(0, 0.05)
    x = to_tensor(smooth_test_image(60, 76, seed=4, colour=module.in_channels == 3).astype(np.float32))
    with torch.no_grad():
        whole = module(x)
        kw = {"stats": module.image_stats(x)} if getattr(module, "global_stats", False) else {}
        tiled = tiled_apply(lambda t: module(t, **kw), x, spec.scale, tile=20, margin=module.receptive_margin,
                            align=getattr(module, "tile_align", 1))
    assert torch.allclose(whole, tiled, atol=1e-4), float((whole - tiled).abs().max())


def test_deterministic():
    img = smooth_test_image()
    for name in ["vdsr_x2", "nlm", "clahe"]:
        np.testing.assert_array_equal(enhance(img, name), enhance(img, name))


def test_classical_options_and_unknown_options(gray_image):
    a = enhance(gray_image, "gaussian", sigma=0.5)
    b = enhance(gray_image, "gaussian", sigma=3.0)
    assert a.std() > b.std()  # a stronger filter smooths more
    with pytest.raises(UnknownModelError, match="does not take"):
        enhance(gray_image, "gaussian", radius=3)


@pytest.mark.parametrize("name", ["dncnn", "gaussian", "vdsr_x2", "lanczos_x2"])
def test_strength_blends_with_what_the_model_started_from(name, gray_image):
    from models.resample import upscale

    scale = get_spec(name).scale
    start = upscale(gray_image, scale) if scale > 1 else gray_image
    full = enhance(gray_image, name)
    np.testing.assert_allclose(enhance(gray_image, name, strength=0.0), np.clip(start, 0, 1), atol=1e-6)
    np.testing.assert_array_equal(enhance(gray_image, name, strength=1.0), full)
    np.testing.assert_allclose(enhance(gray_image, name, strength=0.4), np.clip(start + 0.4 * (full - start), 0, 1),
                               atol=1e-6)
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(InvalidOptionError, match="strength"):
            enhance(gray_image, name, strength=bad)


def test_bicubic_matches_torch_reference(gray_image):
    ref = torch.nn.functional.interpolate(torch.from_numpy(gray_image)[None, None], scale_factor=2, mode="bicubic", align_corners=False)
    np.testing.assert_allclose(enhance(gray_image, "bicubic_x2"), ref.clamp(0, 1)[0, 0].numpy(), atol=1e-6)


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((8, 8), np.uint8), "float32"),
        (np.zeros((8, 8, 4), np.float32), "shape"),
        (np.zeros((1, 1), np.float32), "2x2"),
        (np.full((8, 8), np.nan, np.float32), "NaN"),
        (np.full((8, 8), 2.0, np.float32), r"\[0, 1\]"),
        ([[0.1, 0.2]], "numpy array"),
    ],
)
def test_invalid_images_raise_typed_errors(bad, match):
    with pytest.raises(InvalidImageError, match=match):
        enhance(bad, "bicubic_x2")


def test_too_large_output_is_refused(monkeypatch):
    import importlib

    me = importlib.import_module("models.enhance")  # the package re-exports a function of that name

    monkeypatch.setattr(me, "MAX_OUTPUT_PIXELS", 1000)
    with pytest.raises(InvalidImageError, match="limit"):
        enhance(np.zeros((20, 20), np.float32), "bicubic_x4")


def test_unknown_model():
    with pytest.raises(UnknownModelError, match="unknown model"):
        enhance(np.zeros((8, 8), np.float32), "no_such_model")
    assert issubclass(UnknownModelError, ValueError)


def test_missing_weights_is_a_clear_error(monkeypatch):
    from functools import partial

    from models import registry
    from models.arch import SRCNN

    spec = ModelSpec("_missing_weights_x2", "sr", 2, 1, "test", weights="does_not_exist.safetensors", build=partial(SRCNN, scale=2))
    monkeypatch.setitem(registry._REGISTRY, spec.name, spec)
    with pytest.raises(WeightsError, match="missing"):
        enhance(np.zeros((8, 8), np.float32), spec.name)


def test_register_rejects_duplicates_and_bad_specs():
    with pytest.raises(ValueError, match="twice"):
        register(get_spec("bicubic_x2"))
    with pytest.raises(ValueError, match="task"):
        register(ModelSpec("_x", "colourise", 1, 0, "x", fn=lambda i: i))


def test_plan_probe_is_a_real_crop_and_larger_on_a_gpu():
    """Plans are timed on a real image: 96 px on the CPU (as always), 256 px on a GPU (launch overhead)."""
    from skimage import data

    from models.device import _probe_image, probe_side

    assert probe_side("cpu") == 96 and probe_side("cuda") == 256
    cam = torch.from_numpy(data.camera().astype(np.float32) / 255)
    small, large = _probe_image(3, probe_side("cpu")), _probe_image(1, probe_side("cuda"))
    assert small.shape == (1, 3, 96, 96) and torch.equal(small[0, 2], cam[200:296, 200:296])
    assert large.shape == (1, 1, 256, 256) and torch.equal(large[0, 0], cam[128:384, 128:384])


@pytest.mark.parametrize("name", NETWORKS)
def test_fast_plans_keep_fidelity(name, monkeypatch):
    """The automatically chosen plan (bf16 / channels-last...) agrees with fp32 to >= 50 dB on a real image."""
    from skimage import data

    from models.device import FIDELITY_MIN_PSNR_DB, pick_plan, psnr_torch, run
    from models.resample import to_tensor

    monkeypatch.delenv("MEDENHANCE_PLAN", raising=False)
    spec = get_spec(name)
    torch.manual_seed(0)
    module = spec.build().eval()
    plan = pick_plan(f"{name}__plan_test", module, "cpu")
    assert plan.fidelity_db >= FIDELITY_MIN_PSNR_DB
    img = data.camera()[100:164, 300:364].astype(np.float32) / 255
    x = to_tensor(np.stack([img] * 3, -1) if module.in_channels == 3 else img)
    with torch.no_grad():
        kw = {"stats": module.image_stats(x)} if getattr(module, "global_stats", False) else {}
        ref = module.to(memory_format=torch.contiguous_format)(x, **kw).clamp(0, 1)
        fast = run(module, x, plan, **kw).clamp(0, 1)
    assert psnr_torch(ref, fast) >= FIDELITY_MIN_PSNR_DB - 3  # a different image than the probe: small slack


@pytest.mark.parametrize("name", NETWORKS)
def test_every_architecture_round_trips_through_safetensors(name, tmp_path):
    """save_weights / load must work for every network (e.g. no parameters shared between layers)."""
    from safetensors.torch import load_file

    from models.loading import save_weights

    module = get_spec(name).build()
    path = save_weights(module, tmp_path / f"{name}.safetensors", {"model": name})
    fresh = get_spec(name).build()
    fresh.load_state_dict(load_file(str(path)), strict=True)
    for a, b in zip(module.state_dict().values(), fresh.state_dict().values()):
        assert torch.equal(a, b)
    assert read_metadata(path) == {"model": name}


# --- geometric self-ensemble ---------------------------------------------------------

@pytest.mark.parametrize("colour", [False, True], ids=["gray", "rgb"])
def test_dihedral_transforms_are_the_eight_distinct_symmetries_and_invert(colour):
    from models.ensemble import TRANSFORMS, dihedral, undo_dihedral

    img = smooth_test_image(6, 9, seed=2, colour=colour)
    seen = set()
    for k in TRANSFORMS:
        t = dihedral(img, k)
        assert t.shape[:2] == ((6, 9) if k % 2 == 0 else (9, 6)) and t.shape[2:] == img.shape[2:]
        np.testing.assert_array_equal(undo_dihedral(t, k), img)
        seen.add(t.tobytes() + bytes(t.shape))
    assert len(seen) == 8  # an asymmetric image gives eight different copies
    with pytest.raises(ValueError, match="0..7"):
        dihedral(img, 8)


def test_self_ensemble_averages_the_undone_outputs():
    from models.ensemble import self_ensemble

    img = smooth_test_image(8, 10, seed=5)
    # An equivariant map (pixelwise square, x2 nearest upscaling) is unchanged by the ensemble ...
    equivariant = lambda a: np.repeat(np.repeat(a**2, 2, 0), 2, 1)  # noqa: E731
    np.testing.assert_allclose(self_ensemble(equivariant, img), equivariant(img), atol=1e-7)
    # ... a map that depends on orientation (shift down one row, wrapping) becomes its mean over the
    # orientations: each of the four directions twice (mirroring left-right keeps "down" down).
    shift = lambda a: np.roll(a, 1, axis=0)  # noqa: E731
    mean = (np.roll(img, 1, 0) + np.roll(img, -1, 0) + np.roll(img, 1, 1) + np.roll(img, -1, 1)) / 4
    np.testing.assert_allclose(self_ensemble(shift, img), mean, atol=1e-6)


@pytest.mark.parametrize("name", NETWORKS)
def test_ensemble_output_keeps_the_contract_and_stays_close(name):
    img = smooth_test_image(24, 30, seed=6)
    plain, ens = enhance(img, name), enhance(img, name, ensemble=True)
    assert ens.shape == plain.shape and ens.dtype == np.float32
    assert ens.min() >= 0 and ens.max() <= 1
    assert np.abs(ens - plain).mean() < 0.02  # the same model, only averaged over orientations


@pytest.mark.parametrize("name", [n for n in NETWORKS if get_spec(n).in_channels == 3])
def test_grey_image_on_a_colour_network_is_the_mean_of_three_equal_channels(name):
    """A grayscale image goes in as three equal channels and the mean of the output channels comes back,
    whole or in tiles (the tensors are expanded views, never NumPy copies)."""
    from models.loading import load_network
    from models.resample import to_tensor

    img = smooth_test_image(70, 90, seed=7).astype(np.float32)
    module = load_network(get_spec(name), "cpu")
    x = to_tensor(np.stack([img] * 3, -1))
    with torch.no_grad():
        kw = {"stats": module.image_stats(x)} if getattr(module, "global_stats", False) else {}
        ref = module(x, **kw).clamp(0, 1).mean(1)[0].numpy()
    out = enhance(img, name, device="cpu")
    assert out.shape == img.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, ref, atol=1e-5)
    np.testing.assert_allclose(enhance(img, name, device="cpu", tile=32), ref, atol=1e-4)
