"""Delivering one alert through one channel (webhook, healthcheck ping, notify_command) and
saying what the other end answered; no retry here (the outbox's sender decides).

URLs are secrets (a Slack webhook's path is its password): nothing here puts a URL's path or
query in a message, only `shown(url)`, its scheme and host.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import urlencode, urlsplit, urlunsplit

import urllib3

from cronsup import __version__, clock, trust
from cronsup.model import JobSpec

TIMEOUT = 10.0  # seconds for a whole HTTP request: connect, send, answer
COMMAND_TIMEOUT = 60.0  # a notify_command gets longer: it may itself call out (curl, mail)
SECRET_LIMIT = 64 * 1024  # a URL or signing secret file larger than this is a mistake
PING_BODY = 10_000  # a healthcheck ping carries the output's last this many bytes
RETRY_STATUSES = frozenset({408, 429}) | frozenset(range(500, 600))
USER_AGENT = f"cronsup/{__version__}"


@dataclass(frozen=True)
class Answer:
    """What a channel answered to one attempt."""

    ok: bool
    text: str  # "200 OK", "503 Service Unavailable", "connection refused", "exit code 2"
    retry: bool = False  # worth trying again (timeouts, connection errors, 408, 429, 5xx)
    retry_after: float | None = None  # seconds, from a Retry-After header
    body_limit: int | None = None  # a healthchecks server's Ping-Body-Limit


class SecretError(Exception):
    """A URL or secret file that cannot be read or is not trusted (message names the path)."""


def shown(target: str) -> str:
    """What a message may show of a URL: scheme://host[:port]; a file: URL as the path."""
    if target.startswith("file:"):
        return target
    try:
        parts = urlsplit(target)
        host = parts.hostname or "?"
        if ":" in host:
            host = f"[{host}]"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(a malformed URL)"
    return f"{parts.scheme}://{host}{port}"


def _owners() -> set[int] | None:
    # A root daemon trusts only root's files (as with the jobs file); others read as usual.
    return {0} if os.geteuid() == 0 else None


def read_secret(path: str) -> bytes:
    """A secret file's stripped bytes, read with the daemon's trust rules."""
    try:
        data = trust.read_file(path, _owners(), limit=SECRET_LIMIT)
    except trust.Untrusted as e:
        raise SecretError(str(e).replace("for a jobs file", "for a secret")) from None
    except OSError as e:
        raise SecretError(f"cannot read {path}: {e.strerror or e}") from None
    data = data.strip()
    if not data:
        raise SecretError(f"{path} is empty")
    return data


def resolve(target: str) -> str:
    """The URL itself: a `file:/path` target is read from its file (the first line)."""
    if not target.startswith("file:"):
        return target
    path = target[len("file:"):]
    text = read_secret(path).decode("utf-8", "replace").splitlines()[0].strip()
    parts = urlsplit(text)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise SecretError(f"{path} does not hold an http:// or https:// URL")
    return text


def signing_key(secret: bytes) -> bytes:
    """Standard Webhooks: a `whsec_`-prefixed secret is base64; anything else is used as is."""
    if secret.startswith(b"whsec_"):
        try:
            return base64.b64decode(secret[len(b"whsec_"):], validate=True)
        except ValueError:
            raise SecretError("the webhook secret starts with whsec_ but the rest is not base64") from None
    return secret


