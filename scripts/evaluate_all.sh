#!/usr/bin/env bash
# Reproduce every table in README.md: held-out test patients of the Hannover chest radiographs
# (splits/hannover-cxr.json) and, for colour, scikit-image's retina + immunohistochemistry images.
# Usage: bash scripts/evaluate_all.sh [DATA_DIR] [OUT_DIR]   (about 10 minutes on 2 CPU cores)
set -euo pipefail
DATA=${1:-../shared/data/hannover-cxr/png}
OUT=${2:-docs/results}
PY=${PYTHON:-python}
$PY -m train eval --task sr --scale 2 --models srcnn_x2,vdsr_x2,edsr_x2 --data "$DATA" --out "$OUT" --maps 0 --write-cards
$PY -m train eval --task sr --scale 4 --models srcnn_x4,vdsr_x4,edsr_x4,srresnet_x4,srgan_x4,rrdbnet_x4,esrgan_x4 --data "$DATA" --out "$OUT" --maps 0 --write-cards
for noise in gaussian poisson rician; do
  $PY -m train eval --task denoise --noise "$noise" --models dncnn,dae --data "$DATA" --out "$OUT" --maps 1 --write-cards
done
$PY -m train eval --task enhance --models gated_enhance,gated_enhance_rgb --data "$DATA" --out "$OUT" --maps 1 --write-cards
$PY -m train.colour_data "$OUT/colour-data" > /dev/null
$PY -m train eval --task enhance --colour --models gated_enhance_rgb,gated_enhance --data "$OUT/colour-data" \
  --split-file "$OUT/colour-data/split.json" --out "$OUT" --maps 1 --write-cards
rm -rf "$OUT/colour-data"
