"""The benchmark's realistic size: a whole computed radiograph.

``whole_cr()`` is pydicom-data's RG1_UNCR (1841 x 1955 px, 16-bit CR), read with
:func:`models.read_image` as the studio reads an upload.
"""

from __future__ import annotations

import numpy as np

CR_FILE = "RG1_UNCR.dcm"


def whole_cr() -> np.ndarray | None:
    """The whole CR as float32 [0, 1] (1955, 1841), or None without pydicom-data."""
    from models import read_image

    try:
        from pydicom.data import get_testdata_file

        path = get_testdata_file(CR_FILE, download=False)
    except Exception:  # noqa: BLE001 - no test data here: the benchmark skips the whole-CR column
        return None
    return None if path is None else read_image(path)[0]
