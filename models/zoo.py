"""Every model the studio serves, registered explicitly (no folder scanning).

To add a model: write its module under ``models/arch`` (or a function in
``models/classical.py``), register it here, train it with ``python -m train
fit``; the registry-parametrised tests then cover it automatically.
"""

from __future__ import annotations

from functools import partial

from . import classical
from .arch import SRCNN, VDSR
from .registry import ModelSpec, register

# --- classical baselines -------------------------------------------------------
for s in (2, 4):
    register(ModelSpec(f"bicubic_x{s}", "sr", s, 0, "Bicubic interpolation (PyTorch, a = -0.75). The reference row of every SR table.", fn=classical.bicubic))
    register(ModelSpec(f"lanczos_x{s}", "sr", s, 0, "Lanczos-3 interpolation (Pillow).", fn=classical.lanczos))

register(ModelSpec("histeq", "enhance", 1, 0, "Global histogram equalisation of the luma (scikit-image).", fn=classical.histogram_equalisation, options={"nbins": 256}))
register(ModelSpec("clahe", "enhance", 1, 0, "CLAHE, contrast-limited adaptive histogram equalisation of the luma (scikit-image).", fn=classical.clahe, options={"clip_limit": 0.01, "kernel_size": None}))
register(ModelSpec("contrast_stretch", "enhance", 1, 0, "Linear stretch of the 1st..99th luma percentiles to [0, 1].", fn=classical.contrast_stretch, options={"low": 1.0, "high": 99.0}))
register(ModelSpec("gamma", "enhance", 1, 0, "Gamma correction; automatic gamma maps the mean luma to 0.5.", fn=classical.gamma, options={"gamma": None}))
register(ModelSpec("unsharp", "enhance", 1, 0, "Unsharp mask (radius 2 px, amount 1) on the luma.", fn=classical.unsharp_mask, options={"radius": 2.0, "amount": 1.0}))
register(ModelSpec("gaussian", "denoise", 1, 0, "Gaussian filter, sigma 1 px, per channel.", fn=classical.gaussian_filter, options={"sigma": 1.0}))
register(ModelSpec("median", "denoise", 1, 0, "Median filter, 3x3, per channel.", fn=classical.median_filter, options={"size": 3}))
register(ModelSpec("nlm", "denoise", 1, 0, "Non-local means (scikit-image fast mode); noise sigma estimated unless given.", fn=classical.non_local_means, options={"sigma": None, "h_factor": 0.8}))

# --- networks --------------------------------------------------------------------
for s in (2, 4):
    register(ModelSpec(
        f"srcnn_x{s}", "sr", s, 1,
        f"SRCNN 9-5-5 (Dong et al. 2016) x{s}, 57k parameters, refining a bicubic upsample with a global "
        "residual connection. Trained on Hannover chest radiographs, patient-level split.",
        weights=f"srcnn_x{s}.safetensors", build=partial(SRCNN, scale=s),
    ))
    register(ModelSpec(
        f"vdsr_x{s}", "sr", s, 1,
        f"VDSR (Kim et al. 2016) x{s}: 20 conv layers, 32 channels, residual over bicubic. "
        "Trained on Hannover chest radiographs, patient-level split.",
        weights=f"vdsr_x{s}.safetensors", build=partial(VDSR, scale=s),
    ))
