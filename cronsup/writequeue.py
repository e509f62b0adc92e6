"""Run-log writes the run log refused (locked by another process, disk full), kept and retried.

A refused write is never forgotten: it is kept in memory, in order after every earlier kept
write, and retried by the daemon's loop until the run log takes it. Kept writes are bounded:
past `max_output` bytes the oldest output is dropped (the run's end is still written, its
reason saying so), past `max_writes` the oldest writes are, each loudly in the log.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cronsup.runjson import iso
from cronsup.store import RunLogError

log = logging.getLogger("cronsup")


@dataclass
class Kept:
    """One kept write: a store method and its arguments."""

    method: Callable
    args: tuple
    kwargs: dict
    key: tuple | None  # a newer write with the same key replaces this one
    output: int  # bytes of output it carries

    def describe(self) -> str:
        """As the admin reads it in the log when it is given up."""
        name, args, kwargs = self.method.__name__, self.args, self.kwargs
        if name == "finish_run":
            code = kwargs.get("exit_code")
            return (f"the end of run {args[0]} ({args[1]}"
                    f"{'' if code is None else f', exit code {code}'}, {self.output} bytes of output)")
        if name == "insert_runs":
            return "the rows of " + ", ".join(f"{r.job} at {iso(r.scheduled_for)} ({r.status})"
                                              for r in args[0])
        if name == "save_output":
            return f"the output so far of run {args[0]} ({self.output} bytes)"
        return f"{name} {args[:1] or ''}{kwargs or ''}"


def _key(method: Callable, args: tuple, kwargs: dict) -> tuple | None:
    """Writes of state of which only the latest value matters replace older ones."""
    name = method.__name__
    if name == "save_output":
        return ("output", args[0])
    if name == "set_jobs":
        return ("jobs",)
    if name == "update_daemon":
        return ("daemon", *sorted(kwargs))
    return None


def output_size(method: Callable, args: tuple, kwargs: dict) -> int:
    """Bytes of captured output a save_output or finish_run write carries."""
    if method.__name__ == "save_output":
        return len(args[1])
    output = kwargs.get("output") if method.__name__ == "finish_run" else None
    return len(output[0]) if output else 0


class WriteQueue:
    def __init__(self, mono: Callable[[], float], *, max_writes: int = 10_000,
                 max_output: int = 64 * 1024 * 1024, retry_every: float = 0.5):
        self.mono = mono
        self.max_writes, self.max_output, self.retry_every = max_writes, max_output, retry_every
        self.kept: deque[Kept] = deque()  # oldest first
        self._keyed: dict[tuple, Kept] = {}
        self.output = 0  # bytes of output the kept writes carry
        self.refusal: RunLogError | None = None  # the latest refusal, while writes are kept
        self.since: float | None = None  # monotonic time of the first refusal
        self.retry_at = 0.0

    def __len__(self) -> int:
        return len(self.kept)

    def write(self, method: Callable, *args: Any, **kwargs: Any) -> Any:
        """Write now, or keep the write if the run log refuses it or earlier ones wait.

        Returns the method's result, or None when the write was kept.
        """
        if not self.kept:
            try:
                result = method(*args, **kwargs)
            except RunLogError as e:
                self.refused(e)
            else:
                self.refusal = self.since = None
                return result
        self.keep(method, *args, **kwargs)
        return None

    def refused(self, e: RunLogError) -> None:
        """The run log refused a write: note why, and say so once per outage."""
        self.refusal = e
        if self.since is None:
            self.since = self.mono()
            self.retry_at = self.since + self.retry_every
            log.error("%s; keeping run-log writes in memory and retrying every %gs", e,
                      self.retry_every)

    def keep(self, method: Callable, *args: Any, **kwargs: Any) -> None:
        """Keep a write without trying it (it was just refused)."""
        key = _key(method, args, kwargs)
        if key is not None and (old := self._keyed.get(key)) is not None:
            self._drop(old)
        if method.__name__ == "finish_run" and (old := self._keyed.get(("output", args[0]))):
            self._drop(old)  # the final output replaces what was flushed so far
        entry = Kept(method, args, dict(kwargs), key, output_size(method, args, kwargs))
        self.kept.append(entry)
        self.output += entry.output
        if key is not None:
            self._keyed[key] = entry
        self._bound()

    def due(self, mono: float) -> bool:
        return bool(self.kept) and mono >= self.retry_at

    def retry(self) -> int | None:
        """Write the kept writes, oldest first, until one is refused.

        Returns how many were written once none is left, None while the run log refuses.
        """
        done = 0
        while self.kept:
            entry = self.kept[0]
            try:
                entry.method(*entry.args, **entry.kwargs)
            except RunLogError as e:
                self.refusal = e
                self.retry_at = self.mono() + self.retry_every
                return None
            self._drop(entry)
            done += 1
        if self.since is not None:
            log.warning("the run log takes writes again: wrote %d kept writes, %.1fs after the "
                        "first refusal", done, self.mono() - self.since)
        self.refusal = self.since = None
        return done

    def lost(self) -> None:
        """Log every write still kept as lost (at a stop that could not wait longer)."""
        for entry in self.kept:
            log.error("lost at stop (%s): %s", self.refusal, entry.describe())

    def _drop(self, entry: Kept) -> None:
        self.kept.remove(entry)
        self.output -= entry.output
        if entry.key is not None and self._keyed.get(entry.key) is entry:
            del self._keyed[entry.key]

    def _bound(self) -> None:
        """Drop output before a run's end, the oldest first, loudly."""
        for entry in list(self.kept):
            if self.output <= self.max_output:
                break
            if not entry.output:
                continue
            if entry.method.__name__ == "save_output":
                log.error("the run log has refused writes for too long: dropping %s", entry.describe())
                self._drop(entry)
                continue
            log.error("the run log has refused writes for too long: dropping the output of %s",
                      entry.describe())
            self.output -= entry.output
            entry.output = 0
            lost = len(entry.kwargs["output"][0])
            entry.kwargs["output"] = (b"", False)
            reason = entry.kwargs.get("reason")
            entry.kwargs["reason"] = (f"{reason}; " if reason else "") + \
                f"its output ({lost} bytes) was lost: the run log refused writes for too long"
        while len(self.kept) > self.max_writes:
            # Derived state (the jobs table, heartbeats, output so far) goes before history.
            entry = next((e for e in self.kept if e.key is not None), self.kept[0])
            log.error("the run log has refused writes for too long: dropping %s", entry.describe())
            self._drop(entry)
