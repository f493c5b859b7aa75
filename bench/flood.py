"""Hostile clients against a served studio: wrong admin passwords and reader codes while real readers read.

    python -m bench.flood --clients 100 --readers 10 --seconds 20 [--think 0] [--cases 12] [--data-dir DIR]

Starts ``python app.py`` (as deployed, :mod:`bench.servers`) on a free localhost port with a throw-away
data directory, creates a study (:func:`bench.loadtest.make_study`) and signs its readers in. Then
``--clients`` flood threads (their own HTTP connection each) send, as fast as the server answers them,
wrong admin passwords to ``/admin_studies`` and made-up codes to ``/reader_next`` (half each), never
reading a result, while the readers answer as the web page does (``--client browser``: one session
each; ``--client http`` uses the /call API) (:func:`bench.loadtest.run_load`: every answer the server
acknowledged is checked in the database afterwards). Halfway through, and right after the flood stops,
the admin signs in with the right password: the time until its result is reported.

Exit status 0 only if the readers got no HTTP 503, lost no answer, their submit latency p95 stayed under
``--p95-limit`` (2 s), and the admin's sign-in right after the flood took under 1 s.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import argparse  # noqa: E402
import random  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Sequence  # noqa: E402

# Only the standard library at the top: the flood's own process imports this module (spawn) and must
# start in a second, not after importing the studio. The load tools are imported where they are used.

ADMIN_AFTER_LIMIT_S = 1.0


@dataclass
class FloodStats:
    """What the flood sent and how the server answered (HTTP status -> count; "error": no answer)."""

    clients: int
    seconds: float = 0.0
    statuses: Counter = field(default_factory=Counter)

    @property
    def sent(self) -> int:
        return sum(self.statuses.values())

    def summary(self) -> str:
        parts = ", ".join(f"{k}: {v}" for k, v in sorted(self.statuses.items(), key=lambda kv: str(kv[0])))
        rate = self.sent / self.seconds if self.seconds else 0.0
        return f"flood: {self.clients} clients, {self.sent} requests in {self.seconds:.1f} s ({rate:.0f}/s); {parts}"


def _flood_client(url: str, index: int, seed: int, stop: Any, counts: Counter, lock: threading.Lock) -> None:
    import httpx

    rng = random.Random(seed * 7919 + index)
    with httpx.Client(timeout=30.0, verify=False) as http:  # loopback http: no TLS context to load
        n = 0
        while not stop.is_set():
            n += 1
            if (index + n) % 2:
                api, secret = "admin_studies", f"guess-{rng.getrandbits(48):x}"
            else:
                api, secret = "reader_next", "".join(rng.choice("ABCDEFGHJKMNPQRSTUVWXYZ23456789") for _ in range(12))
            try:
                status: int | str = http.post(f"{url}gradio_api/call/{api}", json={"data": [secret]}).status_code
            except Exception:  # noqa: BLE001 - no answer at all is counted, not raised
                status = "error"
            with lock:
                counts[status] += 1


def _flood_process(url: str, clients: int, seed: int, ready: Any, stop: Any, results: Any) -> None:
    """The flood's own process: ``clients`` threads until ``stop`` is set; puts the status counts on ``results``."""
    counts: Counter = Counter()
    lock = threading.Lock()
    threads = [threading.Thread(target=_flood_client, args=(url, i, seed, stop, counts, lock), daemon=True)
               for i in range(clients)]
    for t in threads:
        t.start()
    ready.set()
    for t in threads:
        t.join()
    results.put(dict(counts))


class Flood:
    """``clients`` threads sending wrong admin passwords and made-up reader codes until :meth:`stop`.

    They run in a process of their own, as attackers would on other machines: in the readers' process
    their threads would take the readers' interpreter lock and the client, not the server, would be measured.
    """

    def __init__(self, url: str, clients: int, seed: int = 0) -> None:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")  # no fork of a process that runs threads
        self.stats = FloodStats(clients)
        self._ready, self._stop, self._results = ctx.Event(), ctx.Event(), ctx.Queue()
        self._proc = ctx.Process(target=_flood_process, daemon=True,
                                 args=(url.rstrip("/") + "/", clients, seed, self._ready, self._stop, self._results))
        self._t0 = 0.0

    def start(self, timeout: float = 120.0) -> None:
        """Start the flood process; returns once its clients are sending."""
        self._proc.start()
        if not self._ready.wait(timeout):
            raise RuntimeError(f"the flood process did not start within {timeout:.0f} s")
        self._t0 = time.perf_counter()

    def stop(self) -> FloodStats:
        """Tell every client to stop (they finish the request in flight)."""
        if not self._stop.is_set():
            self._stop.set()
            self.stats.seconds = time.perf_counter() - self._t0
        return self.stats

    def join(self, timeout: float = 90.0) -> FloodStats:
        """Wait for the flood process; returns the counts."""
        self.stop()
        try:
            self.stats.statuses.update(self._results.get(timeout=timeout))
        except Exception:  # noqa: BLE001 - the process died: what it sent is unknown
            self.stats.statuses["flood process lost"] += 1
        self._proc.join(timeout=10)
        if self._proc.is_alive():
            self._proc.kill()
        return self.stats


