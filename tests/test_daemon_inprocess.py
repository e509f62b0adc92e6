"""The daemon built in the test process: a fake clock, real `true`/`false` children, and
receivers that record, raise or hang; each test drives a history and asserts the actions."""

from __future__ import annotations

import datetime as dt
import logging
import signal
import textwrap
import threading
import time
from pathlib import Path

import pytest

from cronsup import cli_status, report
from cronsup.daemon import Daemon
from cronsup.events import Event, Receivers
from cronsup.model import Now, RunStatus

T0 = dt.datetime(2026, 11, 26, 10, 30, tzinfo=dt.timezone.utc).timestamp()


class FakeClock:
    """Both clocks, moved only by the test."""

    def __init__(self, wall: float = T0):
        self.wall, self.mono = wall, 5000.0

    def __call__(self) -> Now:
        return Now(self.wall, self.mono)

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds


class InProcess:
    """A Daemon on a jobs file and run log under tmp_path, stepped by the test."""

    def __init__(self, tmp: Path, jobs: str, clock=None, receivers=()):
        self.jobs = tmp / "jobs"
        self.jobs.write_text(textwrap.dedent(jobs))
        self.db = tmp / "state" / "runs.db"
        self.clock = clock if clock is not None else FakeClock()
        self.events: list[Event] = []
        self.receivers = Receivers([*receivers, self.events.append])
        self.d = Daemon(str(self.jobs), str(self.db), now=self.clock, receivers=self.receivers,
                        sendmail=str(tmp / "no-sendmail"))
        self.stopped = False

    def __enter__(self) -> InProcess:
        self.d.start()
        return self

    def __exit__(self, *exc) -> None:
        if not self.stopped:
            self.stop()

    def until(self, predicate, timeout: float = 5.0, what: str = "condition",
              max_wait: float | None = 0.01):
        """Step the loop (never sleeping past `max_wait`) until `predicate()` is truthy."""
        deadline = time.monotonic() + timeout
        while not (value := predicate()):
            assert self.d.step(max_wait=max_wait), "the daemon stopped"
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; events: {self.names()}")
        return value

    def names(self, job: str | None = None) -> list[str]:
        return [e.event for e in list(self.events) if job is None or e.job == job]

    def saw(self, *names: str, job: str | None = None):
        return lambda: self.names(job)[:len(names)] == list(names) or None

    def runs(self, job: str):
        return list(reversed(self.d.log.runs(job, limit=None)))

    def stop(self) -> None:
        self.d.flags.stop = signal.SIGTERM
        deadline = time.monotonic() + 10
        while self.d.step(max_wait=0.01):
            assert time.monotonic() < deadline, "the daemon did not stop"
        self.d.close()
        self.stopped = True


def test_a_due_job_starts_at_its_time_and_its_success_is_recorded_and_told(tmp_path):
    with InProcess(tmp_path, """\
            [job.hello]
            @every 10s echo hello
            """) as w:
        w.d.step(max_wait=0)
        assert w.names() == [] and w.runs("hello") == []  # not due yet
        w.clock.advance(10)
        w.until(w.saw("start", "success"), what="start and success")
        (run,) = w.runs("hello")
        assert run.status is RunStatus.SUCCESS and run.scheduled_for == pytest.approx(T0 + 10)
        assert run.started_at is not None  # the runner's own (real) clock
        assert w.d.log.output(run.id)[0] == b"hello\n"
        start, success = w.events[:2]
        assert start.run_id == success.run_id == run.id and start.outcome is None
        assert success.outcome.status is RunStatus.SUCCESS and success.outcome.final
        assert success.output == b"hello\n" and success.host == w.d.host


