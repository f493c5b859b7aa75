"""Results from any tool: blinded reader studies of precomputed outputs, and another tool's results in Compare.

A results set (zip or server folder) is ``CASE/original.(dcm|png|...)`` plus ``CASE/METHOD.png`` per case, or
a CSV manifest. The images are generated here (and pydicom's test DICOMs); the "tools" are simple functions.
"""

from __future__ import annotations

import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported

import csv  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import zipfile  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from conftest import smooth_test_image  # noqa: E402
from conftest import testdata as _testdata  # noqa: E402
from db import CRITERIA  # noqa: E402
from models import plugins, read_image  # noqa: E402
from models.resample import upscale  # noqa: E402
from study_helpers import ADMIN, _raw  # noqa: E402
from studio import study  # noqa: E402
from studio.study import reading, results_import  # noqa: E402
from studio.study.design import create_study_from_results  # noqa: E402
from studio.study.store import StudySettings, open_store  # noqa: E402
from tests import plugin_models as pm  # noqa: E402

CT = _testdata("CT_small.dcm")


@pytest.fixture
def store(tmp_path: Path):
    s = open_store(StudySettings(data_dir=tmp_path / "data", admin_password=ADMIN, import_root=tmp_path / "imports"))
    yield s
    s.close()


def _png(image: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(np.round(image * 255), 0, 255).astype(np.uint8)).save(path)
    return path


def _tool_a(image: np.ndarray) -> np.ndarray:
    """A 'denoiser' of another tool: a 3-tap blur (same size)."""
    return ((np.roll(image, 1, 0) + image + np.roll(image, -1, 0)) / 3).astype(np.float32)


def _tool_b(image: np.ndarray) -> np.ndarray:
    """A 'x2 super-resolution' of another tool: nearest-neighbour enlargement."""
    return np.repeat(np.repeat(image, 2, 0), 2, 1)


def results_folder(root: Path, n: int = 3, skip: tuple[str, str] | None = None) -> Path:
    """``n`` cases of original.png + toolA.png (same size) + toolB.png (x2); ``skip`` = (case, method) left out."""
    for i in range(n):
        img = smooth_test_image(24, 28, seed=i)
        case = root / f"patient_{i:02d}"
        _png(img, case / "original.png")
        for method, fn in (("toolA", _tool_a), ("toolB", _tool_b)):
            if skip != (case.name, method):
                _png(fn(img), case / f"{method}.png")
    return root


def _zip(folder: Path, zip_path: Path, prefix: str = "") -> Path:
    with zipfile.ZipFile(zip_path, "w") as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, prefix + p.relative_to(folder).as_posix())
    return zip_path


def _design(**kw) -> study.StudyDesign:
    return study.StudyDesign(**{"name": "tool study", "design": "both", "models": (), "readers": 1, "seed": 3, **kw})


def _answer_all(store, code: str) -> list[reading.ReaderView]:
    seen = []
    while (v := reading.next_item(store, code)).status == "item":
        seen.append(v)
        if v.kind == "likert":
            reading.submit_rating(store, code, v.item_key, {c: 4 for c in CRITERIA})
        else:
            reading.submit_preference(store, code, v.item_key, "left", 3)
    return seen


