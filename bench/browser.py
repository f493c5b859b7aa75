"""The studio in a real browser: Chromium helpers, and ``python -m bench.browser`` (click-to-slider time).

Debian's Chromium (``apt-get install chromium``) is driven by Playwright's
Python package (``pip install playwright``; no browser download: Playwright
is pointed at the system Chromium). The same helpers serve the end-to-end
test (``tests/test_browser_e2e.py``) and this benchmark.

The benchmark answers "how long does a radiologist wait after clicking Run,
compared with the model itself?": it serves ``python app.py`` on localhost,
uploads a real image (scikit-image's 512x512 *camera*, resized so that every
model's output is 512x512) on the Enhance tab, clicks Run and waits until both
halves of the before/after slider are decoded by the browser. It reports, per
model, the median over ``--runs`` clicks after one warm-up click of

* ``upload_s``: file chosen -> preview and metadata shown (upload + read + de-identification);
* ``click_s``: Run clicked -> both slider images decoded, timed by the page itself (from the
  click event to the last image's load event);
* ``playwright_s``: the same wait timed by the driver (adds its pre-click checks and polling);
* ``model_s``: the model's own time, as the studio reports it under the slider;
* ``ratio`` = click_s / model_s (the issue's target: at most 2).

    python -m bench.browser                          # srcnn_x2, vdsr_x2, dncnn, gated_enhance, rrdbnet_x4
    python -m bench.browser --models dncnn --runs 9 --out docs/bench
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from .report import write_table

# Without the background-networking flags Chromium keeps trying to reach Google's
# servers, which a closed network (CI, a hospital host) refuses many times a second.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage")
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

# Images under a CSS selector that the browser has fully decoded (naturalWidth > 0).
_DECODED = ("(sel) => [...document.querySelectorAll(sel + ' img')]"
            ".filter((i) => i.complete && i.naturalWidth > 0).length")


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome executable: ``$MEDENHANCE_CHROMIUM``, else the first of
    :data:`CHROMIUM_NAMES` on ``PATH``; None if there is none."""
    explicit = os.environ.get("MEDENHANCE_CHROMIUM", "").strip()
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def launch(playwright: Any, executable: str) -> Any:
    """A headless Chromium ``Browser`` started from ``executable`` with :data:`CHROMIUM_FLAGS`."""
    return playwright.chromium.launch(executable_path=executable, args=list(CHROMIUM_FLAGS), headless=True)


def wait_decoded(page: Any, selector: str, count: int, timeout_s: float) -> None:
    """Block until ``count`` images under ``selector`` are decoded by the page."""
    page.wait_for_function(f"({_DECODED})({selector!r}) >= {count}", timeout=timeout_s * 1000)


def upload(page: Any, prefix: str, path: str | os.PathLike[str], timeout_s: float = 60.0) -> float:
    """Choose ``path`` in the ``#<prefix>-file`` upload and wait for its metadata panel; returns seconds.

    ``prefix`` is ``"enhance"`` or ``"compare"``. A file already loaded is cleared first (as a
    user does with the x button); the wait is for the new file's size line (``... px``).
    """
    chooser = page.locator(f"#{prefix}-file input[type=file]")
    if not chooser.count():  # a file is loaded: the component shows it instead of the drop zone
        page.locator(f"#{prefix}-file button[aria-label=Clear]").click()
        chooser.wait_for(state="attached", timeout=timeout_s * 1000)
    # Clearing empties the panel (server side); wait for that, or the old text would pass for the new.
    has_size = f"() => (document.querySelector('#{prefix}-meta')?.innerText || '').includes(' px')"
    page.wait_for_function(f"() => !({has_size})()", timeout=timeout_s * 1000)
    t0 = time.perf_counter()
    chooser.set_input_files(str(path))
    page.wait_for_function(has_size, timeout=timeout_s * 1000)
    return time.perf_counter() - t0


def choose_model(page: Any, task: str, model: str, timeout_s: float = 30.0) -> None:
    """Pick ``task`` (its radio label) and ``model`` (registry name) on the Enhance tab, as a user does."""
    page.locator("#enhance-task label", has_text=task).first.click()
    box = page.locator("#enhance-model input")
    # The task change refreshes the model list on the server: wait until the option is offered.
    deadline = time.monotonic() + timeout_s
    while True:
        box.click()
        option = page.get_by_role("option", name=re.compile(rf"^{re.escape(model)}\b"))
        try:
            option.first.click(timeout=2000)
            break
        except Exception:  # noqa: BLE001 - the list has not been refreshed yet
            page.keyboard.press("Escape")
            if time.monotonic() > deadline:
                raise
    page.wait_for_function("([sel, m]) => document.querySelector(sel).value.startsWith(m)",
                           arg=["#enhance-model input", model], timeout=timeout_s * 1000)


_RAN_IN = re.compile(r"ran in ([\d.]+) (ms|s)\b")


def model_seconds(report: str) -> float:
    """The model time the studio prints under the slider (``... ran in 12.3 ms ...``), in seconds."""
    m = _RAN_IN.search(report)
    if not m:
        raise ValueError(f"no model time in the report: {report[:200]!r}")
    return float(m.group(1)) / (1000.0 if m.group(2) == "ms" else 1.0)


def _slider_sources(page: Any) -> list[str]:
    return page.evaluate("() => [...document.querySelectorAll('#enhance-slider img')].map((i) => i.src)")


