"""`cronsup daemon --detach --pidfile`: the way to run it on systems without systemd."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from conftest import wait_until
from cronsup import control, report
from cronsup.store import SqliteStore, RunLogError


def alive(pid: int) -> bool:
    """The detached daemon is not our child: once it exits it may linger as a zombie
    until whatever adopted it reaps it."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class Detached:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.jobs = tmp / "jobs"
        self.db = tmp / "state" / "runs.db"
        self.pidfile = tmp / "run" / "cronsup.pid"
        self.pidfile.parent.mkdir()
        self.started: list[int] = []

    def start(self, *extra: str, db: Path | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [sys.executable, "-m", "cronsup", "daemon", "--detach", "--jobs", str(self.jobs),
             "--db", str(db or self.db), *extra],
            capture_output=True, text=True, timeout=timeout, cwd=str(self.tmp))
        if result.returncode == 0 and self.pidfile.exists():
            self.started.append(self.pid())
        return result

    def pid(self) -> int:
        return int(self.pidfile.read_text().strip())

    def successes(self, job: str) -> int:
        try:
            with SqliteStore.open(str(self.db), readonly=True) as log:
                return sum(r.status == "success" for r in log.runs(job, limit=None))
        except RunLogError:
            return 0

    def kill_all(self) -> None:
        """Every daemon this test started, found by its command line (not by a pidfile, which a
        failing test may never have seen written)."""
        for p in psutil.process_iter(["cmdline"]):
            cmdline = " ".join(p.info["cmdline"] or ())
            if "cronsup daemon" in cmdline and str(self.tmp) in cmdline:
                try:
                    p.kill()
                except psutil.NoSuchProcess:
                    pass


@pytest.fixture
def detached(tmp_path):
    d = Detached(tmp_path)
    d.jobs.write_text("[job.tick]\n@every 1s echo tick\n")
    yield d
    d.kill_all()


def test_it_returns_once_the_daemon_is_ready_and_the_pidfile_names_it(detached):
    started = time.monotonic()
    result = detached.start("--pidfile", str(detached.pidfile), "--log-file", "daemon.log")
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 10
    # Ready when the command returns, as a Type=forking service must be: no polling needed.
    pid = detached.pid()
    assert alive(pid) and pid != os.getpid()
    assert report.daemon_pid(str(detached.db)) == pid  # the run log's lock names the same pid
    assert control.request(str(detached.db) + ".sock", "ping", timeout=5)["pid"] == pid
    assert psutil.Process(pid).cwd() == "/"
    assert result.stdout == ""

    wait_until(lambda: detached.successes("tick") >= 2, 15, what="the detached daemon to run jobs")
    # A relative --log-file is relative to where the command ran, not to / where the daemon runs.
    log = (detached.tmp / "daemon.log").read_text()
    assert f"cronsup[{pid}]: INFO cronsup {pid}: " in log and "tick[" in log

    os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not alive(pid), 15, what="the daemon to stop on SIGTERM")
    assert not detached.pidfile.exists()
    assert "stopped" in (detached.tmp / "daemon.log").read_text()


def test_a_second_daemon_on_the_same_run_log_fails_before_detaching(detached):
    assert detached.start("--pidfile", str(detached.pidfile), "--log-file", "daemon.log").returncode == 0
    first = detached.pid()
    other_pidfile = detached.tmp / "run" / "other.pid"
    result = detached.start("--pidfile", str(other_pidfile), "--log-file", "daemon.log", timeout=10)
    assert result.returncode == 1
    assert result.stderr == (f"cronsup: another cronsup daemon (pid {first}) is running on "
                             f"{detached.db}; stop it first, or give this one another --db\n")
    assert not other_pidfile.exists() and detached.pid() == first and alive(first)


def test_a_pidfile_of_a_running_cronsup_is_refused_and_a_stale_one_replaced(detached, tmp_path):
    assert detached.start("--pidfile", str(detached.pidfile), "--log-file", "daemon.log").returncode == 0
    first = detached.pid()
    result = detached.start("--pidfile", str(detached.pidfile), db=tmp_path / "other" / "runs.db")
    assert result.returncode == 1 and f"names pid {first}, a running cronsup" in result.stderr

    os.kill(first, signal.SIGKILL)  # a crash leaves the pidfile behind
    wait_until(lambda: not alive(first), 10, what="the daemon to die")
    assert detached.pidfile.exists()
    result = detached.start("--pidfile", str(detached.pidfile), "--log-file", "daemon.log")
    assert result.returncode == 0, result.stderr
    assert detached.pid() != first and alive(detached.pid())


def test_an_error_after_detaching_reaches_the_terminal(detached):
    # The pidfile is written by the detached process, after the fork; its failure must still
    # be reported by the command, with exit 1, not vanish into /dev/null.
    missing = detached.tmp / "no-such-dir" / "cronsup.pid"
    result = detached.start("--pidfile", str(missing), "--log-file", "daemon.log")
    assert result.returncode == 1
    assert f"cronsup: cannot create the pidfile {missing}" in result.stderr
    assert "the daemon did not start" in result.stderr
    wait_until(lambda: report.daemon_pid(str(detached.db)) is None, 5, what="no daemon on the run log")


def test_pidfile_without_detach_is_a_usage_error(detached):
    result = subprocess.run(
        [sys.executable, "-m", "cronsup", "daemon", "--pidfile", str(detached.pidfile),
         "--jobs", str(detached.jobs), "--db", str(detached.db)],
        capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "--pidfile needs --detach" in result.stderr


def test_a_symlink_planted_as_the_pidfile_is_not_followed(detached, tmp_path):
    precious = tmp_path / "precious"
    precious.write_text("root's own data\n")
    detached.pidfile.symlink_to(precious)
    result = detached.start("--pidfile", str(detached.pidfile), "--log-file", "daemon.log")
    assert result.returncode == 1
    assert f"the pidfile {detached.pidfile} is a symbolic link; cronsup does not follow it" in result.stderr
    assert precious.read_text() == "root's own data\n"