def test_a_results_zip_becomes_a_blinded_study_whose_analysis_names_the_methods(store, tmp_path: Path) -> None:
    from studio.stats import analysis

    src = results_folder(tmp_path / "tool-output")
    results = results_import.open_results(_zip(src, tmp_path / "r.zip", prefix="export/"))  # a zipped folder
    assert results.methods == ["toolA", "toolB"] and [c.name for c in results.cases] == [
        "patient_00", "patient_01", "patient_02"]
    try:
        created = create_study_from_results(store, _design(models=("clahe",)), results)
    finally:
        results.cleanup()
    assert results.workdir is None
    assert created.cases == 3 and created.variants == 3 * 4  # original + clahe + two methods
    assert created.case_names == {"C001": "patient_00", "C002": "patient_01", "C003": "patient_02"}
    con = _raw(store)
    try:
        [(models, options)] = con.execute("SELECT models, options FROM studies").fetchall()
        assert json.loads(models) == ["clahe", "toolA", "toolB"]
        assert json.loads(options)["precomputed_methods"] == ["toolA", "toolB"]
        rows = con.execute("SELECT model, file_name, weights_sha256, model_options, output_width FROM variants").fetchall()
        dump = str(con.execute("SELECT * FROM cases").fetchall())
    finally:
        con.close()
    assert "patient_" not in dump  # the tool's case names are not stored
    for model, file_name, weights, options, width in rows:
        assert re.fullmatch(r"[0-9a-f]{32}\.png", file_name) and weights is None
        if model.startswith("tool"):
            opts = json.loads(options)
            assert opts["precomputed"] and opts["scale"] == (2 if model == "toolB" else 1)
            assert width == 28 * opts["scale"] and len(opts["result_sha256"]) == 64
    # One display size per case (the x2 method's): size never tells variants apart.
    sizes = {Image.open(store.variants_dir / r[1]).size for r in rows}
    assert sizes == {(56, 48)}
    # A reader sees only images under random names, never a method or file name.
    code = next(iter(created.codes.values()))
    views = _answer_all(store, code)
    assert len(views) == 3 * 4 + 3 * 6  # Likert items + all pairs
    shown = json.dumps([v.public() for v in views]) + " ".join(str(v.left) + str(v.right) for v in views)
    assert not re.search(r"tool|patient|original|clahe", shown)
    res = analysis.write_outputs(store.db, created.study_id, tmp_path / "analysis")
    assert "toolA" in res["markdown"] and "toolB" in res["markdown"]
    with open(tmp_path / "analysis" / "variants.csv", newline="") as f:
        assert {r["model"] for r in csv.DictReader(f)} == {"original", "clahe", "toolA", "toolB"}


