"""What every run store must do, as tests over two fixtures any store module provides:
`store` (a fresh writable store) and `reader` (a read-only view of the same store).

tests/test_store_sqlite.py runs them on SQLite (`from store_contract import *`); a
PostgreSQL store is one more such module with its own two fixtures. Only the protocol of
cronsup/store/protocol.py is used here: no SQL, no file names.
"""

from __future__ import annotations

import random

import pytest

from cronsup.model import RunStatus, Trigger
from cronsup.store import (
    DURATION_BUCKETS,
    DELIVERED,
    DROPPED,
    FAILED_STATUSES,
    GAVE_UP,
    PENDING,
    RAN_STATUSES,
    DaemonState,
    DeliveryAttempt,
    GoodJobs,
    JobRow,
    NewRun,
    OutboxItem,
    RunLogError,
    RunningVersion,
)

T = 1_764_032_400.0  # 2025-11-25 01:00:00 UTC
HOST, BOOT = "web1", "boot-1"


def claim(store, job: str, scheduled_for: float, attempt: int = 1, **kw) -> int | None:
    boot_id = kw.pop("boot_id", BOOT)
    [run_id] = store.insert_runs(
        [NewRun(job, kw.pop("trigger", Trigger.SCHEDULE), attempt, scheduled_for, **kw)],
        host=HOST, boot_id=boot_id)
    return run_id


def ran(store, job: str, scheduled_for: float, status: RunStatus = RunStatus.SUCCESS,
        duration: float = 1.0, attempt: int = 1, **kw) -> int:
    run_id = claim(store, job, scheduled_for, attempt, **kw)
    assert run_id is not None
    assert store.mark_started(run_id, 4242, 1.5, scheduled_for)
    assert store.finish_run(run_id, status, finished_at=scheduled_for + duration,
                            exit_code=0 if status is RunStatus.SUCCESS else 1)
    return run_id


# -- claims ---------------------------------------------------------------------------------


def test_contract_a_fire_is_claimed_once_per_job_scheduled_time_and_attempt(store):
    first = store.insert_runs([NewRun("backup", Trigger.SCHEDULE, 1, T)], host=HOST, boot_id=BOOT)
    again = store.insert_runs([
        NewRun("backup", Trigger.SCHEDULE, 1, T),  # taken
        NewRun("backup", Trigger.RETRY, 2, T),  # another attempt
        NewRun("backup", Trigger.SCHEDULE, 1, T + 60),  # another time
        NewRun("report", Trigger.SCHEDULE, 1, T),  # another job
    ], host="web2", boot_id="boot-2")
    assert first[0] is not None
    assert again[0] is None and None not in again[1:]
    assert len({first[0], *again[1:]}) == 4
    assert [r.host for r in store.runs("backup", limit=None) if r.id == first[0]] == [HOST]


def test_contract_a_claim_taken_twice_in_one_batch_is_given_once(store):
    ids = store.insert_runs([NewRun("backup", Trigger.SCHEDULE, 1, T)] * 2, host=HOST, boot_id=BOOT)
    assert ids[0] is not None and ids[1] is None
    assert len(store.runs("backup")) == 1


def test_contract_a_claim_is_unique_whatever_the_trigger(store):
    assert claim(store, "backup", T, trigger=Trigger.SCHEDULE) is not None
    assert claim(store, "backup", T, trigger=Trigger.CATCHUP) is None


# -- one run's life -------------------------------------------------------------------------


def test_contract_a_run_is_claimed_started_and_finished_with_its_output(store, reader):
    run_id = claim(store, "backup", T)
    run = reader.run(run_id)
    assert (run.status, run.started_at, run.pid, run.host, run.boot_id) == (
        RunStatus.RUNNING, None, None, HOST, BOOT)
    assert store.mark_started(run_id, 4242, 17.5, T + 0.25)
    assert store.finish_run(run_id, RunStatus.FAILED, finished_at=T + 2.25, exit_code=3,
                            reason="exit code 3", cpu_s=0.5, max_rss=1 << 20,
                            output=(b"caf\xc3\xa9\n\xff", True))
    run = reader.run(run_id)
    assert (run.status, run.pid, run.pid_start, run.started_at, run.finished_at) == (
        RunStatus.FAILED, 4242, 17.5, T + 0.25, T + 2.25)
    assert (run.exit_code, run.reason, run.cpu_s, run.max_rss) == (3, "exit code 3", 0.5, 1 << 20)
    assert run.duration_s == 2.0 and run.output_truncated is True
    assert reader.output(run_id) == (b"caf\xc3\xa9\n\xff", True)


def test_contract_output_saved_while_running_is_replaced_by_the_final_output(store, reader):
    run_id = claim(store, "backup", T)
    store.save_output(run_id, b"partial", False)
    assert reader.output(run_id) == (b"partial", False)
    store.finish_run(run_id, RunStatus.SUCCESS, finished_at=T + 1, exit_code=0, output=(b"all", False))
    assert reader.output(run_id) == (b"all", False)
    assert reader.output(claim(store, "backup", T + 60)) is None


