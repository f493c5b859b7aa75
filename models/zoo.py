"""Every model the studio serves, registered explicitly (no folder scanning).

To add a model: write its module under ``models/arch`` (or a function in
``models/classical.py``), register it here, train it with ``python -m train
fit``; the registry-parametrised tests then cover it automatically.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable

from . import classical
from .arch import EDSR, RRDBNet, SRCNN, DenoisingAutoencoder, DnCNN, GatedEnhancer, SRResNet, VDSR
from .arch.compact import CompactSR
from .arch.noise_aware import NoiseAwareAutoencoder, NoiseAwareEDSR, NoiseAwareSRResNet
from .auto import AutoRoute, Gate, add_route, route_fn
from .registry import ModelSpec, get_spec, register

# --- classical baselines -------------------------------------------------------
for s in (2, 4):
    register(ModelSpec(f"bicubic_x{s}", "sr", s, 0, "Bicubic interpolation (PyTorch, a = -0.75). The reference row of every SR table.", fn=classical.bicubic))
    register(ModelSpec(f"lanczos_x{s}", "sr", s, 0, "Lanczos-3 interpolation (Pillow).", fn=classical.lanczos))
    register(ModelSpec(f"nlm_lanczos_x{s}", "sr", s, 0, "Non-local means (noise sigma estimated), then Lanczos-3: the "
                       "classical pipeline for noisy inputs, the baseline row of realistic SR.",
                       fn=classical.nlm_then_lanczos, options={"sigma": None, "h_factor": 0.8}))

register(ModelSpec("histeq", "enhance", 1, 0, "Global histogram equalisation of the luma (scikit-image).", fn=classical.histogram_equalisation, options={"nbins": 256}))
register(ModelSpec("clahe", "enhance", 1, 0, "CLAHE, contrast-limited adaptive histogram equalisation of the luma (scikit-image).", fn=classical.clahe, options={"clip_limit": 0.01, "kernel_size": None}))
register(ModelSpec("contrast_stretch", "enhance", 1, 0, "Linear stretch of the 1st..99th luma percentiles to [0, 1].", fn=classical.contrast_stretch, options={"low": 1.0, "high": 99.0}))
register(ModelSpec("gamma", "enhance", 1, 0, "Gamma correction; automatic gamma maps the mean luma to 0.5.", fn=classical.gamma, options={"gamma": None}))
register(ModelSpec("unsharp", "enhance", 1, 0, "Unsharp mask (radius 2 px, amount 1) on the luma.", fn=classical.unsharp_mask, options={"radius": 2.0, "amount": 1.0}))
register(ModelSpec("gaussian", "denoise", 1, 0, "Gaussian filter, sigma 1 px, per channel.", fn=classical.gaussian_filter, options={"sigma": 1.0}))
register(ModelSpec("median", "denoise", 1, 0, "Median filter, 3x3, per channel.", fn=classical.median_filter, options={"size": 3}))
register(ModelSpec("nlm", "denoise", 1, 0, "Non-local means (scikit-image fast mode); noise sigma estimated unless given.", fn=classical.non_local_means, options={"sigma": None, "h_factor": 0.8}))

# --- networks --------------------------------------------------------------------
# Loss sentence of the SR cards below: these weights had an MSE stage after the L1 stages (README,
# Super-resolution); SRResNet and RRDBNet x4 say so in their own descriptions; the rest used L1 only.
_MSE_LAST = "with L1, the last stage with MSE (PSNR-oriented)."
_LOSSES = {"srcnn_x2": _MSE_LAST, "edsr_x4": _MSE_LAST,
           "vdsr_x4": "with L1 except the 4th of 5 stages, with MSE (PSNR-oriented)."}


# Where the bicubic-trained SR networks fail (their cards' "Where it fails").
_SR_FAILS = ("Trained only on antialiased bicubic downsampling of clean 8-bit CLAHE-processed radiographs of one "
             "hospital: noise, detector blur and JPEG artefacts in the input are not removed and may be sharpened "
             "with the anatomy. Scores on other sites' unprocessed radiographs: docs/results/external.")
_GAN_FAILS = (_SR_FAILS + " Trained with an adversarial loss: it can add texture that is not in the patient "
              "(compare the error maps); use the PSNR-oriented model for reading.")


# Estimated noise sigma (models.noise) of the inputs each family was trained on, 1st-99th percentile over the
# training images: `python scripts/noise_ranges.py`. The studio warns when an upload is far above the range.
_CLEAN_SR_NOISE = {2: (0.0030, 0.0155), 4: (0.0032, 0.0172)}  # the CLAHE texture of the Hannover PNGs
_REAL_SR_NOISE = {2: (0.0019, 0.0213), 4: (0.0023, 0.0224)}
_DENOISE_NOISE = (0.0093, 0.1325)


def _losses(name: str) -> str:
    """The card's sentence on the training losses of ``name``'s shipped weights."""
    return _LOSSES.get(name, "with L1.")


for s in (2, 4):
    register(ModelSpec(
        f"srcnn_x{s}", "sr", s, 1,
        f"SRCNN 9-5-5 (Dong et al. 2016) x{s}, 57k parameters, refining a bicubic upsample with a global "
        "residual connection. Trained on Hannover chest radiographs, patient-level split, "
        + _losses(f"srcnn_x{s}"),
        fails=_SR_FAILS, weights=f"srcnn_x{s}.safetensors", build=partial(SRCNN, scale=s), noise_range=_CLEAN_SR_NOISE[s],
    ))
    register(ModelSpec(
        f"vdsr_x{s}", "sr", s, 1,
        f"VDSR (Kim et al. 2016) x{s}: 20 conv layers, 32 channels, residual over bicubic. "
        "Trained on Hannover chest radiographs, patient-level split, "
        + _losses(f"vdsr_x{s}"),
        fails=_SR_FAILS, weights=f"vdsr_x{s}.safetensors", build=partial(VDSR, scale=s), noise_range=_CLEAN_SR_NOISE[s],
    ))

for s in (2, 4):
    register(ModelSpec(
        f"edsr_x{s}", "sr", s, 1,
        f"EDSR-baseline-style x{s} (Lim et al. 2017): 8 residual blocks x 48 features, no batch norm, "
        "pixel-shuffle upsampling, residual over bicubic. Trained on Hannover chest radiographs, patient-level split, "
        + _losses(f"edsr_x{s}"),
        fails=_SR_FAILS, weights=f"edsr_x{s}.safetensors", build=partial(EDSR, scale=s), noise_range=_CLEAN_SR_NOISE[s],
    ))

register(ModelSpec(
    "srresnet_x4", "sr", 4, 1,
    "SRResNet x4 (Ledig et al. 2017): 8 residual blocks x 48 features with PReLU, batch norm removed, "
    "residual over bicubic; "
    "trained with L1, then MSE (PSNR-oriented): two MSE stages on the CPU, three on an H100, and a last one on the CPU "
    "with a moving average of the weights. An earlier stage is the starting point of srgan_x4.",
    fails=_SR_FAILS, weights="srresnet_x4.safetensors", build=partial(SRResNet, scale=4), noise_range=_CLEAN_SR_NOISE[4],
))
register(ModelSpec(
    "srgan_x4", "sr", 4, 1,
    "SRGAN x4 (Ledig et al. 2017): the SRResNet generator fine-tuned with a standard GAN loss against a "
    "VGG-style discriminator plus L1 + feature (perceptual) loss. Sharper textures; may hallucinate detail.",
    fails=_GAN_FAILS, weights="srgan_x4.safetensors", build=partial(SRResNet, scale=4), noise_range=_CLEAN_SR_NOISE[4],
))
register(ModelSpec(
    "rrdbnet_x4", "sr", 4, 1,
    "RRDBNet x4 (Wang et al. 2018, the ESRGAN generator): 4 RRDB blocks, 32 features, growth 16, "
    "residual over bicubic; "
    "trained with L1, then MSE (PSNR-oriented): one MSE stage on the CPU, the last two on an H100. An earlier "
    "stage is the starting point of esrgan_x4.",
    fails=_SR_FAILS, weights="rrdbnet_x4.safetensors", build=partial(RRDBNet, scale=4), noise_range=_CLEAN_SR_NOISE[4],
))
register(ModelSpec(
    "esrgan_x4", "sr", 4, 1,
    "ESRGAN x4 (Wang et al. 2018): RRDBNet fine-tuned with a relativistic-average GAN loss plus L1 + feature "
    "(perceptual) loss. Sharper textures; may hallucinate detail.",
    fails=_GAN_FAILS, weights="esrgan_x4.safetensors", build=partial(RRDBNet, scale=4), noise_range=_CLEAN_SR_NOISE[4],
))

# --- restoration networks (issue: denoising and perceptual enhancement) --------------
_DENOISER_TRAINING = (
    "Trained over Gaussian, Poisson and Rician noise of many levels on Hannover chest radiographs, with the clean "
    "images also blurred, re-windowed and gamma-shifted so it does not learn that one hospital's CLAHE look "
    "(without this it left noise on smooth, unprocessed radiographs from other sites)."
)
_DENOISER_FAILS = (
    "Noise stronger than sigma 0.1 (outside its training range) and blur, which it does not remove; fine lung "
    "texture is partly smoothed with the noise (see the error maps in docs/results/maps)."
)
# The autoencoder first: it scores best on held-out patients, so the studio preselects it for Denoise.
register(ModelSpec(
    "dae", "denoise", 1, 1,
    "Convolutional denoising autoencoder with skip connections (3-level U-Net, 32-256 channels). " + _DENOISER_TRAINING,
    fails=_DENOISER_FAILS, noise_range=_DENOISE_NOISE, weights="dae.safetensors", build=partial(DenoisingAutoencoder, in_channels=1, width=32, levels=3),
))
register(ModelSpec(
    "dncnn", "denoise", 1, 1,
    "DnCNN-style blind denoiser (Zhang et al. 2017): 17 conv layers x 32 channels, no batch norm, predicts the "
    "noise. " + _DENOISER_TRAINING,
    fails=_DENOISER_FAILS, noise_range=_DENOISE_NOISE, weights="dncnn.safetensors", build=partial(DnCNN, in_channels=1),
))
register(ModelSpec(
    "gated_enhance", "enhance", 1, 1,
    "Residual-gated perceptual enhancement network (after Sharif et al., IEEE JBHI 2022): gated residual blocks "
    "plus a global gain/offset path; corrects contrast, brightness and noise together. Grayscale (colour images: "
    "luma). Trained with L1 + SSIM + gradient loss on Hannover chest radiographs (CLAHE-processed).",
    fails="Degradations outside its training range (contrast factor < 0.3, gamma outside 0.6-1.8) and blur; on "
    "unprocessed radiographs from other sites plain contrast stretching scores higher PSNR (it learned to "
    "produce the Hannover look); on colour images it corrects luma only, so colour casts remain.",
    weights="gated_enhance.safetensors", build=partial(GatedEnhancer, in_channels=1),
))
register(ModelSpec(
    "gated_enhance_rgb", "enhance", 1, 3,
    "Residual-gated perceptual enhancement network, colour version (3 channels): trained with L1 + SSIM + "
    "gradient + DeltaE (CIE76) loss on scikit-image's colour photographs, grey samples and Hannover training "
    "radiographs (grey images go in as three equal channels); evaluated on held-out medical colour images "
    "(retina fundus, immunohistochemistry) and held-out radiographs.",
    fails="Evaluated only on fundus and immunohistochemistry colour images: other colour images are untested; on "
    "grey radiographs the grayscale network gated_enhance scores higher (Hannover test 25.05 vs 21.00 dB).",
    weights="gated_enhance_rgb.safetensors", build=partial(GatedEnhancer, in_channels=3),
))

# --- realistic-degradation models (issue 29): beside the bicubic-trained ones, same architectures -----------------
# Trained by `python -m train fit --model NAME_real` on train.realistic's degradations (noise and blur in the detector
# signal domain before the display window, JPEG of the low-resolution input), on the Hannover PNGs plus deid-data's
# full-resolution DX radiograph (splits/dicom-sources.json); pydicom-data's CRs stay out as the external set.
_REAL_DATA = (
    "Data: Hannover chest radiographs (CC BY 3.0; 185 training images of the patient-level split, 8-bit PNGs) and, "
    "for a quarter of the samples, deid-data's full-resolution DX radiograph of a cat's chest (MIT; 2614 x 3072, "
    "12 bit, at 1, 1/2 and 1/4 size) with the noise added to its raw stored values before its window. "
    "Held out: pydicom-data's chest and leg CRs (MIT), the external set."
)


def _register_real(arch: str, base: str, steps: int, realistic: tuple[float, float, float, float, float, float],
                   clean: tuple[float, float, float, float], build: Callable[[], Any]) -> None:
    """Register ``<base>_real``: ``base`` fine-tuned for ``steps`` on the realistic degradations.

    ``realistic``: gains over bicubic / lanczos on the Hannover test and the external CRs, and what ``base`` loses
    there (Hannover, external); ``clean``: this model's gain over bicubic on clean inputs (Hannover, external) and
    ``base``'s. All measured by ``python -m train eval --task sr_real|sr`` (docs/realistic.md).
    """
    hg, hl, xg, xl, bh, bx = realistic
    ch, cx, bch, bcx = clean
    spec = get_spec(base)
    register(ModelSpec(
        f"{base}_real", "sr", spec.scale, 1,
        f"{arch}, {base} fine-tuned for {steps:,} steps on realistic degradations: detector blur, downsampling with a "
        "random kernel, Poisson-Gaussian detector noise, JPEG, twice with reduced strengths (train.realistic, after "
        f"Real-ESRGAN). On that degradation: {hg:+.2f} dB over bicubic ({hl:+.2f} over lanczos) on the Hannover test, "
        f"{xg:+.2f} ({xl:+.2f}) on the external CRs, where {base} loses {bh:.2f} / {bx:.2f} dB. " + _REAL_DATA,
        fails=f"Clean, bicubic-downsampled inputs: {ch:+.2f} dB over bicubic on the Hannover test and {cx:+.2f} dB on "
        f"the external CRs ({base}: {bch:+.2f} / {bcx:+.2f}), so use {base} for clean images. Trained on one DICOM "
        "source only (a cat's DX); noise far above dose 300 photons/pixel at full scale and blur wider than 1.5 px "
        "are outside its training range.",
        weights=f"{base}_real.safetensors", build=build, noise_range=_REAL_SR_NOISE[spec.scale],
    ))


_register_real("SRCNN 9-5-5 x2 (57k parameters)", "srcnn_x2", 3000, (1.86, 2.00, 2.67, 2.88, 1.56, 2.44),
               (-0.74, -3.57, 0.81, 2.48), partial(SRCNN, scale=2))
_register_real("EDSR-baseline-style x2 (8 residual blocks x 48 features, 437k parameters)", "edsr_x2", 1500,
               (2.10, 2.24, 3.11, 3.33, 1.61, 2.51), (-0.65, -3.57, 0.93, 3.31), partial(EDSR, scale=2))
_register_real("SRResNet x4 (8 residual blocks x 48 features, 528k parameters)", "srresnet_x4", 1500,
               (1.59, 1.70, 2.03, 2.09, 1.37, 1.57), (-0.04, -0.74, 1.19, 3.58), partial(SRResNet, scale=4))

# --- compact x4 for CPUs (issue 37): every convolution at the input resolution, one pixel shuffle last ----------------
register(ModelSpec(
    "compact_x4_real", "sr", 4, 1,
    "Compact x4 network (after Real-ESRGAN's SRVGGNetCompact): 14 3x3 convs x 32 features with PReLU at the input "
    "resolution, a conv to the 16 sub-pixels, one pixel shuffle, added to the bicubic enlargement; 116k parameters. "
    "Trained from scratch for 20,000 steps (batch 16, 128 px, L1, cosine schedule, weight average) on the same "
    "realistic degradations as srresnet_x4_real, on 2 CPU cores. On that degradation (python -m train eval --task "
    "sr_real --scale 4): +1.58 dB over bicubic on the Hannover test at 640 px (srresnet_x4_real +1.59), +2.00 on the "
    "external CRs at <= 640 px (+2.02) and +4.65 on their native-resolution 512 px crops (+4.23), at a tenth of "
    "srresnet_x4_real's time: a whole 1841 x 1955 CR in about 7-8 s on the 2-core CPU (docs/performance.md). " + _REAL_DATA,
    fails="Clean, bicubic-downsampled inputs: -0.15 dB against bicubic on the Hannover test (srresnet_x4_real -0.04; "
    "srresnet_x4 +1.19), so use srresnet_x4 for clean images. Trained on one DICOM source only (a cat's "
    "DX); noise far above dose 300 photons/pixel at full scale and blur wider than 1.5 px are outside its range; "
    "its 14-conv receptive field (about 15 input px) sees less context than SRResNet's.",
    weights="compact_x4_real.safetensors", build=partial(CompactSR, scale=4, feats=32, convs=14),
    noise_range=_REAL_SR_NOISE[4],
))

# --- noise-aware models and the automatic entries (issue 35) ----------------------------------------------------
# Conditioned on the input's estimated noise sigma (models.noise; FFDNet / SRMD style), trained by `python -m train
# fit --model NAME` on the sr_mix / denoise_mix degradations (train.tasks), from the weights named in each card.
# Scores: `python -m train eval` on the Hannover test patients (640 px) and the external CRs (<= 640 px and
# native-resolution 512 px crops); docs/noise-aware.md has the tables and the commands.
_MIX_SR = ("Degradations per sample (train.tasks sr_mix): 30 % clean antialiased bicubic, 20 % Poisson-Gaussian "
           "detector noise at the LR pixels (dose 100-20000 photons/pixel at full scale, read sigma 0-0.004), 50 % "
           "the realistic chain of the *_real models (detector blur, random resampling kernel, Poisson-Gaussian "
           "noise, JPEG, twice). ")
_MIX_DENOISE = ("Degradations per sample (train.tasks denoise_mix): 40 % display-domain Gaussian / Poisson / Rician "
                "noise (sigma 0.005-0.10), 45 % Poisson-Gaussian detector noise before the display window (dose "
                "100-20000, read sigma 0-0.004), 15 % near-clean; clean images also blurred, re-windowed and "
                "gamma-shifted. ")
_NA_INPUT = ("The first conv also sees a constant plane of 20 x the noise sigma estimated on the whole input "
             "(models.noise), or the level the caller gives (models.enhance(..., noise_level=)). ")
_MIX_SR_NOISE = {2: (0.0020, 0.0625), 4: (0.0024, 0.0521)}  # scripts/noise_ranges.py on sr_mix
_MIX_DENOISE_NOISE = (0.0012, 0.0990)  # on denoise_mix


_NA_MEASURED = "Measured (python -m train eval, docs/noise-aware.md), "


def _register_na(name: str, arch: str, base: str, steps: int, task: str, scale: int, scores: str, fails: str,
                 build: Callable[[], Any]) -> None:
    """Register noise-aware ``name``: ``base``'s weights fine-tuned for ``steps`` on the mixed degradations."""
    register(ModelSpec(
        name, task, scale, 1,
        f"{arch}, noise-aware: {base} fine-tuned for {steps:,} steps. " + _NA_INPUT
        + (_MIX_SR if task == "sr" else _MIX_DENOISE) + _NA_MEASURED + scores + " " + _REAL_DATA,
        fails=fails, weights=f"{name}.safetensors", build=build,
        noise_range=_MIX_SR_NOISE[scale] if task == "sr" else _MIX_DENOISE_NOISE,
    ))

