"""`cronsup status` answered by the daemon (statusserve): built in a thread while the loop
goes on, the same as reading the store, and read from the store instead whenever the
daemon cannot say (busy, another version, another run log or node, silent)."""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import threading
import time

import pytest
from conftest import wait_until
from pgcluster import pg_cluster, pg_url  # noqa: F401 (fixtures)
from test_daemon_inprocess import InProcess
from test_several_hosts import nodes  # noqa: F401 (fixture)

from cronsup import cli_status, control, lockfile, paths, report, statusserve, wire
from cronsup.statusserve import StatusService


class Blocked:
    """A stand-in for StatusService.build that waits for the test before building."""

    def __init__(self, real):
        self.real, self.entered, self.release = real, threading.Event(), threading.Event()

    def __call__(self) -> dict:
        self.entered.set()
        assert self.release.wait(30), "the test never released the build"
        return self.real()


def readable(sock: socket.socket) -> bool:
    return bool(select.select([sock], [], [], 0)[0])


def test_the_loop_answers_pings_and_starts_due_jobs_while_a_status_is_built(tmp_path):
    with InProcess(tmp_path, """\
            [job.tick]
            description = "every ten seconds"
            @every 10s true
            """) as w:
        sock = paths.control_socket(str(w.db))
        blocked = w.d.statuses.build = Blocked(w.d.statuses.build)
        asked = control.ask(sock, "status", timeout=2, fields={"db": str(w.db)})
        w.until(blocked.entered.is_set, what="the status thread to start building")
        pinged = control.ask(sock, "ping", timeout=2)
        w.until(lambda: readable(pinged.sock), what="the ping's answer")
        assert pinged.answer()["pid"] == os.getpid()
        w.clock.advance(10)
        w.until(w.saw("start", "success"), what="the due start while the status is being built")
        blocked.release.set()
        answer = asked.answer(10)
        st = wire.decode(report.Status, answer["status"])
        assert answer["wire"] == statusserve.wire_signature()
        local = report.status(str(w.jobs), str(w.db), w.clock.wall)
        local.answering = True
        assert st.to_json() == local.to_json()
        (job,) = st.jobs
        assert job.name == "tick" and job.description == "every ten seconds"
        assert job.last_run is not None and job.last_run.status == "success"


class Replies:
    def __init__(self):
        self.got: list[dict] = []
        self.done = threading.Condition()

    def reply(self):
        replies = self

        class One:
            def send(self, response: dict) -> None:
                with replies.done:
                    replies.got.append(response)
                    replies.done.notify_all()
        return One()


def test_requests_beyond_the_waiting_room_are_told_busy_and_the_others_answered(tmp_path):
    with InProcess(tmp_path, "[job.a]\n@every 1h true\n") as w:
        service = StatusService(str(w.db), str(w.jobs), None, "here")
        blocked = service.build = Blocked(service.build)
        replies = Replies()
        service.answer({"op": "status"}).start(replies.reply())
        assert blocked.entered.wait(10)
        for _ in range(statusserve.WAITING + 1):
            service.answer({"op": "status"}).start(replies.reply())
        assert [r.get("kind") for r in replies.got] == ["busy"]  # only the one that found no room
        blocked.release.set()
        with replies.done:
            assert replies.done.wait_for(lambda: len(replies.got) == statusserve.WAITING + 2, 30)
        answered = [r for r in replies.got if r.get("kind") != "busy"]
        assert len(answered) == statusserve.WAITING + 1 and all(r["ok"] for r in answered)
        service.close(5)
        assert not service._thread.is_alive()


def test_a_request_for_another_run_log_or_node_is_refused_so_the_command_reads_it_itself(tmp_path):
    db = tmp_path / "runs.db"
    db.write_bytes(b"")
    other = tmp_path / "other.db"
    other.write_bytes(b"")
    local = StatusService(str(db), "jobs", None, "here")
    assert isinstance(local.answer({"op": "status", "db": str(db)}), control.Later)
    assert local.answer({"op": "status", "db": str(other)})["kind"] == "other_store"
    url = "postgresql://cronsup:secret@db.internal/cronsup"
    shared = StatusService(url, "jobs", None, "web1")
    assert isinstance(shared.answer({"op": "status", "db": paths.shown(url)}), control.Later)
    assert isinstance(shared.answer({"op": "status", "db": paths.shown(url), "node": "web1"}), control.Later)
    assert shared.answer({"op": "status", "db": paths.shown(url), "node": "web2"})["kind"] == "other_node"
    assert shared.answer({"op": "status", "db": "postgresql://cronsup@db.internal/other"})["kind"] == "other_store"


# -- the command, over PostgreSQL ----------------------------------------------------------------

WHICH = ("import atexit, runpy, sys; atexit.register(lambda: sys.stderr.write("
         "'\\npsycopg imported\\n' if 'psycopg' in sys.modules else '\\nno psycopg\\n')); "
         "sys.argv = ['cronsup', *sys.argv[1:]]; runpy.run_module('cronsup', run_name='__main__')")


def status_cli(*args: str, env: dict | None = None) -> tuple[subprocess.CompletedProcess, bool]:
    """`cronsup status ARGS`, and whether it imported psycopg (read the store itself)."""
    done = subprocess.run([sys.executable, "-c", WHICH, "status", *args], capture_output=True, text=True,
                          timeout=60, env=dict(os.environ, **(env or {})))
    imported = done.stderr.rstrip().endswith("psycopg imported")
    assert imported or done.stderr.rstrip().endswith("no psycopg"), done.stderr
    return done, imported


