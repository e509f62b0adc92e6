"""The systemd units: systemd-analyze accepts them, every directive says why, and they agree
with the daemon (its default paths, its kill_grace, the protocol it speaks)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from cronsup import jobsfile, paths
from cronsup.units import parse_duration

SYSTEM_UNIT = ROOT / "systemd" / "cronsup.service"
USER_UNIT = ROOT / "systemd" / "cronsup-user.service"
CRONSUP = Path(sys.executable).parent / "cronsup"  # the venv's script
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")


def directives(unit: Path) -> dict[str, str]:
    """KEY=value lines (the last of each key), comments and section headers left out."""
    found = {}
    for line in unit.read_text().splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found[key] = value
    return found


def runnable_copy(unit: Path, tmp_path: Path, program: str) -> Path:
    """The unit with its program replaced by this checkout's, which exists here."""
    assert CRONSUP.exists(), f"{CRONSUP} missing: run the tests from the project's venv"
    copy = tmp_path / "cronsup.service"
    copy.write_text(unit.read_text().replace(program, str(CRONSUP)))
    return copy


def verify(unit: Path, tmp_path: Path, user: bool = False) -> str:
    """What `systemd-analyze verify` says about `unit`: every line naming the file."""
    runtime = tmp_path / "runtime"  # a user manager needs $XDG_RUNTIME_DIR, even offline
    runtime.mkdir(mode=0o700, exist_ok=True)
    env = {"PATH": "/usr/bin:/bin", "XDG_RUNTIME_DIR": str(runtime), "SYSTEMD_LOG_LEVEL": "notice"}
    args = [ANALYZE, *(["--user"] if user else []), "verify", str(unit)]
    result = subprocess.run(args, capture_output=True, text=True, env=env, timeout=60)
    said = result.stdout + result.stderr
    # Its return code is 0 even for unknown keys and unparsable values ("ignoring"), so the
    # output is what counts; lines about other units (the host's own) are not ours.
    return "\n".join(line for line in said.splitlines() if unit.name in line)


@needs_analyze
def test_systemd_analyze_finds_nothing_wrong_with_the_system_unit(tmp_path):
    copy = runnable_copy(SYSTEM_UNIT, tmp_path, "/usr/local/bin/cronsup")
    assert verify(copy, tmp_path) == ""


@needs_analyze
def test_systemd_analyze_finds_nothing_wrong_with_the_user_unit(tmp_path):
    copy = runnable_copy(USER_UNIT, tmp_path, "%h/.local/bin/cronsup")
    assert verify(copy, tmp_path, user=True) == ""


@needs_analyze
def test_the_check_would_catch_a_bad_directive(tmp_path):
    copy = runnable_copy(SYSTEM_UNIT, tmp_path, "/usr/local/bin/cronsup")
    copy.write_text(copy.read_text().replace("KillMode=mixed", "KillMode=mixd\nWatchdogSecs=30s"))
    said = verify(copy, tmp_path)
    assert "kill mode" in said and "WatchdogSecs" in said


@pytest.mark.parametrize("unit", [SYSTEM_UNIT, USER_UNIT], ids=lambda u: u.name)
def test_every_directive_has_a_comment_saying_why(unit):
    lines = unit.read_text().splitlines()
    for i, line in enumerate(lines):
        if line and not line.startswith(("#", "[")):
            assert i > 0 and lines[i - 1].startswith("#"), f"{unit.name}:{i + 1}: {line} has no comment above it"


@pytest.mark.parametrize("unit", [SYSTEM_UNIT, USER_UNIT], ids=lambda u: u.name)
def test_the_unit_uses_what_the_daemon_speaks(unit):
    d = directives(unit)
    assert d["Type"] == "notify" and d["NotifyAccess"] == "main"  # READY=1, STATUS=, STOPPING=1
    assert parse_duration(d["WatchdogSec"]) >= 10  # WATCHDOG=1 from the loop, at half of it
    assert d["ExecReload"] == "/bin/kill -HUP $MAINPID"  # SIGHUP rereads the jobs file
    assert d["Restart"] == "on-failure"
    assert d["KillMode"] == "mixed"  # the daemon graces its jobs itself; see the comment
    assert d["StateDirectory"] == "cronsup"
    assert " daemon " in d["ExecStart"] and "--detach" not in d["ExecStart"]


