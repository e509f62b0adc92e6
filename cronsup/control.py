"""The control socket between the commands and the daemon.

A Unix stream socket beside the run log (`<db>.sock`). One request per connection: one
line of JSON naming an operation and, where it needs one, a job, never a command line:
{"op": "run", "job": "backup"}. One line of JSON comes back. Only the daemon's own user
and root may talk to it (SO_PEERCRED). A request is at most MAX_REQUEST bytes, nested at
most MAX_DEPTH deep, and must arrive within REQUEST_TIMEOUT; when MAX_CLIENTS wait, the
oldest is turned away to make room, so silent, slow or greedy clients cannot hold the
daemon or lock the commands out. Whatever a client sends, it gets an answer or a hang-up,
and the daemon goes on: nothing a request does may raise out of this module.

An answer that takes work the loop must not wait for (`status`) comes in two lines: the
loop's own {"ok": true, "later": true} at once (so the command knows the loop answered), then
the answer itself from the thread that built it (`Later`).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import selectors
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from cronsup import clock, params

log = logging.getLogger("cronsup")

MAX_REQUEST = params.MAX_REQUEST
MAX_DEPTH = 4  # a request is one flat object; deeper is refused before json sees it
REQUEST_TIMEOUT = 2.0
MAX_CLIENTS = 64  # connections waiting for their request; a new one evicts the oldest
ACCEPT_BATCH = 16  # accepts per wake-up, so requests already in are read between batches
ACCEPT_BACKOFF = 0.25  # out of fds: stop accepting this long (the backlog waits)
LOG_EVERY = 5.0  # a kind of refusal is logged at most once in this long, with a count
MAX_JOB_NAME = 256
OPS = {"ping", "status", "run", "reload", "pause", "resume", "backfill", "backfill_cancel"}
JOB_OPS = {"run", "pause", "resume", "backfill", "backfill_cancel"}  # the operations that name a job
# Further fields an operation may carry, and their JSON types (a bool is not an int here).
FIELDS: dict[str, dict[str, type]] = {
    "run": {"env": dict},
    "backfill": {"from": str, "to": str, "reprocess": str, "max_parallel": int, "yes": bool},
    "status": {"db": str, "node": str},
}
MAX_FIELD = 200  # characters in a string field (a time, a policy name)
LATER_SEND_TIMEOUT = 10.0  # a thread's answer waits this long for a client that reads slowly
_SUN_PATH_MAX = 100  # sockaddr_un holds 108 bytes; longer paths go through /proc/self/fd


class ControlError(Exception):
    """No daemon answers on this socket, or it answered with an error.

    `kind` is the daemon's name for the error when it gave one ("unknown_job", ...).
    `answered`: True when the daemon's loop answered (this refusal, or the first line of a
    later answer that then did not come), False when it said nothing within the timeout,
    None when it could not be asked (no daemon, permission denied, hung up).
    """

    def __init__(self, message: str, kind: str | None = None, answered: bool | None = None):
        super().__init__(message)
        self.kind = kind
        self.answered = answered


class NoDaemon(ControlError):
    pass


def _short(path: str) -> tuple[str, int | None]:
    """A path short enough for sockaddr_un: long ones are reached through their directory's fd."""
    if len(os.fsencode(path)) <= _SUN_PATH_MAX:
        return path, None
    fd = os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    return f"/proc/self/fd/{fd}/{os.path.basename(path)}", fd


def peer_uid(conn: socket.socket) -> int:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid


@dataclass
class _Client:
    conn: socket.socket
    deadline: float
    data: bytearray = field(default_factory=bytearray)


@dataclass
class Later:
    """What `handle` returns for an answer another thread gives: the loop sends the first
    line, then calls `start(reply)`, which must not block; `reply.send` answers, once."""

    start: Callable[[Reply], None]


class Reply:
    """The connection of a request answered later; `send` may be called from any thread."""

    def __init__(self, conn: socket.socket):
        self._conn = conn

    def send(self, response: dict, timeout: float = LATER_SEND_TIMEOUT) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.settimeout(timeout)
            conn.sendall(json.dumps(response).encode() + b"\n")
        except OSError:
            pass  # the client went away, or reads too slowly: it falls back on its own
        finally:
            conn.close()