_register_na("edsr_x2_na", "EDSR-baseline-style x2 (8 residual blocks x 48 features)", "edsr_x2_real", 1500, "sr", 2,
             (
                 "dB over bicubic on the Hannover test at 640 px: clean +0.24 (edsr_x2 +0.93), realistic +2.13 (+0.82 over non-local means then Lanczos), "
                 "Poisson-Gaussian +4.41; external CRs <= 640 px +0.04 / +2.64 / +5.00, native 512 px crops "
                 "-0.28 / +4.16 / +7.52."),
             "Clean, bicubic-downsampled inputs: 0.7 dB (Hannover) to 3.4 dB (external <= 640 px) below edsr_x2. "
             "On realistic external inputs 0.5-1.0 dB below edsr_x2_real. Noise above sigma about 0.06, blur wider "
             "than 1.5 px are outside its training range.", partial(NoiseAwareEDSR, scale=2))
_register_na("srresnet_x4_na", "SRResNet x4 (8 residual blocks x 48 features)", "srresnet_x4_real", 1500, "sr", 4,
             (
                 "dB over bicubic on the Hannover test at 640 px: clean +0.57 (srresnet_x4 +1.19), realistic +1.69 (srresnet_x4_real +1.59; +0.78 over non-local means "
                 "then Lanczos), Poisson-Gaussian dose 500 +3.50 (+0.60 over NLM then Lanczos); on the external CRs at "
                 "<= 640 px +1.87 / +2.27 / +4.27, on their native-resolution 512 px crops +0.11 / +4.10 / +7.25."),
             "Clean, bicubic-downsampled inputs: 0.6 dB (Hannover) to 1.8 dB (external crops) below srresnet_x4, "
             "which auto_x4 runs for them. Noise far above its training range (sigma above about 0.05), blur wider "
             "than 1.5 px. Trained on one DICOM source (a cat's DX) besides the Hannover PNGs.", partial(NoiseAwareSRResNet, scale=4))
