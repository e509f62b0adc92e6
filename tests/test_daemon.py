"""The real daemon, end to end: real processes, signals, SQLite files and file edits."""

import os
import signal
import sqlite3
import threading
import time

import psutil
import pytest

from conftest import wait_until
from cronsup import control
from cronsup.store import SqliteStore


def group_alive(pgid: int) -> bool:
    for p in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(p.pid) == pgid and p.status() != psutil.STATUS_ZOMBIE:
                return True
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return False


def test_a_job_runs_on_time_and_its_run_is_recorded_with_its_output(daemon):
    daemon.write("""\
        [job.hello]
        @every 1s echo "hello from $LOGNAME"; echo oops >&2; exit 3
        """)
    daemon.start()
    (run,) = daemon.finished("hello")[:1]
    assert run.status == "failed" and run.exit_code == 3 and run.reason == "exit code 3"
    assert run.trigger == "schedule" and run.attempt == 1 and run.pid and run.cpu_s is not None
    assert daemon.output_of(run.id) == b"hello from root\noops\n"
    assert daemon.stop() == 0


def test_a_timeout_kills_the_whole_tree(daemon):
    daemon.write("""\
        [job.hang]
        timeout = "1s"
        kill_grace = "1s"
        @every 1s sh -c 'sleep 300 & sleep 300'
        """)
    daemon.start()
    (run,) = daemon.finished("hang")[:1]
    assert run.status == "timeout" and run.reason == "timed out after 1.0s"
    wait_until(lambda: not group_alive(run.pid), 5, what="the job's process group to be gone")


def test_a_job_that_ignores_sigterm_is_killed_after_its_grace(daemon):
    daemon.write("""\
        [job.stubborn]
        timeout = "1s"
        kill_grace = "1s"
        @every 1s trap '' TERM; echo ready; sleep 300
        """)
    daemon.start()
    (run,) = daemon.finished("stubborn")[:1]
    assert run.status == "timeout" and run.signal == signal.SIGKILL
    assert 1.9 <= run.duration_s < 6
    # The run ends when its shell is reaped; the SIGKILLed sleep may take a moment longer.
    wait_until(lambda: not group_alive(run.pid), 5, what="the job's process group to be gone")


@pytest.mark.parametrize("policy", ["skip", "queue", "replace"])
def test_overlap_policies_with_a_job_slower_than_its_interval(daemon, policy):
    daemon.write(f"""\
        [job.slow]
        overlap = "{policy}"
        kill_grace = "1s"
        @every 1s sleep 2.5
        """)
    daemon.start()
    wait_until(lambda: len(daemon.runs("slow")) >= 4, 15, what="four runs")
    daemon.stop()
    runs = daemon.runs("slow")
    statuses = [r.status for r in runs]
    if policy == "skip":
        assert "skipped" in statuses and "still running" in next(r.reason for r in runs if r.status == "skipped")
        started = [r for r in runs if r.started_at is not None]
        assert all(a.finished_at <= b.started_at for a, b in zip(started, started[1:]))  # never two at once
    elif policy == "queue":
        started = [r for r in runs if r.started_at is not None]
        assert len(started) >= 2
        assert all(a.finished_at <= b.started_at + 0.05 for a, b in zip(started, started[1:]))
        assert started[1].scheduled_for < started[1].started_at - 0.5  # it waited for the first
    else:
        assert "killed" in statuses
        assert "replaced" in next(r.reason for r in runs if r.status == "killed")


def test_exactly_retries_plus_one_attempts(daemon):
    daemon.write("""\
        [job.flaky]
        retries = 2
        retry_delay = "0.2s"
        retry_jitter = false
        @every 5s echo attempt; exit 1
        """)
    daemon.start()
    runs = daemon.finished("flaky", 3)
    time.sleep(0.5)  # a fourth attempt would have come by now (0.2s, 0.4s delays)
    runs = [r for r in daemon.runs("flaky") if r.scheduled_for == runs[0].scheduled_for]
    assert [(r.attempt, r.trigger) for r in runs] == [(1, "schedule"), (2, "retry"), (3, "retry")]
    assert runs[0].reason.startswith("exit code 1; retrying in") and runs[0].reason.endswith("(attempt 2 of 3)")
    assert runs[-1].reason == "exit code 1"


