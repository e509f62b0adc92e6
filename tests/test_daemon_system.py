"""The daemon against the system: users, file owners, PID 1, a full disk, mail, boots."""

import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from conftest import wait_until
from cronsup import control
from cronsup.store import open_store

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


@root_only
def test_a_job_runs_as_its_user_with_that_users_groups(daemon):
    daemon.write("""\
        [job.as-nobody]
        user = "nobody"
        @every 1s id -u; id -g; id -G; echo "$HOME $LOGNAME"; pwd
        """)
    daemon.start()
    (run,) = daemon.finished("as-nobody")[:1]
    nobody = pwd.getpwnam("nobody")
    uid, gid, groups, names, cwd = daemon.output_of(run.id).decode().splitlines()
    assert (int(uid), int(gid)) == (nobody.pw_uid, nobody.pw_gid)
    assert set(map(int, groups.split())) == set(os.getgrouplist("nobody", nobody.pw_gid))
    assert names == f"{nobody.pw_dir} nobody" and cwd == "/"  # its home does not exist


def test_a_bad_user_shell_or_workdir_is_an_error_run_never_a_run_as_root(daemon):
    marker = daemon.tmp / "ran"
    daemon.write(f"""\
        [job.bad-user]
        user = "no-such-user-here"
        @every 1s touch {marker}
        [job.bad-shell]
        shell = "/no/such/shell"
        @every 1s touch {marker}
        [job.bad-workdir]
        workdir = "/no/such/dir"
        @every 1s touch {marker}
        """)
    daemon.start()
    for job, needle in [("bad-user", "no such user"), ("bad-shell", "/no/such/shell"),
                        ("bad-workdir", "/no/such/dir")]:
        (run,) = daemon.finished(job)[:1]
        assert run.status == "error" and needle in run.reason, run.reason
    assert not marker.exists()


@root_only
@pytest.mark.parametrize("problem", ["group-writable", "owned by nobody"])
def test_a_root_daemon_refuses_a_jobs_file_others_could_write(daemon, problem):
    daemon.write("[job.a]\n@every 1s true\n")
    if problem == "group-writable":
        os.chmod(daemon.jobs, 0o664)
        needle = "group- or other-writable (mode 664)"
    else:
        os.chown(daemon.jobs, pwd.getpwnam("nobody").pw_uid, -1)
        needle = "owned by uid 65534"
    daemon.start()
    assert needle in daemon.status()["daemon"]["config_error"]
    assert daemon.status()["jobs"] == [] and daemon.runs("a") == []


def test_reboot_jobs_run_once_per_boot_not_once_per_daemon_start(daemon):
    daemon.write("@reboot echo booted\n")
    daemon.start()
    (run,) = daemon.finished("echo")
    assert run.trigger == "reboot"
    daemon.stop()
    daemon.start()
    time.sleep(0.5)  # a second @reboot run, if any, would start at once
    assert len(daemon.runs("echo")) == 1


def test_mailto_sends_the_output_through_the_injected_sendmail(daemon):
    # A sendmail first on PATH must not be used either: the injected one wins everywhere.
    bin_dir = daemon.tmp / "bin"
    bin_dir.mkdir()
    trap = daemon.tmp / "reached-the-wrong-sendmail"
    (bin_dir / "sendmail").write_text(f"#!/bin/sh\ntouch {trap}\n")
    (bin_dir / "sendmail").chmod(0o755)
    daemon.write("""\
        MAILTO=ops@example.com
        [job.noisy]
        @every 1s echo something to say
        [job.quiet]
        @every 1s true
        """)
    daemon.start(env={"PATH": f"{bin_dir}:{os.environ['PATH']}"})
    daemon.finished("noisy")
    daemon.finished("quiet")
    mailbox = daemon.mailbox
    text = wait_until(lambda: mailbox.exists() and mailbox.read_text(), what="a mail")
    assert "To: ops@example.com" in text and "something to say" in text
    assert "Subject: Cron <root@" in text
    assert "-t" in (daemon.tmp / "mailbox.args").read_text().split()
    assert not trap.exists()


def test_daemon_sendmail_option_wins_over_the_environment(daemon):
    other = daemon.tmp / "other-sendmail"
    other.write_text(f"#!/bin/sh\ncat > {daemon.tmp}/other-mailbox\n")
    other.chmod(0o755)
    daemon.write("MAILTO=ops@example.com\n[job.noisy]\n@every 1s echo hello\n")
    daemon.start("--sendmail", str(other))
    text = wait_until(lambda: (daemon.tmp / "other-mailbox").exists()
                      and (daemon.tmp / "other-mailbox").read_text(), what="a mail")
    assert "hello" in text and not daemon.mailbox.exists()