_register_na("dae_na", "Denoising autoencoder (3-level U-Net, 32-256 channels)", "dae", 1500, "denoise", 1,
             (
                 "PSNR dB against non-local means given the true sigma: Gaussian sigma 0.05 +0.41 on the Hannover test, +2.17 on the external CRs at <= 640 px, -0.94 "
                 "on their native-resolution 512 px crops; Poisson-Gaussian dose 2000 +0.00 / +3.13 / +1.21; dose 250 "
                 "+0.47 on the Hannover test."),
             "Poisson-Gaussian noise at low dose (250 photons/pixel) on other sites' unprocessed CRs: it leaves noise "
             "in the low-dose (bright) regions and scores 3.6 dB (<= 640 px) to 5.8 dB (native crops) BELOW non-local "
             "means, where dncnn gains +2.7 / +0.5 dB (the plain dae fails the same way): use dncnn for such images. "
             "On Gaussian noise of the external CRs the plain dae scores 1-2 dB higher. Fine lung texture is partly "
             "smoothed with the noise; blur is not removed.", partial(NoiseAwareAutoencoder, in_channels=1, width=32, levels=3))

# The automatic entries: the default of the Enhance tab, the API, the batch CLI and study creation (models.auto).
_AUTO_HOW = ("Measures the input (noise sigma, JPEG blocking, smoothness; models.noise) and asks a degradation probe "
             "(12k parameters, trained by python -m train probe on the decision itself: the blend weight that "
             "minimises the error on 2,000 sr_mix training patches) whether the clean or the noise-aware network fits; "
             "a gate (a logistic regression on the probe's logit and the three measurements, fitted by "
             "scripts/auto_gate.py on 60 Hannover training images under the clean, realistic and Poisson-Gaussian "
             "degradations, weighted by the dB a wrong choice costs) gives the final weight: <= 0.25 runs {clean}, "
             ">= 0.75 runs {noisy}, in between both run and are blended. The report says what it measured and ran. ")
