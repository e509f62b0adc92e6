"""`cronsup backfill`: run a job for each of its scheduled times in a past range, by the daemon."""

from __future__ import annotations

import sys

import click

from cronsup import paths
from cronsup.cli import (EXIT_INVALID, EXIT_NO_DAEMON, EXIT_USAGE, _start_hint, _suggest, common_options, fail,
                         load_jobs, state_dir)

POLL = 0.2


@click.command()
@click.argument("job")
@click.option("--from", "start", metavar="TIME", help="The first time of the range (included): 2026-11-29 or 2026-11-29T14:00, in the job's zone unless it has an offset.")
@click.option("--to", "end", metavar="TIME", help="The end of the range (excluded): 2026-11-30 ends the range with 29 November.")
@click.option("--reprocess", type=click.Choice(["none", "failed", "all"]), default="none", show_default=True,
              help="Times that already ran: none runs only times without a run, failed also reruns "
                   "times whose last run did not succeed, all reruns every time.")
@click.option("--max-parallel", default=1, show_default=True, type=click.IntRange(1, 64), metavar="N",
              help="At most N of the backfill's runs at once.")
@click.option("--dry-run", is_flag=True, help="List each scheduled time and what would happen to it; start nothing.")
@click.option("--wait", is_flag=True, help="Show progress until the backfill ends; exit 0 only if every run succeeded.")
@click.option("--yes", is_flag=True, help="Go ahead with a range of more than 10,000 scheduled times.")
@click.option("--cancel", is_flag=True, help="Stop the job's backfill: no more of its times start (running runs go on).")
@common_options
def backfill(job: str, start: str | None, end: str | None, reprocess: str, max_parallel: int, dry_run: bool,
             wait: bool, yes: bool, cancel: bool, jobs_path: str, db: str) -> None:
    """Run JOB once for each of its scheduled times from --from to --to, oldest first.

    Each run has trigger "backfill" and CRONSUP_SCHEDULED_FOR set to its scheduled time
    (the times come from the job's schedule, in its zone, with cron's DST rules). The
    daemon runs them, at most --max-parallel at once and never beside the job's own runs
    unless its overlap is "allow"; it goes on with them after a restart. A second backfill
    of the same range runs nothing more under --reprocess none. Exits 3 when no daemon is
    running (--dry-run works without one).

    \b
    Example:
      cronsup backfill report --from 2026-11-23 --to 2026-11-30 --dry-run
      cronsup backfill report --from 2026-11-23 --to 2026-11-30 --max-parallel 4 --wait
      cronsup backfill report --from 2026-11-23 --to 2026-11-30 --reprocess failed
      cronsup backfill report --wait            (follow the backfill going)
      cronsup backfill --cancel report
    """
    if cancel:
        if start or end or dry_run or wait:
            fail("--cancel takes only the job: cronsup backfill --cancel JOB", EXIT_USAGE)
        answer = _ask(jobs_path, db, "backfill_cancel", job, {})
        click.echo(f"{job}: backfill {answer['backfill_id']} cancelled: {answer['not_started']:,} "
                   f"times not started; {answer['running']} running go on")
        return
    if wait and not start and not end and not dry_run:
        sys.exit(_attach(job, jobs_path, db))
    if not start or not end:
        fail("backfill needs --from TIME and --to TIME (or --cancel, or --wait alone to follow "
             "the backfill going)", EXIT_USAGE)
    if dry_run:
        sys.exit(_dry_run(job, start, end, reprocess, jobs_path, db))
    fields = {"from": start, "to": end, "reprocess": reprocess, "max_parallel": max_parallel, "yes": yes}
    answer = _ask(jobs_path, db, "backfill", job, fields)
    total, to_run, skipped = answer["slots"], answer["to_run"], answer["skipped"]
    if answer.get("backfill_id") is None:
        click.echo(f"{job}: nothing to run: all {total:,} scheduled times in the range already ran "
                   f"(--reprocess {reprocess}; --dry-run shows each)")
        return
    bid = answer["backfill_id"]
    more = f", {skipped:,} skipped (--reprocess {reprocess})" if skipped else ""
    click.echo(f"{job}: backfill {bid}: {to_run:,} of {total:,} scheduled times to run, oldest first, "
               f"at most {max_parallel} at once{more}")
    if not wait:
        click.echo(f"follow it with `cronsup backfill {job} --wait` or `cronsup logs {job} -f`; "
                   f"stop it with `cronsup backfill --cancel {job}`")
        return
    sys.exit(_wait(job, bid, db, answer.get("timezone"), to_run))


def _ask(jobs_path: str, db: str, op: str, job: str, fields: dict) -> dict:
    from cronsup import control, report

    path = paths.control_socket(db, state_dir())
    try:
        return control.request(path, op, job, fields=fields)
    except control.NoDaemon:
        pid = report.daemon_pid(db, state_dir())
        if pid is not None:
            fail(f"the daemon (pid {pid}) holds the run log {db} but does not answer on {path}; "
                 "it may still be starting: try again in a moment", EXIT_NO_DAEMON)
        fail(f"no daemon is running with the run log {db}: the daemon runs a backfill (and goes on "
             f"with it after a restart); start one with {_start_hint(jobs_path, db)} "
             "(--dry-run works without it)", EXIT_NO_DAEMON)
    except control.ControlError as e:
        fail(str(e), EXIT_USAGE if e.kind in ("unknown_job", "usage", "bad_param") else EXIT_INVALID)
    raise AssertionError("unreachable")