def test_fires_missed_while_the_daemon_was_down_are_recorded_or_caught_up(daemon):
    daemon.write("""\
        [job.none]
        0 * * * * true
        [job.last]
        catchup = "last"
        0 * * * * true
        """)
    # The daemon's clock at half past this hour: the three hours it was down hold exactly
    # three of the hourly fires, the newest half an hour old, whenever the test runs.
    now = time.time()
    env = {"CRONSUP_TEST_CLOCK_OFFSET": repr(now // 3600 * 3600 + 1800 - now)}
    daemon.start(env=env)
    daemon.stop()
    # Pretend the daemon stopped three hours ago.
    with open_store(str(daemon.db)) as log:
        log.update_daemon(last_seen=log.daemon().last_seen - 3 * 3600)
    daemon.start(env=env)
    missed = [r for r in daemon.runs("none") if r.status == "missed"]
    assert len(missed) == 3 and "was not running" in missed[0].reason
    last = daemon.runs("last")
    # Only the latest fire runs, as catch-up.
    (ran,) = [r for r in last if r.status != "missed"]
    assert ran.trigger == "catchup"
    assert len([r for r in last if r.status == "missed"]) == 2


@root_only
def test_as_pid_1_the_daemon_reaps_orphans(tmp_path):
    if shutil.which("unshare") is None:
        pytest.skip("unshare is not installed")
    jobs = tmp_path / "jobs"
    jobs.write_text("[job.orphans]\n@every 1s sh -c 'sleep 0.2 &'; echo left one\n")
    db = tmp_path / "state" / "runs.db"
    log = open(tmp_path / "daemon.log", "wb")
    outer = subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-m", "cronsup",
                              "daemon", "--jobs", str(jobs), "--db", str(db)], stdout=log, stderr=log)
    try:
        wait_until(lambda: _ping(db) == 1, 15, what="the daemon as PID 1")
        inner = psutil.Process(outer.pid).children()[0]
        wait_until(lambda: _finished_runs(db) >= 4, 15, what="four runs")

        def zombies():
            return [c for c in inner.children() if c.status() == psutil.STATUS_ZOMBIE]

        # Orphaned sleeps exit 0.2 s after each run; none may stay a zombie for long.
        time.sleep(0.5)
        assert len(zombies()) <= 1
        inner.send_signal(signal.SIGTERM)
        assert outer.wait(15) == 0
    finally:
        if outer.poll() is None:
            outer.kill()
        log.close()


def _ping(db) -> int | None:
    try:
        return control.request(str(db) + ".sock", "ping", timeout=2)["pid"]
    except control.ControlError:
        return None


def _finished_runs(db) -> int:
    from cronsup.store import SqliteStore, RunLogError

    try:
        with SqliteStore.open(str(db), readonly=True) as log:
            return len([r for r in log.runs("orphans", limit=None) if r.status == "success"])
    except RunLogError:
        return 0


def tiny_disk(daemon) -> Path:
    """The daemon's state directory on a 2 MiB tmpfs of its own (the test unmounts it)."""
    state = daemon.db.parent
    state.mkdir(mode=0o700)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(state)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    return state


@root_only
def test_a_full_disk_does_not_stop_the_daemon_and_nothing_runs_unrecorded(daemon):
    state = tiny_disk(daemon)
    try:
        marker = daemon.tmp / "count"
        daemon.write(f"[job.tick]\n@every 1s echo x >> {marker}\n")
        daemon.start()
        daemon.finished("tick")
        filler = state / "filler"
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True)
        wait_until(lambda: "database or disk is full" in daemon.output(), 15, what="the disk-full error")
        recorded = len(daemon.runs("tick"))
        time.sleep(2.5)  # fires come and go; none may run without a row
        assert daemon.proc.poll() is None
        filler.unlink()
        wait_until(lambda: len(daemon.runs("tick")) > recorded + 1, 15, what="runs after space came back")
        assert daemon.stop() == 0
        # Runs may still start while the disk is full (a checkpoint gives back the -wal
        # file's space), but each has its row; every fire that did not start is `missed`.
        started = [r for r in daemon.runs("tick") if r.status != "missed"]
        assert len(marker.read_text().splitlines()) == len(started)
    finally:
        daemon.kill()
        subprocess.run(["umount", "-l", str(state)])


@root_only
def test_after_a_full_disk_no_run_stays_running_and_the_wal_is_emptied(daemon):
    state = tiny_disk(daemon)
    wal = state / "runs.db-wal"
    try:
        daemon.write("[job.slow]\n@every 1s sleep 1; echo slow output; exit 5\n")
        daemon.start()
        daemon.finished("slow")
        wait_until(lambda: [r for r in daemon.runs("slow") if r.status == "running" and r.pid],
                   what="a running run")  # to end while the disk is full
        filler, fill_at = state / "filler", time.time()
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=4k"], capture_output=True)
        wait_until(lambda: "database or disk is full" in daemon.output(), 15, what="the disk-full error")
        full_at, full_wal = time.time(), wal.stat().st_size
        while time.time() < full_at + 2.5:  # runs end and fires come due while nothing can be written
            # Another process takes whatever the daemon frees (its checkpoints empty the -wal file).
            subprocess.run(["dd", "if=/dev/zero", f"of={state}/more-{time.monotonic()}", "bs=4k"],
                           capture_output=True)
            full_wal = max(full_wal, wal.stat().st_size)
            time.sleep(0.05)
        assert daemon.proc.poll() is None
        for path in state.glob("more-*"):
            path.unlink()
        filler.unlink()
        freed_at = time.time()
        wait_until(lambda: "the run log takes writes again" in daemon.output(), 10, what="the kept writes")
        wait_until(lambda: wal.stat().st_size < full_wal, 5, 0.005, what="the -wal file to shrink")
        assert daemon.stop() == 0
        runs = daemon.runs("slow")
        assert [r for r in runs if r.status == "running"] == []
        ran = [r for r in runs if r.started_at and r.reason != "stopped with the daemon"]
        assert all((r.status, r.exit_code) == ("failed", 5) for r in ran), ran
        assert all(daemon.output_of(r.id) == b"slow output\n" for r in ran)
        assert [r for r in ran if fill_at < r.finished_at < freed_at], "no run ended while the disk was full"
        missed = [r for r in runs if r.status == "missed"]
        assert missed and all("disk is full" in r.reason for r in missed), missed
    finally:
        daemon.kill()
        subprocess.run(["umount", "-l", str(state)])