def test_a_failed_attempt_is_a_retry_then_the_last_one_a_failure_and_a_success_a_recovery(tmp_path):
    flag = tmp_path / "fixed"
    with InProcess(tmp_path, f"""\
            [job.flaky]
            retries = 1
            retry_delay = "5s"
            retry_jitter = false
            @every 1h test -e {flag}
            """) as w:
        w.clock.advance(3600)
        w.until(w.saw("start", "retry"), what="the first attempt")
        retry = w.events[1].outcome
        assert retry.status is RunStatus.FAILED and not retry.final
        assert retry.retry_at == pytest.approx(w.clock.wall + 5)
        w.clock.advance(4.9)
        w.d.step(max_wait=0.05)
        assert w.names() == ["start", "retry"]  # not before its delay
        w.clock.advance(0.1)
        w.until(w.saw("start", "retry", "start", "failure"), what="the retry")
        assert w.events[3].outcome.final and w.events[3].trigger == "retry" and w.events[3].attempt == 2
        assert [r.attempt for r in w.runs("flaky")] == [1, 2]
        flag.touch()
        w.clock.advance(3600)
        w.until(lambda: len(w.events) >= 6, what="the next run")
        assert w.names()[4:] == ["start", "recovery"]
        w.clock.advance(3600)
        w.until(lambda: len(w.events) >= 8, what="the run after")
        assert w.names()[6:] == ["start", "success"]  # only the first success recovers


def test_a_run_due_while_the_last_still_runs_is_skipped_and_told(tmp_path):
    with InProcess(tmp_path, """\
            [job.slow]
            @every 10s sleep 30
            """) as w:
        w.clock.advance(10)
        w.until(w.saw("start"), what="the start")
        w.clock.advance(10)
        w.until(w.saw("start", "skipped"), what="the skip")
        skipped = w.events[1]
        assert skipped.outcome.status is RunStatus.SKIPPED and skipped.outcome.final
        assert [r.status for r in w.runs("slow")] == [RunStatus.RUNNING, RunStatus.SKIPPED]
        assert skipped.run_id == w.runs("slow")[1].id
        w.stop()
        assert w.names() == ["start", "skipped", "failure"]
        assert w.events[2].outcome.status is RunStatus.KILLED
        assert w.events[2].outcome.reason == "stopped with the daemon"


def test_after_a_downtime_the_latest_fire_is_caught_up_and_the_rest_are_missed(tmp_path):
    jobs = """\
        [job.hourly]
        catchup = "last"
        timezone = "UTC"
        0 * * * * true
        """
    with InProcess(tmp_path, jobs):
        pass  # a daemon ran at 10:30 and stopped
    clock = FakeClock(T0 + 3 * 3600)  # back at 13:30: 11:00, 12:00 and 13:00 were missed
    with InProcess(tmp_path, jobs, clock=clock) as w:
        w.until(w.saw("missed", "missed", "start", "success"), what="the catch-up")
        missed = [e for e in w.events if e.event == "missed"]
        assert [e.scheduled_for for e in missed] == [T0 + 1800, T0 + 5400]
        assert missed[0].outcome.reason.startswith("the daemon was not running at")
        start = w.events[2]
        assert start.trigger == "catchup" and start.scheduled_for == T0 + 9000
        assert [(r.trigger, r.status) for r in w.runs("hourly")] == [
            ("schedule", "missed"), ("schedule", "missed"), ("catchup", "success")]


def test_a_receiver_that_raises_is_logged_and_the_others_and_the_jobs_go_on(tmp_path, caplog):
    def boom(event: Event) -> None:
        raise RuntimeError(f"boom on {event.event}")

    with caplog.at_level(logging.ERROR, logger="cronsup"), InProcess(tmp_path, """\
            [job.a]
            @every 10s true
            """, receivers=[boom]) as w:
        for n in (1, 2):
            w.clock.advance(10)
            w.until(lambda: len(w.events) == 2 * n, what=f"run {n}")
        w.until(lambda: sum("receiver boom failed" in r.getMessage() for r in caplog.records) == 4,
                what="four logged failures")
        assert w.names() == ["start", "success", "start", "success"]
        assert [r.status for r in w.runs("a")] == [RunStatus.SUCCESS, RunStatus.SUCCESS]
        assert w.d.internal_errors == 0
        assert "the start event of a[1]" in caplog.text