def test_status_over_postgresql_comes_from_the_daemon_without_psycopg_and_equals_reading_the_store(
        nodes, pg_url, tmp_path):  # noqa: F811
    a = nodes("a", """\
        [job.ok]
        description = "fine <b>"
        0 0 29 2 * true
        [job.bad]
        retries = 1
        retry_delay = "1s"
        0 0 29 2 * exit 3
        [job.long]
        0 0 29 2 * sleep 300
        """).start()
    for job in ("ok", "bad"):
        assert a.cli("run", job, "--wait").returncode in (0, 1)
    wait_until(lambda: len([r for r in json.loads(a.cli("logs", "bad", "--json").stdout)
                            if r["status"] == "failed"]) == 2, 20, what="both attempts of bad")
    assert a.cli("run", "long").returncode == 0
    wait_until(lambda: json.loads(a.cli("status", "--json").stdout)["jobs"][2]["running"], 20,
               what="long to be running")
    done, imported = status_cli("--json", *a.args())
    assert done.returncode == 0 and not imported, done.stderr
    via_daemon = json.loads(done.stdout)
    os.environ["CRONSUP_NODE"] = "a"
    try:
        local = report.status(str(a.jobs), pg_url, time.time(), state_dir=str(a.state))
    finally:
        del os.environ["CRONSUP_NODE"]
    local.answering = True
    assert via_daemon == json.loads(json.dumps(local.to_json()))
    assert [j["name"] for j in via_daemon["jobs"]] == ["ok", "bad", "long"]
    assert via_daemon["jobs"][1]["last_run"]["attempt"] == 2 and via_daemon["jobs"][1]["success_rate"] == 0.0
    text, imported = status_cli(*a.args())
    assert text.returncode == 0 and not imported
    assert f"daemon     running, pid {a.proc.pid}" in text.stdout and "fine <b>" in text.stdout
    assert "failed (3)" in text.stdout and "↳ running now: run " in text.stdout
    # Another node's name on this state directory: the daemon does not speak for it.
    other, imported = status_cli("--json", *a.args()[:-4], "--node", "b", "--state-dir", str(a.state))
    assert imported and json.loads(other.stdout)["daemon"]["answering"] is True


class FakeDaemon:
    """The lock held by this process and the socket answered by `answer(request)`: a daemon
    of another version, or a silent one."""

    def __init__(self, state, answer):
        os.makedirs(state, mode=0o700, exist_ok=True)
        url = "postgresql://x@/y"
        self.lock_fd = lockfile.take(paths.daemon_lock(url, str(state)), os.getpid())
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(paths.control_socket(url, str(state)))
        self.srv.listen(8)
        self.answer = answer
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.srv.accept()
            except OSError:
                return
            data = b""
            while not data.endswith(b"\n") and (chunk := conn.recv(4096)):
                data += chunk
            reply = self.answer(json.loads(data))
            if reply is None:  # silent: hold the connection open, say nothing
                threading.Timer(10, conn.close).start()
                continue
            conn.sendall(reply)
            conn.close()

    def close(self) -> None:
        self.srv.close()
        os.close(self.lock_fd)


@pytest.mark.parametrize("kind", ["older", "other fields"])
def test_a_daemon_that_cannot_give_the_status_answers_so_the_command_reads_the_store(pg_url, tmp_path, kind):  # noqa: F811
    def answer(request: dict) -> bytes:
        if request["op"] == "ping":
            return b'{"ok": true, "pid": 1}\n'
        if kind == "older":  # a daemon from before the status op
            return b'{"ok": false, "error": "malformed request: op must be one of [\'ping\', \'run\']"}\n'
        return b'{"ok": true, "later": true}\n{"ok": true, "wire": "00000000", "status": []}\n'

    (tmp_path / "jobs").write_text("[job.a]\n@every 1h true\n")
    fake = FakeDaemon(tmp_path / "state", answer)
    try:
        done, imported = status_cli("--json", "--jobs", str(tmp_path / "jobs"), "--db", pg_url,
                                    "--node", "n1", "--state-dir", str(tmp_path / "state"))
    finally:
        fake.close()
    data = json.loads(done.stdout)
    assert imported and done.returncode == 0, done.stderr
    assert data["daemon"]["running"] is True and data["daemon"]["answering"] is True
    assert [j["name"] for j in data["jobs"]] == ["a"]


def test_a_silent_daemon_is_waited_for_once_and_shown_not_answering(pg_url, tmp_path):  # noqa: F811
    (tmp_path / "jobs").write_text("[job.a]\n@every 1h true\n")
    fake = FakeDaemon(tmp_path / "state", lambda request: None)
    try:
        started = time.monotonic()
        done, imported = status_cli("--jobs", str(tmp_path / "jobs"), "--db", pg_url, "--node", "n1",
                                    "--state-dir", str(tmp_path / "state"))
        took = time.monotonic() - started
    finally:
        fake.close()
    assert done.returncode == 4 and "not answering its control socket" in done.stdout
    assert took < 2 * cli_status.PING_TIMEOUT, "it waited for the silent daemon twice"


def test_a_daemon_that_cannot_read_the_run_log_either_has_its_error_shown(pg_url, tmp_path):  # noqa: F811
    def answer(request: dict) -> bytes:
        return (b'{"ok": true, "later": true}\n{"ok": false, "kind": "store", '
                b'"error": "run log postgresql://x@db/y: connection refused"}\n')

    (tmp_path / "jobs").write_text("[job.a]\n@every 1h true\n")
    fake = FakeDaemon(tmp_path / "state", answer)
    try:
        done, imported = status_cli("--jobs", str(tmp_path / "jobs"), "--db", pg_url, "--node", "n1",
                                    "--state-dir", str(tmp_path / "state"))
    finally:
        fake.close()
    assert done.returncode == 1 and not imported  # not a second wait on a database that is down
    assert "cronsup: run log postgresql://x@db/y: connection refused" in done.stderr
