"""What `cronsup logs JOB` prints: a table of runs, one run in full, or runs as they happen."""

from __future__ import annotations

import json
import time

import click

from cronsup import clock, fmt
from cronsup.model import RunStatus
from cronsup.runlog import Run, RunLog, iso

FOLLOW_POLL = 0.5  # seconds between looks at the run log; each look is its own short read


class LogView:
    def __init__(self, runlog: RunLog, job: str, *, escape: bool, colour: bool):
        self.runlog, self.job, self.escape, self.colour = runlog, job, escape, colour

    def echo(self, text: str = "", nl: bool = True) -> None:
        click.echo(text, nl=nl, color=self.colour)

    def _output(self, run: Run) -> tuple[bytes, bool]:
        found = self.runlog.output(run.id)
        return found if found is not None else (b"", False)

    # -- a list ----------------------------------------------------------------------------

    def list(self, limit: int, failed: bool, since: float | None, with_output: bool, as_json: bool) -> None:
        runs = self.runlog.runs(self.job, limit=limit, failed=failed, since=since)
        if as_json:
            out = []
            for run in runs:
                out.append(run.to_json(*self._output(run)) if with_output else run.to_json())
            self.echo(json.dumps(out, indent=2))
            return
        if not runs:
            self.echo(f"no runs of {self.job}" + (" that failed" if failed else "") + " yet")
            return
        now = clock.wall()
        if not with_output:
            for line in self._table(runs, now):
                self.echo(line)
            return
        for run in runs:
            self._summary(run, now)
            self._print_output(run)

    def _table(self, runs: list[Run], now: float) -> list[str]:
        rows = []
        for run in runs:
            code = "" if run.exit_code is None else str(run.exit_code)
            if run.signal:
                code = f"sig {run.signal}"
            started = run.started_at or run.scheduled_for
            duration = run.duration_s
            if run.status is RunStatus.RUNNING and run.started_at:
                duration = now - run.started_at
            rows.append([str(run.id), str(run.trigger), str(run.attempt),
                         fmt.local(started).strftime("%Y-%m-%d %H:%M:%S"), fmt.took(duration),
                         fmt.status(run.status, self.colour), code, run.reason or ""])
        return fmt.table(["ID", "TRIGGER", "TRY", "STARTED", "TOOK", "STATUS", "EXIT", "REASON"],
                         rows, [None, None, None, None, 8, None, 6, 60], right={0, 2})

    def _summary(self, run: Run, now: float) -> None:
        started = fmt.local(run.started_at or run.scheduled_for).strftime("%Y-%m-%d %H:%M:%S")
        tail = f" ({run.reason})" if run.reason else ""
        code = f" exit {run.exit_code}" if run.exit_code is not None else ""
        self.echo(click.style(f"── run {run.id} · {run.trigger} · attempt {run.attempt} · {started} · ",
                              dim=True) + fmt.status(run.status, self.colour) + code
                  + f" · {fmt.took(run.duration_s)}{tail}")

    def _print_output(self, run: Run) -> None:
        data, truncated = self._output(run)
        if data:
            text = fmt.safe_output(data, self.escape)
            self.echo(text, nl=not text.endswith("\n"))
        if truncated:
            self.echo(click.style("(output truncated to its first and last halves by output_limit)", dim=True))

    # -- one run ---------------------------------------------------------------------------

    def one(self, run_id: int, as_json: bool) -> None:
        run = self.runlog.run(run_id)
        if run is None or run.job != self.job:
            raise click.ClickException(f"no run {run_id} of job {self.job!r}")
        data, truncated = self._output(run)
        if as_json:
            self.echo(json.dumps(run.to_json(data, truncated), indent=2))
            return
        fields = [
            ("run", str(run.id)), ("job", run.job), ("status", fmt.status(run.status, self.colour)),
            ("reason", run.reason or ""), ("trigger", str(run.trigger)), ("attempt", str(run.attempt)),
            ("scheduled for", iso(run.scheduled_for) or ""), ("started", iso(run.started_at) or "-"),
            ("finished", iso(run.finished_at) or "-"), ("took", fmt.took(run.duration_s)),
            ("exit code", "" if run.exit_code is None else str(run.exit_code)),
            ("signal", "" if run.signal is None else str(run.signal)),
            ("pid", "" if run.pid is None else str(run.pid)), ("host", run.host),
            ("cpu", "" if run.cpu_s is None else f"{run.cpu_s:.2f}s"),
            ("peak memory", "" if run.max_rss is None else fmt.format_size(run.max_rss)),
        ]
        for name, value in fields:
            if value:
                self.echo(f"{name + ':':<15}{value}")
        self.echo(f"{'output:':<15}" + ("(none)" if not data else f"{len(data)} bytes"
                                         + (", truncated" if truncated else "")))
        if data:
            text = fmt.safe_output(data, self.escape)
            self.echo(text, nl=not text.endswith("\n"))

    # -- following ---------------------------------------------------------------------------

    def follow(self, limit: int, failed: bool, since: float | None, with_output: bool, as_json: bool) -> None:
        """Print the latest runs, then each new run and each end as it happens (Ctrl-C stops)."""
        recent = list(reversed(self.runlog.runs(self.job, limit=min(limit, 10), failed=failed, since=since)))
        last_id = max([r.id for r in recent], default=0)
        if not recent:
            newest = self.runlog.runs(self.job, limit=1)
            last_id = newest[0].id if newest else 0
        watching: dict[int, int] = {}  # running run id -> output bytes printed
        for run in recent:
            self._event(run, "", as_json)
            if run.status is RunStatus.RUNNING:
                watching[run.id] = 0
        try:
            while True:
                time.sleep(FOLLOW_POLL)
                for run in self.runlog.runs(self.job, after_id=last_id, limit=1000):
                    last_id = max(last_id, run.id)
                    if failed and run.status in (RunStatus.SUCCESS, RunStatus.RUNNING, RunStatus.SKIPPED):
                        if run.status is RunStatus.RUNNING:
                            watching[run.id] = 0
                        continue
                    self._event(run, "started" if run.status is RunStatus.RUNNING else "", as_json)
                    if run.status is RunStatus.RUNNING:
                        watching[run.id] = 0
                    elif with_output and not as_json:
                        self._print_output(run)
                for run_id in list(watching):
                    run = self.runlog.run(run_id)
                    if run is None:
                        del watching[run_id]
                        continue
                    if with_output and not as_json:
                        watching[run_id] = self._stream(run, watching[run_id])
                    if run.status is not RunStatus.RUNNING:
                        del watching[run_id]
                        if not (failed and run.status is RunStatus.SUCCESS):
                            self._event(run, "ended", as_json)
        except KeyboardInterrupt:
            pass

    def _event(self, run: Run, what: str, as_json: bool) -> None:
        if as_json:
            self.echo(json.dumps(run.to_json()))
            return
        self._summary(run, clock.wall())

    def _stream(self, run: Run, printed: int) -> int:
        data, truncated = self._output(run)
        if truncated and printed > len(data):
            return printed
        if len(data) > printed:
            self.echo(fmt.safe_output(data[printed:], self.escape), nl=False)
        return max(printed, len(data))
