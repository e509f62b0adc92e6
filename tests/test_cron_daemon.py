"""`cronsup daemon --cron` on a --cron-root tree of real files: files added, edited, replaced
as `crontab -e` does, and removed while it runs; users; the verdicts `status` shows."""

import datetime as dt
import math
import os
import pwd
import re
import time
from pathlib import Path

import pytest

from conftest import wait_until

NOBODY = pwd.getpwnam("nobody")

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="--cron needs a root daemon")


def put(root: Path, relative: str, text: str, mode: int = 0o644, owner: int = 0) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chown(path, owner, -1)
    path.chmod(mode)
    return path


def crontab_e(path: Path, text: str, owner: int) -> None:
    """What Debian's `crontab -e` does on save: a temp file in the spool, renamed into place."""
    temp = path.parent / "tmp.Qw3rty"
    temp.write_text(text)
    os.chown(temp, owner, -1)
    temp.chmod(0o600)
    os.rename(temp, path)


def jobs(daemon) -> dict[str, dict]:
    return {j["name"]: j for j in daemon.status()["jobs"]}


def sources(daemon) -> dict[str, dict]:
    return {os.path.basename(s["path"]): s for s in daemon.status()["cron"]["sources"]}


def logged_at(daemon, pattern: str) -> float | None:
    """The real time of the daemon's first log line matching `pattern`."""
    for line in daemon.output().splitlines():
        if re.search(pattern, line):
            stamp = line[:23]
            return time.mktime(time.strptime(stamp[:19], "%Y-%m-%d %H:%M:%S")) + int(stamp[20:]) / 1000
    return None


def clock_at(wall: float) -> dict[str, str]:
    return {"CRONSUP_TEST_CLOCK_OFFSET": repr(wall - time.time())}


def test_a_cron_d_file_added_while_the_daemon_runs_starts_within_a_second_of_its_due_time(daemon, tmp_path):
    root = tmp_path / "root"
    (root / "etc/cron.d").mkdir(parents=True)
    daemon.write("")
    boundary = math.ceil(time.time() / 60) * 60 + 3600  # a whole minute of the daemon's clock
    env = clock_at(boundary - 8)
    offset = float(env["CRONSUP_TEST_CLOCK_OFFSET"])
    daemon.start("--cron", "--cron-root", str(root), env=env)
    written = time.time()
    put(root, "etc/cron.d/tick", 'MAILTO=""\n* * * * * root echo tick\n')
    job = wait_until(lambda: jobs(daemon).get("echo"), 10, what="the new file's job in status")
    noticed = logged_at(daemon, r"cron: .*/etc/cron.d/tick: 1 job") - written
    assert noticed < 1.0, f"noticed after {noticed:.2f}s"
    if written + offset > boundary - 1:
        pytest.fail("the machine is too loaded: the daemon started too late to test the next minute")
    assert dt.datetime.fromisoformat(job["next_run"]).timestamp() == boundary
    assert job["source"] == f"{root}/etc/cron.d/tick:2"
    (run,) = daemon.finished("echo", timeout=20)
    assert run.scheduled_for == boundary and run.status == "success"
    assert 0 <= run.started_at - boundary < 1.0
    assert daemon.output_of(run.id) == b"tick\n"
    daemon.stop()


