"""Your own model, end to end in a real browser: a file in the models folder, ``python app.py``, headless Chromium.

A small randomly initialised spandrel ESRGAN (x2, grayscale) is saved as ``lab_sr.safetensors`` with a
sidecar in a fresh models folder; the server is started with ``MEDENHANCE_MODELS_DIR`` pointing there. Then,
as clicks: the model is offered in the Enhance tab's list, runs on a real CT DICOM (slider rendered, card
with the file's SHA-256, derived DICOM offered); the Study admin tab lists it; a study made through the
running server's ``/admin_create_study`` has it as a variant, a reader rates every item with the keyboard,
and the SQLite file holds the ratings of that variant with the file's hash.

Needs Chromium and the playwright package, like tests/test_browser_e2e.py (skipped without them unless
``MEDENHANCE_REQUIRE_BROWSER=1``).
"""

from __future__ import annotations

import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported

import hashlib  # noqa: E402
import json  # noqa: E402
import sqlite3  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from bench import browser as chromium  # noqa: E402
from bench import servers  # noqa: E402
from conftest import testdata as _testdata  # noqa: E402
from tests import plugin_models as pm  # noqa: E402
from tests.test_browser_e2e import _browser_or_skip, _decoded_sizes  # noqa: E402

CT = _testdata("CT_small.dcm")
MR = _testdata("MR_small.dcm")
ADMIN = "plugins-e2e-admin-password"
NAME = "lab_sr"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    """``python app.py`` with a models folder holding one spandrel file (and a sidecar); no browser needed."""
    if CT is None or MR is None:
        pytest.skip("pydicom test files not available")
    tmp = tmp_path_factory.mktemp("plugins-e2e")
    models_dir = tmp / "user-models"
    models_dir.mkdir()
    model = pm.save_safetensors(pm.esrgan(1, 2, seed=11), models_dir / f"{NAME}.safetensors")
    (models_dir / f"{NAME}.json").write_text(json.dumps({"title": "Lab ESRGAN", "licence": "MIT",
                                                         "source": "our lab", "trained_on": "phantoms"}))
    port = servers.free_port()
    url = f"http://127.0.0.1:{port}/"
    log_path = tmp / "server.log"
    with open(log_path, "wb") as log:
        proc = servers.start_server(tmp / "data", port, {"STUDIO_ADMIN_PASSWORD": ADMIN, "STUDIO_IMPORT_ROOT": "",
                                                         "MEDENHANCE_MODELS_DIR": str(models_dir)}, log)
        try:
            servers.wait_ready(url, proc)
            yield {"url": url, "data": tmp / "data", "sha": hashlib.sha256(model.read_bytes()).hexdigest(),
                   "log": log_path, "tmp": tmp, "models_dir": models_dir}
        finally:
            proc.terminate()
            proc.wait(timeout=30)


@pytest.fixture(scope="module")
def served(server):
    """The server and a Chromium to drive it (skipped without one, see tests/test_browser_e2e.py)."""
    return {**server, "exe": _browser_or_skip()}


@pytest.fixture(scope="module")
def page(served):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = chromium.launch(pw, served["exe"])
        pg = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors: list[str] = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.goto(served["url"])
        pg.get_by_role("tab", name="Enhance").wait_for()
        pg.errors = errors
        yield pg
        browser.close()


def test_the_folders_model_is_offered_and_runs_on_a_dicom(page, served) -> None:
    page.get_by_role("tab", name="Enhance").click()
    chromium.upload(page, "enhance", CT)
    chromium.choose_model(page, "Super-resolution x2", NAME)
    assert "your model" in page.locator("#enhance-model input").input_value()
    chromium.click_run(page)
    assert _decoded_sizes(page, "#enhance-slider") == [(256, 256), (256, 256)]
    report = page.locator("#enhance-report").inner_text()
    assert NAME in report and "128 × 128 px → 256 × 256 px" in report
    assert served["sha"] in report and "Lab ESRGAN" in report and "not measured here" in report
    page.locator("#enhance-dicom a[download]").wait_for()  # the derived DICOM (its provenance: tests/test_plugins.py)
    assert not page.errors, page.errors


