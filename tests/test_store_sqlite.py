"""The store contract (tests/store_contract.py) run on SQLite, and SQLite's query counts."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from store_contract import *  # noqa: F401,F403 (the contract's tests, collected here)
from store_contract import BOOT, HOST, T, claim, ran

from cronsup import report
from cronsup.daemon import Daemon
from cronsup.model import RunStatus, Trigger
from cronsup.store import DaemonState, JobRow, RunLogError, SqliteStore, open_store


@pytest.fixture
def location(tmp_path):
    return str(tmp_path / "state" / "runs.db")


@pytest.fixture
def store(location):
    s = open_store(location)
    yield s
    s.close()


@pytest.fixture
def reader(store, location):
    r = open_store(location, readonly=True)
    yield r
    r.close()


def test_open_store_gives_sqlite_for_a_path_and_refuses_an_unknown_url(location):
    with open_store(location) as s:
        assert isinstance(s, SqliteStore)
    with pytest.raises(RunLogError, match="no store for mysql:// URLs"):
        open_store("mysql://db.example/cronsup")


def _fill(store, n_jobs: int) -> list[str]:
    names = [f"job{i:03d}" for i in range(n_jobs)]
    store.set_daemon(DaemonState(pid=1, pid_start=1.0, started_at=T, host=HOST, boot_id=BOOT,
                                 jobs_file="/j", last_seen=T))
    store.set_jobs([JobRow(n, "@hourly", "true", "", T + 3600, True, i + 1) for i, n in enumerate(names)])
    for n in names:
        ran(store, n, T, RunStatus.FAILED)
        ran(store, n, T + 60, RunStatus.SUCCESS, trigger=Trigger.CATCHUP)
        claim(store, n, T + 120, status=RunStatus.SKIPPED, finished_at=T + 120)
        claim(store, n, T + 180)  # running: `status` looks further back for LAST
    assert claim(store, names[0], T + 300, trigger=Trigger.REBOOT)
    return names


def _statements(store: SqliteStore, action) -> int:
    seen: list[str] = []
    store._conn.set_trace_callback(seen.append)
    try:
        action()
    finally:
        store._conn.set_trace_callback(None)
    return len(seen)


@pytest.mark.parametrize("n_jobs", [10, 200])
def test_the_daemons_start_up_history_takes_the_same_queries_for_10_and_200_jobs(tmp_path, n_jobs):
    with open_store(tmp_path / "runs.db") as store:
        names = _fill(store, n_jobs)
        daemon = Daemon(str(tmp_path / "jobs"), str(tmp_path / "runs.db"))
        daemon.log = store
        daemon.boot_id = BOOT
        daemon.jobs = SimpleNamespace(jobs=[SimpleNamespace(name=n) for n in names])
        history = {}
        count = _statements(store, lambda: history.setdefault("h", daemon._history()))
        h = history["h"]
        assert len(h.last_scheduled) == len(h.last_success) == n_jobs
        assert h.last_scheduled[names[-1]] == T + 180 and h.reboot_done == {names[0]}
        assert count == 3  # daemon row, paused jobs, one query for all the jobs' history


def traced_status(tmp_path, db, monkeypatch):
    """`status` as with a daemon running (it reads the daemon's own view: its jobs table),
    and every SQL statement it ran."""
    monkeypatch.setattr(report, "daemon_pid", lambda db_path, state_dir=None: 4242)
    counted: list[str] = []

    def traced(location, **kw):
        s = open_store(location, **kw)
        s._conn.set_trace_callback(counted.append)
        return s

    monkeypatch.setattr(report, "open_store", traced)
    return report.status(str(tmp_path / "jobs"), str(db), T + 200), counted


@pytest.mark.parametrize("n_jobs", [10, 200])
def test_status_takes_the_same_queries_for_10_and_200_jobs(tmp_path, monkeypatch, n_jobs):
    db = tmp_path / "state" / "runs.db"
    with open_store(db) as store:
        names = _fill(store, n_jobs)
    st, counted = traced_status(tmp_path, db, monkeypatch)
    assert [j.name for j in st.jobs] == names
    assert all(j.last_finished.scheduled_for == T + 60 and j.running for j in st.jobs)
    assert st.jobs[0].success_rate == 0.5
    # The same for 10 jobs and for 200 (the last three: the internal error count, cron's files,
    # the failing alert channels).
    assert len(counted) == 11


def test_the_sqlite_store_has_every_method_of_the_protocol():
    from cronsup.store import RunStore

    wanted = {n for n in dir(RunStore) if not n.startswith("_") and callable(getattr(RunStore, n))}
    assert wanted >= {"insert_runs", "finish_run", "history", "follow", "stats_many"}
    assert not [n for n in wanted if not callable(getattr(SqliteStore, n, None))]


def test_a_sibling_connection_keeps_the_other_connections_locks_through_an_outside_lock(tmp_path):
    import subprocess
    import sys

    path = str(tmp_path / "runs.db")
    with SqliteStore.open(path) as store:
        store.set_busy_timeout(0.1)
        sibling = store.sibling()
        sibling.pending_deliveries()
        locker = subprocess.Popen(
            [sys.executable, "-c", "import sqlite3, sys; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
             "c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); sys.stdin.readline(); "
             "c.execute('ROLLBACK'); c.close()", path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert locker.stdout.readline() == "locked\n"
        with pytest.raises(RunLogError):
            store.set_kv("during", "1")
        locker.communicate("\n", timeout=30)
        store.set_kv("after", "1")
        # Another process sees the write: the daemon's -wal was not taken for unused and reset.
        with SqliteStore.open(path, readonly=True) as reader:
            assert reader.get_kv("after") == "1"
        sibling.close()


@pytest.mark.parametrize("n_jobs", [10, 200])
def test_status_takes_one_query_more_when_some_jobs_have_retried_fires_whatever_their_number(
        tmp_path, monkeypatch, n_jobs):
    db = tmp_path / "state" / "runs.db"
    with open_store(db) as store:
        names = _fill(store, n_jobs)
        for n in names[::5]:  # 20 runs and a retried fire: its rate reads past the newest 20
            for k in range(1, 20):
                ran(store, n, T - 60 * k, RunStatus.SUCCESS)
            ran(store, n, T - 60, RunStatus.SUCCESS, attempt=2, trigger=Trigger.RETRY)
    st, counted = traced_status(tmp_path, db, monkeypatch)
    rates = [j.success_rate for j in st.jobs]
    assert rates[1:5] == [0.5] * 4  # T failed, T+60 succeeded
    assert rates[0] == 1.0  # the 20 newest fires by id: the retried one and 19 successes
    assert len(counted) == 12  # as above, and the retried jobs' runs further back


STATUS_MODULES = """
import runpy, sys
sys.argv = ["cronsup", *sys.argv[1:]]
try:
    runpy.run_module("cronsup", run_name="__main__")
except SystemExit:
    pass
print("MODULES", " ".join(sorted(sys.modules)))
"""

# What `status` has no use for: another store's driver, the alerts' HTTP client, the web
# view's and the metrics' libraries (each costs a command tens of milliseconds to import).
NOT_FOR_STATUS = {"urllib3", "jinja2", "starlette", "uvicorn", "prometheus_client", "cronsup.channels",
                  "cronsup.web", "cronsup.metrics"}


def status_modules(*args: str) -> set[str]:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", STATUS_MODULES, "status", *args],
                          capture_output=True, text=True, timeout=60)
    line = next(x for x in done.stdout.splitlines() if x.startswith("MODULES "))
    return set(line.split()[1:])


def test_status_over_sqlite_imports_neither_the_postgresql_store_nor_the_alerts_web_or_metrics_libraries(tmp_path):
    db = tmp_path / "runs.db"
    with open_store(db) as store:
        _fill(store, 3)
    (tmp_path / "jobs").write_text("@hourly true\n")
    loaded = status_modules("--json", "--jobs", str(tmp_path / "jobs"), "--db", str(db))
    assert "cronsup.report" in loaded and "cronsup.store.sqlite.store" in loaded
    assert not loaded & (NOT_FOR_STATUS | {"psycopg", "cronsup.store.postgres.store"})
