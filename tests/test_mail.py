"""Mail through a fake sendmail that saves its arguments and its standard input."""

from __future__ import annotations

import logging
import os
import stat
import time
from pathlib import Path

import pytest

from cronsup import mail
from cronsup.model import Every, JobSpec


def make_job(**options) -> JobSpec:
    options.setdefault("mailto", "ops@example.com")
    return JobSpec(name="backup", schedule=Every("@every 1m", 60.0),
                   command="/usr/local/bin/backup --all", line=3, **options)


def fake_sendmail(directory: Path, body: str = 'cat > "$OUT/message"') -> Path:
    script = directory / "fake-sendmail"
    script.write_text(f'#!/bin/sh\nOUT={directory}\necho "$@" > "$OUT/args.tmp"\n{body}\n'
                      'mv "$OUT/args.tmp" "$OUT/args"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def wait_for(predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)  # the mail thread gives nothing to select on
    return result


def send(job: JobSpec, output: bytes, sendmail: Path | str | None, **kw) -> None:
    mail.send(job, "run 42 failed: exit code 3", output, host="web1", user="root",
              sendmail=str(sendmail) if sendmail else None, **kw)


def test_it_pipes_a_cron_style_message_to_sendmail_t(tmp_path):
    send(make_job(), b"disk full\nbackup failed\n", fake_sendmail(tmp_path))
    args = wait_for(lambda: (tmp_path / "args").exists() and (tmp_path / "args").read_text())
    assert args == "-t -oi\n"
    headers, body = (tmp_path / "message").read_bytes().split(b"\n\n", 1)
    assert body == b"disk full\nbackup failed\n"
    assert headers.decode().splitlines() == [
        "From: root (Cron Daemon)",
        "To: ops@example.com",
        "Subject: Cron <root@web1> /usr/local/bin/backup --all",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=UTF-8",
        "Content-Transfer-Encoding: 8bit",
        "Auto-Submitted: auto-generated",
        "Precedence: bulk",
        "X-Cronsup-Job: backup",
        "X-Cronsup-Run: run 42 failed: exit code 3",
    ]


def test_the_subject_shows_the_command_as_written_with_its_percent_signs():
    job = make_job(raw_command="mail -s hi root%body", stdin="body")
    message = mail.build_message(job, "ok", b"x", host="h", user="u")
    assert b"Subject: Cron <u@h> mail -s hi root%body\n" in message


def test_header_values_stay_on_one_line_and_non_ascii_is_encoded():
    job = make_job(mailto="a@example.com,\n b@example.com")
    message = mail.build_message(job, "café", b"x", host="h", user="u")
    headers = message.split(b"\n\n", 1)[0].decode("ascii")
    assert "To: a@example.com, b@example.com" in headers.splitlines()
    assert "X-Cronsup-Run: =?utf-8?b?Y2Fmw6k=?=" in headers.splitlines()


@pytest.fixture
def deliveries(monkeypatch):
    """Messages handed to the mail thread, instead of running sendmail."""
    sent: list[bytes] = []
    monkeypatch.setattr(mail, "_deliver", lambda program, message, *rest: sent.append(message))
    return sent


@pytest.mark.parametrize("mailto", [None, ""])
def test_nothing_is_sent_without_a_mailto(tmp_path, deliveries, mailto):
    send(make_job(mailto=mailto), b"output", fake_sendmail(tmp_path))
    send(make_job(), b"witness", fake_sendmail(tmp_path))
    wait_for(lambda: deliveries)
    assert len(deliveries) == 1 and deliveries[0].endswith(b"\n\nwitness")


def test_nothing_is_sent_when_the_run_printed_nothing(tmp_path, deliveries):
    send(make_job(), b"", fake_sendmail(tmp_path))
    send(make_job(), b"witness", fake_sendmail(tmp_path))
    wait_for(lambda: deliveries)
    assert len(deliveries) == 1 and deliveries[0].endswith(b"\n\nwitness")


def test_a_failing_sendmail_is_logged_not_raised(tmp_path, caplog):
    script = fake_sendmail(tmp_path, body='echo "no route to relay" >&2; exit 75')
    with caplog.at_level(logging.WARNING, logger="cronsup.mail"):
        send(make_job(), b"output", script)
        wait_for(lambda: caplog.records)
    assert "exited with 75: no route to relay" in caplog.records[0].getMessage()


def test_a_hanging_sendmail_is_killed_after_the_timeout(tmp_path, caplog):
    script = fake_sendmail(tmp_path, body="exec sleep 300")
    with caplog.at_level(logging.WARNING, logger="cronsup.mail"):
        started = time.monotonic()
        send(make_job(), b"output", script, timeout=0.3)
        assert time.monotonic() - started < 0.3  # the caller never waits
        wait_for(lambda: caplog.records)
    assert "took over 0.3s and was killed" in caplog.records[0].getMessage()


def test_a_missing_sendmail_is_logged_not_raised(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="cronsup.mail"):
        send(make_job(), b"output", tmp_path / "nope")
        wait_for(lambda: caplog.records)
    assert "No such file or directory" in caplog.records[0].getMessage()


def test_sendmail_does_not_see_the_daemons_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SECRET", "hunter2")
    script = fake_sendmail(tmp_path, body='env > "$OUT/env"; cat > /dev/null')
    send(make_job(), b"output", script)
    wait_for(lambda: (tmp_path / "args").exists())
    assert "SECRET" not in (tmp_path / "env").read_text()


def test_find_sendmail_prefers_the_usual_places_then_path(tmp_path, monkeypatch):
    usual = fake_sendmail(tmp_path)
    monkeypatch.setattr(mail, "SENDMAIL_PATHS", (str(tmp_path / "absent"), str(usual)))
    assert mail.find_sendmail() == str(usual)

    on_path = tmp_path / "bin"
    on_path.mkdir()
    os.link(usual, on_path / "sendmail")
    monkeypatch.setattr(mail, "SENDMAIL_PATHS", (str(tmp_path / "absent"),))
    monkeypatch.setenv("PATH", str(on_path))
    assert mail.find_sendmail() == str(on_path / "sendmail")

    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert mail.find_sendmail() is None


def test_an_injected_sendmail_is_used_even_when_a_system_one_exists(tmp_path, monkeypatch):
    system = fake_sendmail(tmp_path)  # stands for /usr/sbin/sendmail
    monkeypatch.setattr(mail, "SENDMAIL_PATHS", (str(system),))
    monkeypatch.setenv("PATH", str(system.parent))
    stub = tmp_path / "stub"
    assert mail.find_sendmail(str(stub)) == str(stub)
    assert mail.find_sendmail() == str(system)


def test_an_injected_sendmail_that_is_missing_is_reported_not_replaced(tmp_path, monkeypatch, caplog):
    system = fake_sendmail(tmp_path)
    monkeypatch.setattr(mail, "SENDMAIL_PATHS", (str(system),))
    with caplog.at_level(logging.WARNING, logger="cronsup.mail"):
        send(make_job(), b"output", tmp_path / "nope")
        wait_for(lambda: caplog.records)
    assert str(tmp_path / "nope") in caplog.records[0].getMessage()
    assert not (tmp_path / "message").exists()


def test_without_any_sendmail_a_warning_is_logged(monkeypatch, tmp_path, caplog):
    monkeypatch.setattr(mail, "SENDMAIL_PATHS", ())
    monkeypatch.setenv("PATH", str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="cronsup.mail"):
        send(make_job(), b"output", None)
    assert "no sendmail program found" in caplog.records[0].getMessage()


def test_a_burst_of_mails_goes_to_sendmail_a_few_at_a_time_and_every_one_arrives(tmp_path):
    # Each fake sendmail notes how many are running as it starts, then takes a moment.
    script = tmp_path / "counting-sendmail"
    script.write_text(f'#!/bin/sh\nOUT={tmp_path}\nmkdir "$OUT/busy.$$"; ls -d "$OUT"/busy.* | wc -l >> "$OUT/seen"\n'
                      'cat > "$OUT/message.$$"; sleep 0.2; rmdir "$OUT/busy.$$"\n')
    script.chmod(0o755)
    for i in range(12):
        send(make_job(), f"output {i}\n".encode(), script)
    seen = tmp_path / "seen"
    wait_for(lambda: seen.exists() and len(seen.read_text().split()) == 12 and not list(tmp_path.glob("busy.*")))
    running = [int(n) for n in seen.read_text().split()]
    assert max(running) <= mail.MAX_AT_ONCE and max(running) >= 2, running
    bodies = sorted(p.read_bytes().rsplit(b"\n\n", 1)[1] for p in tmp_path.glob("message.*"))
    assert bodies == sorted(f"output {i}\n".encode() for i in range(12))
