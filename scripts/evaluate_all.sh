#!/usr/bin/env bash
# Reproduce every table in README.md and docs/training.md: held-out test patients of the Hannover chest radiographs
# (splits/hannover-cxr.json); for colour, scikit-image's retina + immunohistochemistry images; and radiographs
# from other sites (scripts/external_radiographs.py).
# Usage: bash scripts/evaluate_all.sh [DATA_DIR] [OUT_DIR]   (about 15 minutes on 2 CPU cores)
set -euo pipefail
DATA=${1:-../shared/data/hannover-cxr/png}
OUT=${2:-docs/results}
PY=${PYTHON:-python}
$PY -m train eval --task sr --scale 2 --models srcnn_x2,vdsr_x2,edsr_x2,srcnn_x2_real,edsr_x2_real --data "$DATA" --out "$OUT" --maps 0 --write-cards
$PY -m train eval --task sr --scale 4 --models srcnn_x4,vdsr_x4,edsr_x4,srresnet_x4,srgan_x4,rrdbnet_x4,esrgan_x4,srresnet_x4_real --data "$DATA" --out "$OUT" --maps 0 --write-cards
for noise in gaussian poisson rician; do
  $PY -m train eval --task denoise --noise "$noise" --models dncnn,dae --data "$DATA" --out "$OUT" --maps 1 --write-cards
done
$PY -m train eval --task enhance --models gated_enhance,gated_enhance_rgb --data "$DATA" --out "$OUT" --maps 1 --write-cards
$PY -m train.colour_data "$OUT/colour-data" > /dev/null
$PY -m train eval --task enhance --colour --models gated_enhance_rgb,gated_enhance --data "$OUT/colour-data" \
  --split-file "$OUT/colour-data/split.json" --out "$OUT" --maps 1 --write-cards
rm -rf "$OUT/colour-data"
# Realistic degradations (train.realistic): detector PSF + bicubic + Poisson-Gaussian noise in the signal domain
# + JPEG for SR; Poisson-Gaussian at two doses for denoising. Bicubic-trained models next to the *_real ones.
SR2="srcnn_x2,vdsr_x2,edsr_x2,srcnn_x2_real,edsr_x2_real"
SR4="srresnet_x4,edsr_x4,srresnet_x4_real,compact_x4_real"
DN="dncnn,dae"  # no dncnn_real: not shipped (docs/realistic.md)
$PY -m train eval --task sr_real --scale 2 --models "$SR2" --data "$DATA" --out "$OUT" --maps 1 --write-cards
$PY -m train eval --task sr_real --scale 4 --models "$SR4" --data "$DATA" --out "$OUT" --maps 1 --write-cards
for dose in dose250 dose2000; do
  $PY -m train eval --task denoise_real --noise "$dose" --models "$DN" --data "$DATA" --out "$OUT" --maps 1 --write-cards
done

# Other sites: unprocessed radiographs shipped by a registry package (pydicom-data, splits/dicom-sources.json),
# never used for training or model selection, downscaled to the training scale (640 px).
# The folder is named "external": table titles name it, and docs/training.md's tables carry that title.
EXT="$(mktemp -d)/external"
$PY scripts/external_radiographs.py "$EXT" > /dev/null
XOUT="$OUT/external"
$PY -m train eval --task sr --scale 2 --models srcnn_x2,vdsr_x2,edsr_x2,srcnn_x2_real,edsr_x2_real --subset external --data "$EXT" --max-side 640 --out "$XOUT" --maps 0 --write-cards
$PY -m train eval --task sr --scale 4 --models srcnn_x4,vdsr_x4,edsr_x4,srresnet_x4,srgan_x4,rrdbnet_x4,esrgan_x4,srresnet_x4_real --subset external --data "$EXT" --max-side 640 --out "$XOUT" --maps 0 --write-cards
for noise in gaussian poisson rician; do
  $PY -m train eval --task denoise --noise "$noise" --models dncnn,dae --subset external --data "$EXT" --max-side 640 --out "$XOUT" --maps 1 --write-cards
done
$PY -m train eval --task enhance --models gated_enhance,gated_enhance_rgb --subset external --data "$EXT" --max-side 640 --out "$XOUT" --maps 1 --write-cards
# Realistic tasks on the external DICOMs: noise and blur in their raw detector domain, then their own window.
$PY -m train eval --task sr_real --scale 2 --models "$SR2" --subset external --data "$EXT" --max-side 640 --out "$XOUT" --maps 1 --write-cards
$PY -m train eval --task sr_real --scale 4 --models "$SR4" --subset external --data "$EXT" --max-side 640 --out "$XOUT" --maps 1 --write-cards
for dose in dose250 dose2000; do
  $PY -m train eval --task denoise_real --noise "$dose" --models "$DN" --subset external --data "$EXT" --max-side 640 --out "$XOUT" --maps 1 --write-cards
done
rm -rf "$(dirname "$EXT")"

# Noise-aware models and the automatic entries (docs/noise-aware.md): clean, realistic and Poisson-Gaussian inputs on
# Hannover, the external CRs <= 640 px and their native-resolution 512 px crops; summary: scripts/noise_aware_tables.py.
NA="$OUT/noise-aware"
EXT2="$(mktemp -d)/external"
$PY scripts/external_radiographs.py "$EXT2" > /dev/null
# The gate of auto_x2 / auto_x4 (models.auto.Gate): features and PSNRs of 60 Hannover training images, then the fit
# (its printed Gate(...) belongs in models/zoo.py); the validation and external files are only checked.
for s in 2 4; do
  $PY scripts/auto_gate.py collect --scale $s --subset train --limit 60 --data "$DATA" --out "$NA/gate/x${s}_train.jsonl"
  $PY scripts/auto_gate.py collect --scale $s --subset val --limit 20 --data "$DATA" --out "$NA/gate/x${s}_val.jsonl"
  $PY scripts/auto_gate.py collect --scale $s --subset external --data "$EXT2" --crop 512 --out "$NA/gate/x${s}_extcrop.jsonl"
  $PY scripts/auto_gate.py fit "$NA/gate/x${s}_train.jsonl" --check "$NA/gate/x${s}_val.jsonl" "$NA/gate/x${s}_extcrop.jsonl"
done
for s in 2 4; do
  M=$([ $s = 2 ] && echo edsr_x2,edsr_x2_real,edsr_x2_na,auto_x2 || echo srresnet_x4,srresnet_x4_real,srresnet_x4_na,auto_x4)
  for t in sr sr_real sr_pg; do
    $PY -m train eval --task $t --scale $s --models "$M" --data "$DATA" --out "$NA/hann" --maps 1
    $PY -m train eval --task $t --scale $s --models "$M" --subset external --data "$EXT2" --max-side 640 --out "$NA/ext640" --maps 1
    $PY -m train eval --task $t --scale $s --models "$M" --subset external --data "$EXT2" --crop 512 --out "$NA/extcrop" --maps 0
  done
done
for n in "--task denoise --noise gaussian" "--task denoise_real --noise dose250" "--task denoise_real --noise dose2000"; do
  $PY -m train eval $n --models dncnn,dae,dae_na,auto_denoise --data "$DATA" --out "$NA/hann" --maps 1
  $PY -m train eval $n --models dncnn,dae,dae_na,auto_denoise --subset external --data "$EXT2" --max-side 640 --out "$NA/ext640" --maps 1
  $PY -m train eval $n --models dncnn,dae,dae_na,auto_denoise --subset external --data "$EXT2" --crop 512 --out "$NA/extcrop" --maps 0
done
rm -rf "$(dirname "$EXT2")"
$PY scripts/noise_aware_tables.py "$NA"
