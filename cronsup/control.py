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
OPS = {"ping", "run", "reload", "pause", "resume"}
_SUN_PATH_MAX = 100  # sockaddr_un holds 108 bytes; longer paths go through /proc/self/fd


class ControlError(Exception):
    """No daemon answers on this socket, or it answered with an error."""


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
                self._reply(conn, {"ok": False, "error": f"permission denied: uid {uid} may not "
                                   "control this daemon (only its own user and root may)"})
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
        job = request.get("job")
        if request["op"] in ("run", "pause", "resume") and not isinstance(job, str):
            return {"ok": False, "error": f"malformed request: {request['op']} needs a job name"}
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
    try:
        sock.sendall(json.dumps(message).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except OSError as e:
        raise ControlError(f"the daemon did not answer: {e}") from None
    finally:
        sock.close()
    try:
        response = json.loads(data)
    except ValueError:
        raise ControlError("the daemon's answer was not JSON") from None
    if not response.get("ok"):
        raise ControlError(response.get("error", "refused"))
    return response
