"""Which version of the jobs file runs: load, reload, the last good version kept in the run log."""

from __future__ import annotations

import logging
import os

from cronsup import jobsfile
from cronsup.model import JobsFile
from cronsup.runjson import iso
from cronsup.store import GoodJobs, JobRow, RunningVersion
from cronsup.supervisor import Now

log = logging.getLogger("cronsup")


class Versions:
    """Mixed into Daemon: loading, reloading and keeping the jobs file's versions."""

    def _signature(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.jobs_path)
        except OSError:
            return None
        return st.st_ino, st.st_size, st.st_mtime_ns

    def _load(self) -> JobsFile | None:
        """The jobs file if valid; otherwise None with config_error set (old version kept)."""
        self._loaded_signature = self._signature()
        if self.cron_root is not None and not os.path.lexists(self.jobs_path):
            self.config_error = None  # with --cron, cron's files may be all there is
            return JobsFile(self.jobs_path, ())
        try:
            # Opened once; as root, the file read is the file checked (owner, mode, directory).
            jobs = jobsfile.load(self.jobs_path, system=self.system, as_root=os.geteuid() == 0)
        except jobsfile.JobsfileErrors as e:
            self.config_error = e.summary
            for error in e.errors:
                log.error("%s", error)
            return None
        except jobsfile.JobsfileRefused as e:
            self.config_error = str(e)
        except OSError as e:
            self.config_error = f"{self.jobs_path}: cannot read: {e.strerror}"
        else:
            self.config_error = None
            for warning in jobs.warnings:
                log.warning("%s", warning)
            return jobs
        log.error("%s", self.config_error)
        return None

    def _first_version(self, now: Now) -> JobsFile:
        """The jobs to run at start-up: the file's, else the last good version stored in the
        run log (a typo at a restart must not stop every job), else none."""
        jobs = self._load()
        if jobs is not None:
            self._keep_version(jobs, now)
            return self._with_cron(jobs)
        good = self._write(self.log.good_jobs)
        stored = None
        if good is not None and good.path == self.jobs_path and good.system == self.system:
            try:
                stored = jobsfile.parse_bytes(good.source, self.jobs_path, system=self.system)
            except jobsfile.JobsfileErrors as e:  # written by another version of cronsup
                log.error("the last good version of %s stored in the run log no longer loads: %s",
                          self.jobs_path, e.summary)
        if stored is None:
            log.error("running no jobs: %s has errors and the run log holds no good version of it",
                      self.jobs_path)
            self._set_version(RunningVersion("none", None, 0))
            return self._with_cron(JobsFile(self.jobs_path, ()))
        log.warning("running the last good version of %s, loaded %s and stored in the run log "
                    "(%d jobs); the file's errors are above", self.jobs_path,
                    iso(good.loaded_at), len(stored.jobs))
        self._set_version(RunningVersion("run log", good.loaded_at, len(stored.jobs)))
        return self._with_cron(stored)

    def _keep_version(self, jobs: JobsFile, now: Now) -> None:
        """Store a good version in the run log, for a restart that finds the file broken."""
        self._write(self.log.set_good_jobs, GoodJobs(self.jobs_path, self.system, now.wall, jobs.source))
        self._set_version(RunningVersion("file", now.wall, len(jobs.jobs)))

    def _set_version(self, version: RunningVersion) -> None:
        self.version = version
        self._write(self.log.set_running_version, version)

    # -- reload --------------------------------------------------------------------------

    def reload(self, now: Now) -> bool:
        """Reread the jobs file; a bad one keeps the last good version running."""
        before = self.config_error
        jobs = self._load()
        self._write(self.log.update_daemon, config_error=self.config_error)
        if jobs is None:
            if self.config_error != before:
                log.error("keeping the last good version of %s (the errors are above)", self.jobs_path)
            self.notifier.send(self._status_line())
            return False
        self._keep_version(jobs, now)
        self.jobs = self._with_cron(jobs)
        self.supervisor.reload(self.jobs, now)
        self._jobs_dirty = True
        log.info("reloaded %s: %d jobs", self.jobs_path, len(jobs.jobs))
        self.notifier.send(self._status_line())
        return True

    def _write_jobs(self) -> None:
        nxt = self.supervisor.next_runs()
        retry = {j.name: r for j in self.jobs.jobs if (r := self.supervisor.retry_at(j.name))}
        self._write(self.log.set_jobs, [
            JobRow(name=j.name, schedule=j.schedule.text, command=j.command,
                   description=j.description, next_run=nxt.get(j.name), enabled=j.enabled,
                   line=j.line, retry_at=(r := retry.get(j.name)) and r.at,
                   retry_attempt=r and r.attempt, retry_attempts=r and r.attempts)
            for j in self.jobs.jobs])

    def _status_line(self) -> str:
        """What `systemctl status` shows on its Status: line, e.g. "STATUS=12 jobs, 1 running"."""
        count = len(self.jobs.jobs)
        line = f"STATUS={count} job{'' if count == 1 else 's'}, {len(self.running)} running"
        if self.config_error:  # the admin's first question, answered where they look first
            error = " ".join(self.config_error.split())
            line += f"; jobs file error: {error[:300]}"
        return line