def test_an_after_chain_runs_on_success_and_not_on_failure(daemon):
    flag = daemon.tmp / "fail"
    daemon.write(f"""\
        [job.backup]
        @every 1s test ! -e {flag}
        [job.report]
        after = ["backup"]
        @after echo reported
        """)
    daemon.start()
    (report,) = daemon.finished("report")[:1]
    assert report.trigger == "after" and report.status == "success"
    flag.touch()
    wait_until(lambda: any(r.status == "failed" for r in daemon.runs("backup")), what="a failed backup")
    reports_then = len(daemon.runs("report"))
    failed = [r for r in daemon.runs("backup") if r.status == "failed"]
    wait_until(lambda: len([r for r in daemon.runs("backup") if r.status == "failed"]) >= len(failed) + 1,
               what="another failed backup")
    assert len(daemon.runs("report")) == reports_then


def test_a_job_gets_crons_environment_and_no_inherited_file_descriptors(daemon):
    daemon.write("""\
        FROM_FILE=yes
        [job.inspect]
        env = { FROM_OPTION = "too" }
        @every 1s env | sort; echo FDS; ls /proc/self/fd
        """)
    daemon.start(env={"SECRET_TOKEN": "hunter2", "NOTIFY_SOCKET": "/run/x"})
    (run,) = daemon.finished("inspect")[:1]
    text = daemon.output_of(run.id).decode()
    env_part, fds = text.split("FDS\n")
    names = {line.split("=", 1)[0] for line in env_part.splitlines()}
    assert "SECRET_TOKEN" not in names and "NOTIFY_SOCKET" not in names
    assert {"SHELL", "PATH", "HOME", "LOGNAME", "USER", "FROM_FILE", "FROM_OPTION"} <= names
    assert "PATH=/usr/bin:/bin" in env_part
    # ls lists 0, 1, 2 and the directory fd it opened itself to read /proc/self/fd
    assert sorted(fds.split())[:3] == ["0", "1", "2"] and len(fds.split()) == 4


def test_a_job_prints_a_gigabyte_and_the_daemon_stays_small(daemon):
    daemon.write("""\
        [job.flood]
        output_limit = "64KiB"
        @every 1h head -c 1000000000 /dev/zero | tr '\\0' x; echo; echo THE-END
        """)
    daemon.start()
    rss_before = psutil.Process(daemon.proc.pid).memory_info().rss
    peak = [rss_before]
    result = daemon.cli("run", "flood", "--wait", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    (run,) = daemon.runs("flood")
    peak.append(psutil.Process(daemon.proc.pid).memory_info().rss)
    data = daemon.output_of(run.id)
    assert data.startswith(b"xxxx") and data.endswith(b"THE-END\n") and b"bytes cut" in data
    assert len(data) < 70 * 1024
    with SqliteStore.open(str(daemon.db), readonly=True) as log:
        assert log.run(run.id).output_truncated is True
    assert max(peak) - rss_before < 20 * 1024 * 1024


def test_sigterm_stops_the_daemon_after_terming_running_jobs_and_recording_them(daemon):
    daemon.write("""\
        [job.long]
        kill_grace = "2s"
        @every 1s sleep 300
        """)
    daemon.start()
    wait_until(lambda: daemon.runs("long"), what="a run")
    (run,) = daemon.runs("long")
    assert daemon.stop(signal.SIGTERM) == 0
    (run,) = daemon.runs("long")
    assert run.status == "killed" and run.reason == "stopped with the daemon" and run.signal == signal.SIGTERM
    assert not group_alive(run.pid)


def test_after_a_sigkill_the_next_daemon_marks_the_run_lost_and_kills_its_survivors(daemon):
    daemon.write("""\
        [job.orphan]
        @every 1s sleep 300
        """)
    daemon.start()
    # The row is written before the start and its pid after: wait for the pid.
    wait_until(lambda: [r for r in daemon.runs("orphan") if r.pid], what="a started run")
    (run,) = daemon.runs("orphan")
    daemon.stop(signal.SIGKILL)
    assert group_alive(run.pid)  # nobody killed it: the daemon died
    daemon.write("[job.orphan]\n@every 1h sleep 300\n")
    daemon.start()
    lost = daemon.runs("orphan")[0]
    assert lost.status == "lost" and "killed when the daemon restarted" in lost.reason
    wait_until(lambda: not group_alive(run.pid), 5, what="the survivor to be killed")


def test_a_locked_run_log_is_waited_for(daemon):
    daemon.write("[job.a]\n@every 1h true\n")
    daemon.start()
    daemon.stop()
    conn = sqlite3.connect(str(daemon.db), check_same_thread=False)
    conn.execute("BEGIN EXCLUSIVE")
    release = threading.Timer(1.0, conn.rollback)
    release.start()
    t0 = time.monotonic()
    daemon.start()
    assert time.monotonic() - t0 >= 0.9
    release.join()
    conn.close()


def test_a_corrupt_run_log_is_moved_aside_and_a_new_one_started(daemon):
    daemon.write("[job.a]\n@every 1s true\n")
    daemon.db.parent.mkdir(mode=0o700)
    daemon.db.write_bytes(b"this is not a database" * 100)
    daemon.start()
    aside = [p for p in daemon.db.parent.iterdir() if ".corrupt-" in p.name]
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"this is not a database")
    assert "corrupt" in daemon.output()
    daemon.finished("a")