class _Throttled:
    """Warnings of one kind at most once per `every` seconds; the ones held back are counted
    and reported in one line when the window ends (2,000 refused connects: two lines)."""

    def __init__(self, every: float = LOG_EVERY):
        self.every = every
        self.last: dict[str, float] = {}  # kind -> when a line of it was last logged
        self.held: dict[str, tuple[int, str]] = {}  # kind -> (lines held back, the latest)

    def warn(self, kind: str, message: str, now: float) -> None:
        last = self.last.get(kind)
        if last is not None and now - last < self.every:
            count, _ = self.held.get(kind, (0, ""))
            self.held[kind] = (count + 1, message)
            return
        self._report(kind, now)
        self.last[kind] = now
        log.warning("%s", message)

    def flush(self, now: float) -> float | None:
        """Report the counts whose window has ended; when to come back for the others."""
        for kind in list(self.held):
            if now - self.last[kind] >= self.every:
                self._report(kind, now)
                self.last[kind] = now
        return min((self.last[kind] + self.every for kind in self.held), default=None)

    def _report(self, kind: str, now: float) -> None:
        if kind in self.held:
            count, message = self.held.pop(kind)
            log.warning("control socket: %d more %s in the last %.0fs (the latest: %s)",
                        count, kind, now - self.last[kind], message.removeprefix("control socket: "))


