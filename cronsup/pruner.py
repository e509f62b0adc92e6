"""Pruning a PostgreSQL run log beside the loop: a thread with a connection of its own.

A prune is a few queries per job: for 1,000 jobs, thousands of round trips, 1-3 s on a
local server and more across a network. In the loop that would hold every start for as
long, once an hour. SQLite prunes in the loop, in a fraction of that (and a second writer
there would only wait for the loop's lock).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from cronsup.store import RunLogError, RunStore

log = logging.getLogger("cronsup")


class Pruner:
    """One prune at a time, in a daemon thread, on `connect()`'s own connection."""

    def __init__(self, connect: Callable[[], RunStore]):
        self.connect = connect
        self._thread: threading.Thread | None = None

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, method: str, **kwargs) -> bool:
        """Run store.METHOD(**kwargs) ("prune", "prune_output") aside; False while the
        last one still runs (the next hour's will do)."""
        if self.busy:
            return False
        self._thread = threading.Thread(target=self._run, args=(method, kwargs), name="cronsup-prune",
                                        daemon=True)
        self._thread.start()
        return True

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self, method: str, kwargs: dict) -> None:
        try:
            store = self.connect()
        except RunLogError as e:
            log.error("pruning the run log: %s", e)
            return
        try:
            getattr(store, method)(**kwargs)
        except RunLogError as e:
            log.error("pruning the run log: %s", e)
        except Exception:  # noqa: BLE001 - the next prune tries again; the daemon goes on
            log.exception("pruning the run log failed")
        finally:
            store.close()
