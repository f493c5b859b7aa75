"""The image set of the colour enhancement model: scikit-image's bundled samples, plus grey images.

``python -m train.colour_data OUT_DIR [--radiographs DIR]`` writes the images as
PNGs plus a split file (``OUT_DIR/split.json``) for ``python -m train fit/eval
--data OUT_DIR --split-file OUT_DIR/split.json``.

* train: natural colour photographs, grey photographs and microscopy, and --
  with ``--radiographs`` -- radiographs of that dataset's *training* patients
  (its split file), so the colour model also learns grayscale radiographs
  (it is offered for them too, fed three equal channels);
* val: one more photograph, plus radiographs of that dataset's validation patients;
* test: the two *medical* colour images (retina fundus photograph and
  immunohistochemistry microscopy), so the reported colour scores are on image
  types the model never saw. Grayscale radiographs are scored on the
  radiograph dataset's own test patients (``python -m train eval --task enhance``).

Grey images are written as grey PNGs; ``train.data.load_images(..., grayscale=False)``
gives them three equal channels. Every image here ships inside the scikit-image
wheel except the optional radiographs.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

COLOUR_TRAIN = ["astronaut", "chelsea", "rocket", "hubble_deep_field", "motorcycle_left", "motorcycle_right", "colorwheel"]
# Grey samples: a photograph, the moon, coins, and two medical ones (cell microscopy is
# large enough for 64 px patches; microaneurysms, a 102 px fundus crop, is not used).
GREY_TRAIN = ["camera", "moon", "coins", "cell"]
VAL = ["coffee"]
TEST = ["retina", "immunohistochemistry"]


def _skimage_image(name: str) -> np.ndarray:
    """uint8 (H, W) or (H, W, 3) array of one scikit-image sample."""
    from skimage import data

    if hasattr(data, name):
        img = np.asarray(getattr(data, name)())
    else:  # files shipped in skimage/data without a loader function of their own
        img = np.asarray(Image.open(Path(data.__file__).parent / f"{name}.png").convert("RGB"))
    img = img[..., :3] if img.ndim == 3 else img
    if name == "retina":  # 1411 px: halve it so evaluation stays quick
        img = np.asarray(Image.fromarray(img).resize((img.shape[1] // 2, img.shape[0] // 2), Image.Resampling.LANCZOS))
    return img.astype(np.uint8)


def spread(ids: list[str], n: int) -> list[str]:
    """``n`` ids spread evenly over the sorted list (all of them when there are fewer)."""
    ids = sorted(ids)
    if n >= len(ids):
        return ids
    return [ids[round(i * (len(ids) - 1) / max(n - 1, 1))] for i in range(n)]


def write_colour_set(out: str | Path, radiographs: str | Path | None = None,
                     radiograph_split: str | Path | None = None, n_train: int = 8, n_val: int = 2) -> Path:
    """Write the PNGs and ``split.json`` into ``out``; returns the split file path.

    Args:
        out: folder to write (created).
        radiographs: optional folder of grayscale radiographs (searched recursively);
            ``n_train`` of its training and ``n_val`` of its validation images join
            the train and val lists, ids prefixed ``xr_``.
        radiograph_split: that folder's patient split (``train.data.load_or_make_split``;
            made and written there when missing).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    train, val = COLOUR_TRAIN + GREY_TRAIN, list(VAL)
    for name in train + val + TEST:
        Image.fromarray(_skimage_image(name)).save(out / f"{name}.png")
    if radiographs:
        from .config import DEFAULT_SPLIT
        from .data import find_images, load_or_make_split

        split_file = radiograph_split or DEFAULT_SPLIT
        split = load_or_make_split(radiographs, split_file)
        files = {p.stem: p for p in find_images(radiographs)}
        missing = sorted(set(split["train"] + split["val"]) - set(files))
        if missing:  # e.g. another dataset with the default (Hannover) split file
            raise FileNotFoundError(f"{len(missing)} images of {split_file} are not in {radiographs}, e.g. {missing[:3]}; "
                                    "pass --radiograph-split for that folder")
        for subset, n, dest in (("train", n_train, train), ("val", n_val, val)):
            for rid in spread(split[subset], n):
                shutil.copyfile(files[rid], out / f"xr_{rid}{files[rid].suffix.lower()}")
                dest.append(f"xr_{rid}")
    split_out = {"train": train, "val": val, "test": TEST,
                 "patients": {"train": train, "val": val, "test": TEST},
                 "source": "scikit-image data" + (f" + radiographs from {radiographs}" if radiographs else "")}
    path = out / "split.json"
    path.write_text(json.dumps(split_out, indent=1))
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", nargs="?", default="colour-data")
    ap.add_argument("--radiographs", default="", help="folder of grayscale radiographs to mix in (optional)")
    ap.add_argument("--radiograph-split", default="", help="its split file (default: the training package's)")
    ap.add_argument("--n-train", type=int, default=8, help="radiographs from its training patients")
    ap.add_argument("--n-val", type=int, default=2, help="radiographs from its validation patients")
    args = ap.parse_args(argv)
    print(write_colour_set(args.out, args.radiographs or None, args.radiograph_split or None, args.n_train, args.n_val))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