class Server:
    """The daemon's side. `handle(request) -> response` runs in the daemon's loop."""

    def __init__(self, path: str, selector: selectors.BaseSelector,
                 handle: Callable[[dict], dict], mono: Callable[[], float] = clock.mono):
        self.path = path
        self.selector = selector
        self.handle = handle
        self.mono = mono
        self.clients: dict[int, _Client] = {}  # by fd, oldest first
        self.uid = os.geteuid()
        self.throttle = _Throttled()
        self._resume_at: float | None = None  # accepting is paused (out of fds) until then
        # The caller holds the daemon lock, so a socket file here is a crashed daemon's.
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
        address, dirfd = _short(path)
        old = os.umask(0o177)  # the socket file is created 0600
        try:
            self.sock.bind(address)
        finally:
            os.umask(old)
            if dirfd is not None:
                os.close(dirfd)
        self.sock.listen(MAX_CLIENTS)
        _warn_if_open(os.path.dirname(os.path.abspath(path)))
        selector.register(self.sock, selectors.EVENT_READ, self._accept)

    def _accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                if e.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EPERM):
                    continue  # that client is gone; the next one may be fine
                if e.errno in (errno.EMFILE, errno.ENFILE) and self.clients:
                    self._evict_oldest("the daemon is out of file descriptors")
                    continue
                self._pause_accepting(e)
                return
            self._admit(conn)

    def _pause_accepting(self, error: OSError) -> None:
        # The connection stays in the backlog and the socket stays readable: accepting again
        # at once would spin. Stop watching it for a moment; expire() starts again.
        now = self.mono()
        self.throttle.warn("accept errors", f"control socket: cannot accept a connection: "
                           f"{error.strerror or error}; trying again in {ACCEPT_BACKOFF}s", now)
        try:
            self.selector.unregister(self.sock)
        except (KeyError, ValueError):
            pass
        self._resume_at = now + ACCEPT_BACKOFF

    def _admit(self, conn: socket.socket) -> None:
        now = self.mono()
        try:
            conn.setblocking(False)
            uid = peer_uid(conn)
        except OSError:
            conn.close()
            return
        if uid not in (0, self.uid):
            self.throttle.warn("refused connections",
                               f"control socket: refused a client running as uid {uid}", now)
            try:  # closing with its request unread would reset the connection: read it
                conn.recv(MAX_REQUEST + 1)
            except OSError:
                pass
            self._reply(conn, {"ok": False, "error": f"permission denied: uid {uid} may not "
                               "control this daemon (only its own user and root may)"})
            conn.close()
            return
        if len(self.clients) >= MAX_CLIENTS:
            self._evict_oldest(f"{MAX_CLIENTS} connections waiting")
        client = _Client(conn, now + REQUEST_TIMEOUT)
        try:
            self.selector.register(conn, selectors.EVENT_READ, lambda c=client: self._read(c))
        except (OSError, ValueError) as e:
            self._reply(conn, {"ok": False, "error": f"busy: {e}; try again"})
            conn.close()
            return
        self.clients[conn.fileno()] = client

    def _evict_oldest(self, why: str) -> None:
        """Make room: the longest-waiting client goes, unless its request is in by now."""
        fd, oldest = next(iter(self.clients.items()))
        self._read(oldest)
        if self.clients.get(fd) is oldest:
            self.throttle.warn("turned away", f"control socket: turned away a client that sent no "
                               f"request yet ({why})", self.mono())
            self._reply(oldest.conn, {"ok": False, "error": f"busy: {why}; try again"})
            self._drop(oldest)

    def _read(self, client: _Client) -> None:
        try:
            chunk = client.conn.recv(MAX_REQUEST + 1)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        client.data += chunk
        end = client.data.find(b"\n")
        if 0 <= end <= MAX_REQUEST:
            response = self._answer(bytes(client.data[:end]))
        elif len(client.data) > MAX_REQUEST:
            response = {"ok": False, "error": f"request larger than {MAX_REQUEST} bytes"}
        elif chunk:
            return  # a line in the making
        else:
            self._drop(client)  # hung up before a whole request
            return
        if isinstance(response, Later):
            self._hand_off(client, response)
            return
        self._reply(client.conn, response)
        self._drop(client)

    def _hand_off(self, client: _Client, later: Later) -> None:
        self._reply(client.conn, {"ok": True, "later": True})
        self.clients.pop(client.conn.fileno(), None)
        try:
            self.selector.unregister(client.conn)
        except (KeyError, ValueError):
            pass
        reply = Reply(client.conn)
        try:
            later.start(reply)
        except Exception as e:  # noqa: BLE001 - as _answer
            log.exception("control request failed to start its answer")
            reply.send({"ok": False, "error": f"internal error: {type(e).__name__}: {e}"[:1000]})

    def _answer(self, line: bytes) -> dict | Later:
        try:
            return self._decide(line)
        except Exception as e:  # noqa: BLE001 - one bad request must not stop the daemon
            log.exception("control request %.300r failed", line)
            return {"ok": False, "error": f"internal error: {type(e).__name__}: {e}"[:1000]}

    def _decide(self, line: bytes) -> dict | Later:
        if _depth(line) > MAX_DEPTH:  # json.loads recurses: 4,000 brackets would raise
            return {"ok": False, "error": f"malformed request: nested deeper than {MAX_DEPTH}"}
        try:
            request = json.loads(line)
        except ValueError:  # UnicodeDecodeError included
            return {"ok": False, "error": "malformed request: not JSON"}
        op = request.get("op") if isinstance(request, dict) else None
        if not isinstance(op, str) or op not in OPS:
            return {"ok": False, "error": f"malformed request: op must be one of {sorted(OPS)}"}
        job = request.get("job")
        if op in JOB_OPS:
            if not isinstance(job, str) or not job:
                return {"ok": False, "error": f"malformed request: {op} needs a job name"}
            from cronsup.jobsfile import NAME_RE

            if len(job) > MAX_JOB_NAME or not NAME_RE.fullmatch(job):
                return {"ok": False, "error": "malformed request: that is not a job name"}
        elif "job" in request:
            return {"ok": False, "error": f"malformed request: {op} takes no job"}
        allowed = FIELDS.get(op, {})
        extra = set(request) - {"op", "job"} - set(allowed)
        if extra:
            return {"ok": False, "error": f"malformed request: unknown fields {sorted(extra)[:10]}"}
        for name, kind in allowed.items():
            if name not in request:
                continue
            value = request[name]
            if type(value) is not kind:
                return {"ok": False, "error": f"malformed request: {name} must be a {kind.__name__}"}
            if kind is str and len(value) > MAX_FIELD:
                return {"ok": False, "error": f"malformed request: {name} is longer than {MAX_FIELD} characters"}
        if "env" in request:
            try:
                params.from_request(request["env"])
            except params.ParamError as e:
                return {"ok": False, "kind": "bad_param", "error": f"--env: {e}"}
        return self.handle(request)

    @staticmethod
    def _reply(conn: socket.socket, response: dict) -> None:
        # Never wait on a client: an answer is a few hundred bytes, well within an empty
        # socket buffer, and a client that cannot take it loses it.
        try:
            conn.send(json.dumps(response).encode() + b"\n", socket.MSG_DONTWAIT)
        except OSError:
            pass

    def _drop(self, client: _Client) -> None:
        self.clients.pop(client.conn.fileno(), None)
        try:
            self.selector.unregister(client.conn)
        except (KeyError, ValueError):
            pass
        client.conn.close()

    def expire(self, now_mono: float) -> float | None:
        """Close clients that sent nothing whole in time, accept again after a pause, report
        held-back warnings; the next deadline to wake for."""
        for client in list(self.clients.values()):
            if client.deadline <= now_mono:
                self._reply(client.conn, {"ok": False, "error": f"no whole request within {REQUEST_TIMEOUT:.0f}s"})
                self._drop(client)
        if self._resume_at is not None and now_mono >= self._resume_at:
            self._resume_at = None
            self.selector.register(self.sock, selectors.EVENT_READ, self._accept)
        wakes = [c.deadline for c in self.clients.values()]
        if self._resume_at is not None:
            wakes.append(self._resume_at)
        if (flush := self.throttle.flush(now_mono)) is not None:
            wakes.append(flush)
        return min(wakes, default=None)

    def close(self) -> None:
        for client in list(self.clients.values()):
            self._drop(client)
        try:
            self.selector.unregister(self.sock)
        except (KeyError, ValueError):
            pass
        self.sock.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass


