"""`daemon --metrics ADDR:PORT`: /metrics and /health on a thread of their own, never the loop's.

The server (the standard library's WSGI server, a thread per request) reads the run log
through its own read-only connection; /health asks the loop through a pipe in its selector
and waits for the answer, so a hung loop reads as 503. /metrics is metrics.exposition, not
prometheus_client's WSGI app: its generate_latest took 190 ms for a thousand jobs, and
that time is taken from the loop's thread too (the GIL).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import threading
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from cronsup import clock
from cronsup.metrics import CONTENT_TYPE, StoreCollector, exposition
from cronsup.store import RunLogError, open_store

log = logging.getLogger("cronsup")

HEALTH_PATIENCE = 2.0  # /health: the loop must answer within this long
DEFAULT_ADDRESS = "127.0.0.1"
# A scrape (30 ms for a thousand jobs) holds the GIL most of its time, and the loop's thread
# needs it to start jobs: a scrape that would overlap the loop's next wake-up waits until the
# loop has woken, done its pass and gone back to waiting. Nice does not help: a scrape thread
# niced by the kernel keeps the GIL the loop waits for.
SCRAPE_GUARD = 0.3


class ListenError(ValueError):
    """A malformed ADDR:PORT; the message says what is expected."""


def parse_listen(text: str) -> tuple[str, int]:
    """ADDR:PORT (or PORT alone, on loopback) as (host, port); [::1]:9100 for IPv6."""
    value = text.strip()
    example = "e.g. 127.0.0.1:9181, 9181 (on 127.0.0.1), 0.0.0.0:9181 (every interface) or [::1]:9181"
    if value.isdigit():
        host, port_text = DEFAULT_ADDRESS, value
    elif value.startswith("["):
        host, sep, port_text = value[1:].partition("]:")
        if not sep:
            raise ListenError(f"--metrics {text!r}: an IPv6 address is written [ADDR]:PORT ({example})")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ListenError(f"--metrics {text!r}: {host!r} is not an IPv6 address") from None
    else:
        host, sep, port_text = value.rpartition(":")
        if not sep:
            raise ListenError(f"--metrics {text!r}: give ADDR:PORT ({example})")
        if not host:
            # Go programs read ":9100" as every interface; cronsup binds to loopback unless
            # told otherwise, so it asks rather than guessing.
            raise ListenError(f"--metrics {text!r}: give the address too ({example})")
        if ":" in host:
            raise ListenError(f"--metrics {text!r}: an IPv6 address is written [ADDR]:PORT ({example})")
        if any(c.isspace() for c in host):
            raise ListenError(f"--metrics {text!r}: {host!r} is not an address ({example})")
    if not port_text.isdigit() or not 0 < int(port_text) <= 65535:
        raise ListenError(f"--metrics {text!r}: the port must be a number from 1 to 65535 ({example})")
    return host, int(port_text)


class LoopProbe:
    """A pipe the loop's selector watches: /health writes a byte, which wakes the loop; the loop
    reads it (`drain`) and answers at the end of its next pass (`answer`), so an answer means
    a whole pass ran after the question, what was due by then included."""

    def __init__(self) -> None:
        self.read_fd, self._write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._cond = threading.Condition()
        self._asked = self._answered = 0

    def drain(self) -> None:
        """The loop's side, when the pipe is readable."""
        try:
            while os.read(self.read_fd, 4096):
                pass
        except BlockingIOError:
            pass

    def answer(self) -> None:
        """The loop's side, at the end of each pass: answer every question asked before it."""
        if self._answered == self._asked:  # read without the lock: a pass costs nothing
            return
        with self._cond:
            self._answered = self._asked
            self._cond.notify_all()

    def alive(self, patience: float) -> bool:
        """Whether the loop completes a pass within `patience` seconds."""
        with self._cond:
            self._asked += 1
            mine = self._asked
        try:
            os.write(self._write_fd, b"?")
        except BlockingIOError:
            pass  # the pipe is full of questions: the loop has not read for a long time
        with self._cond:
            return self._cond.wait_for(lambda: self._answered >= mine, patience)

    def close(self) -> None:
        for fd in (self.read_fd, self._write_fd):
            try:
                os.close(fd)
            except OSError:
                pass


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - scrapes every 15 s would flood the log
        pass


class MetricsServer:
    """The HTTP listener; bound in the constructor (a port in use is an error at start)."""

    def __init__(self, host: str, port: int, db_path: str, probe: LoopProbe,
                 stopping=lambda: False, next_wake=lambda: None):
        self.probe = probe
        self._stopping = stopping
        self._next_wake = next_wake  # the loop's next wake-up (clock.mono), or None
        self.collector = StoreCollector(lambda: open_store(db_path, readonly=True))
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as e:
            raise ListenError(f"--metrics {host}:{port}: cannot resolve {host!r}: {e.strerror}") from None
        family = infos[0][0]
        server_class = _Server6 if family == socket.AF_INET6 else _Server
        address = infos[0][4][0]
        try:
            self.httpd = make_server(address, port, self._app, server_class, _QuietHandler)
        except OSError as e:
            raise ListenError(f"cannot listen for metrics on {_show(host, port)}: "
                              f"{e.strerror or e}") from None
        self.port = self.httpd.server_address[1]
        self.where = _show(address, self.port)
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="cronsup-metrics", daemon=True)

    def start(self) -> None:
        self._thread.start()
        log.info("metrics on http://%s/metrics, health on http://%s/health", self.where, self.where)

    def _app(self, environ, start_response):
        path = environ.get("PATH_INFO") or "/"
        if path == "/health":
            return self._health(start_response)
        if path in ("/metrics", "/metrics/"):
            self._clear_of_starts()
            try:
                body = exposition(self.collector.read())
            except (RunLogError, OSError) as e:
                return _reply(start_response, "503 Service Unavailable",
                              f"cannot read the run log: {e}\n")
            except Exception:  # noqa: BLE001 - a scrape must not kill the listener
                log.exception("metrics: scrape failed")
                return _reply(start_response, "500 Internal Server Error", "scrape failed; see the daemon's log\n")
            start_response("200 OK", [("Content-Type", CONTENT_TYPE), ("Content-Length", str(len(body)))])
            return [body]
        if path == "/":
            return _reply(start_response, "200 OK", "cronsup: /metrics (Prometheus), /health\n")
        return _reply(start_response, "404 Not Found", "not found: try /metrics or /health\n")

    def _clear_of_starts(self) -> None:
        """Wait, if the loop wakes within SCRAPE_GUARD, until that pass is over."""
        wake = self._next_wake()
        if wake is None:
            return
        ahead = wake - clock.mono()
        if ahead < SCRAPE_GUARD:
            if ahead > 0:
                clock.sleep(ahead)
            self.probe.alive(HEALTH_PATIENCE)  # answered once the loop waits again

    def _health(self, start_response):
        began = clock.mono()
        if not self.probe.alive(HEALTH_PATIENCE):
            return _reply(start_response, "503 Service Unavailable",
                          f"unhealthy: the daemon's loop has not answered for {HEALTH_PATIENCE:g}s\n")
        if self._stopping():
            return _reply(start_response, "503 Service Unavailable", "stopping\n")
        took = (clock.mono() - began) * 1000
        return _reply(start_response, "200 OK", f"ok: the daemon's loop answered in {took:.0f} ms\n")

    def close(self) -> None:
        if self._thread.is_alive():
            self.httpd.shutdown()
        self.httpd.server_close()
        self.collector.close()


def _show(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _reply(start_response, status: str, body: str):
    data = body.encode()
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"),
                            ("Content-Length", str(len(data)))])
    return [data]
