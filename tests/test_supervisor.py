"""The decision core, driven by a fake clock: no processes, no sleeping."""

import datetime as dt
import random
import signal
import textwrap
import zoneinfo

from cronsup import jobsfile
from cronsup.model import Outcome, RunStatus, Trigger
from cronsup.supervisor import History, Kill, Now, Record, Start, Supervisor

BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
UTC = dt.timezone.utc


def at(*args, tz=UTC) -> float:
    return dt.datetime(*args, tzinfo=tz).timestamp()


class World:
    """A supervisor, a clock that tests move, and a fake daemon that obeys its actions."""

    def __init__(self, text: str, wall: float, history: History | None = None):
        self.wall, self.mono = wall, 5000.0
        jf = jobsfile.parse(textwrap.dedent(text), "jobs")
        self.sup = Supervisor(jf, self.now, history or History(), rng=random.Random(1))
        self.next_id = 1
        self.starts: list[tuple[int, Start]] = []
        self.records: list[Record] = []
        self.kills: list[Kill] = []
        self.running: dict[int, Start] = {}
        self.wake = self.mono

    @property
    def now(self) -> Now:
        return Now(self.wall, self.mono)

    def do(self, actions) -> None:
        for action in actions:
            if isinstance(action, Start):
                run_id = self.next_id
                self.next_id += 1
                self.sup.started(action, run_id, self.now)
                self.starts.append((run_id, action))
                self.running[run_id] = action
            elif isinstance(action, Record):
                self.records.append(action)
            else:
                self.kills.append(action)

    def tick(self) -> None:
        actions, self.wake = self.sup.tick(self.now)
        self.do(actions)

    def advance(self, seconds: float) -> None:
        """Let time pass, waking up whenever the supervisor asked to."""
        end = self.mono + seconds
        self.tick()
        while self.wake <= end:
            step = self.wake - self.mono
            self.wall += step
            self.mono += step
            self.tick()
            if step == 0 and self.wake == self.mono:
                raise AssertionError("the supervisor asks to be woken again at once")
        self.wall += end - self.mono
        self.mono = end
        self.tick()

    def finish(self, run_id: int, code: int | None = 0, sig: int | None = None):
        self.running.pop(run_id)
        outcome = self.sup.finished(run_id, code, sig, self.now)
        self.do(list(outcome.follow))
        return outcome.status, outcome.reason

    def started_jobs(self) -> list[str]:
        return [s.job.name for _, s in self.starts]

    def last(self, name: str) -> tuple[int, Start]:
        return [(i, s) for i, s in self.starts if s.job.name == name][-1]


def test_a_job_starts_at_its_time_and_the_supervisor_sleeps_until_then():
    w = World("[job.a]\n0 2 * * * /bin/a\n", at(2026, 11, 26, 1, 0))
    w.tick()
    assert w.starts == [] and w.wake == w.mono + 60  # a minute at most, to notice clock jumps
    w.advance(3599.9)
    assert w.starts == []
    w.advance(0.2)
    ((_, start),) = w.starts
    assert start.fire.trigger is Trigger.SCHEDULE and start.fire.scheduled_for == at(2026, 11, 26, 2, 0)


def test_the_wake_up_is_the_next_fire_not_a_poll():
    w = World("[job.a]\n* * * * * /bin/a\n", at(2026, 11, 26, 1, 0, 30))
    w.tick()
    assert w.wake == w.mono + 30


def test_a_fixed_time_job_runs_once_when_berlin_repeats_an_hour_and_a_wildcard_job_twice():
    w = World("""\
        CRON_TZ=Europe/Berlin
        [defaults]
        overlap = "allow"
        [job.fixed]
        30 2 * * * /bin/fixed
        [job.wild]
        30 * * * * /bin/wild
        """, at(2026, 10, 25, 0, 0, tz=BERLIN))
    w.advance(5 * 3600)
    fixed = [s.fire.scheduled_for for _, s in w.starts if s.job.name == "fixed"]
    wild = [s.fire.scheduled_for for _, s in w.starts if s.job.name == "wild"]
    assert fixed == [at(2026, 10, 25, 0, 30)]  # 02:30 CEST, the first of the two
    assert at(2026, 10, 25, 0, 30) in wild and at(2026, 10, 25, 1, 30) in wild  # 02:30 CEST and CET


