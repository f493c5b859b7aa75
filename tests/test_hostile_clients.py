"""Hostile clients against the served studio (issue 36), loopback only, bounded in time.

* readers' images: written once, served under a fresh unguessable name per request that names
  neither a variant nor a server path; 1,000 ``/reader_next`` calls by one code add nothing to the
  temp space (the bound is 2 images' worth);
* wrong admin passwords and reader codes are refused (HTTP 429) before Gradio's queue while the
  readers and the real admin keep working;
* the load test: 100 looping hostile clients while 10 readers rate (``python -m bench.flood`` runs the
  20 s version; figures in docs/reliability.md).

The decisions themselves (who is throttled, for how long) are unit-tested in tests/test_throttle.py.
"""

from __future__ import annotations

import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported

import re  # noqa: E402
import threading  # noqa: E402
from collections import Counter  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from pathlib import Path  # noqa: E402
from types import SimpleNamespace  # noqa: E402
from typing import Iterator  # noqa: E402

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402
from study_helpers import ADMIN  # noqa: E402

import studio  # noqa: E402
from bench import flood, servers  # noqa: E402
from bench.reader_client import HttpClient  # noqa: E402
from studio import guard, study  # noqa: E402
from studio.config import Settings  # noqa: E402
from studio.study.store import StudySettings, open_store  # noqa: E402


def _tree_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


@contextmanager
def _served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SimpleNamespace]:
    """The studio served in this process as app.py configures it, on its own data and Gradio temp dirs."""
    data, gradio_tmp = tmp_path / "data", tmp_path / "gradio-tmp"
    monkeypatch.setenv("STUDIO_DATA_DIR", str(data))
    monkeypatch.setenv("STUDIO_ADMIN_PASSWORD", ADMIN)
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(gradio_tmp))  # read by every component built from now on
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("STUDIO_IMPORT_ROOT", raising=False)
    demo = studio.build_app()
    settings = Settings()
    demo.queue(default_concurrency_limit=settings.concurrency, max_size=settings.queue_size)  # as app.py
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=servers.free_port(), quiet=True)
    store = open_store(StudySettings.from_env())
    try:
        yield SimpleNamespace(url=demo.local_url, store=store, data=data, gradio_tmp=gradio_tmp, demo=demo)
    finally:
        demo.close()
        store.close()


def _study(store, tmp_path: Path, size: int = 256, readers: int = 2) -> study.CreatedStudy:
    yy, xx = np.mgrid[0:size, 0:size]
    rng = np.random.default_rng(0)
    files = []
    for i in range(2):
        img = (127 + 60 * np.sin(xx / (3 + i)) * np.cos(yy / 5) + rng.normal(0, 20, (size, size))).clip(0, 255)
        files.append(tmp_path / f"case{i}.png")
        Image.fromarray(img.astype(np.uint8)).save(files[-1])
    return study.create_study(store, study.StudyDesign(name="hostile", design="likert", models=("clahe",),
                                                       readers=readers, seed=1), files)


@pytest.mark.slow
def test_reader_images_are_written_once_under_fresh_names(tmp_path: Path) -> None:
    # Served by `python app.py` (its own process, as deployed) with its own Gradio temp dir, which is
    # where each reader_next used to leave a full copy of the image.
    data, gradio_tmp = tmp_path / "data", tmp_path / "gradio-tmp"
    store = open_store(StudySettings(data_dir=data, admin_password=ADMIN))
    port = servers.free_port()
    url = f"http://127.0.0.1:{port}/"
    env = {"STUDIO_ADMIN_PASSWORD": ADMIN, "GRADIO_TEMP_DIR": str(gradio_tmp), "DATABASE_URL": "",
           "STUDIO_IMPORT_ROOT": "", "MEDENHANCE_CODE_BURST": "2000"}  # 1,000 calls of one code on purpose
    with open(tmp_path / "server.log", "wb") as log:
        proc = servers.start_server(data, port, env, log)
        try:
            created = _study(store, tmp_path)
            servers.wait_ready(url, proc)
            code, other = created.codes["R01"], created.codes["R02"]
            variants = {p.name: p.read_bytes() for p in store.variants_dir.iterdir()}
            image_bytes = max(len(b) for b in variants.values())
            gradio_before, data_before = _tree_bytes(gradio_tmp), _tree_bytes(store.variants_dir)
            # Four browser-like clients (one session each, as the page), 250 calls each, one after another.
            clients = [HttpClient(url, session=True) for _ in range(4)]
            with ThreadPoolExecutor(4) as pool:
                runs = pool.map(lambda c: [c.predict(code, api_name="/reader_next")[0]["url"] for _ in range(250)],
                                clients)
                shown = [u for run in runs for u in run]
            grown = _tree_bytes(gradio_tmp) - gradio_before
            print(f"\n1000 reader_next calls: temp space +{grown} bytes (bound: 2 images = {2 * image_bytes} bytes)")
            assert grown < 2 * image_bytes
            assert _tree_bytes(store.variants_dir) == data_before  # the variants themselves: written once
            # A fresh unguessable name each time, naming no variant and no server path.
            assert len(set(shown)) == 1000 and sum(c.throttled + c.refused for c in clients) == 0
            for u in shown[:50]:
                assert re.fullmatch(re.escape(url.rstrip("/")) + r"/reader-image/[A-Za-z0-9_-]{24}\.png", u), u
            for secret in (str(data), str(gradio_tmp), "/tmp", "gradio", *variants):
                assert not any(secret in u for u in shown)
            # The latest URL serves the variant's bytes, without headers derived from the file.
            r = httpx.get(clients[0].predict(code, api_name="/reader_next")[0]["url"])
            assert r.status_code == 200 and r.content in variants.values()
            assert r.headers["content-type"] == "image/png"
            assert "etag" not in r.headers and "last-modified" not in r.headers
            # Two readers shown the same variant get unrelated names; a code's old names stop working.
            left = clients[0].predict(other, api_name="/reader_next")[0]["url"]
            assert httpx.get(left).content == r.content and left not in shown
            assert httpx.get(shown[0]).status_code == 404
            assert httpx.get(f"{url}reader-image/{'A' * 24}.png").status_code == 404
            for c in clients:
                c.close()
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            store.close()


