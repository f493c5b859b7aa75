"""Gather radiographs from other sites into a folder for ``python -m train eval --subset external``.

The Hannover PNGs the models are trained on are CLAHE-processed 640 px chest
radiographs of one hospital. The external set is the ``external`` list of
``splits/dicom-sources.json``: one whole source, pydicom-data (a requirement),
never used for training or model selection:

* ``RG1_UNCR.dcm`` (chest CR, 1955 x 1841, 15 bit) and ``RG3_UNCR.dcm``
  (lower-leg CR, 1760 x 1760, 10 bit).

deid-data's ``animals/cat.dcm`` (a cat's chest DX) was part of this set until the
realistic (``*_real``) models were trained on it; ``--with-cat`` adds it back for
comparisons with tables made before (it is training data for the ``*_real`` models).

Usage::

    python scripts/external_radiographs.py external/
    python -m train eval --task denoise --models dncnn,dae --subset external --data external/ --max-side 640
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from train.sources import manifest_paths  # noqa: E402

CAT = ("deid_data", "data/animals/cat.dcm")


def external_files(with_cat: bool = False) -> list[Path]:
    """Paths of the manifest's external radiographs (and deid-data's cat DX with ``with_cat``)."""
    files = manifest_paths(subset="external")
    if with_cat:
        import deid_data

        files.append(Path(deid_data.__file__).parent / CAT[1])
    return files


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", help="folder to copy the DICOM files into")
    p.add_argument("--with-cat", action="store_true", help="also deid-data's cat DX (training data of the *_real models)")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for f in external_files(args.with_cat):
        shutil.copy(f, out / f.name)
        print(out / f.name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