def test_overlap_skip_records_a_skipped_run_naming_the_running_one():
    w = World("[job.a]\n@every 10s /bin/a\n", at(2026, 1, 1))
    w.advance(10)
    w.advance(10)
    assert len(w.starts) == 1
    (record,) = w.records
    assert record.status is RunStatus.SKIPPED and record.reason == "run 1 still running"


def test_overlap_queue_holds_one_run_and_starts_it_when_the_last_ends():
    w = World('[job.a]\noverlap = "queue"\n@every 10s /bin/a\n', at(2026, 1, 1))
    w.advance(30)
    assert len(w.starts) == 1 and len(w.records) == 1  # one waiting, one skipped
    assert "already waiting" in w.records[0].reason
    w.finish(1)
    assert len(w.starts) == 2 and w.starts[1][1].fire.scheduled_for == at(2026, 1, 1) + 20


def test_overlap_allow_starts_side_by_side():
    w = World('[job.a]\noverlap = "allow"\n@every 10s /bin/a\n', at(2026, 1, 1))
    w.advance(30)
    assert len(w.starts) == 3 and not w.records


def test_overlap_replace_terms_then_kills_the_old_run_and_starts_the_new_one_when_it_is_gone():
    w = World('[job.a]\noverlap = "replace"\nkill_grace = "5s"\n@every 10s /bin/a\n', at(2026, 1, 1))
    w.advance(20)
    assert w.kills == [Kill(1, signal.SIGTERM)] and len(w.starts) == 1
    w.advance(5)
    assert w.kills[-1] == Kill(1, signal.SIGKILL)
    status, reason = w.finish(1, None, signal.SIGKILL)
    assert status is RunStatus.KILLED and "replaced" in reason
    assert len(w.starts) == 2


def test_a_timeout_terms_the_run_then_kills_it_after_the_grace():
    w = World('[job.a]\ntimeout = "30s"\nkill_grace = "2s"\n@every 1h /bin/a\n', at(2026, 1, 1))
    w.advance(3600)
    w.advance(29.9)
    assert not w.kills
    w.advance(0.2)
    assert w.kills == [Kill(1, signal.SIGTERM)]
    w.advance(2)
    assert w.kills == [Kill(1, signal.SIGTERM), Kill(1, signal.SIGKILL)]
    status, reason = w.finish(1, None, signal.SIGKILL)
    assert status is RunStatus.TIMEOUT and reason == "timed out after 30s"


def test_what_a_job_that_exits_on_term_left_behind_gets_the_kill_at_the_grace_end():
    # Its children may ignore TERM: the shell's exit does not cancel the SIGKILL owed to them.
    w = World('[job.a]\ntimeout = "1s"\nkill_grace = "5s"\n@every 1h /bin/a\n', at(2026, 1, 1))
    w.advance(3601.5)
    w.finish(1, None, signal.SIGTERM)
    w.advance(4)
    assert w.kills == [Kill(1, signal.SIGTERM)]
    w.advance(2)
    assert w.kills == [Kill(1, signal.SIGTERM), Kill(1, signal.SIGKILL)]
    w.advance(60)
    assert w.kills == [Kill(1, signal.SIGTERM), Kill(1, signal.SIGKILL)]


def test_a_run_with_nothing_left_behind_is_not_killed_again():
    w = World('[job.a]\ntimeout = "1s"\n@every 1h /bin/a\n', at(2026, 1, 1))
    w.advance(3601.5)
    w.finish(1, None, signal.SIGTERM)
    w.sup.forget_lingering(1)  # the daemon found nothing of it left
    w.advance(60)
    assert w.kills == [Kill(1, signal.SIGTERM)]


def test_exactly_retries_plus_one_attempts_with_backoff():
    w = World("""\
        [job.a]
        retries = 3
        retry_delay = "10s"
        retry_backoff = 3
        retry_max_delay = "60s"
        retry_jitter = false
        0 * * * * /bin/a
        """, at(2026, 1, 1, 0, 59))
    w.advance(60)
    reasons, times = [], []
    for _ in range(4):
        run_id, start = w.starts[-1]
        times.append(w.mono)
        reasons.append(w.finish(run_id, 1)[1])
        w.advance(100)
    attempts = [(s.fire.attempt, s.fire.trigger) for _, s in w.starts]
    assert attempts == [(1, Trigger.SCHEDULE), (2, Trigger.RETRY), (3, Trigger.RETRY), (4, Trigger.RETRY)]
    assert {s.fire.scheduled_for for _, s in w.starts} == {at(2026, 1, 1, 1, 0)}
    assert reasons == ["exit code 1; retrying in 10s (attempt 2 of 4)",
                       "exit code 1; retrying in 30s (attempt 3 of 4)",
                       "exit code 1; retrying in 1m00s (attempt 4 of 4)", "exit code 1"]