def test_a_reader_rates_a_study_with_the_folders_model(page, served) -> None:
    from gradio_client import Client, handle_file

    client = Client(served["url"], verbose=False, download_files=str(served["tmp"] / "downloads"))
    summary, codes = client.predict(ADMIN, "your model e2e", "likert", [NAME], [handle_file(CT), handle_file(MR)], "",
                                    1, 0, 0, "all", 5, "default", api_name="/admin_create_study")
    assert "2 cases × 2 variants" in summary, summary
    # The admin tab lists the folder's model with its hash.
    page.get_by_role("tab", name="Study admin").click()
    page.get_by_role("tab", name="Your models").click()
    page.locator("#admin-user-models").get_by_text(served["sha"]).wait_for()
    page.get_by_role("tab", name="Reader study").click()
    page.locator("#reader-code input").fill(codes["R01"])
    page.get_by_role("button", name="Start / resume").click()
    page.locator("#reader-likert").first.wait_for(state="visible")
    for n in range(1, 5):
        page.wait_for_function(f"() => document.querySelector('#reader-status').innerText.includes('Case {n} of 4')")
        chromium.wait_decoded(page, "#reader-images", 1, timeout_s=60)
        seen = page.locator("#reader-images").inner_html() + page.locator("#reader-status").inner_text()
        assert NAME not in seen and served["sha"] not in seen  # blinded
        page.locator("#reader-status").click()  # focus the page, not a text box
        for digit in "453342":
            page.keyboard.press(digit)
        page.keyboard.press("Enter")
    page.wait_for_function("() => document.querySelector('#reader-status').innerText.includes('All 4 cases are done')")
    con = sqlite3.connect(served["data"] / "studies.db")
    try:
        rows = con.execute("SELECT v.model, v.weights_sha256, r.overall, r.artefacts FROM ratings r "
                           "JOIN variants v ON v.id = r.variant_id ORDER BY r.id").fetchall()
    finally:
        con.close()
    assert sorted(m for m, *_ in rows) == ["lab_sr", "lab_sr", "original", "original"]
    assert {sha for m, sha, *_ in rows if m == NAME} == {served["sha"]}
    assert all((overall, artefacts) == (4, 4) for _, _, overall, artefacts in rows)
    assert not page.errors, page.errors


def test_hostile_uploads_are_refused_and_the_app_keeps_serving(server, tmp_path: Path) -> None:
    """A code-running pickle and a truncated file uploaded as models: clear errors, nothing kept, nothing stored
    changes, and the server still enhances with the folder's model."""
    from gradio_client import Client, handle_file

    client = Client(server["url"], verbose=False, download_files=str(tmp_path / "downloads"))
    con = sqlite3.connect(server["data"] / "studies.db")
    try:
        before = con.execute("SELECT COUNT(*), COALESCE(SUM(overall), 0) FROM ratings").fetchone()
    finally:
        con.close()
    marker = tmp_path / "pwned"
    truncated = tmp_path / "half.safetensors"
    truncated.write_bytes(pm.save_safetensors(pm.esrgan(1, 2), tmp_path / "whole.safetensors").read_bytes()[:5000])
    for bad, message in ((pm.malicious_pth(tmp_path / "evil.pth", marker), "could run code"),
                         (truncated, "not a readable safetensors file")):
        with pytest.raises(Exception, match=message):
            client.predict(ADMIN, handle_file(str(bad)), None, api_name="/admin_upload_model")
        assert not (server["models_dir"] / bad.name).exists()
    with pytest.raises(Exception, match="Wrong admin password"):
        client.predict("wrong", handle_file(str(truncated)), None, api_name="/admin_upload_model")
    assert not marker.exists()
    md, report = client.predict(ADMIN, api_name="/admin_reload_models")
    assert report["loaded"] == [NAME] and not report["problems"] and server["sha"] in md
    _, text, png = client.predict(handle_file(CT), "Super-resolution x2", NAME, 0, "default", api_name="/enhance")
    assert NAME in text and Path(png).is_file()
    con = sqlite3.connect(server["data"] / "studies.db")
    try:
        assert con.execute("SELECT COUNT(*), COALESCE(SUM(overall), 0) FROM ratings").fetchone() == before
    finally:
        con.close()
