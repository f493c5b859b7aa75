"""Gather radiographs from other sites into a folder for ``python -m train eval --subset external``.

The Hannover PNGs the models are trained on are CLAHE-processed 640 px chest
radiographs of one hospital. These are unprocessed radiographs from elsewhere,
shipped by registry packages, never used for training or model selection:

* pydicom-data (a requirement): ``RG1_UNCR.dcm`` (chest CR, 1955 x 1841, 15 bit)
  and ``RG3_UNCR.dcm`` (lower-leg CR, 1760 x 1760, 10 bit);
* deid-data, if installed (``pip install deid-data``): ``animals/cat.dcm``
  (a cat's chest DX, 2614 x 3072).

Usage::

    python scripts/external_radiographs.py external/
    python -m train eval --task denoise --models dncnn,dae --subset external --data external/ --max-side 640
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

PYDICOM_FILES = ("RG1_UNCR.dcm", "RG3_UNCR.dcm")


def external_files() -> list[Path]:
    """Paths of the external radiographs available on this machine (pydicom-data ones always)."""
    from pydicom.data import get_testdata_file

    files = [Path(get_testdata_file(name, download=False)) for name in PYDICOM_FILES]
    try:
        import deid_data  # optional: a 42 MB package, not in requirements.txt

        files.append(Path(deid_data.__file__).parent / "data" / "animals" / "cat.dcm")
    except ImportError:
        print("deid-data not installed: using the two pydicom-data radiographs", file=sys.stderr)
    return files


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", help="folder to copy the DICOM files into")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for f in external_files():
        shutil.copy(f, out / f.name)
        print(out / f.name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