def test_a_retry_that_would_come_after_the_next_scheduled_run_is_dropped():
    w = World('[job.a]\nretries = 2\nretry_delay = "2m"\n* * * * * /bin/a\n', at(2026, 1, 1, 0, 0, 59))
    w.advance(1)
    status, reason = w.finish(1, 7)
    assert status is RunStatus.FAILED and reason.endswith("no retry: the next scheduled run comes first")


def test_success_codes_decide_success():
    w = World("[job.a]\nsuccess_codes = [0, 3]\n@every 1h /bin/a\n", at(2026, 1, 1))
    w.advance(3600)
    assert w.finish(1, 3) == (RunStatus.SUCCESS, None)


def test_an_after_chain_runs_on_success_and_not_on_failure():
    w = World("""\
        [job.backup]
        @every 1h /bin/backup
        [job.report]
        after = ["backup"]
        @after /bin/report
        """, at(2026, 1, 1))
    w.advance(3600)
    w.finish(1, 2)
    assert w.started_jobs() == ["backup"]
    w.advance(3600)
    w.finish(2, 0)
    assert w.started_jobs() == ["backup", "backup", "report"]
    assert w.starts[-1][1].fire.trigger is Trigger.AFTER


def test_a_job_after_two_jobs_waits_for_both_to_succeed_since_it_last_started():
    w = World("""\
        [job.a]
        @every 1h /bin/a
        [job.b]
        @every 1h /bin/b
        [job.c]
        after = ["a", "b"]
        @after /bin/c
        """, at(2026, 1, 1))
    w.advance(3600)
    w.finish(1)  # a
    assert w.started_jobs() == ["a", "b"]
    w.advance(1)
    w.finish(2)  # b
    assert w.started_jobs() == ["a", "b", "c"]
    w.finish(3)
    w.advance(3600)
    w.finish(4)  # a again; b has not succeeded since c started
    assert w.started_jobs().count("c") == 1


def test_a_paused_job_is_not_started_by_its_schedule_but_runs_by_hand():
    w = World("[job.a]\n@every 10s /bin/a\n", at(2026, 1, 1), History(paused={"a"}))
    w.advance(60)
    assert w.starts == []
    w.do(w.sup.run_now("a", w.now))
    assert w.starts[0][1].fire.trigger is Trigger.MANUAL
    w.finish(1)
    w.sup.resume("a")
    w.advance(10)
    assert len(w.starts) == 2


def test_a_disabled_job_is_never_started_by_its_schedule():
    w = World("[job.a]\nenabled = false\n@every 10s /bin/a\n", at(2026, 1, 1))
    w.advance(60)
    assert w.starts == []


def test_catchup_none_records_each_missed_fire():
    w = World("[job.a]\n0 * * * * /bin/a\n", at(2026, 1, 1, 5, 30),
              History(last_seen=at(2026, 1, 1, 1, 30)))
    w.tick()
    assert [r.fire.scheduled_for for r in w.records] == [at(2026, 1, 1, h) for h in (2, 3, 4, 5)]
    assert all(r.status is RunStatus.MISSED for r in w.records) and not w.starts
    assert "was not running at 2026-01-01T02:00" in w.records[0].reason


def test_catchup_last_runs_the_latest_once_and_records_the_rest():
    w = World('[job.a]\ncatchup = "last"\n0 * * * * /bin/a\n', at(2026, 1, 1, 5, 30),
              History(last_seen=at(2026, 1, 1, 1, 30)))
    w.tick()
    assert len(w.records) == 3
    ((_, start),) = w.starts
    assert start.fire.trigger is Trigger.CATCHUP and start.fire.scheduled_for == at(2026, 1, 1, 5)