def test_wrong_sign_ins_are_refused_before_the_queue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    monkeypatch.setattr(guard, "TARPIT_S", 0.05)  # the refusals' delay is not what this test measures
    for name in ("ADMIN_REFILL_S", "READER_REFILL_S"):  # nothing refills during the test: exact counts
        monkeypatch.setattr(guard, name, 600.0)
    with _served(tmp_path, monkeypatch) as server:
        created = _study(server.store, tmp_path, size=32, readers=1)
        code = created.codes["R01"]
        reader = HttpClient(server.url)
        reader.predict(code, api_name="/reader_next")  # signed in before the flood
        client = Client(server.url, verbose=False, download_files=False)
        # While the client's bucket has tokens, a wrong password gets the endpoint's own answer.
        with pytest.raises(AppError, match="Wrong admin password"):
            client.predict("guess", api_name="/admin_studies")
        statuses: Counter = Counter()
        lock = threading.Lock()

        def hostile(i: int) -> None:
            api, secret = ("admin_studies", f"guess-{i}") if i % 2 else ("reader_next", f"MADE-UP-{i:06d}")
            status = httpx.post(f"{server.url}gradio_api/call/{api}", json={"data": [secret]}, timeout=60).status_code
            with lock:
                statuses[status] += 1

        with ThreadPoolExecutor(32) as pool:
            pool.map(hostile, range(400))
            # Meanwhile the reader reads and the admin signs in (no 503, no 429 for either).
            _, _, item = reader.predict(code, api_name="/reader_next")
            md, _ = HttpClient(server.url).predict(ADMIN, api_name="/admin_studies")
        assert item["status"] == "item" and "| id |" in md
        assert reader.refused == 0 and reader.throttled == 0
        # Only what was left of the two bursts reached the queue; everything else was refused before it.
        assert statuses == {200: guard.ADMIN_BURST - 1 + guard.READER_BURST, 429: 400 - (guard.ADMIN_BURST - 1)
                            - guard.READER_BURST}, statuses
        # Throttled: an API client gets a clear 429 with Retry-After; the right password still passes.
        with pytest.raises(httpx.HTTPStatusError, match="429"):
            client.predict("guess", api_name="/admin_studies")
        r = httpx.post(f"{server.url}gradio_api/call/admin_studies", json={"data": ["guess"]})
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert "Too many failed admin sign-ins from your address" in r.json()["detail"]
        assert client.predict(ADMIN, api_name="/admin_studies")[0].startswith("| id |")  # never locked out
        # Another address is not throttled by this one's flood (the key is client and target).
        other = SimpleNamespace(admin=server.demo.gate.admin_request("guess", "198.51.100.7"))
        assert other.admin is None


@pytest.mark.slow
def test_flood_of_wrong_sign_ins_leaves_readers_reading(tmp_path: Path) -> None:
    # 100 looping hostile clients, 10 readers taking 0.5 s per case on average (uniform 0-1 s), 10 s.
    # `python -m bench.flood --clients 100 --readers 10 --seconds 20 [--think 0.5]` is the full-length run.
    report = flood.run_hostile(tmp_path, clients=100, readers=10, seconds=10, cases=12, think_s=0.5)
    print("\n" + report.summary())
    assert not report.errors and not report.load.errors, (report.errors, report.load.errors[:3])
    assert report.load.refused == 0  # no HTTP 503 for the readers
    assert report.load.lost == 0 and report.load.db_answers == report.load.answers_acknowledged > 0
    assert report.load.percentile(95) < 2.0
    assert report.admin_after_s < flood.ADMIN_AFTER_LIMIT_S
    assert report.flood.statuses[429] > 0.8 * report.flood.sent and report.flood.statuses[503] == 0