def test_a_manifest_and_a_server_folder(store, tmp_path: Path) -> None:
    root = tmp_path / "imports" / "lab"
    imgs = [smooth_test_image(20, 20, seed=i) for i in range(2)]
    rows = [["case", "method", "path"]]
    for i, img in enumerate(imgs):
        _png(img, root / "in" / f"{i}.png")
        _png(_tool_a(img), root / "out" / f"{i}_a.png")
        rows += [[f"c{i}", "original", f"in/{i}.png"], [f"c{i}", "blur", f"out/{i}_a.png"]]
    with open(root / "manifest.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    results = results_import.open_results(None, store.settings.import_root, "lab")
    assert results.methods == ["blur"] and results.workdir is None
    created = create_study_from_results(store, _design(design="likert"), results)
    assert created.cases == 2 and created.variants == 4


@pytest.mark.skipif(CT is None, reason="pydicom test files not available")
def test_a_dicom_original_with_png_results(store, tmp_path: Path) -> None:
    image, _ = read_image(CT)
    src = tmp_path / "dicom-results"
    (src / "ct1").mkdir(parents=True)
    (src / "ct1" / "original.dcm").write_bytes(Path(CT).read_bytes())
    _png(upscale(image, 2), src / "ct1" / "bicubic_tool.png")
    results = results_import.open_results(_zip(src, tmp_path / "d.zip"))
    try:
        created = create_study_from_results(store, _design(design="likert"), results)
    finally:
        results.cleanup()
    assert created.cases == 1 and created.variants == 2


@pytest.mark.parametrize("problem, message", [
    ("missing result", "has no result of 'toolB'"),
    ("missing original", "has no original"),
    ("wrong size", "patient_01/toolA.png: 30 × 25 px, but the original is 28 × 24 px"),
    ("registered name", "'clahe' is the name of a registered model"),
    ("bad method name", "must be 1 to 48 letters"),
    ("deeper file", "Unexpected file"),
    ("only originals", "originals only"),
])
def test_bad_results_are_refused_with_a_clear_message(store, tmp_path: Path, problem: str, message: str) -> None:
    src = results_folder(tmp_path / "r", skip=("patient_01", "toolB") if problem == "missing result" else None)
    if problem == "missing original":
        (src / "patient_02" / "original.png").unlink()
    elif problem == "wrong size":
        _png(smooth_test_image(25, 30), src / "patient_01" / "toolA.png")
    elif problem == "registered name":
        _png(smooth_test_image(24, 28), src / "patient_00" / "clahe.png")
    elif problem == "bad method name":
        _png(smooth_test_image(24, 28), src / "patient_00" / "=cmd().png")
    elif problem == "deeper file":
        _png(smooth_test_image(24, 28), src / "patient_00" / "extra" / "x.png")
    elif problem == "only originals":
        for p in src.rglob("tool*.png"):
            p.unlink()
    before = len(list(store.variants_dir.iterdir()))
    with pytest.raises(study.StudyError, match=re.escape(message)):
        results = results_import.open_results(_zip(src, tmp_path / "r.zip"))
        try:
            create_study_from_results(store, _design(), results)
        finally:
            results.cleanup()
    assert len(list(store.variants_dir.iterdir())) == before  # nothing half-made stays
    assert study.list_studies(store) == []


def _raw_zip(path: Path, members: list[tuple[str, bytes]], link: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members:
            zf.writestr(name, data)
        if link:
            info = zipfile.ZipInfo(link)
            info.external_attr = (0o120777 << 16)
            zf.writestr(info, "/etc/passwd")
    return path


def _png_bytes() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("members, link, message", [
    ([("../evil/original.png", b"x")], None, "'..' is refused"),
    ([("/abs/original.png", b"x")], None, "absolute paths"),
    ([("c\\original.png", b"x")], None, "backslashes"),
    ([("C:/c/original.png", b"x")], None, "drive letters"),
    ([("c/original.png", b"x")], "c/m.png", "links are refused"),
    ([("c/original.png", b"x"), ("c/original.png", b"y")], None, "twice"),
])
def test_unsafe_zips_are_refused(tmp_path: Path, members, link, message) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name
        z = _raw_zip(tmp_path / "bad.zip", members, link)
    with pytest.raises(study.StudyError, match=re.escape(message)):
        results_import.open_results(z)
    assert not (tmp_path / "evil").exists()


def test_zip_limits_are_counted_not_trusted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    png = _png_bytes()
    z = _raw_zip(tmp_path / "many.zip", [(f"c{i}/original.png", png) for i in range(5)])
    monkeypatch.setattr(results_import, "MAX_MEMBERS", 4)
    with pytest.raises(study.StudyError, match="at most 4"):
        results_import.open_results(z)
    monkeypatch.setattr(results_import, "MAX_MEMBERS", 100)
    big = _raw_zip(tmp_path / "big.zip", [("c/original.png", png), ("c/m.png", b"\0" * 5000)])
    monkeypatch.setattr(results_import, "MAX_MEMBER_BYTES", 1000)
    with pytest.raises(study.StudyError, match="per file"):
        results_import.open_results(big)
    # A header that under-states the size (a zip bomb's trick) is caught while reading.
    monkeypatch.setattr(results_import, "MAX_MEMBER_BYTES", 10**6)
    data = bytearray(big.read_bytes())
    with zipfile.ZipFile(big) as zf:
        info = zf.getinfo("c/m.png")
    # Patch the central directory's uncompressed size of c/m.png to 10 bytes.
    cd = data.rfind(b"PK\x01\x02", 0, data.rfind(b"c/m.png"))
    data[cd + 24:cd + 28] = (10).to_bytes(4, "little")
    lying = tmp_path / "lying.zip"
    lying.write_bytes(bytes(data))
    assert info.file_size == 5000
    with pytest.raises(study.StudyError, match="larger than its zip header says|cannot be read"):
        results_import.open_results(lying)
    with pytest.raises(study.StudyError, match="not a readable zip"):
        not_zip = tmp_path / "not.zip"
        not_zip.write_bytes(_png_bytes())
        results_import.open_results(not_zip)


def test_a_user_model_variant_carries_its_file_hash(store, tmp_path: Path, tmp_path_factory) -> None:
    from studio.stats import analysis

    models_dir = tmp_path / "models"
    models_dir.mkdir()
    model = pm.save_safetensors(pm.esrgan(1, 2), models_dir / "lab_sr.safetensors")
    plugins.load_user_models(models_dir)
    try:
        src = tmp_path / "cases"
        paths = [_png(smooth_test_image(20, 24, seed=i), src / f"{i}.png") for i in range(2)]
        created = study.create_study(store, _design(design="likert", models=("lab_sr", "bicubic_x2")), paths)
        sha = plugins.get_spec("lab_sr").sha256
        res = analysis.write_outputs(store.db, created.study_id, tmp_path / "analysis")
    finally:
        plugins.load_user_models(tmp_path_factory.mktemp("none"))
    import hashlib

    assert sha == hashlib.sha256(model.read_bytes()).hexdigest()
    with open(tmp_path / "analysis" / "variants.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["model"] == "lab_sr"]
    assert len(rows) == 2 and all(r["weights_sha256"] == sha for r in rows)
    assert json.loads(rows[0]["options"])["user_model"]["architecture"] == "ESRGAN"
    assert "lab_sr" in res["markdown"]


# --- Compare: results from another tool -----------------------------------------------------------


def test_compare_scores_another_tools_results_in_the_same_views_and_zip(tmp_path: Path, results_dir) -> None:
    from studio.compare import compare_file, get_run
    from train import metrics

    lr = smooth_test_image(24, 28, seed=4)
    hr = smooth_test_image(48, 56, seed=4)
    inp, ref = _png(lr, tmp_path / "in.png"), _png(hr, tmp_path / "gt.png")
    tool = _png(_tool_b(lr), tmp_path / "My Tool v2.png")
    res, errs, table, report, zip_path, run_id = compare_file(
        str(inp), 0, "default", ["bicubic_x2"], "reference", str(ref), None, 0, [str(tool)])
    run = get_run(run_id)
    assert run.kinds["My_Tool_v2"] == "imported"
    rows = {r["model"]: r for r in table.to_dict("records")}
    expected = metrics.score(read_image(tool)[0], read_image(ref)[0], data_range=1.0, crop=2, names=("psnr",))["psnr"]
    assert rows["My_Tool_v2"]["PSNR (dB)"] == pytest.approx(expected, abs=0.01)
    assert any("My_Tool_v2" in caption for _, caption in res) and any("My_Tool_v2" in c for _, c in errs)
    with zipfile.ZipFile(zip_path) as zf:
        names = zf.namelist()
        assert any(n.startswith("results/") and n.endswith("my_tool_v2.png") for n in names)
        assert any(n.startswith("error_maps/") and "my_tool_v2" in n for n in names)
        assert "My_Tool_v2" in zf.read("metrics.csv").decode()


def test_compare_refuses_a_result_of_the_wrong_size(tmp_path: Path, results_dir) -> None:
    import gradio as gr

    from studio.compare import compare_file

    inp = _png(smooth_test_image(24, 28), tmp_path / "in.png")
    wrong = _png(smooth_test_image(24, 28), tmp_path / "same_size.png")
    with pytest.raises(gr.Error, match="is 28 × 24 px, but this comparison's results are 56 × 48 px"):
        compare_file(str(inp), 0, "default", ["bicubic_x2"], "none", None, None, 0, [str(wrong)])


def test_the_shell_command_creates_the_study_and_prints_the_codes(tmp_path: Path, monkeypatch, capsys) -> None:
    from studio.study.from_results import main

    monkeypatch.setenv("STUDIO_DATA_DIR", str(tmp_path / "cli-data"))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    z = _zip(results_folder(tmp_path / "r", n=2), tmp_path / "r.zip")
    assert main([str(z), "--name", "from the shell", "--models", "clahe", "--readers", "2", "--design", "likert"]) == 0
    out = capsys.readouterr().out
    assert "study 1 created" in out and "methods toolA, toolB" in out and "case C002 = patient_01" in out
    codes = re.findall(r"^  R0\d  (\S+)$", out, flags=re.M)
    assert len(codes) == 2
    s = open_store(StudySettings(data_dir=tmp_path / "cli-data", admin_password=ADMIN))
    try:
        [row] = study.list_studies(s)
        assert row["models"] == ["clahe", "toolA", "toolB"] and row["cases"] == 2
        assert reading.next_item(s, codes[0]).status == "item"
    finally:
        s.close()
    assert main([str(tmp_path / "missing.zip"), "--name", "x"]) == 2
    assert "refused" in capsys.readouterr().err