def test_catchup_all_runs_the_latest_100_oldest_first_and_sums_up_the_rest():
    w = World('[job.a]\ncatchup = "all"\n* * * * * /bin/a\n', at(2026, 1, 1, 12, 0, 30),
              History(last_seen=at(2026, 1, 1, 0, 0)))
    w.tick()
    assert len(w.starts) == 1
    for _ in range(100):
        w.finish(w.starts[-1][0])
        w.tick()
    times = [s.fire.scheduled_for for _, s in w.starts]
    assert len(times) == 100 and times == sorted(times)
    assert times[0] == at(2026, 1, 1, 10, 21) and times[-1] == at(2026, 1, 1, 12, 0)
    # 12:00 is under a minute late: it runs as scheduled, but only after the older fires.
    assert [s.fire.trigger for _, s in w.starts].count(Trigger.CATCHUP) == 99
    assert w.starts[-1][1].fire.trigger is Trigger.SCHEDULE
    ((summary),) = w.records
    assert summary.status is RunStatus.MISSED and summary.fire.scheduled_for == at(2026, 1, 1, 0, 1)
    assert summary.reason.startswith("620 fires from 2026-01-01T00:01")


def test_a_fire_just_before_a_restart_still_runs_normally():
    w = World("[job.a]\n0 2 * * * /bin/a\n", at(2026, 1, 1, 2, 0, 20),
              History(last_seen=at(2026, 1, 1, 1, 59, 50)))
    w.tick()
    ((_, start),) = w.starts
    assert start.fire.trigger is Trigger.SCHEDULE and not w.records


def test_a_small_forward_clock_jump_runs_skipped_fixed_time_jobs_once_but_not_wildcard_ones():
    w = World("""\
        [job.fixed]
        15,45 2 * * * /bin/fixed
        [job.wild]
        */10 * * * * /bin/wild
        """, at(2026, 1, 1, 1, 59, 30))
    w.tick()
    w.wall += 3600  # the wall clock jumps an hour; the monotonic clock does not
    w.tick()
    assert w.started_jobs() == ["fixed"]
    assert w.starts[0][1].fire.scheduled_for == at(2026, 1, 1, 2, 45)
    # Every skipped fire that did not run has a row saying why.
    missed = {(r.job.name, r.fire.scheduled_for) for r in w.records}
    assert missed == {("fixed", at(2026, 1, 1, 2, 15))} | {
        ("wild", at(2026, 1, 1, 2, m)) for m in range(0, 60, 10)}
    assert all(r.reason.startswith("the wall clock jumped forward by 1h00m") for r in w.records)


def test_a_big_forward_jump_runs_only_what_is_due_this_minute():
    w = World("[job.fixed]\n15 2 * * * /bin/fixed\n", at(2026, 1, 1, 1, 0))
    w.tick()
    w.wall += 5 * 3600
    w.tick()
    assert w.starts == []


def test_a_backward_jump_does_not_repeat_fires():
    w = World("[job.a]\n0 * * * * /bin/a\n", at(2026, 1, 1, 1, 59))
    w.advance(120)
    assert len(w.starts) == 1
    w.finish(1)
    w.wall -= 600  # back to 01:51
    w.advance(600)
    times = [s.fire.scheduled_for for _, s in w.starts]
    # The supervisor may ask for 02:00 again; the run log's unique key refuses the second
    # start of one scheduled time, so it can never run twice.
    assert set(times) == {at(2026, 1, 1, 2)}


def test_every_counts_from_the_start_and_skips_intervals_missed_in_a_stall():
    w = World("[job.a]\noverlap = \"allow\"\n@every 10s /bin/a\n", at(2026, 1, 1))
    w.advance(30)
    assert len(w.starts) == 3
    w.mono += 55  # the daemon stalled; the wall clock moved along
    w.wall += 55
    w.tick()
    assert len(w.starts) == 4  # one, not five


def test_an_anchored_every_job_shows_its_next_run_on_the_multiple_itself():
    """Several hosts: @every fires on multiples of the interval since the epoch; the wall
    and monotonic clocks read a moment apart must not show 05:00:00 as 04:59:59.998."""
    w = World("[job.a]\n@every 1h /bin/a\n", at(2026, 1, 1, 4, 49, 40, 250_000), History(anchored=True))
    w.tick()
    w.wall -= 0.0017  # the next tick reads the wall clock a little before the monotonic one
    w.tick()
    assert w.sup.next_run("a") == at(2026, 1, 1, 5)


def test_reboot_runs_once_per_boot():
    w = World("@reboot /bin/boot\n", at(2026, 1, 1), History(boot_time=at(2025, 12, 31)))
    w.tick()
    ((_, start),) = w.starts
    assert start.fire.trigger is Trigger.REBOOT and start.fire.scheduled_for == at(2025, 12, 31)
    again = World("@reboot /bin/boot\n", at(2026, 1, 1), History(reboot_done={"boot"}))
    again.tick()
    assert again.starts == []