@pytest.mark.parametrize("unit", [SYSTEM_UNIT, USER_UNIT], ids=lambda u: u.name)
def test_the_unit_gives_the_daemon_room_for_many_open_files_and_jobs_the_usual_1024(unit):
    soft, _, hard = directives(unit)["LimitNOFILE"].partition(":")
    assert soft == "1024" and int(hard) >= 65536


def test_the_stop_timeout_exceeds_every_kill_grace_in_the_examples():
    timeout = parse_duration(directives(SYSTEM_UNIT)["TimeoutStopSec"])
    for example in sorted((ROOT / "examples").iterdir()):
        for job in jobsfile.load(str(example)).jobs:
            assert job.kill_grace + 5 < timeout, f"{example.name}: {job.name} kill_grace {job.kill_grace}"


def test_the_system_unit_passes_the_default_paths_for_root(monkeypatch):
    monkeypatch.setattr("os.geteuid", lambda: 0)
    start = directives(SYSTEM_UNIT)["ExecStart"]
    assert re.search(rf"--jobs {re.escape(paths.default_jobs())}( |$)", start)
    assert re.search(rf"--db {re.escape(paths.default_db())}( |$)", start)
    # StateDirectory=cronsup is the run log's directory.
    assert Path(paths.default_db()).parent == Path("/var/lib") / directives(SYSTEM_UNIT)["StateDirectory"]


def test_the_user_unit_passes_the_default_paths_for_a_user(monkeypatch, tmp_path):
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    # What a user manager makes of the specifiers when the XDG variables are unset.
    expand = {"%h": str(tmp_path), "%E": f"{tmp_path}/.config", "%S": f"{tmp_path}/.local/state"}
    start = directives(USER_UNIT)["ExecStart"]
    for spec, value in expand.items():
        start = start.replace(spec, value)
    assert f"--jobs {paths.default_jobs()} " in start + " "
    assert f"--db {paths.default_db()} " in start + " "


# -- packaging/install.sh, staged into a temp dir -------------------------------------------

INSTALL = ROOT / "packaging" / "install.sh"


def install(destdir: Path, **env: str) -> subprocess.CompletedProcess:
    environ = {"PATH": "/usr/bin:/bin", "DESTDIR": str(destdir), "CRONSUP_BIN": str(CRONSUP), **env}
    return subprocess.run(["sh", str(INSTALL)], capture_output=True, text=True, env=environ,
                          timeout=60, cwd=str(destdir.parent))


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_install_sh_stages_units_program_and_an_imported_jobs_file(tmp_path):
    dest = tmp_path / "root"
    result = install(dest, IMPORT_FROM=str(ROOT / "tests" / "data" / "debian" / "system" / "crontab--cron-daemon-common"))
    assert result.returncode == 0, result.stderr
    unit = dest / "etc" / "systemd" / "system" / "cronsup.service"
    assert unit.read_text() == SYSTEM_UNIT.read_text() and mode(unit) == 0o644
    user_unit = dest / "etc" / "systemd" / "user" / "cronsup.service"
    assert "ExecStart=/usr/local/bin/cronsup daemon" in user_unit.read_text() and mode(user_unit) == 0o644
    link = dest / "usr" / "local" / "bin" / "cronsup"
    assert link.is_symlink() and Path(os.readlink(link)) == CRONSUP
    assert mode(dest / "etc" / "cronsup") == 0o755
    jobs = dest / "etc" / "cronsup" / "jobs"
    # The daemon refuses a jobs file others may write, or one root does not own.
    assert mode(jobs) == 0o644 and jobs.stat().st_uid == os.geteuid()
    assert [j.user for j in jobsfile.load(str(jobs)).jobs] == ["root"] * 4
    assert (dest / "opt" / "cronsup" / "share" / "examples" / "jobs").read_text() == (ROOT / "examples" / "jobs").read_text()
    assert "systemctl enable --now cronsup" in result.stdout

    # Run again (an upgrade): the admin's jobs file stays as it is.
    jobs.write_text("@daily true\n")
    assert install(dest).returncode == 0
    assert jobs.read_text() == "@daily true\n"


