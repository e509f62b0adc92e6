"""`daemon --cron`: cron's own files read beside the jobs file, rescanned when they change."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import replace

from cronsup import cronfiles
from cronsup.report import CRON_KV
from cronsup.cronfiles import CronJobs, Verdict
from cronsup.model import JobsFile
from cronsup.supervisor import Now

log = logging.getLogger("cronsup")


class CronLive:
    """Mixed into Daemon: with `cron_root` set, the jobs it runs are the jobs file's plus
    those of cron's files under that root (see cronfiles), each file standing alone."""

    cron_root: str | None = None
    cron: CronJobs = CronJobs(())
    file_jobs: JobsFile | None = None
    _cron_signature: tuple | None = None

    def _with_cron(self, file_jobs: JobsFile) -> JobsFile:
        """The jobs to run: `file_jobs`, and with --cron those of cron's files rescanned now.

        The jobs file's names win a clash: a cron job whose name it takes gets a suffix."""
        self.file_jobs = file_jobs
        if self.cron_root is None:
            return file_jobs
        before = self.cron
        self._cron_signature = cronfiles.signature(self.cron_root)  # before reading: a change
        self.cron = cronfiles.check_sources(  # while it reads makes another rescan
            self.cron_root, file_jobs.cron_options, taken=file_jobs.names)
        _log_changes(before, self.cron)
        self._publish_cron()
        return replace(file_jobs, jobs=file_jobs.jobs + self.cron.jobs)

    def _cron_changed(self) -> bool:
        return self.cron_root is not None and cronfiles.signature(self.cron_root) != self._cron_signature

    def _reload_cron(self, now: Now) -> None:
        """Cron's files changed: rescan them, keep the jobs file's jobs as they are."""
        if self.file_jobs is None:
            return
        self.jobs = self._with_cron(self.file_jobs)
        self.supervisor.reload(self.jobs, now)
        self._jobs_dirty = True
        self.notifier.send(self._status_line())

    def _publish_cron(self) -> None:
        """What `status` shows of cron's files, in the run log (None without --cron)."""
        value = None
        if self.cron_root is not None:
            value = json.dumps({
                "root": self.cron_root,
                "systemd": os.path.isdir("/run/systemd/system"),
                "sources": [s.to_json() for s in self.cron.sources],
                "origins": self.cron.origins,
                "users": {job.name: job.user for job in self.cron.jobs},
            })
        self._write(self.log.set_kv, CRON_KV, value)

    def _cron_watch_dirs(self) -> list[str]:
        if self.cron_root is None:
            return []
        return [d for d in cronfiles.watched_dirs(self.cron_root) if os.path.isdir(d)]


def _log_changes(before: CronJobs, after: CronJobs) -> None:
    """One log line per source that appeared, went or changed its verdict or jobs."""
    old = {s.path: s for s in before.sources}
    new = {s.path: s for s in after.sources}
    for path in old.keys() - new.keys():
        log.info("cron: %s is gone (its %d jobs with it)", path, len(old[path].jobs))
    for path, source in new.items():
        was = old.get(path)
        same = was is not None and (was.verdict, was.reason, was.errors, [j for j in was.jobs]) == \
            (source.verdict, source.reason, source.errors, [j for j in source.jobs])
        if same:
            continue
        if source.verdict is Verdict.OK:
            count = len(source.jobs)
            log.info("cron: %s: %d job%s%s", path, count, "" if count == 1 else "s",
                     f" (as {source.user})" if source.user else "")
        elif source.verdict is Verdict.IGNORED:
            log.info("cron: %s ignored: %s", path, source.reason)
        else:
            log.error("cron: %s skipped: %s", path, source.reason)
            for error in source.errors:
                log.error("%s", error)
