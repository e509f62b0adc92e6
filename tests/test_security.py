"""A root daemon under attack by `nobody`: a jobs file swapped in a directory nobody can
write, a symlink planted in the state directory, a workdir flipped while jobs start.
The real daemon, as root, in a temp dir."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest
from click.testing import CliRunner

from conftest import wait_until
from cronsup import cli
from test_trust import EVIL, as_nobody, open_tmp, stop  # noqa: F401 - open_tmp is a fixture

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
pytestmark = root_only


def start_refused(daemon) -> str:
    """Start the daemon expecting it to refuse: its exit code must be 1; return what it said."""
    daemon.start(wait=False)
    assert daemon.proc.wait(15) == 1, daemon.output()
    return daemon.output()


def test_a_jobs_file_in_a_directory_nobody_can_write_never_runs_as_root_while_nobody_swaps_it(daemon, open_tmp):
    etc = open_tmp / "etc"
    etc.mkdir()
    marker = open_tmp / "evil-ran"
    daemon.jobs = etc / "jobs"
    daemon.jobs.write_text("@every 1s echo good\n")
    evil = etc / "evil"
    evil.write_text(f"@every 1s id -u > {marker}\n")
    os.chown(evil, 65534, 65534)
    etc.chmod(0o777)

    def swap() -> None:
        while True:  # root's file out, nobody's in, and back: the stat-then-open race
            os.rename(daemon.jobs, etc / "good")
            os.rename(evil, daemon.jobs)
            os.rename(daemon.jobs, evil)
            os.rename(etc / "good", daemon.jobs)

    pid = as_nobody(swap)
    try:
        daemon.start()
        for _ in range(20):  # reload after reload while nobody swaps
            daemon.cli("reload")
        error = daemon.status()["daemon"]["config_error"]
        assert f"the directory {etc} is writable by other users (mode 777)" in error, error
    finally:
        stop(pid)
    assert not marker.exists()
    assert daemon.runs() == [] and daemon.proc.poll() is None
    assert daemon.stop() == 0


def test_check_refuses_a_jobs_file_in_a_directory_others_can_write_as_the_daemon_does(tmp_path):
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "jobs").write_text("@daily /bin/true\n")
    etc.chmod(0o777)
    result = CliRunner().invoke(cli.main, ["check", str(etc / "jobs")])
    assert result.exit_code == 1
    assert f"{etc}/jobs: refused: the directory {etc} is writable by other users" in result.stderr


@pytest.mark.parametrize("planted", ["runs.db.lock", "runs.db", "runs.db-wal", "runs.db-shm"])
def test_a_symlink_nobody_plants_in_a_sticky_state_directory_is_not_followed(daemon, open_tmp, planted):
    target = open_tmp / "precious"
    target.write_text("root's own data\n")
    target.chmod(0o600)
    state = daemon.db.parent
    state.mkdir()
    state.chmod(0o1777)  # a sticky world-writable directory, as /tmp is
    link = state / planted

    def plant() -> None:
        os.symlink(target, link)

    pid = as_nobody(plant)
    os.waitpid(pid, 0)
    assert os.lstat(link).st_uid == 65534
    daemon.write("@every 1s true\n")
    said = start_refused(daemon)
    assert f"refusing the state directory of {daemon.db}: the directory {state} is writable by " \
           "other users (mode 1777)" in said, said
    assert target.read_text() == "root's own data\n" and (target.stat().st_mode & 0o777) == 0o600
    assert sorted(os.listdir(state)) == [planted]  # nothing was created there either


@pytest.mark.parametrize("planted", ["runs.db.lock", "runs.db", "runs.db-wal", "runs.db.sock"])
def test_a_symlink_in_a_private_state_directory_is_refused_too(daemon, tmp_path, planted):
    target = tmp_path / "precious"
    target.write_text("root's own data\n")
    state = daemon.db.parent
    state.mkdir(mode=0o700)
    (state / planted).symlink_to(target)
    daemon.write("@every 1s true\n")
    said = start_refused(daemon)
    assert f"refusing {state / planted}: it is a symbolic link" in said, said
    assert target.read_text() == "root's own data\n"


def test_a_state_directory_owned_by_another_user_is_refused(daemon):
    state = daemon.db.parent
    state.mkdir(mode=0o700)
    os.chown(state, 65534, 65534)
    daemon.write("@every 1s true\n")
    said = start_refused(daemon)
    assert f"the directory {state} is owned by uid 65534, not root" in said, said


def test_a_lock_file_of_another_user_is_refused(daemon):
    state = daemon.db.parent
    state.mkdir(mode=0o700)
    (state / "runs.db.lock").write_text("")
    os.chown(state / "runs.db.lock", 65534, 65534)
    daemon.write("@every 1s true\n")
    said = start_refused(daemon)
    assert f"refusing {state}/runs.db.lock: it is owned by uid 65534" in said, said


def test_a_flipping_workdir_symlink_never_stops_the_daemon_and_nobody_never_reads_a_root_only_file(daemon, open_tmp):
    # workdir flips between a directory nobody may enter (inside a 0700 root directory),
    # one nobody may enter, and a file. Each start is `error` (with a reason) or runs in
    # the public directory: the secret is never read, the daemon never stops.
    private = open_tmp / "private"
    (private / "inner").mkdir(parents=True)
    private.chmod(0o700)
    (private / "inner").chmod(0o755)
    (private / "inner" / "secret").write_text("the secret\n")
    (private / "inner" / "secret").chmod(0o644)
    public = open_tmp / "public"
    public.mkdir()
    (public / "secret").write_text("public\n")
    (open_tmp / "file").write_text("")
    link = open_tmp / "workdir"
    link.symlink_to(public)
    daemon.write("".join(f"""