def test_install_sh_without_crontabs_writes_a_valid_starting_jobs_file(tmp_path):
    dest = tmp_path / "root"
    result = install(dest, IMPORT_FROM="", BINDIR="/usr/bin", PREFIX="/opt/cs")
    assert result.returncode == 0, result.stderr
    jobs = dest / "etc" / "cronsup" / "jobs"
    assert jobsfile.load(str(jobs)).jobs == () and "/opt/cs/share/examples" in jobs.read_text()
    unit = (dest / "etc" / "systemd" / "system" / "cronsup.service").read_text()
    assert "ExecStart=/usr/bin/cronsup daemon --jobs /etc/cronsup/jobs" in unit


def test_install_sh_stops_on_a_crontab_it_cannot_import(tmp_path):
    bad = tmp_path / "crontab"
    bad.write_text("61 * * * * root true\n")
    dest = tmp_path / "root"
    result = install(dest, IMPORT_FROM=str(bad))
    assert result.returncode == 1 and "could not import" in result.stderr
    assert not (dest / "etc" / "cronsup" / "jobs").exists()


def install_lib(tmp_path: Path, script: str) -> subprocess.CompletedProcess:
    """Run `script` in sh with install.sh's functions loaded (CRONSUP_INSTALL_LIB=1)."""
    return subprocess.run(["sh", "-c", f'CRONSUP_INSTALL_LIB=1 . "{INSTALL}"; {script}'],
                          capture_output=True, text=True, timeout=60, cwd=str(tmp_path),
                          env={"PATH": "/usr/bin:/bin"})


def test_install_sh_counts_every_form_of_the_systemd_guard(tmp_path):
    data = ROOT / "tests" / "data" / "debian" / "system"
    jobs = tmp_path / "jobs"
    jobs.write_text("".join((data / f).read_text() for f in (
        "e2scrub_all--e2fsprogs", "certbot--certbot", "anacron--anacron", "php--php-common",
        "ntpsec--ntpsec", "crontab--cron-daemon-common"))
        + "# a comment: [ ! -d /run/systemd/system ]\n")
    result = install_lib(tmp_path, f'systemd_guarded "{jobs}"')
    # e2scrub's two `test -e ... ||`, certbot's `\! -d`, and anacron's, php's, ntpsec's `[ ! -d ]`
    assert result.stdout.strip() == "6", result.stderr


def test_install_sh_notes_e2scrubs_guard_in_an_imported_jobs_file(tmp_path):
    dest = tmp_path / "root"
    result = install(dest, IMPORT_FROM=str(ROOT / "tests" / "data" / "debian" / "system" / "e2scrub_all--e2fsprogs"))
    assert result.returncode == 0, result.stderr
    assert "note:       2 imported line(s) do nothing when systemd runs" in result.stdout


def test_a_staged_install_runs_once_moved_into_place_and_names_no_stage(tmp_path):
    # The DESTDIR bug of the virtualenv layout: its scripts named the stage. Now the modules
    # go to PREFIX/lib and the launcher names only final paths.
    final = tmp_path / "final" / "opt" / "cronsup"
    stage = tmp_path / "stage"
    result = install(stage, PREFIX=str(final), CRONSUP_BIN="", IMPORT_FROM="", BINDIR=str(tmp_path / "final" / "bin"),
                     HOME=str(tmp_path), PIP_FIND_LINKS=os.environ.get("CRONSUP_WHEELS", "/tmp/cronsup-test-wheels"))
    if result.returncode != 0 and "pip" in result.stderr and ("network" in result.stderr or "connection" in result.stderr.lower()):
        pytest.skip(f"pip cannot get cronsup's dependencies here: {result.stderr.strip()[-200:]}")
    assert result.returncode == 0, result.stderr
    staged = stage / str(final).lstrip("/")
    named = subprocess.run(["grep", "-rlF", str(stage), str(staged)], capture_output=True, text=True)
    assert named.stdout == ""
    assert not (staged / "lib" / "bin").exists()
    final.parent.mkdir(parents=True)
    os.rename(staged, final)
    ran = subprocess.run([str(final / "bin" / "cronsup"), "--version"], capture_output=True, text=True,
                         timeout=60, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": "/nonexistent"})
    assert ran.returncode == 0 and ran.stdout.startswith("cronsup, version"), ran.stderr
    where = subprocess.run([str(final / "bin" / "cronsup"), "check", "--help"], capture_output=True, text=True,
                           timeout=60)
    assert where.returncode == 0
