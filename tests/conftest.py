"""Shared fixtures: a real daemon in a temp dir, and polling with deadlines (never fixed sleeps)."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from cronsup import control, report
from cronsup.store import Run, SqliteStore, RunLogError

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A loopback port nothing listens on now: bound, never listened on, and closed (a
    connect to it is refused until something takes it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def nobody_cannot_run_cronsup() -> str:
    """Why `nobody` cannot run this checkout's cronsup ('' when it can): a clone into a
    0700 directory (`mktemp -d`) hides its .venv and source from every other user."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        return "needs root and setpriv to switch users"
    probe = subprocess.run(["setpriv", "--reuid", "nobody", "--regid", "nogroup", "--clear-groups",
                            sys.executable, "-c", "import cronsup.cli"], capture_output=True, timeout=60, cwd="/")
    return "" if probe.returncode == 0 else (
        f"user nobody cannot import this checkout's cronsup (is {sys.prefix} or a directory above "
        "it closed to other users, e.g. a clone into a mktemp -d directory?)")


def wait_until(predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.02,
               what: str = "condition") -> object:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class DaemonProcess:
    """`cronsup daemon` as an admin runs it, on a jobs file and run log in a temp dir."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.jobs = tmp / "jobs"
        self.db = tmp / "state" / "runs.db"
        self.proc: subprocess.Popen | None = None
        self.log_path = tmp / "daemon.log"
        # Every daemon a test starts mails through this stub, never the host's MTA.
        self.mailbox = tmp / "mailbox"
        self.sendmail = tmp / "stub-sendmail"
        self.sendmail.write_text(f'#!/bin/sh\necho "$@" > {self.mailbox}.args\ncat >> {self.mailbox}\n')
        self.sendmail.chmod(0o755)

    def write(self, text: str) -> None:
        self.jobs.write_text(textwrap.dedent(text))

    def start(self, *args: str, env: dict[str, str] | None = None, wait: bool = True,
              ignoring: tuple[int, ...] = (), nofile: int | tuple[int, int] | None = None,
              ) -> DaemonProcess:
        """Start the daemon; `ignoring`: signals it inherits ignored, as from nohup or `&`;
        `nofile`: its RLIMIT_NOFILE, one number for both limits or (soft, hard)."""
        environ = dict(os.environ)
        environ["CRONSUP_SENDMAIL"] = str(self.sendmail)
        environ.update(env or {})
        self._log = open(self.log_path, "ab")

        def inherit_ignored() -> None:
            for sig in ignoring:
                signal.signal(sig, signal.SIG_IGN)
            if nofile is not None:
                limits = (nofile, nofile) if isinstance(nofile, int) else nofile
                resource.setrlimit(resource.RLIMIT_NOFILE, limits)

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cronsup", "daemon", "--jobs", str(self.jobs), "--db", str(self.db), *args],
            stdout=self._log, stderr=subprocess.STDOUT, env=environ, cwd=str(self.tmp),
            preexec_fn=inherit_ignored if ignoring or nofile is not None else None)
        if wait:
            wait_until(self.ready, 15, what="the daemon to start")
        return self

    def ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"the daemon exited with {self.proc.returncode}:\n{self.output()}")
        if report.daemon_pid(str(self.db)) != self.proc.pid:
            return False
        try:  # the control socket answers once start-up (recovery included) is over
            return control.request(str(self.db) + ".sock", "ping", timeout=2)["pid"] == self.proc.pid
        except control.ControlError:
            return False

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def send(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        finally:
            self._log.close()
        return code

    def cli(self, *args: str, check: bool = False, timeout: float = 30) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [sys.executable, "-m", "cronsup", *args, "--jobs", str(self.jobs), "--db", str(self.db)],
            capture_output=True, text=True, timeout=timeout, cwd=str(self.tmp))
        if check and result.returncode != 0:
            raise AssertionError(f"cronsup {' '.join(args)} exited {result.returncode}: {result.stderr}")
        return result

    def status(self) -> dict:
        result = self.cli("status", "--json")
        # 1: the jobs file has errors, 3: no daemon, 4: one not answering; the JSON says which.
        if result.returncode not in (0, 1, 3, 4):
            raise AssertionError(f"cronsup status exited {result.returncode}: {result.stderr}")
        return json.loads(result.stdout)

    def runs(self, job: str | None = None) -> list[Run]:
        """Every run of `job` (or of all jobs), oldest first."""
        try:
            with SqliteStore.open(str(self.db), readonly=True) as log:
                names = [job] if job else log.job_names()
                found = [r for name in names for r in log.runs(name, limit=None)]
        except RunLogError:
            return []
        return sorted(found, key=lambda r: r.id)

    def finished(self, job: str, count: int = 1, timeout: float = 15) -> list[Run]:
        """Wait for `count` runs of `job` that ran and ended; return those, oldest first."""
        def enough():
            runs = [r for r in self.runs(job) if r.status not in ("running", "skipped", "missed")]
            return runs if len(runs) >= count else None
        return wait_until(enough, timeout, what=f"{count} finished runs of {job}")

    def output_of(self, run_id: int) -> bytes:
        with SqliteStore.open(str(self.db), readonly=True) as log:
            found = log.output(run_id)
        return found[0] if found else b""

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def pytest_configure(config):
    config.addinivalue_line("markers", "long: minutes of real time (a soak, an outage); `make test` "
                                       "runs them in a process of their own beside the rest")
    # A suite started as a background job of a script (`make test &`) has SIGINT ignored, and
    # every process it starts would inherit that: Python then installs no Ctrl-C handler, and
    # the tests that stop `logs --follow` or `backfill --wait` with SIGINT would hang.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session", autouse=True)
def no_host_mta(tmp_path_factory):
    """Every daemon of the suite, however started, mails through a stub (never the host's
    MTA): `cronsup daemon` reads CRONSUP_SENDMAIL, which subprocesses inherit."""
    stub = tmp_path_factory.mktemp("mail") / "sendmail"
    stub.write_text(f'#!/bin/sh\ncat >> {stub.parent}/mailbox\n')
    stub.chmod(0o755)
    before = os.environ.get("CRONSUP_SENDMAIL")
    os.environ["CRONSUP_SENDMAIL"] = str(stub)
    yield stub
    if before is None:
        os.environ.pop("CRONSUP_SENDMAIL", None)
    else:
        os.environ["CRONSUP_SENDMAIL"] = before


@pytest.fixture
def daemon(tmp_path):
    d = DaemonProcess(tmp_path)
    yield d
    d.kill()
    kill_jobs_of(str(d.db))


def kill_jobs_of(db: str) -> None:
    """SIGKILL every process still carrying this run log's mark: a test that failed halfway
    must not leave its jobs (some ignore SIGTERM) running for the rest of the suite."""
    from cronsup.paths import store_mark

    mark = b"CRONSUP_STORE=" + store_mark(db).encode()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                if mark not in f.read().split(b"\0"):
                    continue
            os.kill(int(name), signal.SIGKILL)
        except OSError:
            continue
