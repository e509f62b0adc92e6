"""The control socket between the commands and the daemon.

A Unix stream socket beside the run log (`<db>.sock`). One request per connection: one
line of JSON naming an operation and, where it needs one, a job, never a command line:
{"op": "run", "job": "backup"}. One line of JSON comes back. Only the daemon's own user
and root may talk to it (SO_PEERCRED). A request is at most MAX_REQUEST bytes and must
arrive within REQUEST_TIMEOUT, so a silent or greedy client cannot hold the daemon.
"""

from __future__ import annotations

import json
import logging
import os
import selectors
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("cronsup")

MAX_REQUEST = 4096
REQUEST_TIMEOUT = 2.0
MAX_CLIENTS = 64  # connections waiting for their request; more are turned away
MAX_JOB_NAME = 256
OPS = {"ping", "run", "reload", "pause", "resume"}
JOB_OPS = {"run", "pause", "resume"}  # the operations that name a job
_SUN_PATH_MAX = 100  # sockaddr_un holds 108 bytes; longer paths go through /proc/self/fd


class ControlError(Exception):
    """No daemon answers on this socket, or it answered with an error.

    `kind` is the daemon's name for the error when it gave one ("unknown_job", ...).
    """

    def __init__(self, message: str, kind: str | None = None):
        super().__init__(message)
        self.kind = kind


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


class Server:
    """The daemon's side. `handle(request) -> response` runs in the daemon's loop."""

    def __init__(self, path: str, selector: selectors.BaseSelector,
                 handle: Callable[[dict], dict]):
        self.path = path
        self.selector = selector
        self.handle = handle
        self.clients: dict[int, _Client] = {}
        self.uid = os.geteuid()
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
        self.sock.listen(16)
        _warn_if_open(os.path.dirname(os.path.abspath(path)))
        selector.register(self.sock, selectors.EVENT_READ, self._accept)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                return
            conn.setblocking(False)
            uid = peer_uid(conn)
            if uid not in (0, self.uid):
                log.warning("control socket: refused a client running as uid %d", uid)
                try:  # closing with its request unread would reset the connection: read it
                    conn.recv(MAX_REQUEST + 1)
                except OSError:
                    pass
                self._reply(conn, {"ok": False, "error": f"permission denied: uid {uid} may not "
                                   "control this daemon (only its own user and root may)"})
                conn.close()
                continue
            if len(self.clients) >= MAX_CLIENTS:
                self._reply(conn, {"ok": False, "error": "busy: too many connections waiting; try again"})
                conn.close()
                continue
            client = _Client(conn, time.monotonic() + REQUEST_TIMEOUT)
            self.clients[conn.fileno()] = client
            self.selector.register(conn, selectors.EVENT_READ, lambda c=client: self._read(c))

    def _read(self, client: _Client) -> None:
        try:
            chunk = client.conn.recv(MAX_REQUEST + 1)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        client.data += chunk
        if b"\n" not in client.data and len(client.data) <= MAX_REQUEST and chunk:
            return
        if len(client.data) > MAX_REQUEST:
            response = {"ok": False, "error": f"request larger than {MAX_REQUEST} bytes"}
        elif b"\n" not in client.data:
            self._drop(client)  # hung up before a whole request
            return
        else:
            response = self._answer(bytes(client.data.split(b"\n", 1)[0]))
        self._reply(client.conn, response)
        self._drop(client)

    def _answer(self, line: bytes) -> dict:
        try:
            request = json.loads(line)
        except ValueError:
            return {"ok": False, "error": "malformed request: not JSON"}
        if not isinstance(request, dict) or request.get("op") not in OPS:
            return {"ok": False, "error": f"malformed request: op must be one of {sorted(OPS)}"}
        op, job = request["op"], request.get("job")
        if op in JOB_OPS:
            if not isinstance(job, str) or not job:
                return {"ok": False, "error": f"malformed request: {op} needs a job name"}
            if len(job) > MAX_JOB_NAME or not job.isprintable():
                return {"ok": False, "error": "malformed request: that is not a job name"}
        elif "job" in request:
            return {"ok": False, "error": f"malformed request: {op} takes no job"}
        extra = set(request) - {"op", "job"}
        if extra:
            return {"ok": False, "error": f"malformed request: unknown fields {sorted(extra)}"}
        try:
            return self.handle(request)
        except Exception as e:  # noqa: BLE001 - one bad request must not stop the daemon
            log.exception("control request %r failed", request)
            return {"ok": False, "error": f"internal error: {e}"}

    @staticmethod
    def _reply(conn: socket.socket, response: dict) -> None:
        try:
            conn.setblocking(True)
            conn.settimeout(REQUEST_TIMEOUT)
            conn.sendall(json.dumps(response).encode() + b"\n")
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
        """Close clients that sent nothing whole in time; the next deadline to wake for."""
        for client in list(self.clients.values()):
            if client.deadline <= now_mono:
                self._reply(client.conn, {"ok": False, "error": f"no whole request within {REQUEST_TIMEOUT:.0f}s"})
                self._drop(client)
        return min((c.deadline for c in self.clients.values()), default=None)

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


def request(path: str, op: str, job: str | None = None, timeout: float = 10.0) -> dict:
    """Send one request to the daemon; NoDaemon when none listens, ControlError on refusal."""
    message = {"op": op} if job is None else {"op": op, "job": job}
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    sock.settimeout(timeout)
    try:
        address, dirfd = _short(path)
    except OSError:
        raise NoDaemon(path) from None
    try:
        sock.connect(address)
    except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError):
        raise NoDaemon(path) from None
    except PermissionError:
        raise ControlError(f"permission denied on {path}: run this as the daemon's user or root") from None
    finally:
        if dirfd is not None:
            os.close(dirfd)
    data, problem = b"", None
    try:
        try:
            sock.sendall(json.dumps(message).encode() + b"\n")
        except (BrokenPipeError, ConnectionResetError) as e:
            # A daemon that refuses us (another uid) answers and hangs up at once, maybe
            # before we have sent: its answer is still there to read.
            problem = e
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except OSError as e:
        problem = e
    finally:
        sock.close()
    if not data.endswith(b"\n"):
        raise ControlError(f"the daemon did not answer: {problem or 'it hung up'}")
    try:
        response = json.loads(data)
    except ValueError:
        raise ControlError("the daemon's answer was not JSON") from None
    if not isinstance(response, dict):
        raise ControlError("the daemon's answer was not a JSON object")
    if not response.get("ok"):
        raise ControlError(str(response.get("error", "refused")), response.get("kind"))
    return response
