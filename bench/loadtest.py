"""Bounded load test of the reader endpoints: many readers answering at once over HTTP.

    python -m bench.loadtest --readers 20 --seconds 60 [--think 0] [--cases 12] [--double 0.1] [--max-answers N]
    python -m bench.loadtest --processes 2 --kill-after 5 [--database-url URL]   several app processes, one killed

Starts the studio (``python app.py`` in its own process, as deployed; or
``--in-process``) on a free localhost port with a throw-away data directory
(``--data-dir`` to keep it), creates a study with one code per reader, and
lets every reader (its own thread and HTTP client; ``--client gradio`` for
``gradio_client``) answer as fast as the server allows: ``/reader_next`` once, then ``/reader_rate`` or
``/reader_choose`` per item. A fraction ``--double`` of the answers is sent
twice at once (a double click). Afterwards it checks the database: every
answer the server acknowledged is stored once with the values sent, and no
item has two answers. It prints latency percentiles of the submissions (each
one commits the answer and returns the next case) and exits 1 if anything
was lost, duplicated or failed.

``--processes N`` starts N ``python app.py`` processes on different ports
sharing one database (``--database-url``, default ``DATABASE_URL``, else the
SQLite file of the data directory) and one data directory (the images);
readers are spread over them round-robin. ``--kill-after SECONDS`` kills one
of them (SIGKILL) mid-study: its readers move to another process, which must
resume each of them exactly where it stopped (its retry of the answer in
flight is stored once). The report adds the readers interrupted and resumed.
"""

from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import argparse  # noqa: E402
import random  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable, Sequence  # noqa: E402

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from db import CRITERIA, Assignment, Preference, Rating, Reader  # noqa: E402
from studio import study  # noqa: E402
from studio.study.store import StudyStore  # noqa: E402
from bench.reader_client import _ServerGone, _answer, _call, _client
from bench.servers import free_port, start_server, wait_ready


@dataclass
class LoadReport:
    """What a load run measured and verified."""

    readers: int
    wall_s: float = 0.0
    latencies_s: list[float] = field(default_factory=list)  # one per acknowledged single submission
    answers_acknowledged: int = 0
    doubles_sent: int = 0
    doubles_flagged: int = 0  # second copies answered with duplicate=True
    refused: int = 0  # requests refused by Gradio's full queue (503) and sent again
    throttled: int = 0  # requests refused by the sign-in guard (429) and sent again after Retry-After
    errors: list[str] = field(default_factory=list)
    db_answers: int = 0
    db_duplicate_items: int = 0
    lost: int = 0
    mismatched: int = 0
    processes: int = 1
    killed: bool = False  # one process was killed (SIGKILL) mid-study
    killed_at_s: float = float("nan")  # seconds after the start
    interrupted: int = 0  # readers of the killed process still reading when it died
    resumed: int = 0  # of those, readers another process resumed exactly where they stopped

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_s, q)) if self.latencies_s else float("nan")

    @property
    def ok(self) -> bool:
        return not self.errors and self.lost == 0 and self.db_duplicate_items == 0 and self.mismatched == 0 \
            and self.db_answers == self.answers_acknowledged and self.doubles_flagged == self.doubles_sent \
            and self.resumed == self.interrupted

    def summary(self) -> str:
        rate = self.answers_acknowledged / self.wall_s if self.wall_s else 0.0
        return (f"{self.readers} concurrent readers, {self.wall_s:.1f} s: {self.answers_acknowledged} answers "
                f"acknowledged ({rate:.1f}/s), {self.doubles_sent} sent twice ({self.doubles_flagged} flagged duplicate)\n"
                f"submit latency: p50 {self.percentile(50) * 1000:.0f} ms, p95 {self.percentile(95) * 1000:.0f} ms, "
                f"max {max(self.latencies_s, default=float('nan')) * 1000:.0f} ms; "
                f"{self.refused} requests refused as 'queue full' (503) and {self.throttled} throttled (429), "
                "sent again\n"
                f"database: {self.db_answers} answers, {self.db_duplicate_items} items with more than one answer, "
                f"{self.lost} acknowledged answers missing, {self.mismatched} stored with other values"
                + (f"\n{self.processes} app processes; one killed (SIGKILL) after {self.killed_at_s:.1f} s: "
                   f"{self.interrupted} of its readers interrupted, {self.resumed} resumed on another process"
                   if self.killed else (f"\n{self.processes} app processes" if self.processes > 1 else ""))
                + f"\n{len(self.errors)} errors -> {'OK' if self.ok else 'FAILED'}")


