"""The JSON documents every store keeps in its kv table: the last good jobs file and the
version the daemon runs (a mixin over the store's own get_kv/set_kv)."""

from __future__ import annotations

import json
from typing import Any

from cronsup.store.records import GoodJobs, RunningVersion

GOOD_JOBS = "good_jobs"
RUNNING_VERSION = "running_version"


def _json(value: str | None) -> Any:
    try:
        return json.loads(value) if value is not None else None
    except ValueError:
        return None


class KvDocs:
    """good_jobs/running_version read and written the same way in every store."""

    def get_kv(self, key: str, default: str | None = None) -> str | None:
        raise NotImplementedError

    def set_kv(self, key: str, value: str | None) -> None:
        raise NotImplementedError

    def good_jobs(self) -> GoodJobs | None:
        """The last good jobs file stored by set_good_jobs, or None."""
        found = _json(self.get_kv(GOOD_JOBS))
        try:
            return GoodJobs(str(found["path"]), bool(found["system"]), float(found["loaded_at"]),
                            str(found["text"]).encode("utf-8", "surrogateescape"))
        except (KeyError, TypeError, ValueError):
            return None

    def set_good_jobs(self, good: GoodJobs) -> None:
        # surrogateescape and JSON's \udcXX escapes keep any bytes exactly.
        self.set_kv(GOOD_JOBS, json.dumps({
            "path": good.path, "system": good.system, "loaded_at": good.loaded_at,
            "text": good.source.decode("utf-8", "surrogateescape")}))

    def running_version(self) -> RunningVersion | None:
        found = _json(self.get_kv(RUNNING_VERSION))
        try:
            loaded_at = found["loaded_at"]
            return RunningVersion(str(found["origin"]), None if loaded_at is None else float(loaded_at),
                                  int(found["jobs"]))
        except (KeyError, TypeError, ValueError):
            return None

    def set_running_version(self, version: RunningVersion) -> None:
        self.set_kv(RUNNING_VERSION, json.dumps({
            "origin": version.origin, "loaded_at": version.loaded_at, "jobs": version.jobs}))