def test_jitter_delays_a_start_within_the_jitter():
    w = World('[job.a]\njitter = "30s"\n0 * * * * /bin/a\n', at(2026, 1, 1, 0, 59))
    w.advance(60)
    assert w.starts == []
    w.advance(30)
    ((_, start),) = w.starts
    assert start.fire.scheduled_for == at(2026, 1, 1, 1)


def test_reload_adds_removes_and_changes_jobs_by_name():
    w = World("[job.a]\n@every 10s /bin/a\n[job.b]\n@every 10s /bin/b\n", at(2026, 1, 1))
    w.advance(10)
    new = jobsfile.parse("[job.a]\n@every 10s /bin/a\n[job.c]\n@every 5s /bin/c\n", "jobs")
    w.sup.reload(new, w.now)
    w.finish(2)  # b's run, started before the reload, still ends and is reported
    w.finish(1)
    w.advance(10)
    assert sorted(w.started_jobs()) == ["a", "a", "b", "c"]
    assert [r.job.name for r in w.records] == ["c"]  # its first run has not ended


def test_a_changed_schedule_takes_effect_from_its_next_fire():
    w = World("[job.a]\n0 3 * * * /bin/a\n", at(2026, 1, 1, 1, 0))
    w.tick()
    w.sup.reload(jobsfile.parse("[job.a]\n0 2 * * * /bin/a\n", "jobs"), w.now)
    w.advance(3600)
    assert w.starts[0][1].fire.scheduled_for == at(2026, 1, 1, 2)


def test_stop_terms_every_run_then_kills_after_the_grace_and_starts_nothing_new():
    w = World('[job.a]\nkill_grace = "3s"\noverlap = "allow"\n@every 10s /bin/a\n', at(2026, 1, 1))
    w.advance(20)
    w.do(w.sup.stop(w.now))
    assert w.kills == [Kill(1, signal.SIGTERM), Kill(2, signal.SIGTERM)]
    w.finish(1, None, signal.SIGTERM)
    w.advance(3)
    # run 1's shell has ended; what it may have left gets the KILL with run 2
    assert w.kills[2:] == [Kill(2, signal.SIGKILL), Kill(1, signal.SIGKILL)] and len(w.starts) == 2
    status, reason = w.finish(2, None, signal.SIGKILL)
    assert status is RunStatus.KILLED and reason == "stopped with the daemon"
    assert w.sup.idle


def test_a_first_start_does_not_run_a_fire_from_before_it():
    w = World("[job.a]\n0 2 * * * /bin/a\n", at(2026, 1, 1, 2, 0, 20))
    w.tick()
    assert w.starts == [] and w.records == []


# -- catch-up, stalls, @every across restarts (issue 8, issue 7 items 9 and 11) --------------

def _restart(text: str, stopped: float, started: float, **history) -> World:
    return World(text, started, History(last_seen=stopped, **history))


def test_catchup_last_after_a_two_minute_downtime_runs_only_the_latest_fire():
    w = _restart('[job.a]\ncatchup = "last"\n* * * * * /bin/a\n',
                 at(2026, 1, 1, 17, 57, 12), at(2026, 1, 1, 17, 59, 19))
    w.advance(20)
    ((_, start),) = w.starts
    assert start.fire.scheduled_for == at(2026, 1, 1, 17, 59)
    assert start.fire.trigger is Trigger.SCHEDULE
    ((missed),) = w.records
    assert missed.fire.scheduled_for == at(2026, 1, 1, 17, 58) and missed.status is RunStatus.MISSED


def test_catchup_all_runs_missed_fires_oldest_first_before_anything_newer():
    w = _restart('[job.a]\ncatchup = "all"\n* * * * * /bin/a\n',
                 at(2026, 1, 1, 17, 57, 12), at(2026, 1, 1, 17, 59, 19))
    w.tick()
    w.advance(50)  # 18:00 comes due while the 17:58 catch-up still runs
    w.finish(1)
    w.tick()
    w.finish(2)
    w.tick()
    assert [(s.fire.scheduled_for, s.fire.trigger) for _, s in w.starts] == [
        (at(2026, 1, 1, 17, 58), Trigger.CATCHUP), (at(2026, 1, 1, 17, 59), Trigger.SCHEDULE),
        (at(2026, 1, 1, 18, 0), Trigger.SCHEDULE)]  # it waited its turn behind them
    assert w.records == []