def signature_headers(key: bytes, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The Standard Webhooks headers for `body` (https://www.standardwebhooks.com)."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": f"v1,{digest}"}


class Http:
    """Pooled HTTP connections (urllib3), no retries or redirects of its own."""

    def __init__(self, timeout: float = TIMEOUT):
        self.pool = urllib3.PoolManager(num_pools=64, maxsize=4, block=False, retries=False,
                                        timeout=urllib3.Timeout(total=timeout))
        self.timeout = timeout

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> Answer:
        headers = {"User-Agent": USER_AGENT, **headers}
        try:
            response = self.pool.request("POST", url, body=body, headers=headers,
                                         redirect=False, preload_content=True)
        except urllib3.exceptions.HTTPError as e:
            return Answer(False, self._error(e), retry=True)
        except (OSError, ValueError) as e:  # a bad URL slipped through, a closed pool
            return Answer(False, _short(e), retry=isinstance(e, OSError))
        code = response.status
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = ""
        text = f"{code} {phrase}".strip()
        limit = response.headers.get("Ping-Body-Limit")
        limit_value = int(limit) if limit and limit.strip().isdigit() else None
        if 200 <= code < 300:
            return Answer(True, text, body_limit=limit_value)
        if 300 <= code < 400:
            text += " (redirects are not followed: give the final URL)"
        return Answer(False, text, retry=code in RETRY_STATUSES,
                      retry_after=_retry_after(response.headers.get("Retry-After")),
                      body_limit=limit_value)

    def _error(self, e: BaseException) -> str:
        # urllib3's own messages name the URL's path: say what happened in our words.
        exc = urllib3.exceptions
        if isinstance(e, exc.NameResolutionError):
            return "cannot resolve the host name"
        if isinstance(e, exc.NewConnectionError):  # a subclass of ConnectTimeoutError
            cause = e.__cause__ or e.__context__
            if isinstance(cause, OSError) and cause.strerror:
                return cause.strerror.lower()
            text = str(e)
            return text.rsplit("] ", 1)[-1].lower() if "] " in text else "cannot connect"
        if isinstance(e, exc.ConnectTimeoutError):
            return f"no connection within {self.timeout:g}s"
        if isinstance(e, (exc.ReadTimeoutError, exc.TimeoutError)):
            return f"no answer within {self.timeout:g}s"
        if isinstance(e, exc.SSLError):
            return "TLS error: " + _short(e.__context__ or e, url_free=True)
        cause: BaseException | None = e
        while cause is not None:
            if isinstance(cause, OSError) and cause.strerror:
                return cause.strerror.lower()
            cause = cause.__cause__ or cause.__context__
        if isinstance(e, exc.ProtocolError):
            return "the connection broke before an answer"
        return type(e).__name__

    def close(self) -> None:
        self.pool.clear()


def _short(e: BaseException, url_free: bool = False) -> str:
    text = (getattr(e, "strerror", None) or str(e) or type(e).__name__).splitlines()[0]
    if url_free and ("/" in text or "?" in text):
        return type(e).__name__  # it might quote a URL
    return text[:200]


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds: a number, or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    from email.utils import parsedate_to_datetime

    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - clock.wall())
    except (TypeError, ValueError):
        return None


# -- the channels ------------------------------------------------------------------------------


def webhook(http: Http, job: JobSpec, target: str, body: bytes, msg_id: str) -> Answer:
    try:
        url = resolve(target)
        # The id (the same at every try, for receivers that drop repeats) and time always;
        # the signature with a secret.
        now = int(clock.wall())
        headers = {"Content-Type": "application/json", "webhook-id": msg_id,
                   "webhook-timestamp": str(now)}
        if job.webhook_secret_file:
            key = signing_key(read_secret(job.webhook_secret_file))
            headers.update(signature_headers(key, msg_id, now, body))
    except SecretError as e:
        return Answer(False, str(e), retry=True)  # a file being fixed: worth another try
    return http.post(url, body, headers)


def ping_url(base: str, kind: str, rid: str | None, exit_code: int | None = None) -> str:
    """healthchecks.io's URLs: base/start, base (success), base/fail or base/EXITCODE,
    base/log; with ?rid=R so start and end pair up."""
    parts = urlsplit(base)
    suffix = {"start": "/start", "success": "", "log": "/log"}.get(kind)
    if suffix is None:  # a failure
        suffix = f"/{exit_code}" if exit_code is not None and 0 < exit_code <= 255 else "/fail"
    path = parts.path.rstrip("/") + suffix
    query = parts.query
    if rid:
        query = (query + "&" if query else "") + urlencode({"rid": rid})
    return urlunsplit((parts.scheme, parts.netloc, path, query, ""))


def healthcheck(http: Http, target: str, kind: str, rid: str | None, exit_code: int | None,
                body: bytes, body_limit: int | None) -> Answer:
    try:
        url = ping_url(resolve(target), kind, rid, exit_code)
    except SecretError as e:
        return Answer(False, str(e), retry=True)
    limit = PING_BODY if body_limit is None else min(PING_BODY, body_limit)
    body = body[-limit:] if limit > 0 else b""
    return http.post(url, body, {"Content-Type": "text/plain; charset=utf-8"})


def command(job: JobSpec, variables: dict[str, str], output: bytes,
            timeout: float = COMMAND_TIMEOUT) -> Answer:
    """`$SHELL -c notify_command` as the job's user, with the job's environment and the
    CRONSUP_* variables; the output in the file CRONSUP_OUTPUT_FILE names."""
    from cronsup import runner

    try:
        pw, switch = runner._resolve_user(job.user)
    except runner.SpawnError as e:
        return Answer(False, str(e))
    env = runner.build_environment(job, pw)
    env.update(variables)
    fd, path = tempfile.mkstemp(prefix="cronsup-output-", suffix=".txt")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(output)
            if switch:
                os.fchown(f.fileno(), pw.pw_uid, pw.pw_gid)
        env["CRONSUP_OUTPUT_FILE"] = path
        cwd = job.workdir or pw.pw_dir or "/"
        if not os.path.isdir(cwd):
            cwd = "/"
        try:
            proc = subprocess.Popen([job.shell, "-c", job.notify_command or ""], env=env, cwd=cwd,
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    close_fds=True, **switch)
        except OSError as e:
            return Answer(False, f"cannot run {job.shell}: {e.strerror or e}")
        try:
            said, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            return Answer(False, f"took over {timeout:g}s and was killed", retry=True)
        first = said.decode("utf-8", "replace").strip().splitlines()[-1:] if said else []
        detail = f": {first[0][:300]}" if first else ""
        if proc.returncode == 0:
            return Answer(True, "exit code 0" + detail)
        if proc.returncode < 0:
            return Answer(False, f"killed by signal {-proc.returncode}{detail}", retry=True)
        return Answer(False, f"exit code {proc.returncode}{detail}", retry=True)
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    proc.communicate()
