"""The daemon's answer to `cronsup status`: built in a thread of its own and sent whole.

The daemon has its store's driver loaded and a reader open, so a command that asks it needs
neither: on PostgreSQL, importing psycopg alone costs a command 150-200 ms. The loop only
hands the request over (control.Later); the thread reads as `status` itself would
(report.status), with a reader it keeps while requests keep coming. A command whose daemon
is stopped, busy, of another version or on another run log reads the store itself.
`status` asks only on PostgreSQL: a SQLite run log it reads as fast as the daemon would.
"""

from __future__ import annotations

import functools
import logging
import os
import queue
import threading

from cronsup import clock, control, paths, wire

log = logging.getLogger("cronsup")

WAITING = 4  # requests waiting for the thread; more are told "busy" and read for themselves
IDLE = 60.0  # the reader is closed after this long without a request


class StatusService:
    def __init__(self, db_path: str, jobs_path: str, state_dir: str | None, node: str):
        self.db_path, self.jobs_path, self.state_dir, self.node = db_path, jobs_path, state_dir, node
        self._waiting: queue.Queue[control.Reply | None] = queue.Queue(WAITING)
        self._thread: threading.Thread | None = None
        self._reader = None  # only the thread touches it (a SQLite connection is per thread)

    def answer(self, request: dict) -> dict | control.Later:
        """In the loop: refuse what this daemon cannot answer, else answer later."""
        if "db" in request and not same_store(self.db_path, request["db"]):
            return {"ok": False, "kind": "other_store", "error": "this daemon runs on another run log"}
        if paths.is_url(self.db_path) and request.get("node", self.node) != self.node:
            return {"ok": False, "kind": "other_node", "error": f"this daemon is node {self.node}"}
        return control.Later(self._enqueue)

    def _enqueue(self, reply: control.Reply) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="cronsup-status", daemon=True)
            self._thread.start()
        try:
            self._waiting.put_nowait(reply)
        except queue.Full:
            reply.send({"ok": False, "kind": "busy", "error": f"{WAITING} status requests waiting"})

    def _work(self) -> None:
        while True:
            try:
                reply = self._waiting.get(timeout=IDLE)
            except queue.Empty:
                self._close_reader()
                continue
            if reply is None:
                break
            reply.send(self.build())
        self._close_reader()

    def build(self) -> dict:
        """The answer: {"ok": true, "status": the Status as wire data}, or why not."""
        from cronsup import report
        from cronsup.store import RunLogError, open_store

        try:
            if self._reader is None:
                self._reader = open_store(self.db_path, readonly=True, node=self.node)
            st = report.status(self.jobs_path, self.db_path, clock.wall(), state_dir=self.state_dir,
                               reader=self._reader)
        except RunLogError as e:
            self._close_reader()  # a connection lost: the next request opens a new one
            return {"ok": False, "kind": "store", "error": str(e)}
        except Exception as e:  # noqa: BLE001 - the command reads for itself instead
            log.exception("building the status for `cronsup status` failed")
            self._close_reader()
            return {"ok": False, "error": f"internal error: {type(e).__name__}: {e}"[:1000]}
        st.answering = True
        return {"ok": True, "wire": wire_signature(), "status": wire.encode(st)}

    def _close_reader(self) -> None:
        if self._reader is not None:
            try:
                self._reader.close()
            except Exception:  # noqa: BLE001 - closing a broken connection
                pass
            self._reader = None

    def close(self, grace: float) -> None:
        """Stop the thread (a status being built is let finish within `grace`)."""
        if self._thread is None:
            return
        try:
            self._waiting.put(None, timeout=grace)
        except queue.Full:
            return  # it is stuck on a request: it dies with the process (daemon thread)
        self._thread.join(grace)


def same_store(mine: str, theirs: str) -> bool:
    """Whether a command's --db names this daemon's run log (URLs compared without password)."""
    if paths.is_url(mine) or paths.is_url(theirs):
        return paths.shown(mine) == paths.shown(theirs)
    try:
        return os.path.samefile(mine, theirs)
    except OSError:
        return False


@functools.cache
def wire_signature() -> str:
    """The status's fields and types, as both sides must agree on them (another version's
    daemon may differ): the daemon sends its own with the status, the command checks it."""
    from cronsup import report

    return wire.signature(report.Status)


def request_fields(db: str) -> dict:
    """What a command sends with op "status": its run log and its node."""
    fields = {"db": paths.shown(db) if paths.is_url(db) else os.path.abspath(db)}
    if paths.is_url(db) and os.environ.get("CRONSUP_NODE"):
        fields["node"] = os.environ["CRONSUP_NODE"]
    return fields
