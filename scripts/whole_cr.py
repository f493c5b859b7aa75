"""Seconds of one model on the whole RG1_UNCR CR (pydicom-data, 1841 x 1955) through ``models.enhance``.

The first argument is the checkout to import ``models`` from, so the same script times an older commit
(``git worktree add /tmp/old 67503e6^``) against this one on the same machine, one after the other
(docs/performance.md, issue 37). A 256 px crop runs first so the plan choice is not timed.

Usage::

    python scripts/whole_cr.py CHECKOUT MODEL [RUNS]
"""

import sys
import time

import numpy as np
import torch

sys.path.insert(0, sys.argv[1])
from pydicom.data import get_testdata_file  # noqa: E402

from models import enhance  # noqa: E402
from models.io import read_image  # noqa: E402

torch.set_num_threads(2)
img = read_image(get_testdata_file("RG1_UNCR.dcm"))
x = np.asarray(img[0] if isinstance(img, tuple) else getattr(img, "pixels", img), dtype=np.float32)
enhance(x[:256, :256], sys.argv[2])
for k in range(int(sys.argv[3]) if len(sys.argv) > 3 else 1):
    t = time.perf_counter()
    y = enhance(x, sys.argv[2])
    print(f"{sys.argv[2]} run {k}: {time.perf_counter() - t:.1f} s, {x.shape} -> {y.shape}", flush=True)