def admin_sign_in_s(url: str, password: str) -> float:
    """Seconds until ``/admin_studies`` with ``password`` returns its result (raises if it fails)."""
    from bench.reader_client import HttpClient

    client = HttpClient(url, timeout=60.0)
    try:
        t0 = time.perf_counter()
        markdown, _ = client.predict(password, api_name="/admin_studies")
        if "| id |" not in markdown:
            raise RuntimeError(f"unexpected admin answer: {markdown[:80]!r}")
        return time.perf_counter() - t0
    finally:
        client.close()


@dataclass
class HostileReport:
    """The readers' load report, the flood's counts and the admin's sign-in times."""

    load: Any  # bench.loadtest.LoadReport
    flood: FloodStats
    admin_during_s: float = float("nan")
    admin_after_s: float = float("nan")
    p95_limit_s: float = 2.0
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (self.load.ok and not self.errors and self.load.refused == 0
                and self.load.percentile(95) < self.p95_limit_s and self.admin_after_s < ADMIN_AFTER_LIMIT_S)

    def summary(self) -> str:
        return (f"{self.flood.summary()}\n"
                f"readers: {self.load.summary()}\n"
                f"readers' HTTP 503: {self.load.refused}, 429: {self.load.throttled}; submit p95 "
                f"{self.load.percentile(95) * 1000:.0f} ms (limit {self.p95_limit_s * 1000:.0f} ms)\n"
                f"right admin password: {self.admin_during_s * 1000:.0f} ms during the flood, "
                f"{self.admin_after_s * 1000:.0f} ms right after it (limit {ADMIN_AFTER_LIMIT_S * 1000:.0f} ms)"
                + "".join(f"\nerror: {e}" for e in self.errors)
                + f"\n-> {'OK' if self.ok else 'FAILED'}")


def run_hostile(data_dir: str | Path, clients: int = 100, readers: int = 10, seconds: float = 20.0,
                cases: int = 12, think_s: float = 0.0, double: float = 0.1, seed: int = 0,
                p95_limit_s: float = 2.0, log_path: str | Path | None = None,
                reader_client: str = "browser") -> HostileReport:
    """Serve a study from ``python app.py``, flood it while its readers read, verify (see the module docstring).

    ``reader_client``: how the readers talk to the server (:func:`bench.loadtest.run_load`): ``"browser"``
    (the web page's protocol, one session per reader) or ``"http"`` (the /call API, a session per call).
    """
    from bench.loadtest import make_study, run_load
    from bench.reader_client import HttpClient
    from bench.servers import free_port, start_server, wait_ready
    from studio.study.store import StudySettings, open_store

    data_dir = Path(data_dir)
    password = "flood-" + os.urandom(8).hex()
    store = open_store(StudySettings(data_dir=data_dir, admin_password=password))
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    log = open(log_path or data_dir / "flood-server.log", "wb")
    proc = start_server(data_dir, port, {"STUDIO_ADMIN_PASSWORD": password, "DATABASE_URL": "",
                                         "STUDIO_IMPORT_ROOT": ""}, log)
    flood = None
    try:
        created = make_study(store, readers, cases, seed)  # while the server starts
        wait_ready(url, proc)
        codes = list(created.codes.values())
        for code in codes:  # the readers were reading when the flood began
            client = HttpClient(url)
            client.predict(code, api_name="/reader_next")
            client.close()
        flood = Flood(url, clients, seed)
        flood.start()
        during: list[float] = []
        errors: list[str] = []

        def admin_midway() -> None:
            time.sleep(seconds / 2)
            try:
                during.append(admin_sign_in_s(url, password))
            except Exception as e:  # noqa: BLE001 - reported
                during.append(float("inf"))
                errors.append(f"admin sign-in during the flood failed: {e}")

        midway = threading.Thread(target=admin_midway, daemon=True)
        midway.start()
        load = run_load(url, store, codes, seconds, double=double, seed=seed, client=reader_client, think_s=think_s)
        stats = flood.stop()
        try:
            after = admin_sign_in_s(url, password)
        except Exception as e:  # noqa: BLE001 - reported
            after = float("inf")
            errors.append(f"admin sign-in after the flood failed: {e}")
        midway.join(timeout=60)
        stats = flood.join()
        if proc.poll() is not None:
            errors.append(f"the server exited with {proc.returncode} during the flood")
        return HostileReport(load, stats, during[0] if during else float("nan"), after, p95_limit_s, errors)
    finally:
        if flood is not None:
            flood.stop()
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        store.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the hostile load and print the report; 0 when every requirement held."""
    ap = argparse.ArgumentParser(prog="python -m bench.flood", description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=100, help="flood clients (wrong passwords and codes)")
    ap.add_argument("--readers", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--cases", type=int, default=12)
    ap.add_argument("--think", type=float, default=0.0, help="readers' mean seconds per case (default 0: flat out)")
    ap.add_argument("--double", type=float, default=0.1, help="fraction of answers sent twice at once")
    ap.add_argument("--p95-limit", type=float, default=2.0, help="readers' submit p95 limit in seconds")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--client", choices=["browser", "http"], default="browser",
                    help="readers' protocol: browser (the web page's, one session each; default) or http (/call API)")
    ap.add_argument("--data-dir", type=Path, default=None, help="keep the study and server log here")
    args = ap.parse_args(argv)
    tmp = None
    if args.data_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="medenhance-flood-")
        args.data_dir = Path(tmp.name)
    try:
        report = run_hostile(args.data_dir, args.clients, args.readers, args.seconds, args.cases, args.think,
                             args.double, args.seed, args.p95_limit, reader_client=args.client)
    finally:
        if tmp is not None:
            tmp.cleanup()
    print(report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