def test_a_second_daemon_on_the_same_run_log_is_refused(daemon):
    daemon.write("[job.a]\n@every 1h true\n")
    daemon.start()
    result = daemon.cli("daemon")
    assert result.returncode == 1 and "another cronsup daemon" in result.stderr


def test_the_run_log_is_private(daemon):
    daemon.write("[job.a]\n@every 1h true\n")
    daemon.start()
    assert os.stat(daemon.db).st_mode & 0o777 == 0o600
    assert os.stat(daemon.db.parent).st_mode & 0o777 == 0o700


def test_jobs_do_not_inherit_signals_the_daemon_was_started_ignoring(daemon):
    daemon.write("[job.masks]\n@every 1s grep -E '^Sig(Blk|Ign)' /proc/self/status\n")
    daemon.start(ignoring=(signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGINT, signal.SIGTSTP))
    (run,) = daemon.finished("masks")[:1]
    masks = dict(line.split(":") for line in daemon.output_of(run.id).decode().splitlines())
    reserved = sum(1 << (n - 1) for n in range(1, 65) if n not in signal.valid_signals())
    assert int(masks["SigBlk"], 16) == 0
    assert int(masks["SigIgn"], 16) & ~reserved == 0


def test_a_scheduled_runs_timeout_is_enforced_on_time_not_at_the_next_wake_up(daemon):
    daemon.write("""\
        [job.hang]
        timeout = "1s"
        kill_grace = "1s"
        @every 6s sleep 300
        """)
    daemon.start()
    (run,) = daemon.finished("hang", timeout=20)[:1]
    assert run.status == "timeout" and run.duration_s < 2.5, run.duration_s


def test_run_of_a_running_replace_job_stops_the_old_run_and_queues_the_new_one(daemon):
    daemon.write("""\
        [job.swap]
        overlap = "replace"
        kill_grace = "1s"
        @every 1h sleep 300
        """)
    daemon.start()
    first = daemon.cli("run", "swap")
    assert first.returncode == 0, first.stderr
    second = daemon.cli("run", "swap")
    assert second.returncode == 0 and "queued" in second.stdout and "is stopped" in second.stdout, \
        second.stdout + second.stderr
    runs = daemon.finished("swap")
    assert runs[0].status == "killed" and "replaced" in runs[0].reason
    wait_until(lambda: len(daemon.runs("swap")) == 2, what="the replacing run")
    assert "Traceback" not in daemon.output()


def test_peak_memory_is_recorded_when_the_job_outgrew_the_daemon(daemon):
    daemon.write("""\
        [job.small]
        @every 1s true
        [job.big]
        @every 1h python3 -c 'x = bytearray(200 * 1024 * 1024); print(len(x))'
        """)
    daemon.start()
    assert daemon.cli("run", "big", "--wait", timeout=60).returncode == 0
    (big,) = daemon.runs("big")
    (small,) = daemon.finished("small")[:1]
    assert big.max_rss > 200 * 1024 * 1024
    assert small.max_rss is None  # what Linux reports for it is the daemon's own peak


class _Lock:
    """Another process's `BEGIN EXCLUSIVE` on the run log, from a connection of its own."""

    def __init__(self, db):
        self.conn = sqlite3.connect(str(db), check_same_thread=False, isolation_level=None)
        self.conn.execute("BEGIN EXCLUSIVE")
        self.wall = time.time()

    def release(self) -> float:
        self.conn.execute("ROLLBACK")
        self.conn.close()
        return time.time()


def _ping_time(daemon) -> float:
    t0 = time.monotonic()
    assert control.request(str(daemon.db) + ".sock", "ping", timeout=2)["pid"] == daemon.proc.pid
    return time.monotonic() - t0


