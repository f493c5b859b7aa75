"""The served studio under hostile input and load (issue #8): one app on a free localhost port, called over
HTTP with ``gradio_client`` and raw requests. Bad files are clean errors, the upload limit holds, upload names
cannot climb out of Gradio's cache, and afterwards the server still serves a normal request.

The full load test is ``python -m bench.enhance_load --clients 4 --requests 5 --size 1024``.
"""

from __future__ import annotations

import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported

import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import fuzz_reader  # noqa: E402
import httpx  # noqa: E402
import pytest  # noqa: E402
from fuzz_corpus import Case, build_corpus, seed_files  # noqa: E402

from bench import enhance_load  # noqa: E402

UPLOAD_LIMIT = "8mb"
PER_CATEGORY = 3


@pytest.fixture(scope="module")
def server():
    demo = enhance_load.serve(max_file_size=UPLOAD_LIMIT)
    yield demo
    demo.close()


@pytest.fixture(scope="module")
def client(server, tmp_path_factory: pytest.TempPathFactory):
    return enhance_load._client(server.local_url, tmp_path_factory.mktemp("downloads"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[Case]:
    return build_corpus(tmp_path_factory.mktemp("corpus"))


def _selection(corpus: list[Case]) -> list[Case]:
    """Up to PER_CATEGORY files per category (refusals first), each small enough to upload."""
    chosen: dict[str, list[Case]] = {}
    for case in sorted(corpus, key=lambda c: c.expect != "refused"):
        if case.path.stat().st_size < 4 * 2**20 and len(chosen.setdefault(case.category, [])) < PER_CATEGORY:
            chosen[case.category].append(case)
    return [c for cases in chosen.values() for c in cases]


def _enhance(client, path: Path, frame: int = 0) -> tuple:
    """One /enhance call that must be answered (an error counts as an answer) within a minute."""
    from gradio_client import handle_file

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        job = client.submit(handle_file(str(path)), "Super-resolution x2", "bicubic_x2", frame, "default",
                            api_name="/enhance")
        return job.result(timeout=60)


def test_corpus_over_http_then_a_normal_request(client, corpus: list[Case], tmp_path: Path) -> None:
    failures = {}
    selection = _selection(corpus)
    for case in selection:
        try:
            _enhance(client, case.path, case.frame)
        except TimeoutError:
            failures[case.id] = "no answer within 60 s"
        except Exception as exc:  # noqa: BLE001 - gradio_client's AppError carries the gr.Error message
            message = str(exc)
            if case.expect == "image" or not message or "internal error" in message.lower():
                failures[case.id] = message
        else:
            if case.expect == "refused":
                failures[case.id] = "accepted"
    assert not failures, failures
    print(f"\n{len(selection)} corpus files sent over HTTP")
    _, md, png = _enhance(client, enhance_load.make_png(tmp_path / "good.png", 64))
    assert Path(png).is_file() and "bicubic_x2" in md


def test_fuzz_crashes_over_http_are_answered(client, tmp_path: Path) -> None:
    # fuzz-008 made a Rust codec panic: before the fix the request was never answered.
    seeds = seed_files(tmp_path / "seeds")
    for recipe in fuzz_reader.load_regressions():
        path = tmp_path / f"{recipe['id']}{Path(recipe['seed']).suffix}"
        path.write_bytes(fuzz_reader.apply_recipe(seeds[recipe["seed"]], recipe["ops"]))
        try:
            _enhance(client, path, int(recipe.get("frame", 0)))
        except TimeoutError:
            pytest.fail(f"{recipe['id']}: no answer within 60 s")
        except Exception as exc:  # noqa: BLE001 - an error message is a fine answer
            assert str(exc) and "internal error" not in str(exc).lower(), (recipe["id"], str(exc))
    _, _, png = _enhance(client, enhance_load.make_png(tmp_path / "good.png", 64))
    assert Path(png).is_file()


def test_upload_limit_and_upload_names(server, corpus: list[Case]) -> None:
    url = server.local_url
    too_big = next(c for c in corpus if c.id == "mf100-frame0").path  # 13 MB > the 8 MB limit
    with too_big.open("rb") as fh:
        r = httpx.post(f"{url}gradio_api/upload", files={"files": ("big.dcm", fh, "application/dicom")}, timeout=60)
    assert r.status_code == 413 and "maximum allowed size" in r.text
    r = httpx.post(f"{url}gradio_api/upload", timeout=60,
                   files={"files": ("../../etc/passwd.dcm", b"not an image", "application/octet-stream")})
    r.raise_for_status()
    stored = Path(r.json()[0])
    assert ".." not in stored.parts and stored.name == "passwd.dcm"  # Gradio keeps the base name only
    assert stored.parent.parent.name == "gradio" or "gradio" in str(stored.parent), stored


def test_small_load_loses_nothing(server, tmp_path: Path) -> None:
    report = enhance_load.run_load(server.local_url, clients=2, requests=2, size=256, model="gaussian",
                                   workdir=tmp_path)
    print("\n" + report.summary())
    assert not report.errors, report.errors
    assert report.ok and len(report.latencies_s) == 4 and report.healthy