def test_contract_a_finished_run_cannot_be_finished_twice_and_keeps_its_first_result(store, reader):
    # The second finish is ignored (False, nothing written), not an error: a lost-run
    # recovery racing a late exit must not overwrite what was recorded first.
    run_id = claim(store, "backup", T)
    assert store.finish_run(run_id, RunStatus.SUCCESS, finished_at=T + 1, exit_code=0,
                            output=(b"first", False))
    assert not store.finish_run(run_id, RunStatus.FAILED, finished_at=T + 9, exit_code=1,
                                reason="second", output=(b"second", True))
    assert store.finish_runs_lost([run_id], "daemon died", T + 10) == 0
    assert not store.mark_started(run_id, 1, None, T + 11)
    run = reader.run(run_id)
    assert (run.status, run.finished_at, run.exit_code, run.reason, run.pid) == (
        RunStatus.SUCCESS, T + 1, 0, None, None)
    assert reader.output(run_id) == (b"first", False)


def test_contract_finish_refuses_running_as_a_final_status(store):
    run_id = claim(store, "backup", T)
    with pytest.raises(ValueError):
        store.finish_run(run_id, RunStatus.RUNNING, finished_at=T)


def test_contract_lost_marks_only_runs_still_running(store, reader):
    a, b = claim(store, "a", T), claim(store, "b", T)
    store.finish_run(b, RunStatus.SUCCESS, finished_at=T + 1)
    assert store.finish_runs_lost([a, b], "the daemon stopped", T + 5) == 1
    assert (reader.run(a).status, reader.run(a).reason, reader.run(a).finished_at) == (
        RunStatus.LOST, "the daemon stopped", T + 5)
    assert reader.run(b).status is RunStatus.SUCCESS


def test_contract_skipped_and_missed_runs_are_recorded_already_finished(store, reader):
    run_id = claim(store, "backup", T, status=RunStatus.MISSED, finished_at=T, reason="missed")
    assert reader.running() == []
    assert reader.run(run_id).status is RunStatus.MISSED


def test_contract_mark_started_many_counts_the_runs_it_updated(store):
    a, b, c = (claim(store, "a", T + i) for i in range(3))
    store.finish_run(c, RunStatus.ERROR, finished_at=T)
    assert store.mark_started_many([(a, 10, None, T), (b, 11, None, T), (c, 12, None, T)]) == 2


# -- reads ----------------------------------------------------------------------------------


def test_contract_runs_are_newest_first_and_filtered(store, reader):
    for i, status in enumerate([RunStatus.SUCCESS, RunStatus.FAILED, RunStatus.SKIPPED,
                                RunStatus.TIMEOUT, RunStatus.SUCCESS]):
        if status is RunStatus.SKIPPED:
            claim(store, "backup", T + 60 * i, status=status, finished_at=T + 60 * i)
        else:
            ran(store, "backup", T + 60 * i, status)
    ran(store, "report", T + 30)
    runs = reader.runs("backup")
    assert [r.scheduled_for for r in runs] == [T + 60 * i for i in (4, 3, 2, 1, 0)]
    assert [r.status for r in reader.runs("backup", failed=True)] == [RunStatus.TIMEOUT, RunStatus.FAILED]
    assert all(s in FAILED_STATUSES for s in (RunStatus.TIMEOUT, RunStatus.FAILED))
    assert [r.scheduled_for for r in reader.runs("backup", since=T + 120)] == [T + 240, T + 180, T + 120]
    assert len(reader.runs("backup", limit=2)) == 2
    assert [r.id for r in reader.runs("backup", before_id=runs[1].id)] == [r.id for r in runs[2:]]
    assert [r.job for r in reader.runs_of_all_jobs(limit=2)] == ["report", "backup"]
    assert len(reader.runs_of_all_jobs(limit=None)) == 6
    assert reader.runs("nothing") == []


def test_contract_running_lists_running_runs_oldest_first(store, reader):
    a = claim(store, "a", T)
    ran(store, "b", T)
    c = claim(store, "c", T)
    assert [r.id for r in reader.running()] == [a, c]
    assert [r.id for r in reader.running_runs()] == [a, c]


def test_contract_the_latest_run_of_every_job_and_their_names(store, reader):
    ran(store, "a", T)
    newest_a = claim(store, "a", T + 60)
    b = ran(store, "b", T)
    last = reader.last_runs()
    assert {job: run.id for job, run in last.items()} == {"a": newest_a, "b": b}
    assert reader.job_names() == ["a", "b"]
    assert reader.last_runs(["b", "none", "a"]) == last  # jobs without runs are left out
    assert reader.last_runs(["b"]) == {"b": last["b"]} and reader.last_runs([]) == {}


