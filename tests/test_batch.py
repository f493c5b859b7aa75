"""The batch CLI (python -m models.batch) on a mixed tree of real DICOMs, a PNG and a corrupt file.

Runs in-process through ``main(argv)`` with a classical model (fast, no weights needed).
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from models import batch, read_image


from conftest import testdata as _testdata  # noqa: E402


CT, MR, EMRI = _testdata("CT_small.dcm"), _testdata("MR_small.dcm"), _testdata("emri_small.dcm")
pytestmark = [
    pytest.mark.skipif(None in (CT, MR, EMRI), reason="pydicom test data not available"),
    # pydicom warns while parsing the deliberately corrupt file; the report is what is tested.
    pytest.mark.filterwarnings("ignore:(Expected explicit VR|VR lookup failed):UserWarning"),
]
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """in/CT_small.dcm, in/photo.png, in/series/MR0001 (no extension),
    in/series/deeper/1.2.840.99 (UID-named, multi-frame), in/series/deeper/corrupt.dcm, in/.hidden."""
    root = tmp_path / "in"
    (root / "series" / "deeper").mkdir(parents=True)
    shutil.copy(CT, root / "CT_small.dcm")
    shutil.copy(MR, root / "series" / "MR0001")
    shutil.copy(EMRI, root / "series" / "deeper" / "1.2.840.99")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (30, 40), dtype=np.uint8)).save(root / "photo.png")
    (root / "series" / "deeper" / "corrupt.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00garbage" * 10)
    (root / ".hidden").write_text("ignored")
    return root


def _report(out: Path) -> dict[str, dict[str, str]]:
    with (out / batch.REPORT_NAME).open(newline="") as fh:
        return {row["input"]: row for row in csv.DictReader(fh)}


EXPECTED = {  # input -> output, relative
    "CT_small.dcm": "CT_small.png",
    "photo.png": "photo.png",
    "series/MR0001": "series/MR0001.png",
    "series/deeper/1.2.840.99": "series/deeper/1.2.840.99.png",  # ".99" is not an extension
}


def test_mixed_tree_png(tree: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    rc = batch.main([str(tree), str(out), "--model", "bicubic_x2", "--quiet"])
    assert rc == 1  # one file failed; the others were done
    report = _report(out)
    assert set(report) == set(EXPECTED) | {"series/deeper/corrupt.dcm"}  # hidden file skipped
    for src, dst in EXPECTED.items():
        assert report[src]["status"] == "ok" and report[src]["output"] == dst
        assert (out / dst).is_file()
    bad = report["series/deeper/corrupt.dcm"]
    assert bad["status"] == "error" and bad["message"]
    with Image.open(out / "CT_small.png") as im:
        assert im.size == (256, 256) and np.asarray(im).dtype == np.uint16  # 16-bit for 16-bit input
    with Image.open(out / "photo.png") as im:
        assert im.size == (80, 60) and np.asarray(im).dtype == np.uint8
    summary = capsys.readouterr().out
    assert "4 written" in summary and "1 failed" in summary and "corrupt.dcm" in summary
    assert not [p for p in out.rglob("*") if ".partial-" in p.name]


def test_tiff_and_dicom_formats(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "tif"
    assert batch.main([str(tree), str(out), "--model", "bicubic_x2", "--format", "tiff", "--quiet"]) == 1
    with Image.open(out / "series" / "MR0001.tif") as im:
        assert im.size == (128, 128) and np.asarray(im).dtype == np.uint16

    out = tmp_path / "dcm"
    key = tmp_path / "key.txt"
    key.write_text("batch-test-key")
    rc = batch.main([str(tree), str(out), "--model", "bicubic_x2", "--format", "dcm", "--window", "40,400",
                     "--deid-key-file", str(key), "--quiet"])
    assert rc == 1
    ds = pydicom.dcmread(out / "CT_small.dcm")
    assert ds.PatientIdentityRemoved == "YES" and list(ds.ImageType)[:2] == ["DERIVED", "SECONDARY"]
    assert (float(ds.WindowCenter), float(ds.WindowWidth)) == (40.0, 400.0)
    image, meta = read_image(out / "series" / "deeper" / "1.2.840.99.dcm")
    assert image.shape == (128, 128) and meta.frame_count == 1
    _, png_meta = read_image(out / "photo.dcm")  # plain image -> Secondary Capture
    assert png_meta.source_format == "dicom"


def test_resume_skips_complete_outputs(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    batch.main([str(tree), str(out), "--model", "bicubic_x2", "--quiet"])
    kept = out / "CT_small.png"
    stamp = kept.stat().st_mtime_ns
    (out / "series" / "MR0001.png").unlink()  # as if the run had stopped before this file
    leftover = out / "series" / ".MR0001.png.partial-12345"  # what a crash mid-write leaves
    leftover.write_bytes(b"half a png")

    rc = batch.main([str(tree), str(out), "--model", "bicubic_x2", "--resume", "--quiet"])
    assert rc == 1
    report = _report(out)
    assert report["series/MR0001"]["status"] == "ok"
    assert {report[k]["status"] for k in ("CT_small.dcm", "photo.png", "series/deeper/1.2.840.99")} == {"skipped"}
    assert report["series/deeper/corrupt.dcm"]["status"] == "error"  # retried, still reported
    assert kept.stat().st_mtime_ns == stamp and not leftover.exists()
    with Image.open(out / "series" / "MR0001.png") as im:
        assert im.size == (128, 128)


def test_failed_write_leaves_no_file(tree: Path, tmp_path: Path, monkeypatch) -> None:
    import models.io.export

    def half_write(image, path, bits=8):
        Path(path).write_bytes(b"\x89PNG half")
        raise OSError("disk full")

    monkeypatch.setattr(models.io.export, "save_png", half_write)
    out = tmp_path / "out"
    items = batch.run_batch(tree, out, "bicubic_x2", progress=False)
    assert {i.status for i in items} == {"error"} and "disk full" in items[0].message
    assert [p for p in out.rglob("*") if p.is_file()] == [out / batch.REPORT_NAME]  # no half files


def test_output_paths_never_collide() -> None:
    paths = batch.output_paths([Path("a.dcm"), Path("a.png"), Path("b/IM1"), Path("b/1.2.3")], "png")
    assert paths == [Path("a.dcm.png"), Path("a.png.png"), Path("b/IM1.png"), Path("b/1.2.3.png")]


def test_bad_arguments_exit_2(tree: Path, tmp_path: Path) -> None:
    for argv in ([str(tree), str(tmp_path / "o"), "--model", "no_such_model"],
                 [str(tmp_path / "missing"), str(tmp_path / "o"), "--model", "bicubic_x2"],
                 [str(tree), str(tmp_path / "o"), "--model", "bicubic_x2", "--window", "nonsense"]):
        with pytest.raises(SystemExit) as info:
            batch.main(argv)
        assert info.value.code == 2


def test_module_entry_point(tmp_path: Path) -> None:
    """``python -m models.batch`` works from the repository root (one PNG: fast)."""
    src = tmp_path / "in"
    src.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(src / "x.png")
    proc = subprocess.run([sys.executable, "-m", "models.batch", str(src), str(tmp_path / "out"),
                           "--model", "median"], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "MEDENHANCE_DEVICE": "cpu"})
    assert proc.returncode == 0, proc.stderr
    assert "1 written" in proc.stdout and (tmp_path / "out" / "x.png").is_file()
