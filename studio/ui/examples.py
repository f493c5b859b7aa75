"""Example images for the Compare tab: real medical images shipped by registry packages.

No downloads: DICOMs come from pydicom's test data and the ``pydicom-data``
package (``get_testdata_file(name, download=False)``), photographs and
micrographs from ``skimage.data``. Each example is copied (DICOM) or written
(PNG) into a private temp dir under a generated name, because Gradio only
serves files from the working or temp directory and ``.venv`` is neither
reliably. Examples whose data is not installed are left out, never fetched.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

logger = logging.getLogger("medenhance.studio")

_NEMA_WG04 = "NEMA WG04 compression test set (ftp://medical.nema.org/MEDICAL/Dicom/DataSets/WG04)"


@dataclass(frozen=True)
class Example:
    """One example image.

    Attributes:
        key: short id (also the file's generated name).
        title: caption under the thumbnail.
        source: ``"pydicom"`` (``name`` is a test file name) or ``"skimage"`` (``name`` is a ``skimage.data`` function).
        name: the file or function name.
        attribution: where the image comes from and under which terms, shown when it is picked.
    """

    key: str
    title: str
    source: str
    name: str
    attribution: str


EXAMPLES: tuple[Example, ...] = (
    Example("ct", "CT, 128 × 128, 16-bit", "pydicom", "CT_small.dcm",
            "CT slice from pydicom's test data (`CT_small.dcm`), downsized to 128 × 128 from NEMA's `CT1_UNC` "
            f"of the {_NEMA_WG04}; distributed with pydicom (MIT licence)."),
    Example("mr", "MR, 1024 × 1024, 12-bit", "pydicom", "MR2_UNCR.dcm",
            f"MR image `MR2_UNCR.dcm` of the {_NEMA_WG04}, distributed with the pydicom-data package (MIT licence)."),
    Example("cr", "CR radiograph, 1841 × 1955, 15-bit", "pydicom", "RG1_UNCR.dcm",
            f"Computed radiograph `RG1_UNCR.dcm` (MONOCHROME1) of the {_NEMA_WG04}, distributed with the "
            "pydicom-data package (MIT licence)."),
    Example("us", "Ultrasound, colour, 640 × 480", "pydicom", "US1_UNCR.dcm",
            f"Colour ultrasound `US1_UNCR.dcm` of the {_NEMA_WG04}, distributed with the pydicom-data package "
            "(MIT licence)."),
    Example("retina", "Retina fundus photo, colour", "skimage", "retina",
            "Fundus photograph of a normal left eye, by Mikael Häggström (Wikimedia Commons, CC0 1.0); "
            "`skimage.data.retina`. Häggström M. (2014) Medical gallery of Mikael Häggström 2014, "
            "WikiJournal of Medicine 1(2), doi:10.15347/wjm/2014.008."),
    Example("ihc", "Immunohistochemistry, colour", "skimage", "immunohistochemistry",
            "Colonic glands, IHC staining of FHL2 with DAB and hematoxylin counterstain, acquired at the Center for "
            "Microscopy and Molecular Imaging (CMMI); no known copyright restrictions. "
            "`skimage.data.immunohistochemistry`."),
    Example("cell", "Cell, quantitative phase", "skimage", "cell",
            "Cell floating in saline, quantitative phase image from a digital hologram (CC0). Müller P. et al. (2018) "
            "Optics Express 26(8):10729, doi:10.1364/OE.26.010729. `skimage.data.cell`."),
    Example("camera", "Camera (non-medical test image)", "skimage", "camera",
            "Gray-level 'camera' test image, CC0 by the photographer (Lav Varshney). `skimage.data.camera`."),
)

_DIR: Path | None = None
_LOCK = threading.Lock()
_PATHS: dict[str, Path] = {}


def get_example(key: str) -> Example:
    """The example registered under ``key``; ``KeyError`` with the known keys otherwise."""
    for ex in EXAMPLES:
        if ex.key == key:
            return ex
    raise KeyError(f"unknown example {key!r}; known: {', '.join(e.key for e in EXAMPLES)}")


def _dir() -> Path:
    global _DIR
    if _DIR is None or not _DIR.is_dir():
        _DIR = Path(tempfile.mkdtemp(prefix="medenhance-examples-"))
    return _DIR


def _materialise(ex: Example) -> Path | None:
    """Write or copy ``ex`` into the examples dir; None if its data is not installed."""
    try:
        if ex.source == "pydicom":
            from pydicom.data import get_testdata_file

            src = get_testdata_file(ex.name, download=False)  # never fetch from the internet
            if not src:
                return None
            dst = _dir() / f"example_{ex.key}.dcm"
            shutil.copyfile(src, dst)
            return dst
        import skimage.data

        arr = np.asarray(getattr(skimage.data, ex.name)())
        dst = _dir() / f"example_{ex.key}.png"
        Image.fromarray(arr).save(dst, format="PNG")
        return dst
    except Exception as e:  # data not installed (pydicom-data, skimage's optional pooch data): just skip it
        logger.info("example %s not available: %s", ex.key, type(e).__name__)
        return None


def example_path(key: str) -> str:
    """Local path of example ``key`` (DICOM or PNG), created on first use.

    Raises:
        KeyError: unknown key.
        FileNotFoundError: its data is not installed on this server.
    """
    ex = get_example(key)
    with _LOCK:
        path = _PATHS.get(key)
        if path is None or not path.is_file():
            path = _materialise(ex)
            if path is None:
                raise FileNotFoundError(f"example {key!r} ({ex.name}) is not installed on this server")
            _PATHS[key] = path
    return str(path)


def available_examples() -> list[Example]:
    """The examples whose data is installed (materialising each once)."""
    out = []
    for ex in EXAMPLES:
        try:
            example_path(ex.key)
        except FileNotFoundError:
            continue
        out.append(ex)
    return out


def thumbnails(side: int = 160) -> list[tuple[Example, Image.Image]]:
    """(example, 8-bit thumbnail at most ``side`` px) of every available, readable example."""
    from models import read_image  # the same reader as uploads: window, MONOCHROME1 and all
    from studio.ui.render import to_display

    out = []
    for ex in available_examples():
        try:
            image, _ = read_image(example_path(ex.key))
        except ValueError:
            continue
        thumb = to_display(image)
        thumb.thumbnail((side, side), Image.Resampling.BOX)
        out.append((ex, thumb))
    return out


def attribution_markdown(examples: list[Example] | None = None) -> str:
    """Markdown list of every example's attribution (shown under the examples gallery)."""
    examples = available_examples() if examples is None else examples
    return "\n".join(f"- **{ex.title}**: {ex.attribution}" for ex in examples)
