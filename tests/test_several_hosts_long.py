"""Several hosts on one PostgreSQL over minutes of real time (marker `long`: `make test` runs
these in a second pytest process beside the rest): three daemons for three minutes, the
server stopped for 30 s, a host killed while it delivers an alert."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import wait_until
from pgcluster import Cluster, pg_cluster, pg_url  # noqa: F401 (fixtures)
from test_alerts import job_block, receiver  # noqa: F401 (the receiver fixture)
from test_several_hosts import _no_fire_twice, nodes, rows  # noqa: F401 (the nodes fixture)

pytestmark = pytest.mark.long

RUN_FOR = 180.0  # the soak: three real minutes, so three minute boundaries
OUTAGE = 30.0  # PostgreSQL stopped this long


def _db_now(url: str) -> float:
    return rows(url, "SELECT extract(epoch from now())::float8")[0][0]


def _alive(*three) -> bool:
    for node in three:
        if node.proc.poll() is not None:
            raise AssertionError(f"node {node.name} exited {node.proc.returncode}:\n{node.output()[-3000:]}")
    return True


def _slots(step: int, after: float, until: float) -> list[float]:
    """The times of an anchored schedule of `step` seconds in (after, until]."""
    first = (int(after) // step + 1) * step
    return [float(t) for t in range(first, int(until) + 1, step)]


def _stop_and_read(three, url: str, begin: float, end: float) -> tuple[list, Counter]:
    """Stop the nodes (all told at once), check that no fire ran twice, and read the runs
    scheduled in (begin, end]: the rows, and how many each (job, time) has."""
    for node in three:
        node.proc.send_signal(signal.SIGTERM)
    for node in three:
        node.stop()
    assert _no_fire_twice(url) == []
    found = rows(url, "SELECT job, scheduled_for, host, status, reason, id FROM runs "
                      f"WHERE scheduled_for > {begin} AND scheduled_for <= {end}")
    return found, Counter((job, t) for job, t, *_ in found)


def _ran(out: Path) -> list[int]:
    return [int(x) for x in out.read_text().split()] if out.exists() else []


def test_three_daemons_for_three_minutes_run_every_fire_of_a_hundred_minutely_jobs_and_of_every_2s_jobs_once(
        nodes, pg_url, tmp_path):
    out = tmp_path / "ran"
    jobs = "MAILTO=\"\"\n" + "".join(
        f"[job.m{i:03d}]\n* * * * * echo $CRONSUP_RUN_ID >> {out}\n" for i in range(100)) + "".join(
        f"[job.e{i}]\n@every 2s echo $CRONSUP_RUN_ID >> {out}\n" for i in range(5))
    three = [nodes(n, jobs) for n in ("a", "b", "c")]
    for node in three:
        node.start(wait=False)
    for node in three:
        wait_until(node.ready, 60, what=f"node {node.name}")
    # The window: every node schedules from here on (a slot's margin after all are up).
    begin = _db_now(pg_url) + 2
    end = begin + RUN_FOR
    # Three minutes of real time, looked at every few seconds: every node stays up.
    wait_until(lambda: _alive(*three) and _db_now(pg_url) > end + 1, RUN_FOR + 60, interval=5,
               what="three minutes to pass")
    wait_until(lambda: _alive(*three) and not rows(
        pg_url, f"SELECT 1 FROM runs WHERE status = 'running' AND scheduled_for <= {end}"), 60, interval=1,
        what="the window's runs to end")
    found, by_fire = _stop_and_read(three, pg_url, begin, end)
    minutes = _slots(60, begin, end)
    assert len(minutes) == 3
    wanted = {(f"m{i:03d}", t) for i in range(100) for t in minutes} | {
        (f"e{i}", t) for i in range(5) for t in _slots(2, begin, end)}
    # Every expected time once: none missing, none twice, nothing else.
    assert set(by_fire) == wanted, (sorted(wanted - set(by_fire))[:10], sorted(set(by_fire) - wanted)[:10])
    assert max(by_fire.values()) == 1
    failed = [r for r in found if r[3] != "success"]
    assert failed == [], failed[:10]
    # Each one ran, once: its run id is written by the job exactly once.
    ran = Counter(_ran(out))
    assert all(ran[r[5]] == 1 for r in found)
    assert max(ran.values()) == 1 and set(ran) <= {r[0] for r in rows(pg_url, "SELECT id FROM runs")}
    # The fires are spread over the three hosts: each minute's 100 and the 2 s ones.
    hosts = Counter(r[2] for r in found)
    assert set(hosts) == {"a", "b", "c"} and min(hosts.values()) >= len(found) / 10, hosts
    for t in minutes:
        per_host = Counter(r[2] for r in found if r[1] == t)
        assert len(per_host) >= 2, (t, per_host)
    assert set(Counter(r[2] for r in found if r[0].startswith("e"))) == {"a", "b", "c"}


def test_postgresql_stopped_for_30s_runs_nothing_twice_or_unrecorded_records_the_fires_due_as_missed_and_resumes(
        nodes, tmp_path):
    # A cluster of its own: stopping the shared one would stop the other tests' databases.
    root = Path(tempfile.mkdtemp(prefix="cronsup-pg-outage-"))
    os.chmod(root, 0o755)
    own = Cluster(root)
    own.init()
    try:
        url = own.url(own.new_database())
        out = tmp_path / "ran"
        # The default lease (30 s): the outage outlasts it, so hosts stop claiming meanwhile.
        jobs = "MAILTO=\"\"\n" + "".join(f"[job.e{i}]\n@every 2s echo $CRONSUP_RUN_ID >> {out}\n"
                                         for i in range(3))
        three = [nodes(n, jobs, url=url) for n in ("a", "b", "c")]
        for node in three:
            node.start(wait=False)
        for node in three:
            wait_until(node.ready, 60, what=f"node {node.name}")
        begin = _db_now(url) + 2
        wait_until(lambda: rows(url, f"SELECT count(*) FROM runs WHERE scheduled_for > {begin} "
                                     "AND status = 'success'")[0][0] >= 6, 30, what="a few runs")
        own.stop("fast")
        down = time.time()  # the server's clock is this machine's
        ran_before = len(_ran(out))
        time.sleep(OUTAGE)
        ran_during = len(_ran(out)) - ran_before
        own.start()
        up = time.time()
        _alive(*three)
        # Runs resume: a fire after the restart succeeds, within two heartbeats (lease/3 each).
        wait_until(lambda: _alive(*three) and rows(url, f"SELECT count(*) FROM runs WHERE scheduled_for > {up} "
                                                        "AND status = 'success'")[0][0] >= 3, 60,
                   interval=1, what="runs to resume")
        resumed = rows(url, f"SELECT min(scheduled_for) FROM runs WHERE scheduled_for > {up} "
                            "AND status = 'success'")[0][0]
        end = resumed + 6
        wanted = {(f"e{i}", t) for i in range(3) for t in _slots(2, begin, end)}
        # A fire a node could not claim is recorded `missed` at its next heartbeat once it is
        # a third of a lease old (lease/3 + lease/3 after the restart at the most).
        wait_until(lambda: _alive(*three) and _db_now(url) > end + 1 and not rows(
            url, f"SELECT 1 FROM runs WHERE status = 'running' AND scheduled_for <= {end}") and wanted <= {
            (job, t) for job, t in rows(url, "SELECT job, scheduled_for FROM runs")}, 60,
            interval=1, what="every fire recorded")
        found, by_fire = _stop_and_read(three, url, begin, end)
        assert max(by_fire.values()) == 1
        missed = sorted((t, job) for job, t, host, status, *_ in found if status == "missed")
        others = [r for r in found if r[3] not in ("success", "missed")]
        assert others == [], others
        # Nothing ran while the server was down (no claim, no start), and every run ran once.
        assert ran_during == 0
        ran = Counter(_ran(out))
        assert max(ran.values()) == 1 and set(ran) <= {r[0] for r in rows(url, "SELECT id FROM runs")}
        assert all(ran[r[5]] == 1 for r in found if r[3] == "success")
        # The fires due while it was down are recorded `missed`, once each; those before and
        # after it ran.
        for job, t, host, status, reason, _ in found:
            if status == "missed":
                assert down - 2 <= t <= resumed, (job, t, down, up)
                assert reason.startswith(("not started: the run log refused its row",
                                          "not started: no host could claim it")), reason
            else:
                assert t < down + 1 or t >= up, (job, t, status, down, up)
        assert set(by_fire) == wanted, (sorted(wanted - set(by_fire))[:10], sorted(set(by_fire) - wanted)[:10])
        assert len(missed) >= 3 * (OUTAGE // 2) - 3, missed
        output = "".join(n.output() for n in three)
        assert "cannot heartbeat" in output and "heartbeat again" in output
    finally:
        own.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


def test_a_host_killed_while_it_delivers_an_alert_has_another_host_send_it_again_with_the_same_webhook_id(
        nodes, pg_url, receiver):
    # The first delivery hangs (no answer): its host is killed meanwhile. The other host has
    # nothing of its own to send, so only its look at the shared outbox finds the alert.
    receiver.answers = ["hang"]
    jobs = 'MAILTO=""\n' + job_block("backup", "echo disk full; exit 7", webhook=receiver.url())
    a, b = nodes("a", jobs).start(wait=False), nodes("b", jobs).start(wait=False)
    for node in (a, b):
        wait_until(node.ready, 60, what=f"node {node.name}")
    assert a.cli("run", "backup").returncode == 0
    first = wait_until(lambda: receiver.requests, 30, what="the first delivery")[0]
    [(item, claimed_by, claimed_until)] = rows(pg_url, "SELECT id, claimed_by, claimed_until FROM outbox")
    sender, other = (a, b) if claimed_by.startswith("a/") else (b, a)
    assert claimed_by.startswith(f"{sender.name}/")
    sender.stop(signal.SIGKILL)  # dead mid-delivery: the receiver may or may not have it
    try:
        second = wait_until(lambda: receiver.requests[1:], claimed_until - time.time() + 60, interval=0.5,
                            what="the alert sent again")[0]
    except AssertionError as e:
        raise AssertionError(f"{e}; outbox {rows(pg_url, 'SELECT * FROM outbox')}, now {_db_now(pg_url)}; "
                             f"node {other.name}'s log:\n{other.output()[-4000:]}") from None
    # After the dead host's claim lapsed (by the database's clock: this machine's), not before.
    assert claimed_until - 1 <= second.at <= claimed_until + 45, (second.at - claimed_until)
    # The same alert: the same webhook-id (a receiver drops the repeat) and the same body.
    assert second.headers["webhook-id"] == first.headers["webhook-id"]
    assert second.body == first.body and second.json["event"] == "failure"
    wait_until(lambda: rows(pg_url, "SELECT state FROM outbox")[0][0] == "delivered", 30,
               what="the delivery recorded")
    # Recorded once, by the host that got the answer; nothing else sent, nothing lost.
    assert rows(pg_url, f"SELECT ok, answer FROM outbox_attempts WHERE outbox_id = {item}") == [(True, "200 OK")]
    assert len(receiver.requests) == 2
    assert other.proc.poll() is None