def _attach(name: str, jobs_path: str, db: str) -> int:
    """`cronsup backfill JOB --wait` alone: follow the job's backfill that is going."""
    from cronsup import report
    from cronsup.store import RunLogError

    try:
        runlog = report.open_log(db)
        going = runlog.backfills(name, active=True) if runlog is not None else []
        if runlog is not None:
            runlog.close()
    except RunLogError as e:
        fail(str(e))
    if not going:
        fail(f"no backfill of {name} is going (start one with --from and --to)", EXIT_USAGE)
    from cronsup import jobsfile

    try:  # only for the zone the times are shown in
        spec = jobsfile.load(jobs_path).get(name)
    except (jobsfile.JobsfileErrors, jobsfile.JobsfileRefused, OSError):
        spec = None
    bf = going[0]
    click.echo(f"{name}: backfill {bf.id}: {bf.slots:,} scheduled times, at most {bf.max_parallel} at once")
    return _wait(name, bf.id, db, spec.timezone if spec else None, bf.slots)


def _dry_run(name: str, start_text: str, end_text: str, reprocess: str, jobs_path: str, db: str) -> int:
    """List the slots from the jobs file and the run log; no daemon needed, nothing started."""
    from cronsup import backfill as bf, report, schedule
    from cronsup.params import scheduled_text
    from cronsup.store import RunLogError

    jobs = load_jobs(jobs_path)
    spec = jobs.get(name)
    if spec is None:
        fail(f"no job named {name!r} in {jobs_path}{_suggest(name, jobs.names)}", EXIT_USAGE)
    try:
        cron = bf.calendar(spec)
        zone = schedule.load_zone(spec.timezone)
        start = bf.parse_time(start_text, zone, "--from")
        end = bf.parse_time(end_text, zone, "--to")
        bf.check_range(cron, zone, start, end, confirmed=True)
    except bf.BackfillError as e:
        fail(str(e), EXIT_USAGE)
    try:
        runlog = report.open_log(db)
        runs = runlog.runs_scheduled_between(name, start, end) if runlog is not None else []
    except RunLogError as e:
        fail(str(e))
    if runlog is not None:
        runlog.close()
    slots = bf.plan(bf.times(cron, zone, start, end), runs, bf.Reprocess(reprocess))
    to_run = sum(1 for s in slots if s.run)
    click.echo(f"{name} ({cron.text}, {zone}): {scheduled_text(start, zone)} to {scheduled_text(end, zone)} "
               f"(excluded): {len(slots):,} scheduled times, {to_run:,} to run, "
               f"{len(slots) - to_run:,} skipped (--reprocess {reprocess})")
    for s in slots:
        click.echo(f"{scheduled_text(s.scheduled_for, zone)}  {'run ' if s.run else 'skip'}  {s.why}")
    click.echo("dry run: nothing was started")
    return 0


def _wait(job: str, bid: int, db: str, timezone: str | None, answer_slots: int) -> int:
    """Progress until the backfill ends: a bar on a terminal, a line per finished time otherwise."""
    from cronsup import clock, fmt, report, schedule
    from cronsup.model import RunStatus
    from cronsup.params import scheduled_text
    from cronsup.store import open_store

    zone = schedule.load_zone(timezone)

    tty = sys.stdout.isatty()
    began = clock.mono()
    told: set[float] = set()
    gone_said = False
    try:
        with open_store(db, readonly=True) as runlog:
            for _ in clock.poll(POLL if answer_slots <= 10_000 else 10 * POLL):  # each look reads every slot
                found = runlog.backfill(bid)
                slots = runlog.backfill_slots(bid)
                over = found is None or found.state != "active"
                ended = [s for s in slots if s.status is not None and s.status is not RunStatus.RUNNING]
                ok = sum(1 for s in ended if s.status is RunStatus.SUCCESS)
                failed = len(ended) - ok
                left = len(slots) - len(ended)
                elapsed = fmt.took(clock.mono() - began)
                if tty:
                    click.echo("\r" + _bar(ok, failed, left, elapsed), nl=False)
                else:
                    for s in ended:
                        if s.scheduled_for not in told:
                            told.add(s.scheduled_for)
                            click.echo(f"{scheduled_text(s.scheduled_for, zone)} {s.status} (run {s.run_id}); "
                                       f"{ok} done, {failed} failed, {left} left, {elapsed}")
                if over:
                    break
                if not gone_said and report.daemon_pid(db, state_dir()) is None:
                    gone_said = True
                    click.echo(("\n" if tty else "") + f"the daemon stopped; backfill {bid} goes on when "
                               "it starts again (still waiting; Ctrl-C stops waiting)", err=True)
    except KeyboardInterrupt:
        click.echo(("\n" if tty else "") + f"stopped waiting; backfill {bid} goes on in the daemon", err=True)
        return 130
    if tty:
        click.echo("")
    state = found.state if found is not None else "gone"
    click.echo(f"{job}: backfill {bid} {state}: {ok} succeeded, {failed} failed"
               + (f", {left} not run" if left else "") + f" in {elapsed}")
    if failed:
        click.echo(f"the failed ones: `cronsup logs {job} --failed`; run them again with "
                   f"--reprocess failed", err=True)
    return 0 if state == "done" and failed == 0 and left == 0 else EXIT_INVALID


def _bar(ok: int, failed: int, left: int, elapsed: str, width: int = 30) -> str:
    """'[#########.....x.........] 9 done, 1 failed, 14 left, 12.0s'."""
    total = max(1, ok + failed + left)
    n_ok = round(width * ok / total)
    n_failed = round(width * failed / total)
    bar = "#" * n_ok + "x" * n_failed + "." * max(0, width - n_ok - n_failed)
    return f"[{bar}] {ok} done, {failed} failed, {left} left, {elapsed}  "
