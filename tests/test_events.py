"""Naming outcomes as SPEC section 4's events, and the mail receiver's rule."""

from __future__ import annotations

import pytest

from cronsup import events, mail
from cronsup.events import Event, Failing, MailReceiver, event_name
from cronsup.model import Every, JobSpec, Outcome, RunStatus


def make_job(**options) -> JobSpec:
    options.setdefault("mailto", "ops@example.com")
    return JobSpec(name="backup", schedule=Every("@every 1m", 60.0), command="backup", line=3, **options)


@pytest.mark.parametrize("outcome, failing, name", [
    (Outcome(RunStatus.SUCCESS), False, "success"),
    (Outcome(RunStatus.SUCCESS), True, "recovery"),
    (Outcome(RunStatus.FAILED, "exit code 1"), False, "failure"),
    (Outcome(RunStatus.FAILED, "exit code 1; retrying in 5s", final=False, retry_at=5.0), False, "retry"),
    (Outcome(RunStatus.TIMEOUT, "timed out", final=False, retry_at=5.0), True, "retry"),
    (Outcome(RunStatus.LOST, "the daemon stopped"), False, "failure"),
    (Outcome(RunStatus.ERROR, "no such user"), False, "failure"),
    (Outcome(RunStatus.KILLED, "killed by SIGKILL"), False, "failure"),
    (Outcome(RunStatus.SKIPPED, "run 4 still running"), True, "skipped"),
    (Outcome(RunStatus.MISSED, "the daemon was not running"), False, "missed"),
])
def test_each_outcome_makes_the_event_the_spec_names(outcome, failing, name):
    assert event_name(outcome, failing) == name


def test_only_the_first_success_after_a_final_failure_is_a_recovery():
    failing = Failing(lambda job, run_id: pytest.fail("no lookup: the seed says"))
    failing.seed({"a": RunStatus.FAILED})
    retried = Outcome(RunStatus.FAILED, final=False, retry_at=1.0)
    assert [failing.name("a", n, o) for n, o in enumerate([
        Outcome(RunStatus.SUCCESS), Outcome(RunStatus.SUCCESS), retried, Outcome(RunStatus.SUCCESS),
        Outcome(RunStatus.FAILED), Outcome(RunStatus.SKIPPED), Outcome(RunStatus.SUCCESS)])] == [
        "recovery", "success", "retry", "success", "failure", "skipped", "recovery"]


def test_a_job_the_seed_cannot_tell_asks_once_for_its_last_ended_run():
    asked = []

    def earlier(job, run_id):
        asked.append((job, run_id))
        return RunStatus.LOST

    failing = Failing(earlier)
    failing.seed({"b": RunStatus.MISSED})  # says nothing about how the last run ended
    assert failing.name("b", 7, Outcome(RunStatus.SUCCESS)) == "recovery"
    assert failing.name("b", 8, Outcome(RunStatus.SUCCESS)) == "success"
    assert asked == [("b", 7)]


def test_mail_follows_crons_rule_output_and_a_mailto(monkeypatch):
    sent = []
    monkeypatch.setattr(mail, "send", lambda job, summary, output, **kw: sent.append((job.name, summary, output, kw)))
    receiver = MailReceiver(user="root", sendmail="/bin/stub")

    def event(name, outcome, output, **job):
        spec = make_job(**job)
        return Event(name, spec.name, spec, 3, outcome, "web1", 0.0, "schedule", 1, 0.0, output)

    receiver(event(events.START, None, b""))
    receiver(event(events.SUCCESS, Outcome(RunStatus.SUCCESS), b""))  # printed nothing
    receiver(event(events.SUCCESS, Outcome(RunStatus.SUCCESS), b"hi\n", mailto=None))
    receiver(event(events.RETRY, Outcome(RunStatus.FAILED, "exit code 3; retrying in 5s", final=False),
                   b"oops\n"))
    assert sent == [(make_job().name, "failed: exit code 3; retrying in 5s", b"oops\n",
                     {"host": "web1", "user": "root", "sendmail": "/bin/stub"})]
