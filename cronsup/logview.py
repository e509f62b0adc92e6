"""What `cronsup logs [JOB]` prints: a table of runs (of one job or of all), one run in full,
or runs as they happen."""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable

import click

from cronsup import clock, fmt
from cronsup.model import RunStatus
from cronsup.runjson import iso, run_json
from cronsup.store import FAILED_STATUSES, PENDING, Delivery, Run, RunLogError, RunReader

FOLLOW_POLL = 0.5  # seconds between looks at the run log; each look is its own short read
PRUNED = "(output pruned: the oldest output goes first to keep the run log under the daemon's --keep-size)"


class NoSuchRun(Exception):
    """`--run ID` names no run of the job."""


class LogView:
    """`job` None: the runs of every job, with a JOB column."""

    def __init__(self, runlog: RunReader, job: str | None, *, escape: bool, colour: bool,
                 now: Callable[[], float] = clock.wall, width: int | None = None):
        self.runlog, self.job, self.escape, self.colour = runlog, job, escape, colour
        self.wall, self.width = now, width
        self._midline = False  # streamed output that did not end its line
        self._retried: dict[int, int] = {}  # run id -> attempt that succeeded (RunReader.retried_ok)

    def echo(self, text: str = "", nl: bool = True) -> None:
        click.echo(text, nl=nl, color=self.colour)

    def raw(self, text: str, nl: bool) -> None:
        """A job's output: escaped on a terminal already, and otherwise passed on as it is
        (click would strip ANSI sequences from it in a pipe)."""
        click.echo(text, nl=nl, color=True)

    def _output(self, run: Run) -> tuple[bytes, bool]:
        found = self.runlog.output(run.id)
        return found if found is not None else (b"", False)

    def _runs(self, **filters) -> list[Run]:
        if self.job is None:
            return self.runlog.runs_of_all_jobs(**filters)
        return self.runlog.runs(self.job, **filters)

    def _json(self, run: Run, retried: dict[int, int], with_output: bool = False) -> dict:
        data = run_json(run, *self._output(run)) if with_output else run_json(run)
        # A failed attempt whose retry then succeeded: not the fire's final outcome.
        data["retried_ok"] = run.id in retried
        return data

    # -- a list ----------------------------------------------------------------------------

    def list(self, limit: int, failed: bool, since: float | None, with_output: bool, as_json: bool) -> None:
        runs = self._runs(limit=limit + 1 if limit is not None else None, failed=failed, since=since)
        more = limit is not None and len(runs) > limit
        runs = runs[:limit] if more else runs
        retried = self.runlog.retried_ok(runs)
        if more and not as_json:
            click.echo(f"cronsup: the latest {limit} runs; there are more (-n COUNT, or --since for a "
                       "whole window)", err=True)
        if as_json:
            self.echo(fmt.dump_json([self._json(run, retried, with_output) for run in runs]))
            return
        if not runs:
            self.echo(self.none_yet(failed, since))
            return
        now = self.wall()
        if not with_output:
            for line in self.table(runs, now, retried):
                self.echo(line)
            return
        for run in runs:
            self._summary(run, now, retried)
            self._print_output(run)

    def none_yet(self, failed: bool = False, since: float | None = None) -> str:
        what = "failed runs" if failed else "runs"
        when = f" since {fmt.local(since).strftime('%Y-%m-%d %H:%M')}" if since is not None else " yet"
        return f"no {what} of {self.job or 'any job'}{when}"

    def table(self, runs: list[Run], now: float, retried: dict[int, int] | None = None) -> list[str]:
        rows: list[list[str] | str] = []
        for run in runs:
            # A skipped or missed fire never started: show when it was due, marked as such.
            started = fmt.stamp(run.started_at, now) if run.started_at else \
                f"{fmt.stamp(run.scheduled_for, now)} (due)"
            duration = run.duration_s
            if run.status is RunStatus.RUNNING and run.started_at:
                duration = now - run.started_at
            row = [str(run.id), str(run.trigger), str(run.attempt), started,
                   fmt.took(duration), fmt.status(run.status, self.colour),
                   fmt.exit_text(run.exit_code, run.signal), _reason(run, retried)]
            rows.append(row if self.job else [row[0], run.job, *row[1:]])
        columns = [fmt.Column("ID", right=True), fmt.Column("TRIGGER"), fmt.Column("TRY", right=True),
                   fmt.Column("STARTED"), fmt.Column("TOOK", right=True), fmt.Column("STATUS"),
                   fmt.Column("EXIT"), fmt.Column("REASON", shrink=True, least=20, fold=True)]
        if self.job is None:
            columns.insert(1, fmt.Column("JOB", shrink=True, least=10))
        return fmt.table(columns, rows, self.width)

    def _summary(self, run: Run, now: float, retried: dict[int, int] | None = None) -> None:
        started = fmt.stamp(run.started_at or run.scheduled_for, now)
        parts = [f"run {run.id}", str(run.trigger), f"attempt {run.attempt}", started]
        if self.job is None:
            parts.insert(1, run.job)
        head = click.style(f"── {' · '.join(parts)} · ", dim=True) if self.colour else f"── {' · '.join(parts)} · "
        tail = fmt.status(run.status, self.colour)
        if run.duration_s is not None:
            tail += f" · {fmt.took(run.duration_s)}"
        detail = run.reason
        code = fmt.exit_text(run.exit_code, run.signal)
        if not detail and code and (run.signal or code != "0"):
            detail = code if run.signal else f"exit code {code}"
        if retried and run.id in retried:
            detail = f"{detail} {_retried_note(retried[run.id])}".strip()
        if detail:
            tail += f" · {detail}"
        self.echo(head + tail)

    def _print_output(self, run: Run) -> None:
        data, truncated = self._output(run)
        if run.output_pruned:
            self.echo(click.style(PRUNED, dim=True) if self.colour else PRUNED)
            return
        if not data and run.started_at is not None:
            self.echo(click.style("(no output)", dim=True) if self.colour else "(no output)")
        if data:
            text = fmt.safe_output(data, self.escape)
            self.raw(text, nl=not text.endswith("\n"))
        if truncated:
            note = "(output truncated to its first and last halves by output_limit)"
            self.echo(click.style(note, dim=True) if self.colour else note)

    # -- one run ---------------------------------------------------------------------------

    def one(self, run_id: int, as_json: bool) -> None:
        run = self.runlog.run(run_id)
        if run is None:
            raise NoSuchRun(f"no run {run_id} in the run log (see `cronsup logs {self.job}` for run ids)")
        if self.job is not None and run.job != self.job:
            raise NoSuchRun(f"run {run_id} is a run of {run.job}, not {self.job} "
                            f"(cronsup logs {run.job} --run {run_id})")
        data, truncated = self._output(run)
        retried = self.runlog.retried_ok([run])
        deliveries = self._deliveries(run)
        if as_json:
            data = self._json(run, retried, with_output=True)
            data["alerts"] = [_delivery_json(d) for d in deliveries]
            self.echo(fmt.dump_json(data))
            return
        took = run.duration_s
        if run.status is RunStatus.RUNNING and run.started_at:
            took = self.wall() - run.started_at
        fields = [
            ("run", str(run.id)), ("job", run.job), ("status", fmt.status(run.status, self.colour)),
            ("reason", _reason(run, retried)), ("trigger", str(run.trigger)), ("attempt", str(run.attempt)),
            ("scheduled for", iso(run.scheduled_for) or ""),
            ("params", fmt.safe_output(" ".join(f"{k}={shlex.quote(v)}" for k, v in run.params).encode(),
                                       self.escape)),
            ("started", iso(run.started_at) or "-"),
            ("finished", iso(run.finished_at) or "-"),
            ("took", fmt.took(took) + (" so far" if run.status is RunStatus.RUNNING else "")),
            ("exit code", "" if run.exit_code is None else str(run.exit_code)),
            ("signal", "" if run.signal is None else f"{run.signal} ({fmt.signal_name(run.signal)})"),
            ("pid", "" if run.pid is None else str(run.pid)), ("host", run.host),
            ("cpu", "" if run.cpu_s is None else f"{run.cpu_s:.2f}s"),
            ("peak memory", "" if run.max_rss is None else fmt.format_size(run.max_rss)),
        ]
        for name, value in fields:
            if value:
                self.echo(f"{name + ':':<15}{value}")
        size = PRUNED if run.output_pruned else "(none)" if not data else _size(len(data)) + (
            ", truncated by output_limit to its first and last halves" if truncated else "")
        for d in deliveries:
            self._delivery(d)
        self.echo(f"{'output:':<15}{size}")
        if data:
            text = fmt.safe_output(data, self.escape)
            self.raw(text, nl=not text.endswith("\n"))

    def _deliveries(self, run: Run) -> list[Delivery]:
        try:
            return self.runlog.deliveries(run.id)
        except RunLogError:  # a run log from before the outbox
            return []

    def _delivery(self, d: Delivery) -> None:
        """An alert of the run and each attempt at it (targets as scheme and host only)."""
        item, now = d.item, self.wall()
        state = {PENDING: "waiting" if not d.attempts else "retrying"}.get(item.state, item.state)
        tries = f", {len(d.attempts)} tr{'y' if len(d.attempts) == 1 else 'ies'}" if d.attempts else ""
        self.echo(f"{'alert:':<15}{item.event} to {item.channel} {item.shown}: {state}{tries}")
        for a in d.attempts:
            then = f", next try {fmt.stamp(a.next_try, now)}" if a.next_try is not None else ""
            self.echo(f"{'':<17}{fmt.stamp(a.at, now)}  {a.answer}{then}")
        if item.state == PENDING and not d.attempts and item.next_try is not None:
            self.echo(f"{'':<17}first try {fmt.stamp(item.next_try, now)}")

    # -- following ---------------------------------------------------------------------------

    def follow(self, limit: int, failed: bool, since: float | None, with_output: bool, as_json: bool,
               poll: float = FOLLOW_POLL, sleep: Callable[[float], None] = clock.sleep) -> None:
        """Print the latest runs, then each new run and each end as it happens (Ctrl-C stops).

        Every look at the run log is a few short queries, each its own read transaction, so
        following never holds a snapshot that would keep the daemon's WAL from being
        checkpointed.
        """
        recent = list(reversed(self._runs(limit=limit, failed=failed, since=since)))
        self._retried = self.runlog.retried_ok(recent)
        newest = self._runs(limit=1)
        last_id = newest[0].id if newest else 0
        watching: dict[int, int] = {}  # running run id -> output bytes printed
        if not recent and not as_json:
            self.echo(self.none_yet(failed, since) + "; waiting for new runs (Ctrl-C stops)")
        for run in recent:
            self._event(run, as_json)
            if run.status is RunStatus.RUNNING:
                watching[run.id] = self._stream(run, 0) if with_output and not as_json else 0
            elif with_output and not as_json:
                self._print_output(run)
        try:
            for _ in clock.poll(poll, first=False, sleep=sleep):
                for run in self._runs(after_id=last_id, limit=1000):
                    last_id = max(last_id, run.id)
                    if run.status is RunStatus.RUNNING:
                        watching[run.id] = 0
                        if not failed:
                            self._event(run, as_json)
                    elif not failed or _failed(run):
                        self._event(run, as_json)
                        if with_output and not as_json:
                            self._print_output(run)
                for run_id in list(watching):
                    run = self.runlog.run(run_id)
                    if run is None:  # pruned
                        del watching[run_id]
                        continue
                    if with_output and not as_json and not failed:
                        watching[run_id] = self._stream(run, watching[run_id])
                    if run.status is not RunStatus.RUNNING:
                        del watching[run_id]
                        if not failed or _failed(run):
                            self._event(run, as_json)
                            if failed and with_output and not as_json:
                                self._print_output(run)
        except KeyboardInterrupt:
            pass

    def _event(self, run: Run, as_json: bool) -> None:
        self._streaming = None
        if self._midline:
            self.echo()
            self._midline = False
        if as_json:
            self.echo(json.dumps(self._json(run, self._retried)))
            return
        self._summary(run, self.wall(), self._retried)

    def _stream(self, run: Run, printed: int) -> int:
        """Print what a run printed since we last looked; how many bytes are printed now.

        While it runs, only whole lines: a line (or a UTF-8 character) cut in two by a flush
        is printed once it is complete.
        """
        data, truncated = self._output(run)
        if truncated and printed > len(data):
            return printed  # its middle was cut: what we printed is gone from the buffer
        end = len(data)
        if run.status is RunStatus.RUNNING:
            end = data.rfind(b"\n", printed) + 1
        if end > printed:
            if getattr(self, "_streaming", None) != run.id:
                # Runs that overlap take turns: say whose output follows.
                if self._midline:
                    self.echo()
                self.echo(click.style(f"── output of run {run.id} (running) ──", dim=True))
                self._streaming = run.id
            text = fmt.safe_output(data[printed:end], self.escape)
            self.raw(text, nl=False)
            self._midline = not text.endswith("\n")
        return max(printed, end)


def _delivery_json(d: Delivery) -> dict:
    item = d.item
    return {"event": item.event, "channel": item.channel, "target": item.shown, "state": item.state,
            "tries": len(d.attempts), "next_try": iso(item.next_try),
            "attempts": [{"at": iso(a.at), "ok": a.ok, "answer": a.answer, "next_try": iso(a.next_try)}
                         for a in d.attempts]}


def _retried_note(attempt: int) -> str:
    return f"(retried: attempt {attempt} succeeded)"


def _reason(run: Run, retried: dict[int, int] | None) -> str:
    """The run's reason, and whether a later attempt of the same fire succeeded."""
    if retried and run.id in retried:
        return f"{run.reason or ''} {_retried_note(retried[run.id])}".strip()
    return run.reason or ""


def _failed(run: Run) -> bool:
    return run.status in FAILED_STATUSES


def _size(n: int) -> str:
    return f"{n} byte{'' if n == 1 else 's'}" if n < 1024 else fmt.format_size(n)
