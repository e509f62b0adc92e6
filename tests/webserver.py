"""`cronsup web` as a test runs it: a real uvicorn on 127.0.0.1 (a free port), fetched with urllib."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from conftest import wait_until


class WebServer:
    def __init__(self, jobs: Path, db: Path, *args: str, env: dict[str, str] | None = None,
                 prefix: tuple[str, ...] = ()):
        """`prefix`: a command to run it under, such as setpriv switching to another user."""
        self.jobs, self.db = jobs, db
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "cronsup", "web", "--listen", "127.0.0.1:0", "--jobs", str(jobs),
             "--db", str(db), *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env or dict(os.environ))
        line = self.proc.stdout.readline().strip()
        if not line.startswith("http://"):
            self.proc.kill()
            raise AssertionError(f"cronsup web did not start: {line!r} {self.proc.stderr.read()}")
        self.url = line.rstrip("/")
        wait_until(self._answers, timeout=20, what="the web view to answer")

    def _answers(self) -> bool:
        try:
            self.get("/static/style.css")
            return True
        except (urllib.error.URLError, ConnectionError):
            return False

    def get(self, path: str, *, user: tuple[str, str] | None = None, token: str | None = None,
            method: str = "GET") -> tuple[int, dict[str, str], bytes]:
        request = urllib.request.Request(self.url + path, method=method)
        if user:
            request.add_header("Authorization", "Basic " + base64.b64encode(f"{user[0]}:{user[1]}".encode()).decode())
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
        except urllib.error.HTTPError as e:
            return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()

    def json(self, path: str, **kw) -> dict:
        status, _, body = self.get(path, **kw)
        assert status == 200, (status, body[:300])
        return json.loads(body)

    def html(self, path: str, **kw) -> str:
        status, headers, body = self.get(path, **kw)
        assert status == 200, (status, body[:300])
        assert headers["content-type"].startswith("text/html")
        return body.decode()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