# In-page stopwatch for one click: the click's own timestamp (capture listener on the Run button)
# and the moment the last new slider image fires its load event (captured at the document; image
# loads do not bubble). Both in the page's performance clock, so neither Playwright's actionability
# checks before the click nor its polling interval after it are counted.
_ARM_STOPWATCH = """(old) => {
  const w = window;
  w.__meClick = null; w.__meDone = null;
  if (w.__meOnLoad) document.removeEventListener('load', w.__meOnLoad, true);
  w.__meOnLoad = () => {
    const im = [...document.querySelectorAll('#enhance-slider img')];
    if (w.__meDone === null && w.__meClick !== null && im.length >= 2 &&
        im.every((i) => i.complete && i.naturalWidth > 0 && !old.includes(i.src))) w.__meDone = performance.now();
  };
  document.addEventListener('load', w.__meOnLoad, true);
  document.querySelector('#enhance-run').addEventListener('click', () => { w.__meClick = performance.now(); },
                                                          {capture: true, once: true});
}"""


def click_run(page: Any, timeout_s: float = 300.0) -> tuple[float, float, float]:
    """Click Run on the Enhance tab and wait for the rendered slider.

    Returns (click -> slider s as the page measured it, model s, the same wait as Playwright
    measured it). "Rendered" means two slider images decoded whose sources differ from the
    previous result's (Gradio names them by content hash: a repeated click needs a different
    input to be told apart). The page's figure starts at the click event and ends at the last
    image's load event; Playwright's adds its pre-click checks (visible, stable for two
    animation frames) and its polling, tens of milliseconds a user never waits.
    """
    old = _slider_sources(page)
    page.evaluate(_ARM_STOPWATCH, old)
    t0 = time.perf_counter()
    page.locator("#enhance-run").click()
    page.wait_for_function(
        "(old) => { const im = [...document.querySelectorAll('#enhance-slider img')]; return im.length >= 2 && "
        "im.every((i) => i.complete && i.naturalWidth > 0 && !old.includes(i.src)); }",
        arg=old, timeout=timeout_s * 1000)
    driver = time.perf_counter() - t0
    in_page = page.evaluate("() => (window.__meDone === null || window.__meClick === null) ? null : "
                            "(window.__meDone - window.__meClick) / 1000")
    model = model_seconds(page.locator("#enhance-report").inner_text())
    return (driver if in_page is None else in_page), model, driver


# model -> (task label on the Enhance tab, input side for a 512x512 output)
DEFAULT_MODELS = {"srcnn_x2": ("Super-resolution x2", 256), "vdsr_x2": ("Super-resolution x2", 256),
                  "dncnn": ("Denoise", 512), "gated_enhance": ("Enhance", 512),
                  "rrdbnet_x4": ("Super-resolution x4", 128)}


def _camera_png(side: int, folder: Path, run: int) -> Path:
    """scikit-image's 512x512 *camera* (a real photograph), area-resized to ``side``, as an 8-bit PNG.

    Each ``run`` changes one corner pixel: Gradio names served images by content hash, so
    identical results would keep their address and a repeated click could not be told apart.
    """
    import numpy as np
    from PIL import Image
    from skimage import data

    path = folder / f"camera_{side}_{run}.png"
    pixels = np.asarray(Image.fromarray(data.camera()).resize((side, side), Image.Resampling.BOX)).copy()
    pixels[0, 0] = run % 256
    Image.fromarray(pixels).save(path)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.browser", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(DEFAULT_MODELS), help="comma-separated, from: "
                   + ", ".join(DEFAULT_MODELS))
    p.add_argument("--runs", type=int, default=5, help="timed clicks per model (after one warm-up click)")
    p.add_argument("--out", default="results/bench")
    args = p.parse_args(argv)
    from playwright.sync_api import sync_playwright


    from bench import servers

    exe = find_chromium()
    if exe is None:
        raise SystemExit("no Chromium found: apt-get install chromium (or set MEDENHANCE_CHROMIUM)")
    rows = []
    with tempfile.TemporaryDirectory(prefix="medenhance-browser-bench-") as tmp:
        tmp_path = Path(tmp)
        port = servers.free_port()
        url = f"http://127.0.0.1:{port}/"
        with open(tmp_path / "server.log", "wb") as log:
            proc = servers.start_server(tmp_path / "data", port, {"STUDIO_ADMIN_PASSWORD": "bench"}, log)
            try:
                servers.wait_ready(url, proc)
                with sync_playwright() as pw:
                    browser = launch(pw, exe)
                    page = browser.new_page(viewport={"width": 1400, "height": 1000})
                    page.goto(url)
                    for name in [m for m in args.models.split(",") if m]:
                        task, side = DEFAULT_MODELS[name]
                        choose_model(page, task, name)
                        ups, clicks, models, drivers = [], [], [], []
                        for i in range(args.runs + 1):
                            up = upload(page, "enhance", _camera_png(side, tmp_path, i))
                            click, model, driver = click_run(page)
                            if i:  # the first click loads the weights and picks the execution plan
                                ups.append(up), clicks.append(click), models.append(model), drivers.append(driver)
                        click_s, model_s = statistics.median(clicks), statistics.median(models)
                        rows.append({"model": name, "input": f"{side}x{side}", "output": "512x512",
                                     "upload_s": round(statistics.median(ups), 3), "click_s": round(click_s, 3),
                                     "click_min..max_s": f"{min(clicks):.3f}..{max(clicks):.3f}",
                                     "playwright_s": round(statistics.median(drivers), 3),
                                     "model_s": round(model_s, 3), "ratio": round(click_s / model_s, 2),
                                     "runs": len(clicks)})
                        print(rows[-1], flush=True)
                    browser.close()
            finally:
                proc.terminate()
                proc.wait(timeout=30)
    title = (f"**Enhance click in a real browser** (headless Chromium via Playwright, localhost), median of "
             f"{args.runs} clicks after a warm-up; ratio = click-to-slider / model time")
    print(write_table(rows, args.out, "browser", title))
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
