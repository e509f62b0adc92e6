"""`daemon --cron`: cron's own files read beside the jobs file, rescanned when they change."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import replace

from cronsup import cronfiles
from cronsup.report import CRON_KV
from cronsup.cronfiles import CronJobs, Verdict
from cronsup.model import JobsFile, Reboot
from cronsup.supervisor import History, Now

log = logging.getLogger("cronsup")

REBOOT_MARKER = "run/crond.reboot"  # under the cron root: Debian cron's "ran @reboot this boot"


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

    def _cron_reboot(self, history: History) -> None:
        """Debian cron's @reboot rule: its first start in a boot creates /run/crond.reboot and
        runs the @reboot lines; a start that finds the file (a restart, or cronsup taking over
        from a cron that already ran them this boot) does not. cronsup keeps the file too, so
        that cron started again after `release` does not run them twice."""
        if self.cron_root is None:
            return
        marker = os.path.join(self.cron_root, REBOOT_MARKER)
        reboot = {job.name for job in self.cron.jobs if isinstance(job.schedule, Reboot)}
        if os.path.lexists(marker):
            if reboot - history.reboot_done:
                log.info("cron: not running the @reboot lines of cron's files (%s): %s exists, so "
                         "cron ran them this boot", ", ".join(sorted(reboot - history.reboot_done)), marker)
            history.reboot_done |= reboot
            return
        try:
            os.close(os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644))
        except OSError as e:  # no /run (a chroot): cron would not have run them either way
            log.debug("cannot create %s: %s", marker, e.strerror)

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
