"""The daemon's upkeep of the run log: writes kept and retried, heartbeat, pruning, checkpoints."""

from __future__ import annotations

import logging
from dataclasses import replace

from cronsup import clock
from cronsup.model import Outcome, RunStatus
from cronsup.store import NewRun, RunLogError
from cronsup.supervisor import Now, Start
from cronsup.writequeue import output_size

log = logging.getLogger("cronsup")

HEARTBEAT = 60.0  # how often last_seen is written, for catch-up after a crash
PRUNE_EVERY = 3600.0
OUTPUT_FLUSH = 1.0  # a running job's output reaches the run log at most this late
STOP_FLUSH = 10.0  # at a clean stop, kept writes are tried this long before they are given up
# Empty the -wal file this often: SQLite's own checkpoints, every 1,000 pages, let it grow
# to 4 MiB and never shrink it.
CHECKPOINT_EVERY = 60.0


class Upkeep:
    """Mixed into Daemon: heartbeat, output flushes, pruning, checkpoints, kept writes."""

    def _housekeeping(self, now: Now) -> None:
        self._cluster_upkeep(now)  # several hosts: leases, takeover, requests
        if self.notifier.watchdog_interval and now.mono - self._last_watchdog >= self.notifier.watchdog_interval:
            self._last_watchdog = now.mono
            self.notifier.send("WATCHDOG=1")
        if self.writes.due(now.mono):
            self._retry_writes(now)
        for entry in self.running.values():
            if entry.child.output.changed and now.mono - entry.last_flush >= OUTPUT_FLUSH:
                self._flush(entry, now)
        if self._jobs_dirty:
            self._jobs_dirty = False
            self.supervisor.changed.clear()
            self._write_jobs()
        elif self.supervisor.changed and self.writes:
            self.supervisor.changed.clear()
            self._write_jobs()  # kept as one write that a newer one replaces
        elif self.supervisor.changed:
            names, self.supervisor.changed = self.supervisor.changed, set()
            names = [n for n in names if n in self.supervisor.jobs]
            self._write(self.log.update_next_runs, {n: self.supervisor.next_run(n) for n in names})
            self._write(self.log.update_retries, {n: self.supervisor.retry_at(n) for n in names})
        if now.mono - self._last_heartbeat >= HEARTBEAT:
            self._last_heartbeat = now.mono
            self._write(self.log.update_daemon, last_seen=now.wall)
            self.notifier.send(self._status_line())
        if self.writes:
            return  # pruning and checkpoints wait until the kept writes are written
        if now.mono - self._last_prune >= PRUNE_EVERY:
            self._prune(now)
        elif self._output_since_prune >= self.keep_size // 8:
            # A chatty job can write far more than --keep-size in the hour between prunes.
            self._output_since_prune = 0
            if self.cluster:
                self._pruner.start("prune_output", max_bytes=self.keep_size)
            elif self._try(self.log.prune_output, self.keep_size):
                self._checkpoint(now)
        if now.mono - self._last_checkpoint >= CHECKPOINT_EVERY:
            self._checkpoint(now)

    def _prune(self, now: Now) -> None:
        """Runs past --keep-runs and --keep-days, outputs past --keep-size: in the loop on
        SQLite, beside it on PostgreSQL (cronsup/pruner.py)."""
        self._last_prune = now.mono
        self._output_since_prune = 0
        limits = {"max_runs_per_job": self.keep_runs, "max_age_s": self.keep_days * 86400,
                  "now": now.wall, "max_output_bytes": self.keep_size}
        if self.cluster:
            self._pruner.start("prune", **limits)
            return
        self._try(self.log.prune, **limits)
        self._checkpoint(now)

    def _write(self, method, *args, **kwargs):
        """A run-log write; one the run log refuses (locked, disk full) is kept and retried
        in order until it succeeds (see writequeue). The method's result, or None if kept."""
        if method.__name__ == "finish_run":
            self._output_since_prune += output_size(method, args, kwargs)
        return self.writes.write(method, *args, **kwargs)

    def _try(self, method, *args, **kwargs):
        """A read, or a write the loop does again anyway (prune, checkpoint): None if refused."""
        try:
            return method(*args, **kwargs)
        except RunLogError as e:
            log.error("%s", e)
            return None

    def _retry_writes(self, now: Now) -> bool:
        """Try the kept writes; True when none is left."""
        if self.writes.retry() is not None:
            self._checkpoint(now)  # the -wal file may have filled the disk: give the space back
            return True
        if self.writes.refusal is not None and self.writes.refusal.full:
            try:  # a checkpoint can give back the -wal file's space
                self.log.checkpoint()
            except RunLogError:
                pass
        return False

    def _keep_missed(self, starts: list[Start], rows: list[NewRun], e: RunLogError, now: Now) -> None:
        """Fires not started because their row could not be recorded get a `missed` row later."""
        self.writes.refused(e)
        reason = f"not started: the run log refused its row at its time ({e})"
        self.writes.keep(self.log.insert_runs, [replace(r, status=RunStatus.MISSED, reason=reason,
                                                        started_at=None, finished_at=now.wall) for r in rows],
                         host=self.host, boot_id=self.boot_id)
        for s in starts:
            self._emit_outcome(s.job, s.job.name, None, Outcome(RunStatus.MISSED, reason), s.fire, now)

    def _checkpoint(self, now: Now) -> None:
        self._last_checkpoint = now.mono
        self._try(self.log.checkpoint)

    def _flush_at_stop(self) -> None:
        """At a clean stop: try the kept writes for up to STOP_FLUSH, then say what is lost."""
        if not self.writes:
            return
        deadline = self.now().mono + STOP_FLUSH
        log.warning("stopping with %d run-log writes kept; trying them for up to %gs",
                    len(self.writes), STOP_FLUSH)
        while not self._retry_writes(self.now()) and self.now().mono < deadline:
            clock.sleep(self.writes.retry_every)
        self.writes.lost()
