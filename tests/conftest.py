"""Shared test set-up: no network, deterministic, small images."""

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("MEDENHANCE_DEVICE", "cpu")
# Exact-equality tests (tiled vs untiled, determinism) need the fp32 reference plan;
# tests/test_models.py::test_fast_plans_keep_fidelity checks the automatic plan choice itself.
os.environ.setdefault("MEDENHANCE_PLAN", "fp32")
# Apps built by tests keep their reader-study database out of the working tree.
import tempfile  # noqa: E402

os.environ.setdefault("STUDIO_DATA_DIR", tempfile.mkdtemp(prefix="medenhance-test-data-"))
os.environ.setdefault("STUDIO_ADMIN_PASSWORD", "test-admin-password")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

# PostgreSQL fixtures (database_url, make_database_url, pg_server_url) for every test module.
pytest_plugins = ["tests.pg"]


def testdata(name: str) -> str | None:
    """Path of one of pydicom's bundled test files (pydicom / pydicom-data), or None if absent.

    ``download=False``: without network, pydicom would otherwise retry a download and hang.
    """
    from pydicom.data import get_testdata_file

    try:
        return get_testdata_file(name, download=False)
    except Exception:  # noqa: BLE001 - any failure means "not available here"
        return None


def smooth_test_image(h: int = 64, w: int = 72, colour: bool = False, seed: int = 0) -> np.ndarray:
    """A deterministic float32 [0, 1] image with smooth shapes, edges and a little texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = 0.5 + 0.3 * np.sin(xx / 5.0) * np.cos(yy / 7.0)
    img[h // 4 : h // 2, w // 3 : w // 2] += 0.2  # a sharp-edged block
    img += 0.02 * rng.standard_normal((h, w)).astype(np.float32)
    img = np.clip(img, 0, 1).astype(np.float32)
    if colour:
        img = np.stack([img, np.clip(img * 0.8 + 0.1, 0, 1), np.clip(1 - img, 0, 1)], axis=-1).astype(np.float32)
    return img


@pytest.fixture
def gray_image() -> np.ndarray:
    return smooth_test_image()


@pytest.fixture
def colour_image() -> np.ndarray:
    return smooth_test_image(colour=True)


@pytest.fixture(autouse=True, scope="session")
def _results_in_pytest_tmp(tmp_path_factory: pytest.TempPathFactory):
    """Studio result files go to pytest's tmp dir (pruned by pytest), not a new /tmp dir per run."""
    from studio import handlers

    saved = handlers.results._RESULTS_DIR
    handlers.results._RESULTS_DIR = tmp_path_factory.mktemp("results")
    yield
    handlers.results._RESULTS_DIR = saved


@pytest.fixture
def results_dir(tmp_path, monkeypatch):
    """A fresh, empty studio results dir for one test (tests that inspect what was written)."""
    from studio import handlers

    d = tmp_path / "results"
    d.mkdir()
    monkeypatch.setattr(handlers.results, "_RESULTS_DIR", d)
    return d