def test_a_locked_run_log_stalls_nothing_and_every_write_lands_once_it_is_free(daemon):
    daemon.write("""\
        [job.tick]
        @every 1s true
        [job.slow]
        @every 1s sleep 1; echo slow done; exit 3
        """)
    daemon.start()
    running = wait_until(lambda: [r for r in daemon.runs("slow") if r.status == "running"],
                         what="a running run of slow")
    lock = _Lock(daemon.db)
    pings = []
    while time.time() - lock.wall < 4.0:  # the slow run ends during the lock
        pings.append(_ping_time(daemon))
        time.sleep(0.2)
    unlocked = lock.release()
    assert max(pings) < 0.5, pings
    assert daemon.proc.poll() is None
    ended = wait_until(lambda: [r for r in daemon.runs("slow")
                                if r.id == running[0].id and r.status != "running"], what="the run's end")
    assert ended[0].status == "failed" and ended[0].exit_code == 3
    assert daemon.output_of(ended[0].id) == b"slow done\n"
    # Every fire of tick during the lock has a row: it could not start, so it is `missed`.
    during = [r for r in daemon.runs("tick") if lock.wall + 0.5 < r.scheduled_for < unlocked - 0.5]
    assert len(during) >= 2 and all(r.status == "missed" for r in during), during
    assert "the run log refused its row at its time" in during[0].reason
    assert "locked" in during[0].reason
    daemon.finished("tick", count=len([r for r in daemon.runs("tick") if r.status != "missed"]) + 1)
    assert daemon.stop() == 0
    assert [r for r in daemon.runs() if r.status == "running"] == []


def test_a_run_that_ended_while_the_run_log_was_locked_is_written_at_a_clean_stop(daemon):
    daemon.write("[job.slow]\n@every 1h sleep 0.5; echo bye; exit 4\n")
    daemon.start()
    assert daemon.cli("run", "slow").returncode == 0
    (run,) = wait_until(lambda: daemon.runs("slow"), what="the manual run")
    lock = _Lock(daemon.db)
    time.sleep(1.0)  # the run ends while the log is locked
    daemon.send(signal.SIGTERM)
    time.sleep(4.5)  # longer than SQLite's usual busy timeout: the daemon keeps trying as it stops
    lock.release()
    assert daemon.stop() == 0
    (final,) = daemon.runs("slow")
    assert (final.id, final.status, final.exit_code) == (run.id, "failed", 4)
    assert daemon.output_of(run.id) == b"bye\n"
    assert daemon.runs("slow")[0].status != "running"


def test_keep_size_drops_the_oldest_output_and_logs_says_so(daemon):
    daemon.write("[job.chatty]\n@every 1s yes x | head -c 300000\n")
    daemon.start("--keep-size", "1MiB")
    daemon.finished("chatty", count=5, timeout=20)
    oldest = wait_until(lambda: [r for r in daemon.runs("chatty") if r.output_pruned], what="pruned output")[0]
    with SqliteStore.open(str(daemon.db), readonly=True) as log:
        # The bound, plus a run finished since the last prune and the running run's output.
        assert log.output_bytes() <= (1 << 20) + 2 * 300_000
    assert daemon.output_of(oldest.id) == b"" and oldest.status == "success"
    assert len(daemon.output_of(daemon.finished("chatty", count=5)[-1].id)) == 300_000
    shown = daemon.cli("logs", "chatty", "--run", str(oldest.id), check=True).stdout
    assert "output pruned" in shown and "--keep-size" in shown
    assert "output pruned" in daemon.cli("logs", "chatty", "--output", "-n", "50", check=True).stdout
    assert daemon.stop() == 0



def test_sigusr1_and_sigusr2_are_logged_and_ignored_not_fatal(daemon):
    daemon.write("@every 1s echo tick\n")
    daemon.start()
    daemon.send(signal.SIGUSR1)
    daemon.send(signal.SIGUSR2)
    wait_until(lambda: "ignoring SIGUSR2" in daemon.output(), what="the daemon to log the signal")
    before = len(daemon.runs("echo"))
    daemon.finished("echo", before + 2)  # still scheduling
    assert daemon.proc.poll() is None and "ignoring SIGUSR1" in daemon.output()
    assert daemon.stop() == 0


def test_status_of_a_stopped_daemon_says_it_does_not_answer_and_exits_4(daemon):
    daemon.write("@every 1h echo tick\n")
    daemon.start()
    assert daemon.cli("status").returncode == 0
    daemon.send(signal.SIGSTOP)
    try:
        result = daemon.cli("status")
        assert result.returncode == 4 and "not answering its control socket" in result.stdout
        assert daemon.status()["daemon"]["answering"] is False
    finally:
        daemon.send(signal.SIGCONT)
    assert daemon.status()["daemon"]["answering"] is True
    assert daemon.cli("status").returncode == 0
