"""Bounded load test of the ``/enhance`` endpoint: several API clients enhancing images at once.

    python -m bench.enhance_load --clients 4 --requests 5 --size 1024 [--model gaussian] [--url URL]

Without ``--url`` the studio is served in this process on a free localhost port,
configured as ``app.py`` does (queue, concurrency and upload limit from the
``MEDENHANCE_*`` environment), with a throw-away reader-study data directory
unless ``STUDIO_DATA_DIR`` is set. Each client (its own thread and
``gradio_client.Client``, as an API user would have) uploads a generated
``size`` x ``size`` 8-bit PNG ``--requests`` times and waits for the result
PNG. Afterwards one more, small request must succeed (the server is still
healthy). Prints throughput, latency percentiles (queueing included: with the
default concurrency of 1 requests run one at a time) and errors; exit status 1
on any error or a failed health check.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import argparse  # noqa: E402
import secrets  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from models import get_spec  # noqa: E402
from studio import handlers  # noqa: E402


@dataclass
class LoadReport:
    """What one load run measured."""

    clients: int
    requests_per_client: int
    size: int
    model: str
    wall_s: float = 0.0
    latencies_s: list[float] = field(default_factory=list)  # one per successful request
    errors: list[str] = field(default_factory=list)
    healthy: bool = False

    @property
    def ok(self) -> bool:
        """No error, every request answered, and the server answered the health check."""
        return not self.errors and len(self.latencies_s) == self.clients * self.requests_per_client and self.healthy

    @property
    def throughput(self) -> float:
        """Successful requests per second of wall time."""
        return len(self.latencies_s) / self.wall_s if self.wall_s > 0 else 0.0

    def percentile(self, q: float) -> float:
        """Latency percentile ``q`` (0-100) in seconds; NaN if nothing succeeded."""
        return float(np.percentile(self.latencies_s, q)) if self.latencies_s else float("nan")

    def summary(self) -> str:
        n = self.clients * self.requests_per_client
        return (f"{self.clients} clients x {self.requests_per_client} requests, {self.size}x{self.size} PNG, "
                f"model {self.model}: {len(self.latencies_s)}/{n} ok in {self.wall_s:.1f} s, "
                f"{self.throughput:.2f} req/s, latency p50 {self.percentile(50):.2f} s, "
                f"p95 {self.percentile(95):.2f} s, max {max(self.latencies_s, default=float('nan')):.2f} s; "
                f"errors {len(self.errors)}; healthy afterwards: {'yes' if self.healthy else 'NO'}")


def make_png(path: Path, size: int, seed: int = 0) -> Path:
    """A deterministic ``size`` x ``size`` 8-bit grayscale PNG: gradient, disc and noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    img = 0.3 + 0.4 * xx + 0.2 * ((xx - 0.5) ** 2 + (yy - 0.5) ** 2 < 0.1) + 0.05 * rng.standard_normal((size, size))
    Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(path)
    return path


def task_label(model: str) -> str:
    """The Enhance tab's task label that fits ``model``."""
    spec = get_spec(model)
    for label, (task, scale) in handlers.TASKS.items():
        if task == spec.task and scale in (None, spec.scale):
            return label
    raise ValueError(f"no task label fits {model!r}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(max_file_size: str | None = None) -> Any:
    """Build and launch the studio in this process on a free localhost port (as ``app.py`` configures it).

    Returns the running ``gr.Blocks``; its ``local_url`` is the address; ``close()`` stops it.
    """
    from studio.app import build_app
    from studio.config import Settings

    settings = Settings.from_env()
    demo = build_app(settings)
    demo.queue(default_concurrency_limit=settings.concurrency, max_size=settings.queue_size)
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), quiet=True,
                max_file_size=max_file_size or settings.max_upload, show_error=False)
    return demo


def _client(url: str, downloads: Path) -> Any:
    from gradio_client import Client

    return Client(url, verbose=False, download_files=str(downloads), analytics_enabled=False)


def run_load(url: str, clients: int, requests: int, size: int, model: str = "gaussian",
             workdir: Path | None = None) -> LoadReport:
    """Let ``clients`` threads each send ``requests`` enhance requests to the studio at ``url``."""
    from gradio_client import handle_file

    workdir = Path(workdir or tempfile.mkdtemp(prefix="medenhance-load-"))
    task = task_label(model)
    report = LoadReport(clients, requests, size, model)
    images = [make_png(workdir / f"load_{i}.png", size, seed=i) for i in range(clients)]
    lock = threading.Lock()
    start_line = threading.Barrier(clients)

    def one_client(i: int) -> None:
        try:
            client = _client(url, workdir / f"client{i}")
        except Exception as exc:  # noqa: BLE001 - counted, reported
            with lock:
                report.errors.append(f"client {i} could not connect: {exc}")
            start_line.abort()
            return
        try:
            start_line.wait(timeout=120)
        except threading.BrokenBarrierError:
            return
        for _ in range(requests):
            t0 = time.perf_counter()
            try:
                _, _, png = client.predict(handle_file(str(images[i])), task, model, 0, "default", api_name="/enhance")
                with Image.open(png) as out:
                    scale = get_spec(model).scale
                    if out.size != (size * scale, size * scale):
                        raise AssertionError(f"result is {out.size}, expected {size * scale} px square")
            except Exception as exc:  # noqa: BLE001 - counted, reported
                with lock:
                    report.errors.append(f"client {i}: {type(exc).__name__}: {str(exc)[:200]}")
                continue
            with lock:
                report.latencies_s.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=one_client, args=(i,), daemon=True) for i in range(clients)]
    t_start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report.wall_s = time.perf_counter() - t_start
    try:  # the server still serves a normal request
        small = make_png(workdir / "health.png", 64, seed=99)
        _, _, png = _client(url, workdir / "health").predict(handle_file(str(small)), "Denoise", "gaussian", 0,
                                                             "default", api_name="/enhance")
        report.healthy = Path(png).is_file()
    except Exception as exc:  # noqa: BLE001 - reported
        report.errors.append(f"health check: {type(exc).__name__}: {str(exc)[:200]}")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Load test of the /enhance endpoint.")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--requests", type=int, default=5, help="requests per client")
    parser.add_argument("--size", type=int, default=1024, help="side of the generated PNG in pixels")
    parser.add_argument("--model", default="gaussian", help="a registry name, e.g. gaussian or bicubic_x2")
    parser.add_argument("--url", default=None, help="a running studio (default: serve one in this process)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="medenhance-load-") as tmp:
        if not args.url:  # this load never touches reader studies: keep their data (and admin password) out of it
            os.environ.setdefault("STUDIO_DATA_DIR", str(Path(tmp) / "studio-data"))
            os.environ.setdefault("STUDIO_ADMIN_PASSWORD", secrets.token_urlsafe(16))
        demo = None if args.url else serve()
        url = args.url or demo.local_url
        try:
            report = run_load(url, args.clients, args.requests, args.size, args.model, workdir=Path(tmp))
        finally:
            if demo is not None:
                demo.close()
    print(report.summary())
    for error in report.errors[:10]:
        print("  error:", error)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
