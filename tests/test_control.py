"""The control socket, against the real daemon: who may talk to it, and what it makes of
requests that are malformed, too big, or never come."""

from __future__ import annotations

import json
import os
import pwd
import socket
import stat
import time

import pytest

from conftest import DaemonProcess, wait_until
from cronsup import control, paths


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    d = DaemonProcess(tmp_path_factory.mktemp("control"))
    d.write("[job.backup]\n@every 1h true\n")
    d.start()
    yield d
    d.kill()


def sock_path(d: DaemonProcess) -> str:
    return paths.control_socket(str(d.db))


def connect(d: DaemonProcess, timeout: float = 10) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sock_path(d))  # blocking: waits for room in a full backlog
    s.settimeout(timeout)
    return s


def exchange(d: DaemonProcess, data: bytes) -> dict:
    """Send raw bytes, read the one line of JSON that comes back."""
    with connect(d) as s:
        s.sendall(data)
        return json.loads(read_line(s))


def read_line(s: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_a_well_formed_request_is_answered(running):
    assert control.request(sock_path(running), "ping")["pid"] == running.proc.pid


def test_a_request_that_is_not_json_is_refused(running):
    answer = exchange(running, b"run backup\n")
    assert answer == {"ok": False, "error": "malformed request: not JSON"}


def test_an_unknown_op_is_refused_and_a_command_line_is_never_an_op(running):
    answer = exchange(running, b'{"op": "exec", "job": "backup"}\n')
    assert answer["ok"] is False and "op must be one of" in answer["error"]
    answer = exchange(running, b'{"op": "run", "job": "backup", "command": "rm -rf /"}\n')
    assert answer["ok"] is False and "unknown fields ['command']" in answer["error"]
    assert exchange(running, b'["run", "backup"]\n')["ok"] is False


def test_a_job_operation_without_a_job_is_refused(running):
    for op in ("run", "pause", "resume"):
        answer = exchange(running, json.dumps({"op": op}).encode() + b"\n")
        assert answer == {"ok": False, "error": f"malformed request: {op} needs a job name"}
    assert exchange(running, b'{"op": "run", "job": 42}\n')["ok"] is False
    answer = exchange(running, b'{"op": "run", "job": "nope"}\n')
    assert answer["kind"] == "unknown_job" and "no job named 'nope'" in answer["error"]
    assert running.runs("backup") == []  # nothing above started anything


def test_a_request_over_4096_bytes_is_refused(running):
    big = json.dumps({"op": "run", "job": "x" * 5000}).encode() + b"\n"
    answer = exchange(running, big)
    assert answer == {"ok": False, "error": "request larger than 4096 bytes"}
    # The same without a newline: refused as soon as it passes the bound, not read forever.
    with connect(running) as s:
        s.sendall(b"{" * (control.MAX_REQUEST + 1))
        assert json.loads(read_line(s))["error"] == "request larger than 4096 bytes"


def test_a_silent_client_is_dropped_after_the_timeout_while_another_is_served(running):
    silent = connect(running, timeout=control.REQUEST_TIMEOUT + 10)
    try:
        t0 = time.monotonic()
        assert control.request(sock_path(running), "ping")["ok"] is True
        assert time.monotonic() - t0 < 1.0  # the silent one does not hold the daemon up
        answer = read_line(silent)  # blocks until the daemon gives up on it
        waited = time.monotonic() - t0
        assert json.loads(answer)["error"].startswith("no whole request within")
        assert silent.recv(1) == b""  # and closed
        assert control.REQUEST_TIMEOUT - 0.5 <= waited < control.REQUEST_TIMEOUT + 5
    finally:
        silent.close()


def test_the_socket_is_private_and_lives_beside_the_run_log(running):
    path = sock_path(running)
    assert path == str(running.db) + ".sock"
    assert stat.S_ISSOCK(os.stat(path).st_mode) and os.stat(path).st_mode & 0o777 == 0o600
    assert os.stat(os.path.dirname(path)).st_mode & 0o777 == 0o700


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to another uid")
def test_a_client_of_another_uid_is_refused(running):
    nobody = pwd.getpwnam("nobody")
    directory = os.path.dirname(sock_path(running))
    os.chmod(directory, 0o711)  # let nobody reach the socket, so SO_PEERCRED is what refuses
    os.chmod(sock_path(running), 0o666)
    # pytest's temp dirs above it are 0700: the child goes through a directory fd opened
    # as root, so only the socket's own directory and the socket need to let nobody in.
    dirfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    r, w = os.pipe()
    try:
        pid = os.fork()
        if pid == 0:  # the child: become nobody, ask, report the answer through the pipe
            try:
                os.close(r)
                os.setgroups([])
                os.setgid(nobody.pw_gid)
                os.setuid(nobody.pw_uid)
                via = f"/proc/self/fd/{dirfd}/{os.path.basename(sock_path(running))}"
                try:
                    control.request(via, "pause", "backup", timeout=5)
                    message = "accepted"
                except control.ControlError as e:
                    message = str(e)
                os.write(w, message.encode())
            finally:
                os._exit(0)
        os.close(w)
        _, status = os.waitpid(pid, 0)
        answer = os.read(r, 4096).decode()
    finally:
        os.close(r)
        os.close(dirfd)
        os.chmod(directory, 0o700)
        os.chmod(sock_path(running), 0o600)
    assert os.waitstatus_to_exitcode(status) == 0
    assert answer.startswith(f"permission denied: uid {nobody.pw_uid} may not control this daemon"), answer
    assert not any(j["paused"] for j in running.status()["jobs"])
    assert control.request(sock_path(running), "ping")["ok"] is True  # still serving


def test_a_stale_socket_from_a_crashed_daemon_does_not_stop_a_new_one(daemon):
    daemon.write("[job.a]\n@every 1h true\n")
    daemon.db.parent.mkdir(mode=0o700)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(sock_path(daemon))  # bound and closed without unlink: what a SIGKILL leaves
    stale.close()
    with pytest.raises(control.NoDaemon):
        control.request(sock_path(daemon), "ping")
    daemon.start()  # waits for a ping answered by this daemon
    result = daemon.cli("pause", "a")
    assert result.returncode == 0, result.stderr


def test_a_daemon_killed_with_sigkill_leaves_a_socket_the_next_one_replaces(daemon):
    daemon.write("[job.a]\n@every 1h true\n")
    daemon.start()
    daemon.kill()
    assert os.path.exists(sock_path(daemon))
    assert daemon.cli("reload").returncode == 3  # nobody answers it: "no daemon"
    daemon.start()
    assert daemon.cli("reload").returncode == 0


def test_a_second_daemon_on_the_same_run_log_is_refused_clearly(running):
    result = running.cli("daemon", timeout=30)
    assert result.returncode == 1
    assert f"another cronsup daemon (pid {running.proc.pid}) is running on {running.db}" in result.stderr
    assert "give this one another --db" in result.stderr
    assert control.request(sock_path(running), "ping")["pid"] == running.proc.pid  # undisturbed


def test_a_request_to_no_socket_is_no_daemon(tmp_path):
    with pytest.raises(control.NoDaemon):
        control.request(str(tmp_path / "runs.db.sock"), "ping")


@pytest.mark.parametrize("line", [
    b'{"op": []}', b'{"op": {}}', b'{"op": 1}', b'{"op": null}', b'{"op": NaN}',
    b'[' * 4000, b'{"a":' * 800, b'[' * 2000 + b']' * 2000,
    b'{"op": "run", "job": []}', b'{"op": "run", "job": {}}', b'{"op": "run", "job": "a b"}',
    b'{"op": "run", "job": "../x"}', b'{"op": "ping", "job": null}',
    b'{"op": "run", "job": "a", "x": [[[[[[1]]]]]]}', b'1' * 4000, b'1e999999', b'"op"',
    b'\xff\xfe\x00garbage', b'{"op": "\\ud800"}', b'\x00' * 100,
], ids=lambda line: repr(line[:24]))
def test_a_request_of_the_wrong_shape_is_refused_and_the_daemon_goes_on(running, line):
    answer = exchange(running, line + b"\n")
    assert answer["ok"] is False and answer["error"].startswith("malformed request: "), answer
    assert control.request(sock_path(running), "ping")["pid"] == running.proc.pid


def test_deep_nesting_is_refused_before_it_is_decoded(running):
    assert exchange(running, b'{"op": [[[["ping"]]]]}\n')["error"] == \
        "malformed request: nested deeper than 4"
    # Brackets inside a string are text, not nesting.
    answer = exchange(running, json.dumps({"op": "run", "job": "[" * 100}).encode() + b"\n")
    assert answer["error"] == "malformed request: that is not a job name"


def test_an_internal_error_is_answered_and_logged_with_its_traceback(tmp_path, caplog):
    import selectors

    def broken(request):
        raise KeyError("boom")

    selector = selectors.DefaultSelector()
    server = control.Server(str(tmp_path / "s.sock"), selector, broken)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(server.path)
            s.sendall(b'{"op": "ping"}\n')
            for _ in range(2):  # accept, then read
                for key, _ in selector.select(1):
                    key.data()
            answer = json.loads(read_line(s))
    finally:
        server.close()
        selector.close()
    assert answer == {"ok": False, "error": "internal error: KeyError: 'boom'"}
    (record,) = [r for r in caplog.records if "control request" in r.getMessage()]
    assert record.exc_info and record.exc_info[0] is KeyError


def open_idle(d: DaemonProcess, count: int) -> list[socket.socket]:
    return [connect(d) for _ in range(count)]


def test_200_idle_connections_do_not_lock_the_commands_out(running):
    idle = open_idle(running, 200)
    try:
        for _ in range(30):
            t0 = time.monotonic()
            assert control.request(sock_path(running), "ping", timeout=5)["pid"] == running.proc.pid
            assert time.monotonic() - t0 < 1.0
            idle.append(connect(running))  # and the idle ones keep coming
        # The oldest idle clients were turned away to make room, with an answer that says why.
        answer = json.loads(read_line(idle[0]))
        assert answer["error"] == f"busy: {control.MAX_CLIENTS} connections waiting; try again"
    finally:
        for s in idle:
            s.close()
    assert running.output().count("turned away a client") <= 2  # rate-limited


def lowest_free_fd(pid: int) -> int:
    used = {int(fd) for fd in os.listdir(f"/proc/{pid}/fd")}
    return next(fd for fd in range(len(used) + 1) if fd not in used)


def open_files(pid: int) -> list[str]:
    found = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            found.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except FileNotFoundError:
            pass
    return found


def connections(d: DaemonProcess) -> int:
    """The daemon's ends of connections to its socket, accepted or queued (they carry its name)."""
    with open("/proc/net/unix") as f:
        rows = [line.split() for line in f.readlines()[1:]]
    return sum(1 for row in rows if len(row) == 8 and row[7] == sock_path(d) and row[3] != "00010000")


def ping_past_busy(d: DaemonProcess, tries: int = 5) -> dict:
    """A ping, asked again when the daemon says "busy ... try again": out of fds, it turns the
    oldest waiting client away, which on a loaded machine may be the ping itself."""
    for _ in range(tries - 1):
        try:
            return control.request(sock_path(d), "ping", timeout=5)
        except control.ControlError as e:
            if not str(e).startswith("busy"):
                raise
    return control.request(sock_path(d), "ping", timeout=5)


def test_accept_out_of_file_descriptors_does_not_stop_the_daemon(daemon):
    import resource

    import psutil

    daemon.write("[job.a]\n@every 1h true\n")
    daemon.start()
    pid = daemon.proc.pid
    # The file watcher's thread opens its fds on its own time: let it, before fds run out.
    wait_until(lambda: "anon_inode:inotify" in open_files(pid), what="the file watcher")
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    try:
        # Room for a few clients: the rest of these idle ones meet EMFILE on accept, and each
        # new client makes room by turning the oldest idle one away.
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (lowest_free_fd(pid) + 3, hard))
        idle = open_idle(daemon, 20)
        try:
            for _ in range(5):
                assert ping_past_busy(daemon)["pid"] == pid
        finally:
            for s in idle:
                s.close()
        wait_until(lambda: connections(daemon) == 0, what="the clients to be closed")
        # No fd at all: accepting pauses and is tried again, without spinning.
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (lowest_free_fd(pid), hard))
        cpu = psutil.Process(pid).cpu_times()
        with pytest.raises(control.ControlError):
            control.request(sock_path(daemon), "ping", timeout=1.5)
        spent = sum(psutil.Process(pid).cpu_times()[:2]) - sum(cpu[:2])
        assert spent < 0.3, f"the daemon spun: {spent:.2f}s of CPU in 1.5s"
        wait_until(lambda: "cannot accept a connection: Too many open files" in daemon.output(),
                   what="the accept error in the log")
    finally:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
    assert control.request(sock_path(daemon), "ping", timeout=5)["pid"] == pid
    assert daemon.output().count("cannot accept a connection") <= 2
    assert "Traceback" not in daemon.output()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to another uid")
