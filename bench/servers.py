"""Serving the studio for load tools and tests: a free port, ``python app.py`` as a process, waiting until it answers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port free on localhost right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(data_dir: str | Path, port: int, env: dict[str, str] | None = None,
                 log: Any = subprocess.DEVNULL) -> subprocess.Popen:
    """``python app.py`` on 127.0.0.1:``port`` with ``data_dir`` as ``STUDIO_DATA_DIR`` (a separate process)."""
    full_env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
                "STUDIO_DATA_DIR": str(data_dir), "GRADIO_ANALYTICS_ENABLED": "False", **(env or {})}
    return subprocess.Popen([sys.executable, str(REPO_ROOT / "app.py")], cwd=REPO_ROOT, env=full_env,
                            stdout=log, stderr=subprocess.STDOUT)


def wait_ready(url: str, proc: subprocess.Popen | None = None, timeout: float = 180.0) -> None:
    """Poll ``url`` until it answers; RuntimeError if ``proc`` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode} before answering")
        try:
            with urllib.request.urlopen(url + "gradio_api/info", timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"no answer from {url} within {timeout:.0f} s")
