"""--state-dir (CRONSUP_STATE_DIR): the daemon's lock, socket and start journal live apart
from the run log, so what identifies a daemon does not depend on where its store is."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import wait_until

from cronsup import paths


def cronsup(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cronsup", *args], capture_output=True, text=True,
                          timeout=30, env={**os.environ, **(env or {})})


def test_the_state_files_are_beside_the_run_log_by_default_with_their_old_names(tmp_path):
    db = str(tmp_path / "runs.db")
    assert paths.control_socket(db) == db + ".sock"
    assert paths.daemon_lock(db) == db + ".lock"
    assert paths.start_journal(db) == db + ".starts"
    assert paths.state_dir(db) == str(tmp_path)


def test_a_state_dir_holds_the_lock_socket_and_journal_under_names_of_its_own(tmp_path):
    db, state = str(tmp_path / "a" / "runs.db"), str(tmp_path / "b")
    assert paths.control_socket(db, state) == os.path.join(state, "cronsup.sock")
    assert paths.daemon_lock(db, state) == os.path.join(state, "cronsup.lock")
    assert paths.start_journal(db, state) == os.path.join(state, "cronsup.starts")
    assert paths.state_dir(db, state) == state


def test_a_daemon_with_a_state_dir_is_found_by_commands_given_the_same_state_dir(daemon, tmp_path):
    state = tmp_path / "node-state"
    daemon.write("[job.a]\n@every 1h echo hi\n")
    daemon.start("--state-dir", str(state), wait=False)
    sock = state / "cronsup.sock"

    def up():
        result = daemon.cli("status", "--json", "--state-dir", str(state))
        return result.returncode == 0 and json.loads(result.stdout)["daemon"]["running"]

    wait_until(up, 15, what="the daemon with a state dir")
    assert sock.exists() and (state / "cronsup.lock").exists()
    assert not os.path.exists(str(daemon.db) + ".sock") and not os.path.exists(str(daemon.db) + ".lock")
    assert oct(state.stat().st_mode & 0o777) == "0o700"
    # Without it the commands look beside the run log and find no daemon.
    assert daemon.cli("status").returncode == 3
    assert daemon.cli("reload").returncode == 3
    result = daemon.cli("run", "a", "--wait", "--state-dir", str(state))
    assert result.returncode == 0, result.stderr
    assert "success" in result.stdout
    env_run = cronsup("reload", "--jobs", str(daemon.jobs), "--db", str(daemon.db),
                      env={"CRONSUP_STATE_DIR": str(state)})
    assert env_run.returncode == 0, env_run.stderr


def test_two_daemons_with_their_own_state_dirs_do_not_meet(daemon, tmp_path):
    from conftest import DaemonProcess

    daemon.write("[job.a]\n@every 1h true\n")
    daemon.start("--state-dir", str(tmp_path / "one"), wait=False)
    wait_until(lambda: (tmp_path / "one" / "cronsup.sock").exists(), 15, what="the first daemon")
    second_home = tmp_path / "second"
    second_home.mkdir()
    second = DaemonProcess(second_home)
    second.write("[job.b]\n@every 1h true\n")
    # A second daemon given the first one's state dir is refused by its lock, even on
    # another run log; given its own, it runs beside the first.
    refused = cronsup("daemon", "--jobs", str(second.jobs), "--db", str(second.db),
                      "--state-dir", str(tmp_path / "one"))
    assert refused.returncode == 1 and "another cronsup daemon" in refused.stderr
    try:
        second.start("--state-dir", str(tmp_path / "two"), wait=False)
        pids = {}
        for name, d in (("one", daemon), ("two", second)):
            def running(name=name, d=d):
                out = cronsup("status", "--json", "--jobs", str(d.jobs), "--db", str(d.db),
                              "--state-dir", str(tmp_path / name))
                return out.returncode == 0 and json.loads(out.stdout)["daemon"]["pid"]
            pids[name] = wait_until(running, 15, what=f"daemon {name}")
        assert pids == {"one": daemon.proc.pid, "two": second.proc.pid}
    finally:
        second.kill()
