"""sd_notify: the Notifier alone, then the real daemon talking to a socket standing in for systemd."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import tempfile
import time
import uuid

import pytest

from conftest import wait_until
from cronsup import notify
from cronsup.notify import Notifier, Startup


@pytest.fixture
def receiver():
    """An AF_UNIX datagram socket in a short temp dir (socket paths are limited to 107 bytes)."""
    directory = tempfile.mkdtemp(prefix="cs-notify-")
    path = os.path.join(directory, "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    yield sock, path
    sock.close()
    shutil.rmtree(directory, ignore_errors=True)


def datagrams(sock: socket.socket, until, timeout: float = 15.0) -> list[str]:
    """Receive datagrams until `until(received)` is true; fail after `timeout` seconds."""
    got: list[str] = []
    deadline = time.monotonic() + timeout
    while not until(got):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out after {timeout}s; received {got}")
        sock.settimeout(left)
        try:
            got.append(sock.recv(4096).decode())
        except socket.timeout:
            continue
    return got


# -- the Notifier alone -----------------------------------------------------------------------

def test_without_notify_socket_it_is_disabled_and_sending_does_nothing():
    n = Notifier({})
    assert not n.enabled and n.watchdog_interval is None
    n.send("READY=1", "STATUS=ok")  # no socket, no error
    n.close()


def test_it_sends_each_call_as_one_datagram_of_lines(receiver):
    sock, path = receiver
    n = Notifier({"NOTIFY_SOCKET": path})
    assert n.enabled
    n.send("READY=1", "STATUS=3 jobs, 0 running")
    n.send("WATCHDOG=1")
    assert datagrams(sock, lambda got: len(got) == 2) == ["READY=1\nSTATUS=3 jobs, 0 running", "WATCHDOG=1"]
    n.close()
    assert not n.enabled


def test_an_at_sign_names_a_socket_in_the_abstract_namespace():
    name = f"cronsup-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    try:
        n = Notifier({"NOTIFY_SOCKET": "@" + name})
        n.send("READY=1")
        assert datagrams(sock, lambda got: got) == ["READY=1"]
        n.close()
    finally:
        sock.close()


def test_a_relative_notify_socket_is_ignored_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="cronsup"):
        n = Notifier({"NOTIFY_SOCKET": "notify.sock"})
    assert not n.enabled
    assert "not an absolute path" in caplog.text


def test_a_vanished_receiver_is_reported_once_not_at_every_ping(tmp_path, caplog):
    n = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    with caplog.at_level(logging.WARNING, logger="cronsup"):
        for _ in range(5):
            n.send("WATCHDOG=1")
    assert len([r for r in caplog.records if "cannot notify systemd" in r.message]) == 1
    n.close()


@pytest.mark.parametrize("environ, interval", [
    ({"WATCHDOG_USEC": "30000000"}, 15.0),  # WatchdogSec=30s: ping every 15 s
    ({"WATCHDOG_USEC": "200000"}, 0.1),
    ({"WATCHDOG_USEC": "200000", "WATCHDOG_PID": str(os.getpid())}, 0.1),
    ({"WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"}, None),  # meant for another process
    ({"WATCHDOG_USEC": "0"}, None),
    ({"WATCHDOG_USEC": "soon"}, None),
    ({"WATCHDOG_PID": str(os.getpid())}, None),
    ({}, None),
])
def test_the_watchdog_interval_is_half_of_watchdog_usec_for_this_process_only(environ, interval):
    assert Notifier(environ).watchdog_interval == interval


def test_ready_releases_a_launcher_waiting_on_the_ready_fd():
    r, w = os.pipe()
    try:
        n = Notifier({notify.READY_FD: str(w)})
        n.send("STATUS=starting")
        os.set_blocking(r, False)
        with pytest.raises(BlockingIOError):
            os.read(r, 10)  # nothing before READY=1
        n.send("READY=1", "STATUS=1 job, 0 running")
        assert os.read(r, 10) == b"\n"
        assert os.read(r, 10) == b""  # and the pipe is closed: the daemon keeps no fd to it
        n.send("READY=1")  # a second READY does not touch the closed fd
        n.close()
    finally:
        os.close(r)


def test_a_launcher_sees_ready_with_what_the_daemon_said_before_it():
    ready_r, ready_w = os.pipe()
    err_r, err_w = os.pipe()
    os.write(err_w, b"cronsup: warning: no syslog\n")
    os.write(ready_w, b"\n")
    launch = notify.await_ready(ready_r, err_r, 5)
    assert launch.startup is Startup.READY and launch.said == "cronsup: warning: no syslog\n"
    for fd in (ready_r, ready_w, err_r, err_w):
        os.close(fd)


def test_a_launcher_sees_an_exit_with_the_daemons_last_words():
    ready_r, ready_w = os.pipe()
    err_r, err_w = os.pipe()
    os.write(err_w, b"cronsup: another cronsup daemon (pid 42) is running\n")
    os.close(ready_w)
    os.close(err_w)
    launch = notify.await_ready(ready_r, err_r, 5)
    assert launch.startup is Startup.EXITED and "pid 42" in launch.said
    os.close(ready_r)
    os.close(err_r)


def test_a_launcher_gives_up_waiting_after_its_timeout():
    ready_r, ready_w = os.pipe()
    err_r, err_w = os.pipe()
    started = time.monotonic()
    assert notify.await_ready(ready_r, err_r, 0.2).startup is Startup.SLOW
    assert time.monotonic() - started < 2
    for fd in (ready_r, ready_w, err_r, err_w):
        os.close(fd)


# -- the real daemon --------------------------------------------------------------------------

def test_the_daemon_says_ready_pings_the_watchdog_and_says_stopping_in_that_order(
        daemon, receiver, monkeypatch):
    sock, path = receiver
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    daemon.write("""\
        [job.show-env]
        @every 1s env

        [job.idle]
        @daily true
        """)
    daemon.start(env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"})

    # READY=1 comes first, with a STATUS= line counting the jobs.
    got = datagrams(sock, lambda got: any("READY=1" in d for d in got))
    assert "READY=1" in got[0].splitlines(), got
    assert "STATUS=2 jobs, 0 running" in got[0].splitlines()

    # Then WATCHDOG=1 from the loop, every 0.1 s (half of 200 ms).
    started = time.monotonic()
    got = datagrams(sock, lambda got: sum(d == "WATCHDOG=1" for d in got) >= 5)
    assert time.monotonic() - started < 3, "pings should come about every 0.1 s"

    # A job's environment is built from the jobs file: systemd's variables do not leak.
    (run,) = daemon.finished("show-env")[:1]
    env = daemon.output_of(run.id).decode()
    assert "PATH=" in env
    assert "NOTIFY_SOCKET" not in env and "WATCHDOG_USEC" not in env

    daemon.send(signal.SIGTERM)
    got = datagrams(sock, lambda got: any(d.startswith("STOPPING=1") for d in got))
    assert daemon.stop() == 0
    stopping = next(d for d in got if d.startswith("STOPPING=1"))
    assert "STATUS=stopping" in stopping
    # Nothing after STOPPING=1 claims readiness again.
    assert not any("READY=1" in d for d in got)


def test_the_daemon_does_not_ping_a_watchdog_meant_for_another_pid(daemon, receiver):
    sock, path = receiver
    daemon.write("@daily true\n")
    daemon.start(env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"})
    got = datagrams(sock, lambda got: any("READY=1" in d for d in got))
    time.sleep(0.5)  # five ping intervals: long enough to see pings that should not be there
    sock.setblocking(False)
    while True:
        try:
            got.append(sock.recv(4096).decode())
        except BlockingIOError:
            break
    assert "WATCHDOG=1" not in got
    assert daemon.stop() == 0


def test_a_reload_with_errors_shows_them_on_the_status_line(daemon, receiver):
    sock, path = receiver
    daemon.write("@daily true\n")
    daemon.start(env={"NOTIFY_SOCKET": path})
    datagrams(sock, lambda got: any("READY=1" in d for d in got))
    daemon.write("@daily true\n[job.broken]\nretries = -1\n@daily true\n")
    daemon.send(signal.SIGHUP)
    got = datagrams(sock, lambda got: any("jobs file error" in d for d in got))
    status = next(d for d in got if "jobs file error" in d)
    assert status.startswith("STATUS=1 job, 0 running; jobs file error: ") and ":3: retries" in status
    assert "\n" not in status
    assert daemon.stop() == 0
    wait_until(lambda: daemon.proc.poll() is not None, 5, what="the daemon to exit")


def test_the_watchdog_is_pinged_on_time_while_another_process_locks_the_run_log(
        daemon, receiver, monkeypatch):
    import sqlite3

    sock, path = receiver
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    daemon.write("[job.tick]\n@every 1s echo tick\n")
    daemon.start(env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000"})  # a ping every 0.5 s
    datagrams(sock, lambda got: any("READY=1" in d for d in got))
    lock = sqlite3.connect(str(daemon.db), isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    pings, end = [], time.monotonic() + 4.0
    try:
        while time.monotonic() < end:
            sock.settimeout(max(0.01, end - time.monotonic()))
            try:
                if sock.recv(4096) == b"WATCHDOG=1":
                    pings.append(time.monotonic())
            except socket.timeout:
                pass
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    gaps = [b - a for a, b in zip(pings, pings[1:])]
    assert len(pings) >= 6 and max(gaps) < 0.9, gaps
    assert "database is locked" in daemon.output()
    assert daemon.stop() == 0
