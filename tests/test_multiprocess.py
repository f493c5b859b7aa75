"""Two ``python app.py`` processes serving one study from one database, one of them killed mid-study.

Once on PostgreSQL and once on one SQLite file in WAL mode (the data directory's ``studies.db``,
opened by both processes): 20 concurrent readers spread over both processes, SIGKILL of the first
after a quarter of the answers. Nothing acknowledged may be lost, no item may hold two answers, and
every reader of the killed process must resume on the other one exactly where it stopped (its retry
of the answer in flight is stored once). The load is ``bench.loadtest.run_processes``, the code of
``python -m bench.loadtest --processes 2 --kill-after ...``.

Images: 2 tiny generated cases, classical models only.
"""

from __future__ import annotations

import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from study_helpers import RawDB  # noqa: E402

from bench import loadtest  # noqa: E402

READERS = 20
ANSWERS = 8  # per reader; the study has 2 cases x (3 Likert + 3 pair) = 12 items per reader


@pytest.mark.slow
def test_two_processes_one_database_survive_a_sigkill(tmp_path: Path, database_url: str, record_property) -> None:
    if make_url(database_url).get_backend_name() == "sqlite":
        # The default set-up: no DATABASE_URL, both processes open the data directory's SQLite file.
        data_dir, url = Path(make_url(database_url).database).parent, None
    else:
        data_dir, url = tmp_path / "data", database_url  # the images still live in the shared data dir
    report = loadtest.run_processes(data_dir, url, processes=2, readers=READERS, cases=2, seconds=60,
                                    max_answers=ANSWERS, double=0.2, seed=5, think_s=0.05,
                                    kill_after_answers=READERS * ANSWERS // 4, log_dir=tmp_path / "logs")
    print("\n" + report.summary())
    for name, value in (("answers", report.answers_acknowledged), ("p50_submit_ms", round(report.percentile(50) * 1000)),
                        ("p95_submit_ms", round(report.percentile(95) * 1000)), ("resumed", report.resumed)):
        record_property(name, value)
    assert not report.errors, report.errors[:3]
    assert report.killed and report.interrupted > 0  # the kill came mid-study, with readers on that process
    assert report.resumed == report.interrupted  # every interrupted reader went on on the other process
    assert report.answers_acknowledged == READERS * ANSWERS == report.db_answers
    assert report.lost == report.mismatched == report.db_duplicate_items == 0
    assert report.doubles_flagged == report.doubles_sent > 0
    assert report.ok
    # An independent count of what is stored (plain SQL, not the code under test).
    raw = RawDB(url or f"sqlite:///{data_dir / 'studies.db'}")
    try:
        stored = sum(raw.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("ratings", "preferences"))
        assert stored == READERS * ANSWERS
        for t in ("ratings", "preferences"):
            assert raw.execute(f"SELECT assignment_id FROM {t} GROUP BY assignment_id HAVING COUNT(*) > 1").fetchall() == []
        if url is None:
            assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        raw.close()