def test_contract_follow_returns_every_run_exactly_once_whatever_the_order_of_inserts(store, reader):
    rng = random.Random(7)
    fires = [(job, T + 60 * i) for job in ("a", "b", "c") for i in range(30)]
    rng.shuffle(fires)  # scheduled times and jobs out of order
    seen: list[int] = []
    seen_a: list[int] = []
    last = last_a = 0
    claimed: list[int] = []
    while fires:
        batch, fires = fires[:rng.randint(1, 7)], fires[7:]
        ids = store.insert_runs([NewRun(j, Trigger.SCHEDULE, 1, t) for j, t in batch],
                                host=HOST, boot_id=BOOT)
        claimed += [i for i in ids if i is not None]
        for run_id in ids[::2]:  # finishing runs does not make them new again
            store.finish_run(run_id, RunStatus.SUCCESS, finished_at=T)
        got = reader.follow(None, last, limit=5)  # a small limit: several calls per batch
        while got:
            seen += [r.id for r in got]
            last = got[-1].id
            got = reader.follow(None, last, limit=5)
        got_a = reader.follow("a", last_a)
        seen_a += [r.id for r in got_a]
        last_a = got_a[-1].id if got_a else last_a
    assert sorted(seen) == sorted(claimed) and len(seen) == len(set(seen))
    assert seen == sorted(seen)  # oldest first
    assert seen_a == [r.id for r in reversed(reader.runs("a", limit=None))]


def test_contract_success_rate_and_median_of_many_jobs_match_one_job_at_a_time(store, reader):
    for i, status in enumerate([RunStatus.SUCCESS, RunStatus.FAILED, RunStatus.SUCCESS, RunStatus.SUCCESS]):
        ran(store, "a", T + 60 * i, status, duration=[1, 2, 3, 10][i])
    ran(store, "b", T, RunStatus.FAILED)
    claim(store, "c", T, status=RunStatus.SKIPPED, finished_at=T)
    many = reader.stats_many(["a", "b", "c", "none"], 20)
    assert many == {name: reader.stats(name, 20) for name in ("a", "b", "c", "none")}
    assert many["a"] == (0.75, 2.5) and many["c"] == (None, None)


def _stats_by_the_rules(runs, n: int) -> tuple[float | None, float | None]:
    """stats() worked out from a job's runs (newest first) as its docstring says: of its
    newest 3n runs that ran or could not start, the rate over its last n fires (a fire's
    newest attempt counts) and the median duration of the last n that ran."""
    counted = [r for r in runs if r.status in (*RAN_STATUSES, RunStatus.ERROR)][:3 * n]
    if not counted:
        return None, None
    outcome: dict[float, RunStatus] = {}
    for run in counted:
        if run.scheduled_for not in outcome:
            if len(outcome) == n:
                break
            outcome[run.scheduled_for] = run.status
    rate = sum(s is RunStatus.SUCCESS for s in outcome.values()) / len(outcome)
    took = [r.finished_at - r.started_at for r in counted if r.status is not RunStatus.ERROR][:n]
    took = sorted(d for d in took if d is not None)
    mid = len(took) // 2
    median = None if not took else took[mid] if len(took) % 2 else (took[mid - 1] + took[mid]) / 2
    return rate, median


def test_contract_success_rates_of_many_jobs_follow_the_rules_with_retries_and_errors_past_n_runs(store, reader):
    rng = random.Random(11)
    # Plain jobs, jobs with retries (some recorded after the next fire) and errors, a job
    # of retries only (more rows than 3n), and jobs with fewer runs than n.
    for job, fires, retry_p, error_p in (("plain", 30, 0, 0), ("retried", 30, 0.3, 0),
                                         ("erring", 30, 0, 0.2), ("both", 40, 0.3, 0.15),
                                         ("few", 3, 0.5, 0.3)):
        late = []
        for i in range(fires):
            t = T + 60 * i
            for retry in late:
                ran(store, *retry, trigger=Trigger.RETRY)
            late = []
            if rng.random() < error_p:
                error = claim(store, job, t)
                store.finish_run(error, RunStatus.ERROR, finished_at=t, reason="no such user")
            elif rng.random() < 0.1:
                claim(store, job, t, status=RunStatus.SKIPPED, finished_at=t)
            elif rng.random() < retry_p:
                ran(store, job, t, RunStatus.FAILED, duration=rng.randint(1, 9))
                retry = (job, t, rng.choice([RunStatus.SUCCESS, RunStatus.FAILED]), rng.randint(1, 9), 2)
                if rng.random() < 0.5:
                    late.append(retry)
                else:
                    ran(store, *retry, trigger=Trigger.RETRY)
            else:
                ran(store, job, t, rng.choice([RunStatus.SUCCESS] * 4 + [RunStatus.TIMEOUT]),
                    duration=rng.randint(1, 9))
        for retry in late:
            ran(store, *retry, trigger=Trigger.RETRY)
    for attempt in range(1, 8):
        ran(store, "retries", T, RunStatus.FAILED, duration=attempt, attempt=attempt)
    claim(store, "plain", T + 3600)  # running: not counted
    jobs = ["plain", "retried", "erring", "both", "few", "retries", "none"]
    for n in (1, 2, 3, 5, 20):
        got = reader.stats_many(jobs, n)
        for job in jobs:
            want = _stats_by_the_rules(reader.runs(job, limit=None), n)
            assert got[job] == pytest.approx(want), (job, n)
            assert reader.stats(job, n) == pytest.approx(want), (job, n)