def test_a_receiver_whose_queue_is_full_drops_events_and_says_how_many(caplog):
    taken, release = threading.Event(), threading.Event()

    def stuck(event: Event) -> None:
        taken.set()
        release.wait(10)

    receivers = Receivers([stuck], queue_size=2)
    event = Event("start", "a", None, 1, None, "h", T0, "schedule", 1, T0)
    with caplog.at_level(logging.WARNING, logger="cronsup"):
        receivers.emit(event)
        assert taken.wait(5)
        for _ in range(4):
            receivers.emit(event)  # two fit the queue, two are dropped
    assert receivers.dropped == 2
    assert "receiver stuck is behind by 2 events: dropped 2 so far" in caplog.text
    release.set()
    receivers.close(grace=5)


def test_an_exception_in_a_pass_is_logged_counted_in_status_and_the_loop_goes_on(tmp_path, caplog):
    with InProcess(tmp_path, """\
            [job.a]
            @every 10s true
            """) as w:
        real_tick, calls = w.d.supervisor.tick, []

        def broken_once(now):
            calls.append(now)
            if len(calls) == 1:
                raise ValueError("a bug in one pass")
            return real_tick(now)

        w.d.supervisor.tick = broken_once
        w.d._need_tick = True
        with caplog.at_level(logging.ERROR, logger="cronsup"):
            assert w.d.step(max_wait=0)
        assert w.d.internal_errors == 1
        assert "internal error (1 since start); the daemon goes on" in caplog.text
        assert "ValueError: a bug in one pass" in caplog.text
        st = report.status(str(w.jobs), str(w.db), now=w.clock.wall)
        assert st.to_json()["daemon"]["internal_errors"] == 1
        lines = cli_status._status_lines(st, w.clock.wall, False, str(w.jobs), str(w.db))
        assert "errors     1 internal error caught by the daemon, which went on (see its log)" in lines
        w.clock.advance(10)
        w.until(w.saw("start", "success"), what="the next run")


def test_an_internal_error_while_handling_a_run_names_its_job(tmp_path, caplog):
    with InProcess(tmp_path, """\
            [job.named]
            @every 10s true
            """) as w:
        real = w.d._emit_outcome

        def broken(*args, **kwargs):
            w.d._emit_outcome = real
            raise KeyError("lost track")

        w.d._emit_outcome = broken
        with caplog.at_level(logging.ERROR, logger="cronsup"):
            w.clock.advance(10)
            w.until(lambda: w.d.internal_errors, what="the error")
        assert "internal error while handling job named (1 since start)" in caplog.text
        w.clock.advance(10)
        w.until(lambda: "success" in w.names(), what="the next run")  # the loop went on


@pytest.mark.parametrize("receiver", ["raises", "sleeps 30s"])
def test_a_receiver_that_raises_or_hangs_does_not_delay_a_due_start(tmp_path, receiver):
    def raises(event: Event) -> None:
        raise RuntimeError("every event")

    def sleeps(event: Event) -> None:
        time.sleep(30)

    from cronsup import clock

    w = InProcess(tmp_path, """\
        [job.tick]
        @every 1s true
        """, clock=clock.now, receivers=[raises if receiver == "raises" else sleeps])
    w.d.start()
    try:
        # The loop sleeps as the daemon's does (max_wait None): to the start's deadline.
        w.until(lambda: len([r for r in w.runs("tick") if r.started_at]) >= 6, timeout=15,
                what="six starts", max_wait=None)
        runs = [r for r in w.runs("tick") if r.started_at][:6]
    finally:
        w.stop()
    # The first start competes with start-up (the watcher thread imports watchfiles); on a
    # machine shared with other test runs a start or two may lose the CPU for a while, so the
    # median is held to 50 ms. Inline, a receiver would make every start 30 s late, or stop
    # the loop.
    lateness = sorted(r.started_at - r.scheduled_for for r in runs[1:])
    assert all(-0.001 <= late < 1.0 for late in lateness), lateness
    assert lateness[len(lateness) // 2] < 0.050, lateness
