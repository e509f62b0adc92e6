"""Kept run-log writes against a real SQLite file locked by another connection."""

from __future__ import annotations

import logging
import sqlite3

import pytest

from cronsup.model import RunStatus, Trigger
from cronsup.store import NewRun, SqliteStore
from cronsup.writequeue import WriteQueue


class Lock:
    """Another process's `BEGIN EXCLUSIVE` on the run log, from a connection of its own."""

    def __init__(self, db):
        self.conn = sqlite3.connect(db, isolation_level=None)
        self.conn.execute("BEGIN EXCLUSIVE")

    def release(self) -> None:
        self.conn.execute("ROLLBACK")
        self.conn.close()


@pytest.fixture
def db(tmp_path):
    return str(tmp_path / "runs.db")


@pytest.fixture
def log(db):
    runlog = SqliteStore.open(db)
    runlog.set_busy_timeout(0.02)
    yield runlog
    runlog.close()


def running(log: SqliteStore, n: int) -> list[int]:
    return log.insert_runs([NewRun("j", Trigger.SCHEDULE, 1, 1000.0 + i, started_at=1000.0 + i)
                            for i in range(n)], host="h", boot_id="b")


def test_a_refused_write_is_kept_and_written_in_order_once_the_lock_is_gone(log, db):
    (a, b) = running(log, 2)
    queue = WriteQueue(lambda: 0.0)
    lock = Lock(db)
    assert queue.write(log.save_output, a, b"so far", False) is None
    assert queue.write(log.finish_run, a, RunStatus.SUCCESS, finished_at=2.0, exit_code=0,
                       output=(b"all of it", False)) is None
    assert queue.write(log.finish_run, b, RunStatus.FAILED, finished_at=2.0, exit_code=1) is None
    assert len(queue) == 2  # the final output replaced the output so far
    assert queue.retry() is None and "locked" in str(queue.refusal)
    lock.release()
    assert queue.retry() == 2 and not queue and queue.refusal is None
    assert log.output(a) == (b"all of it", False) and log.run(a).status == "success"
    assert (log.run(b).status, log.run(b).exit_code) == ("failed", 1)
    assert queue.write(log.finish_run, b, RunStatus.FAILED, finished_at=3.0) is False  # written now


def test_kept_writes_are_bounded_dropping_output_before_a_runs_end(log, db, caplog):
    ids = running(log, 9)
    queue = WriteQueue(lambda: 0.0, max_writes=4, max_output=2000)
    lock = Lock(db)
    for run_id in ids[:3]:
        queue.write(log.finish_run, run_id, RunStatus.FAILED, finished_at=2.0, exit_code=3,
                    output=(b"x" * 1000, False))
    queue.write(log.update_daemon, last_seen=2000.0)
    queue.write(log.update_daemon, last_seen=2001.0)  # replaces the one before
    queue.write(log.finish_run, ids[3], RunStatus.SUCCESS, finished_at=2.0, exit_code=0)
    assert len(queue) == 4 and queue.output == 2000  # the heartbeat went first
    lock.release()
    assert queue.retry() == 4
    first = log.run(ids[0])
    assert (first.status, first.exit_code) == ("failed", 3) and log.output(ids[0]) == (b"", False)
    assert "its output (1000 bytes) was lost" in first.reason
    assert [log.output(i) for i in ids[1:3]] == [(b"x" * 1000, False)] * 2
    assert log.run(ids[3]).status == "success"
    # Past the count with nothing else to drop, the oldest end goes, and the log says so.
    lock = Lock(db)
    with caplog.at_level(logging.ERROR, logger="cronsup"):
        for run_id in ids[4:]:
            queue.write(log.finish_run, run_id, RunStatus.SUCCESS, finished_at=2.0, exit_code=0)
    lock.release()
    assert queue.retry() == 4
    assert [log.run(i).status for i in ids[4:]] == ["running"] + ["success"] * 4
    assert f"dropping the end of run {ids[4]}" in caplog.text


def test_what_is_still_kept_at_a_stop_is_logged_as_lost(log, db, caplog):
    (a,) = running(log, 1)
    queue = WriteQueue(lambda: 0.0)
    lock = Lock(db)
    queue.write(log.finish_run, a, RunStatus.SUCCESS, finished_at=2.0, exit_code=0, output=(b"hi", False))
    with caplog.at_level(logging.ERROR, logger="cronsup"):
        queue.lost()
    lock.release()
    assert f"lost at stop (run log {db} is locked" in caplog.text
    assert f"the end of run {a} (success, exit code 0, 2 bytes of output)" in caplog.text