[job.peek{i}]
user = "nobody"
workdir = "{link}"
@every 1s cat secret
""" for i in range(4)))
    stop_flip = threading.Event()

    def flip() -> None:
        targets = [private / "inner", open_tmp / "file", public]
        i = 0
        while not stop_flip.is_set():
            tmp = open_tmp / "workdir.new"
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            os.symlink(targets[i % 3], tmp)
            os.rename(tmp, link)
            i += 1

    flipper = threading.Thread(target=flip, daemon=True)
    flipper.start()
    try:
        daemon.start()
        wait_until(lambda: len([r for r in daemon.runs() if r.status != "running"]) >= 16, 20,
                   what="16 finished runs")
        for _ in range(5):
            subprocess.run([sys.executable, "-m", "cronsup", "run", "peek0", "--jobs", str(daemon.jobs),
                            "--db", str(daemon.db)], capture_output=True, timeout=30)
    finally:
        stop_flip.set()
        flipper.join()
    assert daemon.proc.poll() is None, daemon.output()
    runs = [r for r in daemon.runs() if r.status != "running"]
    statuses = {r.status for r in runs}
    # skipped: a run still going when the next second came (a loaded machine), never a leak
    assert statuses <= {"success", "error", "skipped"} and statuses & {"success", "error"}, statuses
    for run in runs:
        output = daemon.output_of(run.id)
        assert b"the secret" not in output
        if run.status == "error":
            assert run.reason.startswith(f"workdir {link}: ") and "(as user 'nobody')" in run.reason, run.reason
        if run.status == "success":
            assert output == b"public\n"
    assert "error" in statuses and "success" in statuses
    assert daemon.stop() == 0


def test_a_symlink_planted_as_the_log_file_is_not_followed(daemon, tmp_path):
    precious = tmp_path / "precious"
    precious.write_text("root's own data\n")
    log = tmp_path / "cronsup.log"
    log.symlink_to(precious)
    daemon.write("@every 1s true\n")
    daemon.start("--log-file", str(log), wait=False)
    assert daemon.proc.wait(15) == 1
    assert f"the log file {log} is a symbolic link; cronsup does not follow it" in daemon.output()
    assert precious.read_text() == "root's own data\n"


def test_the_log_file_is_still_written_and_reopened_after_rotation(daemon, tmp_path):
    log = tmp_path / "cronsup.log"
    daemon.write("[job.tick]\n@every 1s true\n")
    daemon.start("--log-file", str(log))
    wait_until(lambda: log.exists() and "tick[" in log.read_text(), 10, what="a log line")
    log.rename(tmp_path / "cronsup.log.1")  # as logrotate does
    wait_until(lambda: log.exists() and "tick[" in log.read_text(), 10, what="a line in the new log")
    assert daemon.stop() == 0