def test_refused_connections_are_logged_at_most_once_in_a_while_with_a_count(daemon):
    daemon.write("[job.a]\n@every 1h true\n")
    daemon.start()
    nobody = pwd.getpwnam("nobody")
    directory = os.path.dirname(sock_path(daemon))
    os.chmod(directory, 0o711)
    os.chmod(sock_path(daemon), 0o666)
    dirfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    t0 = time.monotonic()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            via = f"/proc/self/fd/{dirfd}/{os.path.basename(sock_path(daemon))}"
            for _ in range(2000):
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.settimeout(5)
                    s.connect(via)
                    s.recv(4096)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    os.close(dirfd)
    assert os.waitstatus_to_exitcode(status) == 0
    flood = time.monotonic() - t0
    refused = f"refused a client running as uid {nobody.pw_uid}"

    def logged() -> tuple[int, int, int]:
        """Lines about the refusals, and the refusals they account for (one each, or a count)."""
        lines = [line for line in daemon.output().splitlines() if refused in line]
        counts = [int(line.split(" more refused connections")[0].split()[-1]) for line in lines if " more " in line]
        return len(lines), len(lines) - len(counts) + sum(counts), len(counts)
    wait_until(lambda: logged()[1] == 2000, timeout=control.LOG_EVERY * 2 + 5,
               what="every refusal to be accounted for in the log")
    lines, _, summaries = logged()
    assert summaries >= 1 and lines <= 2 + 2 * flood / control.LOG_EVERY, daemon.output()


def test_warnings_held_back_are_counted_and_reported_when_their_window_ends(caplog):
    throttle = control._Throttled(every=5.0)
    for i in range(10):
        throttle.warn("refused connections", f"control socket: refused client {i}", now=100.0 + i * 0.1)
    assert throttle.flush(now=101.0) == 105.0
    assert [r.getMessage() for r in caplog.records] == ["control socket: refused client 0"]
    throttle.warn("refused connections", "control socket: refused client 10", now=106.0)  # window over
    assert [r.getMessage() for r in caplog.records][1:] == [
        "control socket: 9 more refused connections in the last 6s (the latest: refused client 9)",
        "control socket: refused client 10"]
    throttle.warn("refused connections", "control socket: refused client 11", now=107.0)
    assert throttle.flush(now=110.9) == 111.0 and len(caplog.records) == 3
    assert throttle.flush(now=111.0) is None
    assert caplog.records[-1].getMessage() == \
        "control socket: 1 more refused connections in the last 5s (the latest: refused client 11)"
