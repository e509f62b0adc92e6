"""The run log against real SQLite files in tmp_path.

Times are constant epoch seconds; nothing reads the clock. The one test that formats times
pins TZ=Europe/Berlin.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import sqlite3
import stat
import threading
import time
from zoneinfo import ZoneInfo

import pytest

from cronsup.store.sqlite import schema as runlog_module
from cronsup.model import RunStatus, Trigger
from cronsup.runjson import run_json
from cronsup.store import (
    FAILED_STATUSES,
    DaemonState,
    JobRow,
    NewRun,
    Run,
    SqliteStore,
    RunLogError,
    RunLogMissing,
)
from cronsup.store.sqlite.schema import SCHEMA_VERSION

T = 1_764_032_400.0  # 2025-11-25 01:00:00 UTC
HOST, BOOT = "web1", "boot-1"
RUN_KEYS = [
    "id", "job", "trigger", "attempt", "scheduled_for", "started_at", "finished_at",
    "duration_s", "status", "exit_code", "signal", "pid", "host", "reason", "cpu_s", "max_rss",
    "params",
]


@pytest.fixture
def db(tmp_path):
    return str(tmp_path / "state" / "runs.db")


@pytest.fixture
def log(db):
    runlog = SqliteStore.open(db)
    yield runlog
    runlog.close()


def insert(log: SqliteStore, job: str, scheduled_for: float, **kw) -> int:
    attempt = kw.pop("attempt", 1)
    trigger = kw.pop("trigger", Trigger.SCHEDULE)
    [run_id] = log.insert_runs(
        [NewRun(job, trigger, attempt, scheduled_for, **kw)], host=HOST, boot_id=BOOT
    )
    assert run_id is not None
    return run_id


def ran(log: SqliteStore, job: str, scheduled_for: float, status: RunStatus, duration: float = 1.0,
        **kw) -> int:
    """A run that started at its scheduled time and finished `duration` later with `status`."""
    run_id = insert(log, job, scheduled_for, **kw)
    log.mark_started(run_id, 4242, scheduled_for - 0.5, scheduled_for)
    log.finish_run(run_id, status, finished_at=scheduled_for + duration,
                   exit_code=0 if status is RunStatus.SUCCESS else 1,
                   reason=None if status is RunStatus.SUCCESS else f"{status} reason")
    return run_id


def never_ran(log: SqliteStore, job: str, scheduled_for: float, status: RunStatus) -> int:
    return insert(log, job, scheduled_for, status=status, finished_at=scheduled_for,
                  reason=f"{status} reason")


def hold_lock(db: str, statement: str, seconds: float, *, journal_mode: str | None = None):
    """Hold `statement`'s lock on `db` from another connection in a thread for `seconds`."""
    locked = threading.Event()

    def hold():
        conn = sqlite3.connect(db, isolation_level=None)
        if journal_mode:
            conn.execute(f"PRAGMA journal_mode={journal_mode}")
        conn.execute(statement)
        conn.execute("UPDATE kv SET value = value")  # make it a real write transaction
        locked.set()
        time.sleep(seconds)
        conn.execute("COMMIT")
        conn.close()

    thread = threading.Thread(target=hold)
    thread.start()
    assert locked.wait(5)
    return thread


def corrupt_files(directory) -> list[str]:
    return sorted(name for name in os.listdir(directory) if ".corrupt-" in name)


# -- schema and files ---------------------------------------------------------------------------