def synthetic_images(folder: Path, n: int, size: int = 32) -> list[Path]:
    """``n`` small grayscale PNGs with smooth patterns (cases of a load-test study)."""
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    paths = []
    for i in range(n):
        img = 0.5 + 0.4 * np.sin(xx / (2.0 + i % 5)) * np.cos(yy / (3.0 + i % 3))
        p = folder / f"case{i:03d}.png"
        Image.fromarray((img * 255).astype(np.uint8)).save(p)
        paths.append(p)
    return paths


def make_study(store: StudyStore, readers: int, cases: int = 12, seed: int = 0,
               models: Sequence[str] = ("clahe", "median")) -> study.CreatedStudy:
    """A Likert + 2AFC study on synthetic images with one code per reader."""
    with tempfile.TemporaryDirectory(prefix="medenhance-load-") as tmp:
        files = synthetic_images(Path(tmp), cases)
        return study.create_study(store, study.StudyDesign(name=f"load test ({readers} readers)", design="both",
                                                           models=tuple(models), readers=readers, seed=seed), files)


def run_load(url: str | Sequence[str], store: StudyStore, codes: Sequence[str], seconds: float,
             max_answers: int | None = None, double: float = 0.1, seed: int = 0, client: str = "http",
             think_s: float = 0.0, kill: Callable[[], None] | None = None, kill_after_s: float | None = None,
             kill_after_answers: int | None = None) -> LoadReport:
    """Let every code answer concurrently for ``seconds`` (or ``max_answers`` each), then verify.

    Args:
        url: the running studio (``demo.local_url``), or several processes serving one database:
            reader ``i`` starts on ``url[i % len(url)]``.
        store: the same database the servers use (to verify what was stored).
        codes: one access code per simulated reader.
        client: ``"http"`` (:class:`HttpClient` on the /call API), ``"browser"`` (:class:`HttpClient` with the
            browser's queue protocol and one session per reader) or ``"gradio"`` (``gradio_client.Client``).
        think_s: mean pause between a reader's answers (uniform 0 … 2 x think_s); 0 = as fast as possible.
        kill: kills the process serving ``url[0]`` (SIGKILL); called once, when ``kill_after_s`` seconds
            have passed or ``kill_after_answers`` answers were acknowledged, whichever comes first. Its
            readers then sign in on the next process with the same code, must find themselves exactly
            where they stopped, send the answer that was in flight again and read on.
    """
    urls = [url] if isinstance(url, str) else list(url)
    client_kind = client
    report = LoadReport(readers=len(codes), processes=len(urls))
    lock = threading.Lock()
    sent: dict[str, tuple[str, dict[str, Any]]] = {}  # item_key -> (kind, answer) for acknowledged answers
    start = threading.Barrier(len(codes) + 1)
    killed = threading.Event()
    finished = [False] * len(codes)  # reader i is done (read its quota, ran out of items or time)
    interrupted: set[int] = set()
    resumed: set[int] = set()

    def reader(index: int, code: str) -> None:
        rng = random.Random(seed * 1000 + index)
        where = urls[index % len(urls)]
        try:
            client = _client(where, client_kind)
        except Exception as e:  # noqa: BLE001 - reported, not raised
            with lock:
                report.errors.append(f"reader {index}: cannot connect: {e}")
            start.wait()
            return
        start.wait()
        deadline = time.monotonic() + seconds
        done = 0
        in_flight: tuple[str, str, dict[str, Any]] | None = None  # (item_key, kind, answer) sent, not yet acknowledged

        def call(fn: Callable[[], Any]) -> Any:
            # A failure on the killed process moves the reader; anywhere else it is a finding.
            try:
                return fn()
            except Exception:
                if killed.is_set() and where == urls[0]:
                    raise _ServerGone() from None
                raise

        def failover() -> dict[str, Any]:
            """Sign in on another process; check it resumes exactly here; retry the answer in flight."""
            nonlocal client, where
            try:
                client.close()
            except Exception:  # noqa: BLE001 - its server is gone
                pass
            with lock:
                interrupted.add(index)
            alive = urls[1:]
            where = alive[index % len(alive)]
            client = _client(where, client_kind)
            _, _, view = client.predict(code, api_name="/reader_next")
            landed = in_flight is not None and view.get("item_key") != in_flight[0]
            expected = done + (1 if landed else 0)  # the answer in flight may have committed before the kill
            if view.get("answered") != expected:
                raise RuntimeError(f"resumed on {where} at {view.get('answered')} answered, expected {expected}")
            if in_flight is not None:  # the reader clicks again: stored once, whether or not it had landed
                key, kind, answer = in_flight
                _, _, view = _call(client, code, key, kind, answer)
                if view["saved"]["duplicate"] is not landed:
                    raise RuntimeError(f"retry of the answer in flight flagged duplicate={view['saved']['duplicate']}, "
                                       f"expected {landed}")
            with lock:
                resumed.add(index)
            return view

        try:
            try:
                _, _, item = call(lambda: client.predict(code, api_name="/reader_next"))
            except _ServerGone:
                item = failover()
            while item.get("status") == "item" and time.monotonic() < deadline and (max_answers is None or done < max_answers):
                answer = _answer(rng, item)
                key, kind = item["item_key"], item["kind"]
                in_flight = (key, kind, answer)
                try:
                    if rng.random() < double:  # a double click: the same answer twice, at once
                        jobs = [_call(client, code, key, kind, answer, submit=True) for _ in range(2)]
                        results = call(lambda: [j.result(timeout=120) for j in jobs])
                        flags = sorted(r[2]["saved"]["duplicate"] for r in results)
                        with lock:
                            report.doubles_sent += 1
                            report.doubles_flagged += flags == [False, True]
                            if flags != [False, True]:
                                report.errors.append(f"reader {index}: double submission flagged {flags}")
                        item = max((r[2] for r in results), key=lambda it: it.get("answered", 0))
                    else:
                        t0 = time.perf_counter()
                        _, _, item = call(lambda: _call(client, code, key, kind, answer))
                        with lock:
                            report.latencies_s.append(time.perf_counter() - t0)
                except _ServerGone:
                    item = failover()
                in_flight = None
                with lock:
                    sent[key] = (kind, answer)
                done += 1
                if think_s > 0:
                    time.sleep(rng.uniform(0, 2 * think_s))
            with lock:  # under the killer's lock: either it counts us as interrupted and we see the kill, or neither
                finished[index] = True
                must_resume = killed.is_set() and where == urls[0]
            if must_resume:  # read its share before its next request met the dead process: it signs in again
                in_flight = None
                failover()
        except Exception as e:  # noqa: BLE001 - every failure is a finding
            with lock:
                report.errors.append(f"reader {index}: {type(e).__name__}: {e}")
        finally:
            with lock:
                finished[index] = True
                report.refused += getattr(client, "refused", 0)
                report.throttled += getattr(client, "throttled", 0)
            try:
                client.close()
            except Exception:  # noqa: BLE001
                pass

    def killer(t0: float) -> None:
        while True:
            with lock:
                due = (kill_after_s is not None and time.perf_counter() - t0 >= kill_after_s) or \
                      (kill_after_answers is not None and len(sent) >= kill_after_answers)
                if due or all(finished):
                    # Readers on the killed process that had not finished: each must be resumed.
                    report.interrupted = sum(1 for i in range(len(codes)) if i % len(urls) == 0 and not finished[i])
                    if due:
                        killed.set()  # before the kill: a failure seen from now on is the kill's
                    break
            time.sleep(0.01)
        if not killed.is_set():
            report.errors.append("the readers finished before the kill: kill earlier (--kill-after) or read longer")
            return
        report.killed, report.killed_at_s = True, time.perf_counter() - t0
        assert kill is not None
        kill()

    if kill is not None and len(urls) < 2:
        raise ValueError("killing a process needs at least two (its readers resume on another one)")
    threads = [threading.Thread(target=reader, args=(i, c), daemon=True) for i, c in enumerate(codes)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    kill_thread = threading.Thread(target=killer, args=(t0,), daemon=True) if kill is not None else None
    if kill_thread is not None:
        kill_thread.start()
    for t in threads:
        t.join(timeout=seconds + 300)
    if kill_thread is not None:
        kill_thread.join(timeout=30)
    report.wall_s = time.perf_counter() - t0
    report.answers_acknowledged = len(sent)
    report.resumed = len(resumed & interrupted)
    _verify(store, codes, sent, report)
    return report


def _verify(store: StudyStore, codes: Sequence[str], sent: dict[str, tuple[str, dict[str, Any]]],
            report: LoadReport) -> None:
    from studio.study.auth import hash_code

    hashes = [hash_code(c) for c in codes]
    with store.db.read() as s:
        reader_ids = list(s.scalars(select(Reader.id).where(Reader.code_hash.in_(hashes))))
        items = {a.item_key: a for a in s.scalars(select(Assignment).where(Assignment.reader_id.in_(reader_ids)))}
        ratings = {r.assignment_id: r for r in s.scalars(select(Rating).where(Rating.reader_id.in_(reader_ids)))}
        prefs = {p.assignment_id: p for p in s.scalars(select(Preference).where(Preference.reader_id.in_(reader_ids)))}
        dup = 0
        for model in (Rating, Preference):
            dup += len(s.execute(select(model.assignment_id).where(model.reader_id.in_(reader_ids))
                                 .group_by(model.assignment_id).having(func.count() > 1)).all())
    report.db_answers = len(ratings) + len(prefs)
    report.db_duplicate_items = dup
    for key, (kind, answer) in sent.items():
        item = items.get(key)
        row = (ratings if kind == "likert" else prefs).get(item.id) if item else None
        if row is None:
            report.lost += 1
        elif kind == "likert" and any(getattr(row, c) != answer[c] for c in CRITERIA):
            report.mismatched += 1
        elif kind == "pair" and (row.choice, row.confidence) != (answer["choice"], answer["confidence"]):
            report.mismatched += 1


def run_processes(data_dir: str | Path, database_url: str | None = None, processes: int = 2, readers: int = 20,
                  cases: int = 12, seconds: float = 60.0, max_answers: int | None = None, double: float = 0.1,
                  seed: int = 0, think_s: float = 0.0, kill_after_s: float | None = None,
                  kill_after_answers: int | None = None, client: str = "http",
                  log_dir: str | Path | None = None) -> LoadReport:
    """Serve one study from ``processes`` ``python app.py`` processes sharing one database, load it, verify.

    Every process gets the same ``STUDIO_DATA_DIR`` (the images live there whatever the database)
    and ``DATABASE_URL`` (None: the SQLite file of ``data_dir``). With ``kill_after_s`` or
    ``kill_after_answers`` the first process is killed with SIGKILL mid-study (see :func:`run_load`).
    Server output goes to ``log_dir/server-<i>.log`` (default: ``data_dir/loadtest-logs``).
    """
    from studio.study.store import StudySettings, open_store

    data_dir = Path(data_dir)
    password = os.environ.get("STUDIO_ADMIN_PASSWORD") or "loadtest-" + os.urandom(8).hex()
    store = open_store(StudySettings(data_dir=data_dir, database_url=database_url, admin_password=password))
    env = {"STUDIO_ADMIN_PASSWORD": password, "DATABASE_URL": database_url or "", "STUDIO_IMPORT_ROOT": ""}
    logs = Path(log_dir) if log_dir else data_dir / "loadtest-logs"
    logs.mkdir(parents=True, exist_ok=True)
    ports: list[int] = []
    while len(ports) < processes:  # distinct ports: free_port() can hand out the same one twice
        port = free_port()
        if port not in ports:
            ports.append(port)
    urls = [f"http://127.0.0.1:{p}/" for p in ports]
    procs: list[subprocess.Popen] = []
    files = []
    try:
        for i, port in enumerate(ports):  # all start at once; the first migration lock orders them
            files.append(open(logs / f"server-{i}.log", "wb"))
            procs.append(start_server(data_dir, port, env, files[-1]))
        created = make_study(store, readers, cases, seed)  # while the servers start
        for u, proc in zip(urls, procs):
            wait_ready(u, proc)
        print(f"study {created.study_id}: {created.cases} cases, {created.items_per_reader} items per reader; "
              f"{readers} readers on {processes} processes ({', '.join(urls)}), database "
              f"{store.db.describe()}", file=sys.stderr)

        def kill() -> None:
            os.kill(procs[0].pid, signal.SIGKILL)
            procs[0].wait(timeout=30)

        wants_kill = kill_after_s is not None or kill_after_answers is not None
        report = run_load(urls, store, list(created.codes.values()), seconds, max_answers, double, seed, client,
                          think_s, kill=kill if wants_kill else None, kill_after_s=kill_after_s,
                          kill_after_answers=kill_after_answers)
        if report.killed and procs[0].returncode != -signal.SIGKILL:
            report.errors.append(f"the killed process exited with {procs[0].returncode}, not SIGKILL")
        for i, proc in enumerate(procs[1:], start=1):
            if proc.poll() is not None:
                report.errors.append(f"process {i} ({urls[i]}) exited with {proc.returncode} during the load")
        return report
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for f in files:
            f.close()
        store.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the studio on localhost, run the load, print the report; 0 when nothing was lost or duplicated."""
    ap = argparse.ArgumentParser(prog="python -m bench.loadtest", description=__doc__.split("\n\n")[0])
    ap.add_argument("--readers", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=60.0, help="how long readers keep answering")
    ap.add_argument("--max-answers", type=int, default=None, help="stop each reader after this many answers")
    ap.add_argument("--cases", type=int, default=12, help="cases of the study (3 variants each: 3 + 3 items per case)")
    ap.add_argument("--double", type=float, default=0.1, help="fraction of answers sent twice at once")
    ap.add_argument("--think", type=float, default=0.0,
                    help="mean seconds a reader looks at a case before answering (default 0: flat out)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", type=Path, default=None, help="keep the study here (default: a temp dir, removed)")
    ap.add_argument("--database-url", default=None,
                    help="the database every process uses (default: DATABASE_URL, else SQLite in the data dir); "
                         "the load-test study stays in it: use a throw-away database")
    ap.add_argument("--processes", type=int, default=1, help="app processes serving the study (readers round-robin)")
    ap.add_argument("--kill-after", type=float, default=None, metavar="SECONDS",
                    help="SIGKILL the first process this many seconds into the load (needs --processes 2 or more)")
    ap.add_argument("--client", choices=["http", "browser", "gradio"], default="http",
                    help="http: a light client of the /call HTTP API (default); browser: the browser's queue "
                         "protocol, one session per reader; gradio: gradio_client (CPU-heavier)")
    ap.add_argument("--in-process", action="store_true",
                    help="serve from this process (shares the GIL with the clients: slower, pessimistic latencies)")
    args = ap.parse_args(argv)
    if args.processes < 1:
        ap.error("--processes must be at least 1")
    if args.kill_after is not None and args.processes < 2:
        ap.error("--kill-after needs --processes 2 or more: the killed process's readers resume on another one")
    if args.in_process and args.processes > 1:
        ap.error("--in-process serves from one process: drop --processes")
    url = (args.database_url or os.environ.get("DATABASE_URL", "")).strip() or None

    tmp = None
    if args.data_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="medenhance-loadtest-")
        args.data_dir = Path(tmp.name)
    try:
        if args.in_process:
            report = _run_in_process(args, url)
        else:
            report = run_processes(args.data_dir, url, args.processes, args.readers, args.cases, args.seconds,
                                   args.max_answers, args.double, args.seed, args.think, args.kill_after,
                                   client=args.client)
    finally:
        if tmp is not None:
            tmp.cleanup()
    print(report.summary())
    for e in report.errors[:10]:
        print("error:", e, file=sys.stderr)
    return 0 if report.ok else 1


def _run_in_process(args: argparse.Namespace, url: str | None) -> LoadReport:
    """The load against an app served from this process (``--in-process``)."""
    os.environ["STUDIO_DATA_DIR"] = str(args.data_dir)
    os.environ["DATABASE_URL"] = url or ""
    os.environ.setdefault("STUDIO_ADMIN_PASSWORD", "loadtest-" + os.urandom(8).hex())
    from studio.app import build_app
    from studio.config import Settings
    from studio.study.store import StudySettings, open_store

    store = open_store(StudySettings.from_env())  # creates the database before the app opens it
    port = free_port()
    demo = None
    try:
        settings = Settings.from_env()
        demo = build_app(settings)
        demo.queue(default_concurrency_limit=settings.concurrency, max_size=settings.queue_size)  # as app.py
        demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True)
        created = make_study(store, args.readers, args.cases, args.seed)
        print(f"study {created.study_id}: {created.cases} cases, {created.items_per_reader} items per reader; "
              f"{args.readers} readers for {args.seconds:g} s on {demo.local_url}", file=sys.stderr)
        return run_load(demo.local_url, store, list(created.codes.values()), args.seconds, args.max_answers,
                        args.double, args.seed, args.client, args.think)
    finally:
        if demo is not None:
            demo.close()
        store.close()


if __name__ == "__main__":
    sys.exit(main())