def test_every_counts_from_the_jobs_last_start_across_a_restart():
    # Last fired a day ago; the daemon restarted just now: it runs a day from now, not in 2 days.
    w = _restart("[job.a]\n@every 2d /bin/a\n", at(2026, 1, 2, 23, 59), at(2026, 1, 3),
                 last_scheduled={"a": at(2026, 1, 2)})
    w.tick()
    assert w.sup.next_run("a") == at(2026, 1, 4)
    w.advance(86400)
    ((_, start),) = w.starts
    assert start.fire.scheduled_for == at(2026, 1, 4) and start.fire.trigger is Trigger.SCHEDULE


def test_every_fires_missed_while_the_daemon_was_down_follow_catchup():
    none = _restart("[job.a]\n@every 1h /bin/a\n", at(2026, 1, 1, 0, 30), at(2026, 1, 1, 3, 30),
                    last_scheduled={"a": at(2026, 1, 1)})
    none.tick()
    assert [r.fire.scheduled_for for r in none.records] == [at(2026, 1, 1, h) for h in (1, 2, 3)]
    assert none.starts == [] and none.sup.next_run("a") == at(2026, 1, 1, 4)
    last = _restart('[job.a]\ncatchup = "last"\n@every 1h /bin/a\n', at(2026, 1, 1, 0, 30),
                    at(2026, 1, 1, 3, 30), last_scheduled={"a": at(2026, 1, 1)})
    last.tick()
    ((_, start),) = last.starts
    assert start.fire.scheduled_for == at(2026, 1, 1, 3) and start.fire.trigger is Trigger.CATCHUP
    assert len(last.records) == 2


def _stall(w: World, seconds: float) -> None:
    """SIGSTOP: both clocks go on, the daemon does not tick."""
    w.wall += seconds
    w.mono += seconds
    w.tick()


def test_a_stall_gives_every_fire_it_swallowed_a_row():
    w = World("[job.a]\n* * * * * /bin/a\n", at(2026, 1, 1, 12, 0, 10))
    w.advance(1)
    _stall(w, 130)  # 12:00:11 to 12:02:21: 12:01 and 12:02 came due
    # The daemon knows it stalled from when it should have woken (12:01:00).
    ((_, start),) = w.starts
    assert start.fire.scheduled_for == at(2026, 1, 1, 12, 2) and start.fire.trigger is Trigger.SCHEDULE
    ((missed),) = w.records
    assert missed.fire.scheduled_for == at(2026, 1, 1, 12, 1) and missed.status is RunStatus.MISSED
    assert missed.reason == ("the daemon was stalled (no CPU or suspended) from "
                             "2026-01-01T12:01:00+00:00 to 2026-01-01T12:02:21+00:00")


def test_after_a_stall_catchup_all_runs_the_swallowed_fires_oldest_first():
    w = World('[job.a]\ncatchup = "all"\n* * * * * /bin/a\n', at(2026, 1, 1, 12, 0, 10))
    w.advance(1)
    _stall(w, 130)
    w.finish(1)
    w.tick()
    assert [(s.fire.scheduled_for, s.fire.trigger) for _, s in w.starts] == [
        (at(2026, 1, 1, 12, 1), Trigger.CATCHUP), (at(2026, 1, 1, 12, 2), Trigger.SCHEDULE)]
    assert w.records == []


def test_a_fire_over_a_minute_late_after_a_stall_is_missed_without_catchup():
    w = World("[job.a]\n0 12 * * * /bin/a\n", at(2026, 1, 1, 11, 59, 0))
    w.advance(1)
    _stall(w, 150)
    assert w.starts == []
    ((missed),) = w.records
    assert "stalled" in missed.reason


def test_every_fires_swallowed_by_a_stall_get_rows_too():
    w = World("[job.a]\n@every 10s /bin/a\n", at(2026, 1, 1))
    w.advance(5)
    _stall(w, 30)  # due at +10, +20, +30
    assert [s.fire.scheduled_for for _, s in w.starts] == [at(2026, 1, 1, 0, 0, 30)]
    assert [r.fire.scheduled_for for r in w.records] == [at(2026, 1, 1, 0, 0, 10), at(2026, 1, 1, 0, 0, 20)]
    assert all("stalled" in r.reason for r in w.records)
    assert w.sup.next_run("a") == at(2026, 1, 1, 0, 0, 40)