def test_a_new_run_log_is_at_the_current_schema_version(log, db):
    assert log.schema_version() == SCHEMA_VERSION == len(runlog_module.MIGRATIONS)
    conn = sqlite3.connect(db)
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    indexes = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"runs", "outputs", "daemon", "jobs", "paused", "kv"} <= tables
    assert {"runs_job_id", "runs_running", "runs_job_status_id"} <= indexes
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_a_new_migration_step_is_applied_to_an_existing_log_and_keeps_its_runs(db, monkeypatch):
    with SqliteStore.open(db) as runlog:
        run_id = insert(runlog, "backup", T)
    step = ("ALTER TABLE runs ADD COLUMN note TEXT", "CREATE TABLE extra (x INTEGER)")
    monkeypatch.setattr(runlog_module, "MIGRATIONS", runlog_module.MIGRATIONS + [step])
    monkeypatch.setattr(runlog_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with SqliteStore.open(db) as runlog:
        assert runlog.schema_version() == SCHEMA_VERSION + 1
        assert runlog.run(run_id).job == "backup"
        runlog._conn.execute("SELECT note FROM runs").fetchall()


def test_a_failing_migration_changes_nothing(db, monkeypatch):
    SqliteStore.open(db).close()
    step = ("CREATE TABLE extra (x INTEGER)", "THIS IS NOT SQL")
    monkeypatch.setattr(runlog_module, "MIGRATIONS", runlog_module.MIGRATIONS + [step])
    monkeypatch.setattr(runlog_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with pytest.raises(RunLogError, match=re.escape(db)):
        SqliteStore.open(db)
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'extra'").fetchone() is None
    conn.close()


def test_a_run_log_from_a_newer_cronsup_is_refused_and_left_alone(db, tmp_path):
    SqliteStore.open(db).close()
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    conn.close()
    with pytest.raises(RunLogError, match="written by a newer cronsup"):
        SqliteStore.open(db)
    with pytest.raises(RunLogError, match="written by a newer cronsup"):
        SqliteStore.open(db, readonly=True)
    assert corrupt_files(os.path.dirname(db)) == []
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 5
    conn.close()


def test_the_file_is_0600_and_a_new_directory_0700(log, db):
    insert(log, "backup", T)  # so the -wal and -shm files exist
    assert stat.S_IMODE(os.stat(os.path.dirname(db)).st_mode) == 0o700
    for name in (db, db + "-wal", db + "-shm"):
        assert stat.S_IMODE(os.stat(name).st_mode) == 0o600, name


def test_an_existing_directory_keeps_its_mode(tmp_path):
    directory = tmp_path / "shared"
    directory.mkdir()
    os.chmod(directory, 0o755)
    SqliteStore.open(directory / "runs.db").close()
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o755


def test_a_path_that_is_a_directory_is_a_clear_error(tmp_path):
    with pytest.raises(RunLogError, match=re.escape(str(tmp_path))):
        SqliteStore.open(tmp_path)


# -- the unique key -----------------------------------------------------------------------------


def test_a_second_insert_of_the_same_job_time_and_attempt_returns_none(log):
    first = log.insert_runs([NewRun("backup", Trigger.SCHEDULE, 1, T)], host=HOST, boot_id=BOOT)
    again = log.insert_runs(
        [NewRun("backup", Trigger.SCHEDULE, 1, T), NewRun("backup", Trigger.RETRY, 2, T),
         NewRun("report", Trigger.SCHEDULE, 1, T)],
        host=HOST, boot_id=BOOT,
    )
    assert first[0] is not None
    assert again[0] is None
    assert again[1] is not None and again[2] is not None
    assert len({first[0], again[1], again[2]}) == 3
    assert [r.attempt for r in log.runs("backup")] == [2, 1]


def test_the_unique_key_holds_across_a_reopen(db):
    with SqliteStore.open(db) as runlog:
        insert(runlog, "backup", T)
    with SqliteStore.open(db) as runlog:
        assert runlog.insert_runs([NewRun("backup", Trigger.SCHEDULE, 1, T)],
                                  host=HOST, boot_id="boot-2") == [None]


def test_insert_runs_records_a_thousand_runs_in_one_synced_transaction(log):
    statements = []
    log._conn.set_trace_callback(statements.append)
    started = time.perf_counter()
    ids = log.insert_runs(
        [NewRun(f"job-{i}", Trigger.SCHEDULE, 1, T) for i in range(1000)], host=HOST, boot_id=BOOT
    )
    elapsed = time.perf_counter() - started
    log._conn.set_trace_callback(None)
    assert len(set(ids)) == 1000 and None not in ids
    control = [s for s in statements if not s.startswith("INSERT")]
    assert control == ["PRAGMA synchronous=FULL", "BEGIN IMMEDIATE", "COMMIT",
                       "PRAGMA synchronous=NORMAL"]
    assert log._conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL again
    assert elapsed < 2.0
    assert len(log.job_names()) == 1000


# -- writing and reading runs -------------------------------------------------------------------


def test_a_finished_run_and_its_output_round_trip(log):
    run_id = insert(log, "backup", T)
    assert log.mark_started(run_id, 4242, T - 0.25, T + 0.5)
    log.save_output(run_id, b"partial", False)
    log.save_output(run_id, b"line 1\nline 2\n", True)  # replaces
    assert log.finish_run(run_id, RunStatus.FAILED, finished_at=T + 13.0, exit_code=3,
                          reason="exit code 3", cpu_s=0.5, max_rss=1 << 20)
    run = log.run(run_id)
    assert run == Run(
        id=run_id, job="backup", trigger=Trigger.SCHEDULE, attempt=1, scheduled_for=T,
        started_at=T + 0.5, finished_at=T + 13.0, status=RunStatus.FAILED, exit_code=3,
        signal=None, pid=4242, pid_start=T - 0.25, host=HOST, boot_id=BOOT,
        reason="exit code 3", cpu_s=0.5, max_rss=1 << 20, output_truncated=True,
    )
    assert run.duration_s == 12.5
    assert log.output(run_id) == (b"line 1\nline 2\n", True)
    assert log.output(run_id + 1) is None and log.run(run_id + 1) is None


def test_finish_run_completes_a_running_run_only_once(log):
    run_id = insert(log, "backup", T)
    assert log.finish_run(run_id, RunStatus.SUCCESS, finished_at=T + 1, exit_code=0)
    assert not log.finish_run(run_id, RunStatus.KILLED, finished_at=T + 2, signal=9)
    assert log.run(run_id).status is RunStatus.SUCCESS
    assert not log.mark_started(run_id, 1, None, T + 3)
    with pytest.raises(ValueError):
        log.finish_run(run_id, RunStatus.RUNNING, finished_at=T)


def test_mark_started_many_and_finish_runs_lost(log):
    a, b, c = (insert(log, job, T) for job in ("a", "b", "c"))
    assert log.mark_started_many([(a, 10, T, T + 1), (b, 11, T, T + 1)]) == 2
    assert [(r.id, r.pid) for r in log.running_runs()] == [(a, 10), (b, 11), (c, None)]
    log.finish_run(c, RunStatus.ERROR, finished_at=T + 1, reason="no such user: bob")
    assert log.finish_runs_lost([a, b, c], "the daemon stopped while it ran", T + 60) == 2
    lost = log.run(a)
    assert lost.status is RunStatus.LOST and lost.reason == "the daemon stopped while it ran"
    assert log.running() == []
    assert log.run(c).status is RunStatus.ERROR


@pytest.fixture
def berlin(monkeypatch):
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    yield ZoneInfo("Europe/Berlin")
    monkeypatch.undo()
    time.tzset()


def test_to_json_has_exactly_the_spec_run_shape(log, berlin):
    # 2025-11-25 02:00 in Berlin is CET (+01:00).
    t = dt.datetime(2025, 11, 25, 2, 0, tzinfo=berlin).timestamp()
    run_id = insert(log, "backup", t)
    log.mark_started(run_id, 4242, t, t + 0.4)
    log.finish_run(run_id, RunStatus.SUCCESS, finished_at=t + 12.9, exit_code=0)
    data = run_json(log.run(run_id))
    assert list(data) == RUN_KEYS
    assert data == {
        "id": run_id, "job": "backup", "trigger": "schedule", "attempt": 1,
        "scheduled_for": "2025-11-25T02:00:00+01:00",
        "started_at": "2025-11-25T02:00:00+01:00",
        "finished_at": "2025-11-25T02:00:12+01:00",
        "duration_s": 12.5, "status": "success", "exit_code": 0, "signal": None,
        "pid": 4242, "host": HOST, "reason": None, "cpu_s": None, "max_rss": None, "params": {},
    }
    assert type(data["status"]) is str and type(data["trigger"]) is str


def test_to_json_keeps_nulls_and_the_offset_of_each_instant(log, berlin):
    # 2025-10-26 02:30 happens twice in Berlin: first at +02:00, then (fold=1) at +01:00.
    second = dt.datetime(2025, 10, 26, 2, 30, fold=1, tzinfo=berlin).timestamp()
    run_id = never_ran(log, "backup", second, RunStatus.MISSED)
    data = run_json(log.run(run_id))
    assert data["scheduled_for"] == "2025-10-26T02:30:00+01:00"
    assert data["started_at"] is None and data["duration_s"] is None
    assert data["pid"] is None and data["exit_code"] is None
    assert data["status"] == "missed" and data["reason"] == "missed reason"
    summer = dt.datetime(2025, 7, 1, 12, 0, tzinfo=berlin).timestamp()
    never_ran(log, "report", summer, RunStatus.SKIPPED)
    assert run_json(log.runs("report")[0])["scheduled_for"] == "2025-07-01T12:00:00+02:00"


def test_to_json_adds_output_and_truncation_when_given_output(log):
    run_id = ran(log, "backup", T, RunStatus.SUCCESS)
    log.save_output(run_id, b"caf\xc3\xa9 \xff\n", True)
    data, truncated = log.output(run_id)
    out = run_json(log.run(run_id), data)
    assert list(out) == RUN_KEYS + ["output", "output_truncated"]
    assert out["output"] == "café \ufffd\n" and out["output_truncated"] is True
    assert list(run_json(log.run(run_id), b"")) == RUN_KEYS + ["output", "output_truncated"]


def test_runs_lists_a_jobs_runs_newest_first_with_filters(log):
    statuses = [RunStatus.SUCCESS, RunStatus.FAILED, RunStatus.SKIPPED, RunStatus.TIMEOUT,
                RunStatus.KILLED, RunStatus.SUCCESS, RunStatus.LOST, RunStatus.ERROR]
    ids = []
    for i, status in enumerate(statuses):
        if status in (RunStatus.SKIPPED, RunStatus.MISSED):
            ids.append(never_ran(log, "backup", T + 60 * i, status))
        else:
            ids.append(ran(log, "backup", T + 60 * i, status))
    ids.append(never_ran(log, "backup", T + 600, RunStatus.MISSED))
    running = insert(log, "backup", T + 660)
    ran(log, "other", T, RunStatus.FAILED)
    ids.append(running)

    assert [r.id for r in log.runs("backup")] == ids[::-1]
    assert [r.id for r in log.runs("backup", limit=3)] == ids[::-1][:3]
    assert len(log.runs("backup", limit=None)) == len(ids)
    failed = log.runs("backup", failed=True)
    assert {r.status for r in failed} <= set(FAILED_STATUSES)
    assert [r.status for r in failed] == [
        RunStatus.MISSED, RunStatus.ERROR, RunStatus.LOST, RunStatus.KILLED, RunStatus.TIMEOUT,
        RunStatus.FAILED,
    ]
    assert [r.status for r in log.runs("backup", failed=True, limit=2)] == [
        RunStatus.MISSED, RunStatus.ERROR]
    assert [r.id for r in log.runs("backup", since=T + 420)] == [running, ids[-2], ids[7]]
    assert [r.id for r in log.runs("backup", before_id=ids[2], limit=5)] == [ids[1], ids[0]]
    # --follow: what came after a known id, oldest first.
    assert [r.id for r in log.runs("backup", after_id=ids[6])] == [ids[7], ids[8], running]
    assert [r.id for r in log.runs("backup", after_id=ids[0], failed=True, limit=2)] == [
        ids[1], ids[3]]
    assert log.runs("nosuchjob") == []


def test_last_runs_gives_each_jobs_latest_run(log):
    ran(log, "a", T, RunStatus.SUCCESS)
    a2 = ran(log, "a", T + 60, RunStatus.FAILED)
    b1 = ran(log, "b", T, RunStatus.SUCCESS)
    c1 = insert(log, "c", T)
    last = log.last_runs()
    assert {job: run.id for job, run in last.items()} == {"a": a2, "b": b1, "c": c1}
    assert last["c"].status is RunStatus.RUNNING
    assert log.job_names() == ["a", "b", "c"]
    assert SqliteStore.open(log.path, readonly=True).last_runs() == last


def test_stats_count_runs_that_ran_to_a_known_end_or_could_not_start(log):
    ran(log, "backup", T, RunStatus.SUCCESS, duration=1)
    ran(log, "backup", T + 60, RunStatus.FAILED, duration=2)
    ran(log, "backup", T + 120, RunStatus.SUCCESS, duration=3)
    ran(log, "backup", T + 180, RunStatus.SUCCESS, duration=10)
    for i, status in enumerate((RunStatus.SKIPPED, RunStatus.MISSED, RunStatus.ERROR)):
        never_ran(log, "backup", T + 240 + 60 * i, status)
    ran(log, "backup", T + 500, RunStatus.LOST, duration=999)
    insert(log, "backup", T + 600)
    # 3 successes of 4 ran and 1 error; the error has no duration.
    assert log.stats("backup") == (0.6, 2.5)
    assert log.stats("backup", n=2) == (0.5, 6.5)
    assert log.stats("nosuchjob") == (None, None)


def test_a_job_whose_runs_all_could_not_start_is_0_percent_ok(log):
    for i in range(3):
        never_ran(log, "badshell", T + 60 * i, RunStatus.ERROR)
    assert log.stats("badshell") == (0.0, None)


def test_runs_of_all_jobs_are_newest_first_with_the_same_filters(log):
    a1 = ran(log, "a", T, RunStatus.FAILED)
    b1 = ran(log, "b", T + 60, RunStatus.SUCCESS)
    a2 = ran(log, "a", T + 120, RunStatus.SUCCESS)
    b2 = never_ran(log, "b", T + 180, RunStatus.MISSED)
    assert [r.id for r in log.runs_of_all_jobs()] == [b2, a2, b1, a1]
    assert [r.id for r in log.runs_of_all_jobs(failed=True)] == [b2, a1]
    assert [r.id for r in log.runs_of_all_jobs(since=T + 100)] == [b2, a2]
    assert [r.id for r in log.runs_of_all_jobs(limit=1)] == [b2]
    assert [r.id for r in log.runs_of_all_jobs(after_id=b1)] == [a2, b2]


def test_retried_ok_names_failed_attempts_whose_retry_succeeded(log):
    first = ran(log, "flaky", T, RunStatus.FAILED)
    second = ran(log, "flaky", T, RunStatus.TIMEOUT, attempt=2, trigger=Trigger.RETRY)
    third = ran(log, "flaky", T, RunStatus.SUCCESS, attempt=3, trigger=Trigger.RETRY)
    alone = ran(log, "flaky", T + 60, RunStatus.FAILED)  # its fire was never retried
    other = ran(log, "other", T, RunStatus.SUCCESS, attempt=2)  # another job's fire
    runs = [log.run(i) for i in (first, second, third, alone, other)]
    assert log.retried_ok(runs) == {first: 3, second: 3}
    assert RUN_KEYS[-3:] == ["cpu_s", "max_rss", "params"]


def test_the_queries_the_daemon_asks_at_start(log):
    insert(log, "boot", T, trigger=Trigger.REBOOT, status=RunStatus.SUCCESS, finished_at=T)
    ran(log, "backup", T, RunStatus.SUCCESS)
    ran(log, "backup", T + 3600, RunStatus.FAILED, trigger=Trigger.CATCHUP)
    ran(log, "backup", T + 7200, RunStatus.SUCCESS, trigger=Trigger.MANUAL)
    assert log.has_run("boot", Trigger.REBOOT, BOOT)
    assert not log.has_run("boot", Trigger.REBOOT, "boot-2")
    assert log.last_scheduled("backup") == T + 3600
    assert log.last_scheduled("backup", triggers=("schedule",)) == T
    assert log.last_scheduled("nosuchjob") is None
    assert log.last_started("backup") == T + 7200
    assert log.last_started("boot") is None
    assert log.last_success_since("backup", T + 7201)
    assert not log.last_success_since("backup", T + 7202)


def test_daemon_state_jobs_pauses_and_keys_round_trip(log):
    assert log.daemon() is None and log.jobs() == [] and log.paused() == {}
    assert not log.update_daemon(last_seen=T)
    state = DaemonState(pid=99, pid_start=T - 1, started_at=T, host=HOST, boot_id=BOOT,
                        jobs_file="/etc/cronsup/jobs")
    log.set_daemon(state)
    assert log.update_daemon(config_error="jobs:3: bad minute", last_seen=T + 5)
    assert log.daemon() == DaemonState(99, T - 1, T, None, HOST, BOOT, "/etc/cronsup/jobs",
                                       "jobs:3: bad minute", T + 5)
    with pytest.raises(TypeError):
        log.update_daemon(pid=1)

    rows = [JobRow("zeta", "0 2 * * *", "backup --all", "Nightly", T + 3600, True, 12),
            JobRow("alpha", "@after", "report", "", None, False, 3)]
    log.set_jobs(rows)
    assert log.jobs() == rows  # in the order given, not sorted
    log.set_jobs(rows[1:])
    assert log.jobs() == rows[1:]

    log.set_paused("backup", True, T)
    log.set_paused("backup", True, T + 10)  # already paused: keeps the first since
    log.set_paused("report", True, T + 20)
    assert log.paused() == {"backup": T, "report": T + 20}
    log.set_paused("backup", False, T + 30)
    assert log.paused() == {"report": T + 20}

    assert log.get_kv("x") is None and log.get_kv("x", "d") == "d"
    log.set_kv("x", "1")
    assert log.get_kv("x") == "1"
    log.set_kv("x", None)
    assert log.get_kv("x") is None


def test_the_last_good_jobs_file_is_kept_byte_for_byte_with_what_runs(log, db):
    from cronsup.store import GoodJobs, RunningVersion

    assert log.good_jobs() is None and log.running_version() is None
    source = b"# Sicherung f\xfcr alle\n[job.a]\n@every 1s true\n\x00\r\n"  # not even UTF-8
    log.set_good_jobs(GoodJobs("/etc/cronsup/jobs", True, T, source))
    log.set_running_version(RunningVersion("run log", T, 1))
    with SqliteStore.open(db, readonly=True) as reader:
        assert reader.good_jobs() == GoodJobs("/etc/cronsup/jobs", True, T, source)
        assert reader.running_version() == RunningVersion("run log", T, 1)
    log.set_kv("good_jobs", "{not json")  # damaged: nothing, not an exception
    assert log.good_jobs() is None


def test_set_jobs_replaces_ten_thousand_rows_quickly(log):
    rows = [JobRow(f"job-{i}", "* * * * *", "true", "", T, True, i) for i in range(10_000)]
    started = time.perf_counter()
    log.set_jobs(rows)
    log.set_jobs(rows)
    assert time.perf_counter() - started < 2.0
    assert len(log.jobs()) == 10_000


# -- prune --------------------------------------------------------------------------------------


def test_prune_keeps_running_runs_and_the_newest_n(log):
    old_running = insert(log, "backup", T - 1)
    ids = [ran(log, "backup", T + 60 * i, RunStatus.SUCCESS) for i in range(10)]
    for run_id in ids:
        log.save_output(run_id, b"out", False)
    other = [ran(log, "report", T + 60 * i, RunStatus.SUCCESS) for i in range(2)]
    deleted = log.prune(max_runs_per_job=3, max_age_s=10 * 86400, now=T + 600)
    assert deleted == 7
    assert [r.id for r in log.runs("backup", limit=None)] == ids[-3:][::-1] + [old_running]
    assert [r.id for r in log.runs("report")] == other[::-1]
    assert all(log.output(run_id) is None for run_id in ids[:7])
    assert log.output(ids[-1]) == (b"out", False)
    assert log._conn.execute("SELECT COUNT(*) FROM outputs").fetchone()[0] == 3
    assert log.prune(max_runs_per_job=3, max_age_s=10 * 86400, now=T + 600) == 0


def test_prune_drops_old_runs_but_keeps_what_a_restart_counts_from(log):
    scheduled = [ran(log, "backup", T + 60 * i, RunStatus.SUCCESS) for i in range(3)]
    manual = ran(log, "backup", T + 400, RunStatus.SUCCESS, trigger=Trigger.MANUAL)
    old = [ran(log, "report", T + 60 * i, RunStatus.FAILED) for i in range(3)]
    new = ran(log, "report", T + 86400 * 30, RunStatus.SUCCESS)
    deleted = log.prune(max_runs_per_job=100, max_age_s=86400, now=T + 86400 * 30 + 60)
    assert deleted == 2 + 3
    # The newest run, and the latest scheduled one that catch-up counts from, stay.
    assert [r.id for r in log.runs("backup")] == [manual, scheduled[-1]]
    assert log.last_scheduled("backup") == T + 120
    assert [r.id for r in log.runs("report")] == [new]
    assert old


def test_a_wall_clock_far_ahead_does_not_age_the_history_away(log):
    # 12,000 runs of 12 jobs over the 50 days up to T, then prunes with a clock 100 days ahead.
    step = 50 * 86400 / 12_000
    log.insert_runs([NewRun(f"job{i % 12}", Trigger.SCHEDULE, 1, T - 50 * 86400 + i * step,
                            status=RunStatus.SUCCESS, started_at=T - 50 * 86400 + i * step,
                            finished_at=T - 50 * 86400 + i * step + 1) for i in range(12_000)],
                    host=HOST, boot_id=BOOT)
    assert log.prune(max_runs_per_job=1000, max_age_s=90 * 86400, now=T + 100 * 86400) == 0
    # Ages count from the newest run (plus an hour) instead: 20 days keep the last 20 days.
    newest = T - step
    cutoff = newest + runlog_module.PRUNE_CLOCK_MARGIN - 20 * 86400
    older = log._conn.execute("SELECT COUNT(*) FROM runs WHERE scheduled_for < ?", (cutoff,)).fetchone()[0]
    assert log.prune(max_runs_per_job=1000, max_age_s=20 * 86400, now=T + 100 * 86400) == older
    assert log._conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 12_000 - older > 4_000


def test_keep_size_prunes_the_oldest_output_first_and_keeps_the_rows(log):
    ids = [ran(log, "chatty", T + 60 * i, RunStatus.SUCCESS) for i in range(10)]
    for run_id in ids:
        log.save_output(run_id, b"x" * 1000, False)
    running = insert(log, "chatty", T + 3600)
    log.save_output(running, b"y" * 5000, False)
    log.prune(max_runs_per_job=1000, max_age_s=90 * 86400, now=T + 3600, max_output_bytes=9000)
    assert [log.run(i).output_pruned for i in ids] == [True] * 6 + [False] * 4
    assert log.output(ids[0]) == (b"", False) and log.output(ids[-1]) == (b"x" * 1000, False)
    assert log.output_bytes() == 9000 and len(log.runs("chatty", limit=None)) == 11
    assert run_json(log.run(ids[0]), b"")["output_pruned"] is True
    assert "output_pruned" not in run_json(log.run(ids[-1]), b"x")
    # However small the bound, a running run keeps its output.
    assert log.prune_output(1) == 4
    assert log.output(running) == (b"y" * 5000, False) and not log.run(running).output_pruned
    assert log.prune_output(1) == 0


def test_a_checkpoint_empties_the_wal_file(log, db):
    for i in range(50):
        log.save_output(ran(log, "big", T + i, RunStatus.SUCCESS), os.urandom(20_000), False)
    assert os.path.getsize(db + "-wal") > 1_000_000
    assert log.checkpoint() is True
    assert os.path.getsize(db + "-wal") == 0
    assert len(log.runs("big", limit=None)) == 50


# -- readers, corruption, locks, errors ----------------------------------------------------------


def test_a_readonly_open_of_a_missing_file_raises_run_log_missing_and_creates_nothing(tmp_path):
    path = tmp_path / "nowhere" / "runs.db"
    with pytest.raises(RunLogMissing, match=re.escape(str(path))):
        SqliteStore.open(path, readonly=True)
    assert not (tmp_path / "nowhere").exists()
    assert issubclass(RunLogMissing, RunLogError)


def test_a_readonly_log_refuses_writes(log, db):
    reader = SqliteStore.open(db, readonly=True)
    with pytest.raises(RunLogError, match="read-only"):
        reader.insert_runs([NewRun("x", Trigger.MANUAL, 1, T)], host=HOST, boot_id=BOOT)
    reader.close()


def test_a_reader_sees_the_writers_commits_and_is_not_blocked_by_its_lock(log, db):
    reader = SqliteStore.open(db, readonly=True)
    assert reader.running() == []
    run_id = insert(log, "backup", T)
    assert [r.id for r in reader.running()] == [run_id]
    log.finish_run(run_id, RunStatus.SUCCESS, finished_at=T + 1)
    assert reader.running() == [] and reader.run(run_id).status is RunStatus.SUCCESS
    thread = hold_lock(db, "BEGIN EXCLUSIVE", 0.5)
    started = time.perf_counter()
    assert reader.last_runs()["backup"].id == run_id
    assert time.perf_counter() - started < 0.4  # WAL: readers never wait for the writer
    thread.join()
    reader.close()


def test_a_file_of_random_bytes_is_moved_aside_with_a_warning(tmp_path, caplog):
    db = tmp_path / "runs.db"
    garbage = os.urandom(8192)
    db.write_bytes(garbage)
    (tmp_path / "runs.db-wal").write_bytes(b"old wal")
    with caplog.at_level(logging.WARNING, logger="cronsup.store"):
        runlog = SqliteStore.open(db, now=T)
    moved = tmp_path / "runs.db.corrupt-20251125T010000Z"
    assert moved.read_bytes() == garbage
    assert (tmp_path / "runs.db.corrupt-20251125T010000Z-wal").read_bytes() == b"old wal"
    [record] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert str(db) in record.getMessage() and str(moved) in record.getMessage()
    insert(runlog, "backup", T)
    assert runlog.job_names() == ["backup"]
    assert stat.S_IMODE(os.stat(db).st_mode) == 0o600
    runlog.close()


def test_a_damaged_run_log_is_moved_aside_and_its_bytes_kept(tmp_path, caplog):
    db = tmp_path / "runs.db"
    with SqliteStore.open(db) as runlog:
        for i in range(300):
            insert(runlog, f"job-{i % 7}", T + i)
    data = db.read_bytes()
    truncated = data[: len(data) // 2]
    db.write_bytes(truncated)
    with caplog.at_level(logging.WARNING, logger="cronsup.store"):
        SqliteStore.open(db, now=T).close()
    assert (tmp_path / "runs.db.corrupt-20251125T010000Z").read_bytes() == truncated
    # Damaged pages in the middle of a file of the right size, the same second: a new name.
    with SqliteStore.open(db) as runlog:
        for i in range(300):
            insert(runlog, f"job-{i % 7}", T + i)
    damaged = bytearray(db.read_bytes())
    damaged[4096 * 2: 4096 * 5] = os.urandom(4096 * 3)
    db.write_bytes(bytes(damaged))
    with caplog.at_level(logging.WARNING, logger="cronsup.store"):
        with SqliteStore.open(db, now=T) as runlog:
            assert runlog.job_names() == []
    assert (tmp_path / "runs.db.corrupt-20251125T010000Z-2").read_bytes() == bytes(damaged)
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 2


def test_a_readonly_open_of_a_corrupt_file_is_a_clear_error_and_moves_nothing(tmp_path):
    db = tmp_path / "runs.db"
    db.write_bytes(b"this is not a database" * 300)
    with pytest.raises(RunLogError) as caught:
        SqliteStore.open(db, readonly=True)
    assert not isinstance(caught.value, RunLogMissing)
    assert str(caught.value) == (
        f"run log {db} is corrupt or not a cronsup run log: file is not a database"
    )
    assert corrupt_files(tmp_path) == []
    assert db.read_bytes() == b"this is not a database" * 300


def test_an_empty_file_no_daemon_has_set_up_reads_as_missing(tmp_path):
    db = tmp_path / "runs.db"
    db.touch()
    with pytest.raises(RunLogMissing, match="not been initialised"):
        SqliteStore.open(db, readonly=True)


def test_a_locked_database_is_waited_for_not_treated_as_corrupt(db, caplog):
    SqliteStore.open(db).close()
    # A rollback-journal database under an EXCLUSIVE lock: even reading it must wait.
    thread = hold_lock(db, "BEGIN EXCLUSIVE", 0.5, journal_mode="DELETE")
    started = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="cronsup.store"):
        runlog = SqliteStore.open(db, busy_timeout=5.0)
    waited = time.perf_counter() - started
    thread.join()
    assert waited >= 0.3
    assert corrupt_files(os.path.dirname(db)) == [] and caplog.records == []
    insert(runlog, "backup", T)
    runlog.close()


def test_a_write_waits_for_another_writers_transaction(log, db):
    thread = hold_lock(db, "BEGIN IMMEDIATE", 0.5)
    started = time.perf_counter()
    insert(log, "backup", T)
    assert time.perf_counter() - started >= 0.3
    thread.join()


def test_a_lock_held_past_the_busy_timeout_is_an_error_not_corruption(db):
    SqliteStore.open(db).close()
    thread = hold_lock(db, "BEGIN EXCLUSIVE", 1.0, journal_mode="DELETE")
    with pytest.raises(RunLogError, match="locked") as caught:
        SqliteStore.open(db, busy_timeout=0.1)
    thread.join()
    assert caught.value.code == "SQLITE_BUSY" and not caught.value.full
    assert corrupt_files(os.path.dirname(db)) == []


def test_a_full_disk_surfaces_as_run_log_error_with_full(log, db):
    run_id = insert(log, "backup", T)
    # Test-only: cap the database at its current size, as a full disk would.
    pages = log._conn.execute("PRAGMA page_count").fetchone()[0]
    log._conn.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(RunLogError) as caught:
        log.save_output(run_id, os.urandom(256 * 1024), False)
    assert caught.value.full
    assert str(caught.value) == f"run log {db}: database or disk is full"
    # The failed transaction was rolled back; the log still works.
    assert log.output(run_id) is None
    assert log.finish_run(run_id, RunStatus.SUCCESS, finished_at=T + 1, exit_code=0)


def test_sqlite_errors_escape_only_as_run_log_errors(log):
    with pytest.raises(RunLogError, match="FOREIGN KEY constraint failed") as caught:
        log.save_output(12345, b"x", False)  # no such run
    assert not caught.value.full


def test_a_log_left_by_a_killed_daemon_opens_with_all_its_committed_runs(db):
    # The daemon dies without closing: its commits are only in the -wal file, and the -shm
    # index is stale. Readers and the next writer must still see them.
    script = (
        "import os, sys\n"
        "from cronsup.store import SqliteStore, NewRun\n"
        "from cronsup.model import Trigger\n"
        f"log = SqliteStore.open({db!r})\n"
        f"log.insert_runs([NewRun('backup', Trigger.SCHEDULE, 1, {T})], host='h', boot_id='b')\n"
        "os._exit(0)\n"
    )
    import subprocess
    import sys

    subprocess.run([sys.executable, "-c", script], check=True)
    assert os.path.getsize(db + "-wal") > 0
    with SqliteStore.open(db, readonly=True) as reader:
        assert [r.job for r in reader.running()] == ["backup"]
    with SqliteStore.open(db) as writer:
        assert writer.insert_runs([NewRun("backup", Trigger.SCHEDULE, 1, T)],
                                  host=HOST, boot_id=BOOT) == [None]
    assert corrupt_files(os.path.dirname(db)) == []


def test_stats_count_a_retried_run_as_the_success_its_last_attempt_became(log):
    ran(log, "flaky", T, RunStatus.FAILED, attempt=1)
    ran(log, "flaky", T, RunStatus.FAILED, attempt=2, trigger=Trigger.RETRY)
    ran(log, "flaky", T, RunStatus.SUCCESS, attempt=3, trigger=Trigger.RETRY)
    ran(log, "flaky", T + 60, RunStatus.FAILED, attempt=1)
    assert log.stats("flaky")[0] == 0.5
