"""A small colour image set from scikit-image's bundled samples, for the colour enhancement model.

``python -m train.colour_data OUT_DIR`` writes the images as PNGs plus a split
file. Training uses natural photographs only; validation one more photograph;
the test set is the two *medical* colour images (retina fundus photograph and
immunohistochemistry microscopy), so the reported colour scores are on image
types the model never saw. All images ship inside the scikit-image wheel.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

TRAIN = ["astronaut", "chelsea", "rocket", "hubble_deep_field", "motorcycle_left", "motorcycle_right", "colorwheel"]
VAL = ["coffee"]
TEST = ["retina", "immunohistochemistry"]


def write_colour_set(out: str | Path) -> Path:
    """Write PNGs and ``split.json`` into ``out``; returns the split file path."""
    from skimage import data

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name in TRAIN + VAL + TEST:
        if hasattr(data, name):
            img = np.asarray(getattr(data, name)())[..., :3]
        else:  # files shipped in skimage/data without a loader function of their own
            img = np.asarray(Image.open(Path(data.__file__).parent / f"{name}.png").convert("RGB"))
        if name == "retina":  # 1411 px: halve it so evaluation stays quick
            img = np.asarray(Image.fromarray(img).resize((img.shape[1] // 2, img.shape[0] // 2), Image.Resampling.LANCZOS))
        Image.fromarray(img.astype(np.uint8)).save(out / f"{name}.png")
    split = {"train": TRAIN, "val": VAL, "test": TEST,
             "patients": {"train": TRAIN, "val": VAL, "test": TEST}, "source": "scikit-image data"}
    path = out / "split.json"
    path.write_text(json.dumps(split, indent=1))
    return path


if __name__ == "__main__":
    print(write_colour_set(sys.argv[1] if len(sys.argv) > 1 else "colour-data"))