def test_a_timeout_enforced_late_says_when_and_why():
    w = World("[job.a]\ntimeout = \"20s\"\n@every 1h /bin/a\n", at(2026, 1, 1))
    w.advance(3600 + 5)
    (run_id, _), = w.starts
    _stall(w, 150)  # the deadline passed 135 s ago
    status, reason = w.finish(run_id, sig=signal.SIGTERM)
    assert status is RunStatus.TIMEOUT
    assert reason == "timed out after 20s (stopped at 2m35s: the daemon was stalled)"


def test_a_clock_100_days_ahead_writes_at_most_101_missed_rows_per_job():
    w = _restart("[job.a]\n* * * * * /bin/a\n", at(2026, 1, 1), at(2026, 4, 11, 0, 0, 30))
    w.tick()
    assert len(w.records) == 100  # 99 rows, one summary, and 00:00 runs
    summary = w.records[0]
    assert summary.fire.scheduled_for == at(2026, 1, 1, 0, 1)
    assert summary.reason.startswith("143,900 fires from 2026-01-01T00:01")
    assert "the daemon was not running" in summary.reason
    times = [r.fire.scheduled_for for r in w.records[1:]]
    assert times == sorted(times) and len(set(times)) == 99
    assert w.starts[0][1].fire.scheduled_for == at(2026, 4, 11)


def test_every_100_days_behind_is_bounded_too():
    w = _restart("[job.a]\n@every 1s /bin/a\n", at(2026, 1, 1), at(2026, 4, 11),
                 last_scheduled={"a": at(2026, 1, 1)})
    w.tick()
    assert len(w.records) == 100 and f"{100 * 86400 - 100:,} fires" in w.records[0].reason


def test_a_pending_retry_is_visible_with_its_attempt():
    w = World('[job.a]\nretries = 2\nretry_delay = "1m"\nretry_jitter = false\n0 * * * * /bin/a\n',
              at(2026, 1, 1, 0, 59, 50))
    w.advance(15)
    (run_id, _), = w.starts
    assert w.sup.retry_at("a") is None
    w.finish(run_id, code=1)
    assert w.sup.retry_at("a") == (at(2026, 1, 1, 1, 1, 5), 2, 3)
    assert "a" in w.sup.changed
    w.advance(60)
    assert w.sup.retry_at("a") is None


def test_a_wall_clock_jumping_100_days_ahead_writes_at_most_100_missed_rows_per_job():
    w = World("[job.a]\n* * * * * /bin/a\n[job.b]\n0 3 * * * /bin/b\n", at(2026, 1, 1, 0, 0, 30))
    w.tick()
    w.wall += 100 * 86400
    w.tick()
    rows = [r for r in w.records if r.job.name == "a"]
    assert len(rows) == 100 and rows[0].reason.startswith("143,900 fires from 2026-01-01T00:01")
    assert w.started_jobs() == ["a"]  # the current minute; b's 03:00 was long ago
    assert [r.fire.scheduled_for for r in w.records if r.job.name == "b"] == [
        at(2026, 1, 1, 3) + 86400 * d for d in range(100)]


def test_an_outcome_says_whether_a_retry_follows_and_when():
    w = World('[job.a]\nretries = 1\nretry_delay = "1m"\nretry_jitter = false\n0 * * * * /bin/a\n',
              at(2026, 1, 1, 0, 59, 50))
    w.advance(15)
    (run_id, _), = w.starts
    w.running.pop(run_id)
    first = w.sup.finished(run_id, 1, None, w.now)
    assert (first.status, first.final, first.retry_at) == (RunStatus.FAILED, False, at(2026, 1, 1, 1, 1, 5))
    assert first.reason == "exit code 1; retrying in 1m00s (attempt 2 of 2)" and first.follow == ()
    w.advance(60)
    (retry_id, _) = w.starts[-1]
    w.running.pop(retry_id)
    last = w.sup.finished(retry_id, 1, None, w.now)
    assert (last.status, last.final, last.retry_at, last.reason) == (RunStatus.FAILED, True, None, "exit code 1")


def test_a_skipped_record_carries_a_final_outcome():
    w = World('[job.a]\n@every 10s sleep 60\n', at(2026, 1, 1))
    w.advance(20)
    (record,) = w.records
    assert record.outcome == Outcome(RunStatus.SKIPPED, record.reason, final=True)
