"""`cronsup notify-test JOB`: a `test` event through every alert channel of a job, each answer printed."""

from __future__ import annotations

import json
import os
import socket
import sys
import uuid

import click

from cronsup.cli import EXIT_INVALID, common_options, fail, load_jobs


@click.command("notify-test")
@click.argument("job")
@click.option("--sendmail", metavar="PATH", envvar="CRONSUP_SENDMAIL",
              help="The program that mails (env CRONSUP_SENDMAIL; default as the daemon's).")
@common_options
def notify_test(job: str, sendmail: str | None, jobs_path: str, db: str) -> None:
    """Send a `test` event through every channel of JOB and print what each answered.

    Every webhook (the JSON event, signed when webhook_secret_file is set), the healthcheck
    (a /log ping, which changes no check's state), notify_command (CRONSUP_EVENT=test) and
    mail (when mailto is set and mail_on is not "never"), whatever notify_on says. The event
    carries the job's latest run from the run log. Needs no running daemon: it reads the
    jobs file and the run log itself. Exit 0 when every channel answered well, 1 otherwise
    (also when the job has no channel).

    \b
    Example:
      cronsup notify-test backup
    """
    from cronsup import alerts, channels, clock, mail, report, runner, suggest
    from cronsup.model import MailOn
    from cronsup.store import RunLogError

    jobs = load_jobs(jobs_path)
    spec = jobs.get(job)
    if spec is None:
        hint = suggest.did_you_mean(job, jobs.names, n=1, quote=True)
        fail(f"no job named {job!r} in {jobs_path}{hint}", 2)
    host = socket.gethostname()
    run = None
    try:
        runlog = report.open_log(db)
    except RunLogError:
        runlog = None
    if runlog is not None:
        try:
            found = runlog.runs(spec.name, limit=1)
            run = found[0] if found else None
        except RunLogError:
            pass
        finally:
            runlog.close()
    body = alerts.event_json(alerts.TEST, spec.name, host, run,
                             previous_status=None if run is None else str(run.status),
                             next_run=report.next_run(spec, clock.wall()))
    payload = json.dumps(body, separators=(",", ":")).encode()
    rows: list[tuple[str, str, str, bool]] = []
    http = channels.Http()
    for channel, target in alerts.channels_of(spec, alerts.TEST):
        if channel == alerts.WEBHOOK:
            answer = channels.webhook(http, spec, target, payload, f"msg_test_{uuid.uuid4().hex}")
        elif channel == alerts.HEALTHCHECK:
            answer = channels.healthcheck(http, target, "log", None, None,
                                          f"cronsup notify-test from {host}\n".encode(), None)
        else:
            answer = channels.command(spec, alerts.command_vars(body), b"")
        rows.append((channel if channel != alerts.COMMAND else "notify_command",
                     alerts.shown(channel, target) if channel != alerts.COMMAND else "",
                     answer.text, answer.ok))
    if spec.mailto and spec.mail_on is not MailOn.NEVER:
        text, ok = mail.send_now(spec, "test: cronsup notify-test",
                                 f"A test of the alerts of job {spec.name} on {host}.\n".encode(),
                                 host=host, user=spec.user or runner.user_name(os.geteuid()),
                                 sendmail=sendmail)
        rows.append(("mail", f"to {spec.mailto}", text, ok))
    if not rows:
        fail(f"job {spec.name} has no alert channel: set webhook, healthcheck, notify_command or "
             "mailto (see the README's Alerts section)", EXIT_INVALID)
    width = max(len(r[0]) for r in rows)
    target_width = max(len(r[1]) for r in rows)
    for channel, target, text, ok in rows:
        mark = "ok    " if ok else "FAILED"
        click.echo(f"{mark}  {channel:<{width}}  {target:<{target_width}}  {text}".rstrip())
    sys.exit(0 if all(r[3] for r in rows) else EXIT_INVALID)