def test_a_broken_file_is_skipped_while_the_good_one_beside_it_runs_and_each_verdict_is_shown(
        daemon, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")  # wide enough that no line is cut to fit
    root = tmp_path / "root"
    put(root, "etc/cron.d/good", 'MAILTO=""\n0 0 1 1 * root echo good\n')
    bad = put(root, "etc/cron.d/bad", '0 0 1 1 * root echo fine\n61 * * * * root echo bad\n')
    put(root, "etc/cron.d/open", "0 0 1 1 * root echo open\n", mode=0o664)
    put(root, "etc/cron.d/x.dpkg-old", "0 0 1 1 * root echo old\n")
    put(root, "etc/cron.d/y.disabled", "0 0 1 1 * root echo disabled\n")
    daemon.write("@every 1h echo from-the-jobs-file\n")
    daemon.start("--cron", "--cron-root", str(root))
    found = sources(daemon)
    assert {n: s["verdict"] for n, s in found.items()} == {
        "good": "ok", "bad": "skipped", "open": "skipped", "x.dpkg-old": "ignored", "y.disabled": "ignored"}
    assert found["bad"]["errors"][0].startswith(f"{bad}:2: ")
    assert "group- or other-writable (mode 0664)" in found["open"]["reason"]
    listed = jobs(daemon)
    assert len(listed) == 2
    by_source = {j["source"]: n for n, j in listed.items()}
    good = by_source[f"{root}/etc/cron.d/good:2"]
    assert by_source[f"{daemon.jobs}:1"] == "echo"  # the jobs file keeps its name in a clash
    assert good != "echo"
    assert listed[good]["next_run"] is not None
    result = daemon.cli("run", good, "--wait")
    assert result.returncode == 0, result.stderr
    text = daemon.cli("status").stdout
    assert f"SKIPPED {bad}: 1 error in it" in text
    assert f"from {root}/etc/cron.d/good:2, as root" in text
    assert "ignored " + str(root / "etc/cron.d/x.dpkg-old") in text
    # Fixed, it is read; removed, its jobs go.
    written = time.time()
    put(root, "etc/cron.d/bad", '0 0 1 1 * root /usr/local/bin/fixed\n')
    wait_until(lambda: sources(daemon)["bad"]["verdict"] == "ok", 10, what="the fixed file read")
    assert logged_at(daemon, r"cron: .*/etc/cron.d/bad: 1 job") - written < 1.0
    (root / "etc/cron.d/good").unlink()
    wait_until(lambda: good not in jobs(daemon), 10, what="the removed file's job gone")
    assert daemon.proc.poll() is None
    daemon.stop()


def test_a_user_crontab_runs_as_its_user_and_a_crontab_e_save_is_noticed(daemon, tmp_path):
    root = tmp_path / "root"
    spool = "var/spool/cron/crontabs"
    mine = put(root, f"{spool}/nobody", 'MAILTO=""\n0 0 1 1 * id -un\n', mode=0o600, owner=NOBODY.pw_uid)
    # A file named root that nobody owns: running it would make nobody root.
    put(root, f"{spool}/root", 'MAILTO=""\n0 0 1 1 * id -un\n', mode=0o600, owner=NOBODY.pw_uid)
    daemon.write("")
    daemon.start("--cron", "--cron-root", str(root))
    found = sources(daemon)
    assert found["nobody"]["verdict"] == "ok" and found["nobody"]["user"] == "nobody"
    assert found["root"]["verdict"] == "skipped" and "WRONG FILE OWNER" in found["root"]["reason"]
    assert set(jobs(daemon)) == {"nobody-id"}
    result = daemon.cli("run", "nobody-id", "--wait")
    assert result.returncode == 0, result.stderr
    (run,) = daemon.runs("nobody-id")
    assert daemon.output_of(run.id) == b"nobody\n"
    written = time.time()
    crontab_e(mine, 'MAILTO=""\n0 0 1 1 * whoami\n', NOBODY.pw_uid)
    wait_until(lambda: set(jobs(daemon)) == {"nobody-whoami"}, 10, what="the saved crontab read")
    lines = [line for line in daemon.output().splitlines() if "crontabs/nobody: 1 job (as nobody)" in line]
    assert len(lines) == 2  # at start-up, and at the save
    stamp = lines[1][:23]
    noticed = time.mktime(time.strptime(stamp[:19], "%Y-%m-%d %H:%M:%S")) + int(stamp[20:]) / 1000 - written
    assert noticed < 1.0, f"noticed after {noticed:.2f}s"
    assert "tmp.Qw3rty" not in sources(daemon)  # renamed away; never read as a crontab
    assert daemon.cli("run", "nobody-whoami", "--wait").returncode == 0
    run = daemon.runs("nobody-whoami")[0]
    assert daemon.output_of(run.id) == b"nobody\n"
    daemon.stop()


def test_a_cron_job_with_no_mailto_mails_its_owner(daemon, tmp_path):
    root = tmp_path / "root"
    put(root, "etc/crontab", "0 0 1 1 * root echo for-root\n")
    daemon.write("")
    daemon.start("--cron", "--cron-root", str(root))
    assert daemon.cli("run", "echo", "--wait").returncode == 0
    mail = wait_until(lambda: daemon.mailbox.exists() and daemon.mailbox.read_text(), 10, what="the mail")
    assert re.search(r"^To: root$", mail, re.M) and "for-root" in mail


def test_the_cron_block_of_the_jobs_file_sets_options_for_cron_jobs(daemon, tmp_path):
    root = tmp_path / "root"
    put(root, "etc/cron.d/slow", 'MAILTO=""\n0 0 1 1 * root tail -f /dev/null\n')
    daemon.write('[cron]\ntimeout = "1s"\n')
    daemon.start("--cron", "--cron-root", str(root))
    daemon.cli("run", "tail", "--wait")
    (run,) = daemon.finished("tail", timeout=20)
    assert run.status == "timeout"
    daemon.stop()


def test_reboot_lines_run_once_a_boot_and_not_after_cron_ran_them(daemon, tmp_path):
    root = tmp_path / "root"
    put(root, "etc/cron.d/boot", 'MAILTO=""\n@reboot root /usr/local/bin/warm-cache\n')
    (root / "run").mkdir()
    daemon.write("")
    daemon.start("--cron", "--cron-root", str(root))
    (run,) = daemon.finished("warm-cache", timeout=15)
    assert run.trigger == "reboot"
    assert (root / "run/crond.reboot").exists()  # as cron leaves it: a cron started later skips them
    daemon.stop()

    other = tmp_path / "other"  # a host whose cron ran its @reboot lines this boot already
    put(other, "etc/cron.d/boot", 'MAILTO=""\n@reboot root /usr/local/bin/warm-cache\n')
    put(other, "run/crond.reboot", "")
    daemon.db = tmp_path / "state2" / "runs.db"
    daemon.write("@reboot echo the-jobs-files-own\n")  # its run shows the @reboot pass is over
    daemon.start("--cron", "--cron-root", str(other))
    daemon.finished("echo", timeout=15)
    assert "not running the @reboot lines of cron's files (warm-cache)" in daemon.output()
    assert "warm-cache" in jobs(daemon) and daemon.runs("warm-cache") == []
    daemon.stop()