def test_contract_last_finished_skips_running_skipped_and_missed_runs(store, reader):
    done = ran(store, "a", T)
    claim(store, "a", T + 60, status=RunStatus.SKIPPED, finished_at=T + 60)
    claim(store, "a", T + 120)
    claim(store, "b", T)
    skip = (RunStatus.RUNNING, RunStatus.SKIPPED, RunStatus.MISSED)
    found = reader.last_finished(["a", "b", "c"], skip)
    assert {job: run.id for job, run in found.items()} == {"a": done}


def test_contract_history_gives_the_start_up_facts_of_many_jobs(store, reader):
    ran(store, "a", T, trigger=Trigger.SCHEDULE)
    ran(store, "a", T + 600, RunStatus.FAILED, trigger=Trigger.MANUAL)
    ran(store, "b", T + 60, trigger=Trigger.CATCHUP, duration=5)
    claim(store, "r", T, trigger=Trigger.REBOOT)
    claim(store, "old-boot", T, trigger=Trigger.REBOOT, boot_id="boot-0")
    h = reader.history(["a", "b", "r", "old-boot", "none"], BOOT)
    assert h.last_scheduled == {"a": T, "b": T + 60}
    assert h.last_started == {"a": T + 600, "b": T + 60}
    assert h.last_success == {"a": T + 1, "b": T + 65}
    assert h.reboot_done == {"r"}


def test_contract_retried_ok_names_the_attempt_that_succeeded(store, reader):
    first = ran(store, "a", T, RunStatus.FAILED, attempt=1)
    ran(store, "a", T, RunStatus.SUCCESS, attempt=2, trigger=Trigger.RETRY)
    alone = ran(store, "a", T + 60, RunStatus.FAILED)
    assert reader.retried_ok([reader.run(first), reader.run(alone)]) == {first: 2}


# -- the daemon's own state -----------------------------------------------------------------


def test_contract_the_daemon_state_round_trips(store, reader):
    assert reader.daemon() is None
    state = DaemonState(pid=99, pid_start=12.5, started_at=T, host=HOST, boot_id=BOOT,
                        jobs_file="/j", config_error=None, last_seen=T)
    store.set_daemon(state)
    assert reader.daemon() == state
    assert store.update_daemon(last_seen=T + 60, config_error="jobs:3: bad")
    assert store.update_daemon(stopped_at=T + 61)
    got = reader.daemon()
    assert (got.last_seen, got.config_error, got.stopped_at, got.pid) == (T + 60, "jobs:3: bad", T + 61, 99)
    with pytest.raises(TypeError):
        store.update_daemon(pid=1)


def test_contract_the_jobs_table_keeps_order_next_runs_and_retries(store, reader):
    rows = [JobRow("z", "@hourly", "true", "", T + 3600, True, 1),
            JobRow("a", "@every 5m", "false", "d", None, False, 4)]
    store.set_jobs(rows)
    assert reader.jobs() == rows
    store.update_next_runs({"a": T + 300})
    store.update_retries({"z": (T + 30, 2, 3)})
    z, a = reader.jobs()
    assert a.next_run == T + 300 and (z.retry_at, z.retry_attempt, z.retry_attempts) == (T + 30, 2, 3)
    store.update_retries({"z": None})
    assert reader.jobs()[0].retry_at is None
    store.set_jobs(rows[1:])
    assert [r.name for r in reader.jobs()] == ["a"]


def test_contract_paused_jobs_keep_their_first_pause_time(store, reader):
    store.set_paused("a", True, T)
    store.set_paused("a", True, T + 5)
    store.set_paused("b", True, T + 1)
    assert reader.paused() == {"a": T, "b": T + 1}
    store.set_paused("a", False, T + 9)
    assert reader.paused() == {"b": T + 1}


def test_contract_the_good_jobs_file_and_running_version_round_trip(store, reader):
    assert reader.good_jobs() is None and reader.running_version() is None
    good = GoodJobs("/etc/cronsup/jobs", True, T, b"[job.a]\n\xff\xfe")
    store.set_good_jobs(good)
    store.set_running_version(RunningVersion("run log", T, 3))
    assert reader.good_jobs() == good
    assert reader.running_version() == RunningVersion("run log", T, 3)


def test_contract_prune_never_deletes_a_running_run_nor_a_jobs_newest(store, reader):
    running = claim(store, "a", T - 400 * 86400)
    for i in range(5):
        ran(store, "a", T - 200 * 86400 + i)
    newest = ran(store, "b", T - 300 * 86400)
    deleted = store.prune(max_runs_per_job=2, max_age_s=90 * 86400, now=T)
    assert deleted >= 3
    ids = {r.id for r in reader.runs_of_all_jobs(limit=None)}
    assert running in ids and newest in ids
    assert reader.run(running).status is RunStatus.RUNNING


