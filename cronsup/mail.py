"""Mail a run's output as cron does: a plain message piped to `sendmail -t -oi`.

Sending happens in a daemon thread with a timeout, so a slow or broken mailer never holds
up the daemon's loop, and a failure is only logged. At most MAX_AT_ONCE sendmail processes
run at once: a thousand jobs printing in one minute hand their mails over a few at a time.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import threading
from email.header import Header

from cronsup.model import JobSpec

log = logging.getLogger(__name__)

# Where Debian's MTAs (exim4, postfix, nullmailer, msmtp-mta) put sendmail, then the
# historical BSD place; PATH comes last.
SENDMAIL_PATHS = ("/usr/sbin/sendmail", "/usr/lib/sendmail")
# sendmail runs with this environment, not the daemon's (which may hold secrets).
_MAILER_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
DEFAULT_TIMEOUT = 60.0
MAX_AT_ONCE = 4  # sendmail processes at once; more mails wait for one to end
_slots = threading.BoundedSemaphore(MAX_AT_ONCE)


def find_sendmail(configured: str | None = None) -> str | None:
    """The sendmail program to use: `configured` (`daemon --sendmail`, CRONSUP_SENDMAIL) as
    given, else the usual places, then PATH; None if there is none."""
    if configured:
        return configured  # never second-guessed: a missing one is reported when mailing
    for path in SENDMAIL_PATHS:
        if os.access(path, os.X_OK) and os.path.isfile(path):
            return path
    return shutil.which("sendmail")


def send(
    job: JobSpec,
    run_summary: str,
    output: bytes,
    *,
    host: str,
    user: str,
    sendmail: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> None:
    """Mail `output` to job.mailto in the background, when there is output and a mailer.

    `run_summary` (e.g. "run 42 failed: exit code 3") goes in an X-Cronsup-Run header; the
    body is the output exactly, as cron sends it. Never raises: failures are logged. Returns
    at once, unless MAX_AT_ONCE mails are with sendmail: then it waits for one of them (the
    daemon calls this from its mail lane, never from its loop).
    """
    if not job.mailto or not output:
        return
    program = find_sendmail(sendmail)
    if program is None:
        log.warning("job %s: not mailing its output to %s: no sendmail program found",
                    job.name, job.mailto)
        return
    message = build_message(job, run_summary, output, host=host, user=user)
    _slots.acquire()
    thread = threading.Thread(
        target=_deliver_in_slot, args=(program, message, job.name, job.mailto, timeout),
        name=f"mail-{job.name}", daemon=True,
    )
    try:
        thread.start()
    except BaseException:
        _slots.release()
        raise


def _deliver_in_slot(*args) -> None:
    try:
        _deliver(*args)
    finally:
        _slots.release()


def send_now(job: JobSpec, run_summary: str, output: bytes, *, host: str, user: str,
             sendmail: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> tuple[str, bool]:
    """Mail now, waiting for sendmail (`notify-test`): (what happened, whether it worked)."""
    program = find_sendmail(sendmail)
    if program is None:
        return "no sendmail program found", False
    message = build_message(job, run_summary, output, host=host, user=user)
    error = _deliver(program, message, job.name, job.mailto or "", timeout)
    return (error, False) if error else (f"handed to {program}", True)


def build_message(job: JobSpec, run_summary: str, output: bytes, *, host: str,
                  user: str) -> bytes:
    """The message cron would send: its headers, a blank line, the output."""
    headers = [
        ("From", "root (Cron Daemon)"),
        ("To", job.mailto or ""),
        ("Subject", f"Cron <{user}@{host}> {job.raw_command or job.command}"),
        ("MIME-Version", "1.0"),
        ("Content-Type", "text/plain; charset=UTF-8"),
        ("Content-Transfer-Encoding", "8bit"),
        ("Auto-Submitted", "auto-generated"),
        ("Precedence", "bulk"),
        ("X-Cronsup-Job", job.name),
        ("X-Cronsup-Run", run_summary),
    ]
    lines = [f"{name}: {_header_value(value)}\n".encode("ascii") for name, value in headers]
    return b"".join(lines) + b"\n" + output


def _header_value(value: str) -> str:
    # One line (a command cannot break the header block), and RFC 2047 words when not ASCII.
    value = " ".join(value.split())
    if value.isascii():
        return value
    return Header(value, "utf-8").encode()


def _deliver(program: str, message: bytes, job_name: str, mailto: str, timeout: float) -> str | None:
    """Run sendmail and log, never raise: this is a thread's whole body. The error, if any."""
    try:
        proc = subprocess.Popen(
            [program, "-t", "-oi"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, env=_MAILER_ENV, cwd="/", close_fds=True,
            start_new_session=True,
        )
    except OSError as exc:
        log.warning("job %s: cannot mail output to %s: %s: %s",
                    job_name, mailto, program, exc.strerror or exc)
        return f"{program}: {exc.strerror or exc}"
    try:
        _, err = proc.communicate(message, timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        log.warning("job %s: mailing output to %s: %s took over %gs and was killed",
                    job_name, mailto, program, timeout)
        return f"{program} took over {timeout:g}s and was killed"
    except OSError as exc:  # e.g. EPIPE: the mailer exited without reading
        proc.kill()
        proc.wait()
        log.warning("job %s: mailing output to %s: %s: %s",
                    job_name, mailto, program, exc.strerror or exc)
        return f"{program}: {exc.strerror or exc}"
    if proc.returncode != 0:
        first = err.decode("utf-8", "replace").strip().splitlines()[:1]
        detail = f": {first[0]}" if first else ""
        log.warning("job %s: mailing output to %s: %s exited with %s%s",
                    job_name, mailto, program, proc.returncode, detail)
        return f"{program} exited with {proc.returncode}{detail}"
    return None