def _depth(line: bytes) -> int:
    """How deep brackets nest in JSON text, strings skipped (garbage gets some number)."""
    deepest = depth = 0
    in_string = escaped = False
    for byte in line:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


def _warn_if_open(directory: str) -> None:
    # The socket is 0600 and every peer's uid is checked, so this is defence in depth: in a
    # 0700 directory nobody else can even reach the socket (or the run log beside it).
    try:
        mode = os.stat(directory).st_mode & 0o777
    except OSError:
        return
    if mode & 0o077:
        log.warning("the control socket's directory %s is open to other users (mode %o); "
                    "chmod 700 %s keeps them from reaching the socket at all", directory, mode, directory)


def request(path: str, op: str, job: str | None = None, timeout: float = 10.0,
            fields: dict | None = None, later_timeout: float = 10.0) -> dict:
    """Send one request to the daemon; NoDaemon when none listens, ControlError on refusal.

    `fields`: the operation's further fields (FIELDS), such as a run's "env". `timeout` is
    for the loop's answer; a later answer (see the module's text) may take `later_timeout`."""
    return ask(path, op, job, timeout, fields).answer(later_timeout)


class Asked:
    """A request sent (ask), its answer still to read: what the command does meanwhile
    overlaps with the daemon's work."""

    def __init__(self, sock: socket.socket):
        self.sock = sock

    def answer(self, later_timeout: float = 10.0) -> dict:
        """The daemon's answer; ControlError (with `answered`) when it refused or said nothing."""
        try:
            lines = _Lines(self.sock)
            response = _response(lines.next(), answered=False)
            if response.get("later"):
                self.sock.settimeout(later_timeout)
                response = _response(lines.next(), answered=True)
        finally:
            self.sock.close()
        return response


def ask(path: str, op: str, job: str | None = None, timeout: float = 10.0,
        fields: dict | None = None) -> Asked:
    """Connect and send a request (as `request`), not waiting for the answer."""
    message = {"op": op} if job is None else {"op": op, "job": job}
    message.update(fields or {})
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    # While the daemon's backlog is full, a blocking connect waits for room, up to the send
    # timeout; Python's own timeout mode would fail at once with EAGAIN.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO,
                    struct.pack("ll", int(timeout), int(timeout % 1 * 1e6)))
    try:
        address, dirfd = _short(path)
    except OSError:
        sock.close()
        raise NoDaemon(path) from None
    try:
        sock.connect(address)
    except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError):
        sock.close()
        raise NoDaemon(path) from None
    except PermissionError:
        sock.close()
        raise ControlError(f"permission denied on {path}: run this as the daemon's user or root",
                           "permission") from None
    except BlockingIOError:
        sock.close()
        raise ControlError(f"the daemon did not take the connection within {timeout:g}s "
                           "(too many clients waiting)") from None
    finally:
        if dirfd is not None:
            os.close(dirfd)
    sock.settimeout(timeout)
    try:
        sock.sendall(json.dumps(message).encode() + b"\n")
    except (BrokenPipeError, ConnectionResetError):
        # A daemon that refuses us (another uid) answers and hangs up at once, maybe
        # before we have sent: its answer is still there to read.
        pass
    except OSError as e:  # it took nothing within the timeout
        sock.close()
        raise ControlError(f"the daemon did not answer: {e}",
                           answered=False if isinstance(e, TimeoutError) else None) from None
    return Asked(sock)


class _Lines:
    def __init__(self, sock: socket.socket):
        self.sock, self.data = sock, bytearray()

    def next(self) -> tuple[bytes | None, str]:
        """The next whole line, or None and why there is none."""
        while (end := self.data.find(b"\n")) < 0:
            try:
                chunk = self.sock.recv(1 << 20)
            except TimeoutError:
                return None, "timed out"
            except OSError as e:
                return None, str(e)
            if not chunk:
                return None, "it hung up"
            self.data += chunk
        line = bytes(self.data[:end])
        del self.data[:end + 1]
        return line, ""


def _response(got: tuple[bytes | None, str], answered: bool) -> dict:
    line, problem = got
    if line is None:
        if answered:  # the loop said "later"; the answer itself did not come
            state: bool | None = True
        else:  # silent within the timeout (stopped, hung), or gone
            state = False if problem == "timed out" else None
        raise ControlError(f"the daemon did not answer: {problem}", answered=state)
    try:
        response = json.loads(line)
    except ValueError:
        raise ControlError("the daemon's answer was not JSON", answered=True) from None
    if not isinstance(response, dict):
        raise ControlError("the daemon's answer was not a JSON object", answered=True)
    if not response.get("ok"):
        raise ControlError(str(response.get("error", "refused")), response.get("kind"), answered=True)
    return response