_AUTO = {
    "auto_x2": (AutoRoute("auto_x2", "sr", 2, noisy="edsr_x2_na", clean="edsr_x2", probe="probe_auto_x2.safetensors",
                          gate=Gate(coef=(0.1197, 5.451, 22.167, 11.8553), bias=-17.1959)),
                "Measured (docs/noise-aware.md), PSNR against the better of edsr_x2 and edsr_x2_real: clean -0.09 dB "
                "(Hannover test), +0.00 (external CRs, <= 640 px and native 512 px crops); Poisson-Gaussian +0.24 / "
                "-0.41 / -0.23; realistic +0.03 on the Hannover test, -0.97 on the native crops (all routed to "
                "edsr_x2_na, which is that much below edsr_x2_real there; +4.2 dB over bicubic).",
                "Realistic inputs (blur, noise, JPEG) of the external CRs shrunk to <= 640 px measure like clean ones: "
                "the gate ran edsr_x2 on one of the two and blended on the other: 37.06 dB, 4.8 dB below "
                "edsr_x2_real and 1.7 dB BELOW bicubic. For shrunk, blurred or JPEG-compressed exports from other "
                "sites choose edsr_x2_real or edsr_x2_na yourself."),
    "auto_x4": (AutoRoute("auto_x4", "sr", 4, noisy="srresnet_x4_na", clean="srresnet_x4",
                          probe="probe_auto_x4.safetensors",
                          gate=Gate(coef=(0.3898, 4.2809, 20.3141, 9.4954), bias=-15.6275)),
                "Measured (python -m train eval, docs/noise-aware.md), PSNR against the better of srresnet_x4 and "
                "srresnet_x4_real on the Hannover test / external CRs <= 640 px / their native 512 px crops: clean "
                "-0.05 / -0.35 / +0.00 dB; realistic +0.10 / -0.11 / -0.13 (+0.78 / +1.91 / +3.85 over non-local "
                "means then Lanczos); Poisson-Gaussian +0.21 / +0.17 / +0.32.",
                "Clean inputs of other sites shrunk to <= 640 px: one of the two external CRs is blended, 0.35 dB "
                "below srresnet_x4. On realistic Hannover inputs it gains +0.78 dB over non-local means then Lanczos, "
                "not the +1.0 aimed at."),
    "auto_denoise": (AutoRoute("auto_denoise", "denoise", 1, noisy="dae_na"),
                     "Runs dae_na, which takes the estimated noise level as an input (no probe). Measured against "
                     "non-local means given the true sigma: Gaussian sigma 0.05 +2.17 dB on the external CRs at <= 640 "
                     "px, Poisson-Gaussian dose 2000 +3.13; docs/noise-aware.md.",
                     "Low-dose (250 photons/pixel) Poisson-Gaussian noise of other sites' unprocessed CRs: 3.6-5.8 dB "
                     "below non-local means (dae_na's card); dncnn is the better choice there. Gaussian noise on native-"
                     "resolution crops: -0.94 dB against non-local means."),
}
for _route, _scores, _fails in _AUTO.values():
    add_route(_route)
    _card = (_AUTO_HOW.format(clean=_route.clean, noisy=_route.noisy) if _route.probe else "") + _scores
    register(ModelSpec(_route.name, _route.task, _route.scale, 0, _card, fn=route_fn(_route.name),
                       options={"noise_level": None}, auto=True, fails=_fails))