def test_contract_prune_output_keeps_running_runs_output(store, reader):
    old = ran(store, "a", T)
    store.save_output(old, b"x" * 1000, False)
    live = claim(store, "a", T + 60)
    store.save_output(live, b"y" * 1000, False)
    assert store.prune_output(500) == 1
    assert reader.output(old) == (b"", False) and reader.run(old).output_pruned
    assert reader.output(live) == (b"y" * 1000, False)


def test_contract_a_reader_refuses_writes(reader):
    with pytest.raises(RunLogError):
        reader.set_paused("a", True, T)


def test_contract_checkpoint_and_busy_timeout_are_accepted(store):
    claim(store, "a", T)
    store.set_busy_timeout(0.05)
    assert store.checkpoint() in (True, False)


# -- run parameters and backfills -------------------------------------------------------------


def test_contract_a_runs_parameters_round_trip_in_order(store, reader):
    run_id = claim(store, "report", T, trigger=Trigger.MANUAL, params=(("DAY", "2026-11-30"), ("A", "x y")))
    assert reader.run(run_id).params == (("DAY", "2026-11-30"), ("A", "x y"))
    assert reader.run(claim(store, "report", T + 60)).params == ()


def test_contract_a_backfill_is_recorded_with_its_slots_and_each_slot_gets_its_run(store, reader):
    slots = [(T + 3600 * k, 1) for k in range(3)]
    bid = store.add_backfill("hourly", range_from=T, range_to=T + 3 * 3600, reprocess="none", max_parallel=2,
                             created_at=T + 10, slots=slots, skipped=4)
    found = reader.backfill(bid)
    assert (found.job, found.state, found.slots, found.skipped, found.max_parallel) == ("hourly", "active", 3, 4, 2)
    assert [(s.scheduled_for, s.run_id, s.status) for s in reader.backfill_slots(bid)] == [
        (t, None, None) for t, _ in slots]
    first = claim(store, "hourly", T, trigger=Trigger.BACKFILL)
    ran(store, "hourly", T + 3600, RunStatus.FAILED, trigger=Trigger.BACKFILL)
    retry = ran(store, "hourly", T + 3600, RunStatus.SUCCESS, attempt=2, trigger=Trigger.RETRY)
    got = reader.backfill_slots(bid)
    assert [(s.run_id is not None, s.status) for s in got] == [
        (True, RunStatus.RUNNING), (True, RunStatus.SUCCESS), (False, None)]  # the retry's success counts
    assert got[0].run_id == first and retry not in [s.run_id for s in got]
    assert [b.id for b in reader.backfills(active=True)] == [bid]
    assert store.end_backfill(bid, "done", T + 99) and not store.end_backfill(bid, "cancelled", T + 100)
    assert reader.backfill(bid).state == "done" and reader.backfills(active=True) == []


def test_contract_a_slot_whose_time_was_taken_gets_the_run_that_took_it(store, reader):
    taken = claim(store, "hourly", T, trigger=Trigger.SCHEDULE)
    bid = store.add_backfill("hourly", range_from=T, range_to=T + 60, reprocess="none", max_parallel=1,
                             created_at=T, slots=[(T, 1)], skipped=0)
    assert claim(store, "hourly", T, trigger=Trigger.BACKFILL) is None
    assert [s.run_id for s in reader.backfill_slots(bid)] == [taken]


def test_contract_runs_scheduled_between_is_half_open_and_ordered(store, reader):
    for k, attempt in ((2, 1), (0, 1), (1, 1), (1, 2), (3, 1)):
        claim(store, "hourly", T + 3600 * k, attempt)
    claim(store, "other", T + 3600)
    got = reader.runs_scheduled_between("hourly", T, T + 3 * 3600)
    assert [(r.scheduled_for - T, r.attempt) for r in got] == [(0, 1), (3600, 1), (3600, 2), (7200, 1)]
# -- counters that never go down (metrics) ----------------------------------------------------


def counted(reader, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {c.labels: c.value for c in reader.counters() if c.name == name}


def runs_counted(reader) -> dict[tuple[str, str], float]:
    return {(dict(k)["job"], dict(k)["status"]): v for k, v in counted(reader, "runs").items()}


def test_contract_every_way_a_run_ends_is_counted_once_and_running_runs_are_not(store, reader):
    ran(store, "backup", T, RunStatus.SUCCESS)
    ran(store, "backup", T + 60, RunStatus.FAILED)
    lost = claim(store, "backup", T + 120)
    claim(store, "backup", T + 180, status=RunStatus.SKIPPED, finished_at=T + 180)
    claim(store, "report", T, status=RunStatus.MISSED, finished_at=T + 5)
    running = claim(store, "report", T + 60)
    assert store.finish_runs_lost([lost, lost], "the daemon stopped", T + 130) == 1
    first = ran(store, "report", T + 120, RunStatus.TIMEOUT, duration=4.0)
    assert not store.finish_run(first, RunStatus.SUCCESS, finished_at=T + 200)  # ignored
    assert runs_counted(reader) == {
        ("backup", "success"): 1, ("backup", "failed"): 1, ("backup", "lost"): 1,
        ("backup", "skipped"): 1, ("report", "missed"): 1, ("report", "timeout"): 1,
    }
    assert running is not None and [r.id for r in reader.running()] == [running]


def test_contract_the_duration_histogram_counts_runs_that_ran_in_the_bucket_of_their_duration(store, reader):
    durations = [0.2, 1.0, 1.5, 40.0, 7 * 3600.0]
    for i, d in enumerate(durations):
        ran(store, "backup", T + 60 * i, RunStatus.SUCCESS if i % 2 else RunStatus.FAILED, duration=d)
    claim(store, "backup", T + 900, status=RunStatus.SKIPPED, finished_at=T + 900)
    buckets = {dict(k)["le"]: v for k, v in counted(reader, "run_duration_bucket").items()
               if dict(k)["job"] == "backup"}
    expected: dict[str, float] = {}
    for d in durations:
        le = next((format(b, "g") for b in DURATION_BUCKETS if d <= b), "+Inf")
        expected[le] = expected.get(le, 0) + 1
    assert buckets == expected and sum(buckets.values()) == len(durations)
    [(_, total)] = counted(reader, "run_duration_sum").items()
    assert total == pytest.approx(sum(durations))


def test_contract_counters_survive_pruning_every_run_they_counted(store, reader):
    for i in range(6):
        ran(store, "backup", T + 60 * i, RunStatus.SUCCESS)
    before = reader.counters()
    assert store.prune(max_runs_per_job=1, max_age_s=1.0, now=T + 3600) >= 4
    assert len(reader.runs("backup", limit=None)) < 6
    assert reader.counters() == before
    assert runs_counted(reader) == {("backup", "success"): 6}


def test_contract_add_counter_adds_up_whatever_the_order_of_the_labels(store, reader):
    store.add_counter("notifications_failed", {"channel": "webhook", "job": "backup"})
    store.add_counter("notifications_failed", {"job": "backup", "channel": "webhook"}, 2)
    store.add_counter("notifications_failed", {"channel": "mail", "job": "backup"}, 0)
    assert counted(reader, "notifications_failed") == {
        (("channel", "mail"), ("job", "backup")): 0, (("channel", "webhook"), ("job", "backup")): 3}
    with pytest.raises(ValueError, match="only grows"):
        store.add_counter("notifications_failed", {"channel": "mail"}, -1)
    with pytest.raises(RunLogError):
        reader.add_counter("notifications_failed", {"channel": "mail"})


def test_contract_job_summaries_give_the_latest_start_success_and_ran_run_of_many_jobs(store, reader):
    ran(store, "backup", T, RunStatus.SUCCESS, duration=2.0)
    ran(store, "backup", T + 60, RunStatus.FAILED, duration=3.0)
    claim(store, "backup", T + 120, status=RunStatus.SKIPPED, finished_at=T + 120)
    going = claim(store, "report", T)
    store.mark_started(going, 99, None, T + 1)
    with reader.snapshot():
        found = reader.job_summaries(["backup", "report", "never"])
    backup, report, never = found["backup"], found["report"], found["never"]
    assert (backup.last_started, backup.last_success, backup.last_status, backup.last_exit_code,
            backup.last_duration, backup.running) == (T + 60, T + 2, RunStatus.FAILED, 1, 3.0, 0)
    assert (report.last_started, report.last_success, report.last_status, report.running) == (
        T + 1, None, None, 1)
    assert (never.last_started, never.last_status, never.running) == (None, None, 0)
def test_contract_success_rate_counts_a_retried_fire_as_its_last_attempt_and_errors_against_it(store, reader):
    ran(store, "r", T, RunStatus.FAILED, attempt=1, duration=2)
    ran(store, "r", T, RunStatus.SUCCESS, attempt=2, trigger=Trigger.RETRY, duration=4)
    ran(store, "r", T + 60, RunStatus.FAILED, duration=6)
    error = claim(store, "r", T + 120)
    store.finish_run(error, RunStatus.ERROR, finished_at=T + 120, reason="no such user")
    assert reader.stats_many(["r"], 20) == {"r": (1 / 3, 4.0)} == {"r": reader.stats("r", 20)}
    assert reader.stats("r", 1) == (0.0, 6.0)  # the newest fire (an error), the newest ran run
# -- the web view's reads -------------------------------------------------------------------------


def test_contract_recent_runs_of_many_jobs_are_each_jobs_newest_first(store, reader):
    ids = {job: [ran(store, job, T + 60 * i) for i in range(5)] for job in ("a", "b")}
    claim(store, "b", T + 600)
    found = reader.recent_marks_many(["a", "b", "none"], n=3)
    assert [r.id for r in found["a"]] == ids["a"][::-1][:3]
    assert [r.status for r in found["b"]] == ["running", "success", "success"]
    newest = reader.run(ids["a"][-1])
    assert found["a"][0] == (newest.id, "success", newest.started_at, newest.finished_at, newest.scheduled_for)
    assert found["none"] == []


def test_contract_recent_runs_after_a_look_are_only_the_newer_ones(store, reader):
    ids = {job: [ran(store, job, T + 60 * i) for i in range(4)] for job in ("a", "b", "c")}
    found = reader.recent_marks_many(["a", "b", "c"], n=3, after={"a": ids["a"][1], "b": ids["b"][-1]})
    assert [m.id for m in found["a"]] == [ids["a"][3], ids["a"][2]]
    assert found["b"] == []
    assert [m.id for m in found["c"]] == ids["c"][::-1][:3]  # no id given: the last n


def test_contract_runs_by_id_are_the_runs_themselves(store, reader):
    a, b = ran(store, "a", T), ran(store, "b", T, RunStatus.FAILED)
    found = reader.runs_by_id([b, a, 999_999])
    assert found == {a: reader.run(a), b: reader.run(b)}
    assert found[b].status == "failed" and reader.runs_by_id([]) == {}


def test_contract_newest_ids_are_each_jobs_highest_run_id(store, reader):
    ran(store, "a", T)
    newest = claim(store, "a", T - 60)  # claimed later for an earlier time: the higher id
    b = ran(store, "b", T)
    assert reader.newest_ids(["a", "b", "none"]) == {"a": newest, "b": b}


def test_contract_runs_filtered_by_status_time_and_page(store, reader):
    statuses = [RunStatus.SUCCESS, RunStatus.FAILED, RunStatus.TIMEOUT, RunStatus.SUCCESS, RunStatus.FAILED]
    ids = [ran(store, "a", T + 60 * i, s) for i, s in enumerate(statuses)]
    other = ran(store, "b", T + 30, RunStatus.FAILED)
    failed = reader.runs_filtered("a", statuses=[RunStatus.FAILED])
    assert [r.id for r in failed] == [ids[4], ids[1]]
    assert [r.id for r in reader.runs_filtered("a", statuses=[RunStatus.FAILED, RunStatus.TIMEOUT])] == \
        [ids[4], ids[2], ids[1]]
    assert [r.id for r in reader.runs_filtered("a", since=T + 60, until=T + 180)] == [ids[2], ids[1]]
    assert [r.id for r in reader.runs_filtered("a", before_id=ids[3], limit=2)] == [ids[2], ids[1]]
    assert [r.id for r in reader.runs_filtered(None, statuses=[RunStatus.FAILED])] == [other, ids[4], ids[1]]
    assert [r.id for r in reader.runs_filtered(None, statuses=[RunStatus.FAILED], before_id=other,
                                               since=T + 120)] == [ids[4]]


def test_contract_output_is_read_in_parts(store, reader):
    run_id = ran(store, "a", T)
    store.save_output(run_id, b"0123456789", False)
    assert reader.output_part(run_id, 2, 3) == (b"234", 10, False)
    assert reader.output_part(run_id, 8, 100) == (b"89", 10, False)
    assert reader.output_part(run_id, 20, 5) == (b"", 10, False)
    assert reader.output_part(ran(store, "b", T), 0, 5) is None


def test_contract_superseded_names_attempts_a_later_attempt_followed(store, reader):
    first = ran(store, "a", T, RunStatus.FAILED)
    second = ran(store, "a", T, RunStatus.FAILED, attempt=2)
    alone = ran(store, "a", T + 60, RunStatus.FAILED)
    runs = [reader.run(i) for i in (first, second, alone)]
    assert reader.superseded(runs) == {first}
# -- the alerts' outbox ------------------------------------------------------------------------


def alert(run_id, job="a", channel="webhook", shown="https://h", at=T, event="failure"):
    return OutboxItem(run_id, job, event, channel, f"{shown}/secret", shown, b'{"x":1}', at)


def test_contract_due_alerts_come_soonest_first_and_attempts_move_them_on(store, reader):
    run = ran(store, "a", T, RunStatus.FAILED)
    assert store.add_deliveries([alert(run), alert(run, channel="command", shown="notify_command")], 100) == []
    first, second = store.due_deliveries(T + 1, 10)
    assert (first.state, first.tries, first.target, first.payload) == (PENDING, 0, "https://h/secret", b'{"x":1}')
    assert store.due_deliveries(T + 1, 10, skip=[first.id]) == [second]
    store.record_delivery(DeliveryAttempt(first.id, "a", "webhook", "https://h", T + 1, False,
                                          "503 Service Unavailable", T + 5), PENDING)
    store.record_delivery(DeliveryAttempt(second.id, "a", "command", "notify_command", T + 1, True,
                                          "exit code 0", None), DELIVERED)
    assert store.due_deliveries(T + 2, 10) == [] and store.next_delivery_at() == T + 5
    assert store.pending_deliveries() == 1
    [again] = store.due_deliveries(T + 5, 10)
    assert again.id == first.id and again.tries == 1
    store.record_delivery(DeliveryAttempt(first.id, "a", "webhook", "https://h", T + 5, False,
                                          "404 Not Found", None), GAVE_UP)
    shown = reader.deliveries(run)
    assert [(d.item.channel, d.item.state) for d in shown] == [("webhook", GAVE_UP), ("command", DELIVERED)]
    assert [a.answer for a in shown[0].attempts] == ["503 Service Unavailable", "404 Not Found"]
    assert store.next_delivery_at() is None
    # Given up: counted for cronsup_notifications_failed_total, once, with its transaction.
    assert counted(reader, "notifications_failed") == {(("channel", "webhook"),): 1}


def test_contract_a_full_outbox_drops_its_oldest_waiting_alerts(store, reader):
    run = ran(store, "a", T, RunStatus.FAILED)
    store.add_deliveries([alert(run, at=T + i) for i in range(3)], 5)
    dropped = store.add_deliveries([alert(run, at=T + 10 + i) for i in range(4)], 5)
    assert [d.created_at for d in dropped] == [T, T + 1]
    assert store.pending_deliveries() == 5
    assert [d.item.state for d in reader.deliveries(run)][:3] == [DROPPED, DROPPED, PENDING]
    assert counted(reader, "notifications_failed") == {(("channel", "webhook"),): 2}


def test_contract_failing_channels_are_those_whose_latest_attempt_failed(store, reader):
    run = ran(store, "a", T, RunStatus.FAILED)
    store.add_deliveries([alert(run), alert(run, shown="https://other")], 10)
    one, two = store.due_deliveries(T, 10)
    store.record_delivery(DeliveryAttempt(one.id, "a", "webhook", "https://h", T, False, "timeout", T + 1), PENDING)
    store.record_delivery(DeliveryAttempt(two.id, "a", "webhook", "https://other", T, False, "500", T + 1), PENDING)
    store.record_delivery(DeliveryAttempt(two.id, "a", "webhook", "https://other", T + 1, True, "200 OK", None),
                          DELIVERED)
    failing = reader.failing_channels()
    assert list(failing) == ["a"] and [(f.shown, f.answer) for f in failing["a"]] == [("https://h", "timeout")]


def test_contract_pruning_a_run_removes_its_finished_alerts_but_not_waiting_ones(store, reader):
    old = [ran(store, "a", T + i, RunStatus.FAILED) for i in range(3)]
    store.add_deliveries([alert(old[0]), alert(old[1])], 10)
    done, _ = store.due_deliveries(T, 10)
    store.record_delivery(DeliveryAttempt(done.id, "a", "webhook", "https://h", T, True, "200 OK", None), DELIVERED)
    store.prune(max_runs_per_job=1, max_age_s=90 * 86400, now=T + 10)
    assert reader.deliveries(old[0]) == []
    assert store.pending_deliveries() == 1  # its run is gone, the alert still goes out


def test_contract_an_alert_waits_behind_an_earlier_one_of_its_run_to_the_same_target(store):
    run = ran(store, "a", T, RunStatus.FAILED)
    store.add_deliveries([alert(run, channel="healthcheck", event="start"),
                          alert(run, channel="healthcheck", event="failure"),
                          alert(run, channel="webhook", event="failure")], 10)
    due = store.due_deliveries(T, 10)
    assert [(d.channel, d.event) for d in due] == [("healthcheck", "start"), ("webhook", "failure")]
    store.record_delivery(DeliveryAttempt(due[0].id, "a", "healthcheck", "https://h", T, True, "200 OK", None),
                          DELIVERED)
    assert [(d.channel, d.event) for d in store.due_deliveries(T, 10)] == [
        ("healthcheck", "failure"), ("webhook", "failure")]


def test_contract_the_next_alert_due_leaves_out_those_in_flight_and_those_waiting_behind(store):
    run = ran(store, "a", T, RunStatus.FAILED)
    store.add_deliveries([alert(run, channel="healthcheck", event="start", at=T),
                          alert(run, channel="healthcheck", event="failure", at=T + 1),
                          alert(run, channel="webhook", at=T + 2)], 10)
    start, hook = store.due_deliveries(T + 5, 10)  # the end ping is not due before its start
    assert store.next_delivery_at() == T
    assert store.next_delivery_at(skip=[start.id]) == T + 2  # the end ping waits behind its start
    assert store.next_delivery_at(skip=[start.id, hook.id]) is None


def test_contract_a_sibling_connection_sees_and_makes_the_same_store(store, reader):
    other = store.sibling()
    try:
        run = ran(store, "a", T)
        assert other.run(run).status is RunStatus.SUCCESS
        other.set_kv("from-sibling", "1")
        assert reader.get_kv("from-sibling") == "1"
    finally:
        other.close()
