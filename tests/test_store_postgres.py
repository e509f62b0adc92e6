"""The store contract (tests/store_contract.py) run on PostgreSQL, and what only it does:
a URL opens it, claims across nodes, fences, leases, a connection lost and made again."""

from __future__ import annotations

import pytest
from pgcluster import pg_cluster, pg_url  # noqa: F401 (fixtures)
from store_contract import *  # noqa: F401,F403 (the contract's tests, collected here)
from store_contract import BOOT, HOST, T, claim, ran

from cronsup.model import RunStatus, Trigger
from cronsup.store import NewRun, RunLogError, RunLogMissing, open_store
from cronsup.store.postgres import PostgresStore


@pytest.fixture
def store(pg_url):
    s = open_store(pg_url, node=HOST)
    yield s
    s.close()


@pytest.fixture
def reader(store, pg_url):
    r = open_store(pg_url, readonly=True, node=HOST)
    yield r
    r.close()


def test_a_postgresql_url_opens_the_postgresql_store_and_hides_its_password(pg_url):
    with open_store(pg_url) as s:
        assert isinstance(s, PostgresStore) and s.schema_version() >= 1
    with pytest.raises(RunLogError) as e:
        open_store("postgresql://cronsup_test:s3cret@127.0.0.1:1/nothing", connect_timeout=1)
    assert "s3cret" not in str(e.value) and "127.0.0.1" in str(e.value)


def test_a_reader_of_a_database_no_daemon_has_initialised_says_so(pg_cluster):
    url = pg_cluster.url(pg_cluster.new_database())
    with pytest.raises(RunLogMissing, match="not been initialised"):
        open_store(url, readonly=True)


def test_two_nodes_claim_each_fire_once_and_each_sees_its_own_daemon_row(pg_url):
    a, b = open_store(pg_url, node="a"), open_store(pg_url, node="b")
    fires = [NewRun(f"j{i}", Trigger.SCHEDULE, 1, T) for i in range(50)]
    got_a = a.insert_runs(fires, host="a", boot_id=BOOT)
    got_b = b.insert_runs(fires, host="b", boot_id=BOOT)
    assert None not in got_a and got_b == [None] * 50
    assert [r.host for r in a.running_runs()] == ["a"] * 50 and b.running_runs() == []


def test_a_node_cannot_finish_start_or_write_output_of_a_run_it_does_not_own(pg_url, store):
    other = open_store(pg_url, node=HOST)  # the same node name, another process's token
    run_id = claim(store, "backup", T)
    assert not other.finish_run(run_id, RunStatus.SUCCESS, finished_at=T + 1)
    assert not other.mark_started(run_id, 1, None, T)
    other.save_output(run_id, b"not mine", False)
    assert store.output(run_id) is None
    assert store.finish_run(run_id, RunStatus.SUCCESS, finished_at=T + 1)


def test_a_lapsed_lease_makes_the_run_lost_and_the_old_owner_records_nothing_over_it(pg_url):
    owner = open_store(pg_url, node="a", lease=0.2)
    other = open_store(pg_url, node="b")
    run_id = claim(owner, "long", T)
    assert owner.heartbeat_runs([run_id]) == {run_id}
    assert other.expire_leases(100.0, "lease lapsed") == []
    lost = []
    import time
    deadline = time.monotonic() + 10
    while not lost and time.monotonic() < deadline:
        lost = other.expire_leases(0.5, "lease lapsed")
    assert [r.id for r in lost] == [run_id] and lost[0].status is RunStatus.LOST
    assert owner.heartbeat_runs([run_id]) == set()
    assert not owner.finish_run(run_id, RunStatus.SUCCESS, finished_at=T + 9)
    assert other.run(run_id).status is RunStatus.LOST


def test_a_dropped_connection_fails_one_call_and_the_next_reconnects(pg_url, pg_cluster, store):
    claim(store, "a", T)
    pid = store._conn.info.backend_pid
    pg_cluster.admin(f"SELECT pg_terminate_backend({pid})")
    with pytest.raises(RunLogError):
        store.runs("a")
    assert len(store.runs("a")) == 1
    assert claim(store, "a", T + 60) is not None


def test_a_claim_whose_commit_answer_was_lost_is_found_by_its_token(pg_url, store, monkeypatch):
    # The commit reached the server, the answer did not: the claim is ours, given once.
    real = PostgresStore._insert_runs

    def commit_then_fail(self, runs, host, boot_id, token):
        real(self, runs, host, boot_id, token)
        raise RunLogError("run log: server closed the connection unexpectedly")

    monkeypatch.setattr(PostgresStore, "_insert_runs", commit_then_fail)
    [run_id] = store.insert_runs([NewRun("a", Trigger.SCHEDULE, 1, T)], host=HOST, boot_id=BOOT)
    assert run_id is not None and store.run(run_id).status is RunStatus.RUNNING


def test_an_exclusive_claim_while_the_job_runs_on_another_node_is_recorded_skipped(pg_url):
    a, b = open_store(pg_url, node="a"), open_store(pg_url, node="b")
    [first] = a.insert_runs([NewRun("j", Trigger.SCHEDULE, 1, T, exclusive=True)], host="a", boot_id=BOOT)
    [second] = b.insert_runs([NewRun("j", Trigger.SCHEDULE, 1, T + 60, exclusive=True)], host="b", boot_id=BOOT)
    assert first is not None and second is None
    skipped = [r for r in b.runs("j") if r.scheduled_for == T + 60]
    assert [(r.status, r.reason) for r in skipped] == [(RunStatus.SKIPPED, "still running on a")]
    [side] = b.insert_runs([NewRun("j", Trigger.SCHEDULE, 1, T + 120)], host="b", boot_id=BOOT)
    assert side is not None  # overlap = "allow" claims side by side


def test_a_host_scoped_fire_is_claimed_once_per_node(pg_url):
    a, b = open_store(pg_url, node="a"), open_store(pg_url, node="b")
    runs = lambda node: [NewRun("rotate", Trigger.SCHEDULE, 1, T, node_key=node)]  # noqa: E731
    assert a.insert_runs(runs("a"), host="a", boot_id=BOOT) != [None]
    assert b.insert_runs(runs("b"), host="b", boot_id=BOOT) != [None]
    assert b.insert_runs(runs("b"), host="b", boot_id=BOOT) == [None]


def test_nodes_racing_for_many_fires_due_at_once_share_them_and_claim_each_once(pg_url):
    import threading

    stores = [open_store(pg_url, node=n) for n in "abc"]
    fires = [NewRun(f"j{i:03d}", Trigger.SCHEDULE, 1, T) for i in range(300)]
    got: dict[str, list] = {}
    go = threading.Barrier(3)

    def claim_all(s):
        go.wait()
        got[s.node] = s.insert_runs(fires, host=s.node, boot_id=BOOT)

    threads = [threading.Thread(target=claim_all, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for i in range(300):
        assert sum(got[n][i] is not None for n in "abc") == 1
    assert all(sum(x is not None for x in got[n]) > 0 for n in "abc")


def test_rewriting_a_nodes_jobs_keeps_their_digests_and_nodes_see_each_others(pg_url):
    from store_contract import JobRow

    from cronsup.cluster import disagreements

    a, b, c = (open_store(pg_url, node=n) for n in "abc")
    for s, digest in ((a, "d1"), (b, "d1"), (c, "d2")):
        s.set_daemon(DaemonState(pid=1, pid_start=None, started_at=T, host=s.node, boot_id=BOOT, last_seen=T))
        s.set_jobs([JobRow("backup", "@daily", "true", "", None, True, 1)])
        s.set_digests({"backup": digest})
    a.set_jobs([JobRow("backup", "@daily", "true", "", T, True, 1)])  # a rewrite (next run moved)
    assert a.job_digests() == {"backup": {"a": "d1", "b": "d1", "c": "d2"}}
    assert disagreements(a.nodes(), a.job_digests(), 60) == {"c": {"backup"}}


def test_a_call_that_gets_no_answer_fails_after_the_timeout_and_the_next_one_reconnects(pg_url, pg_cluster):
    import time

    from test_several_hosts import Proxy

    proxy = Proxy(pg_cluster.port)
    dbname = pg_url.split("/")[3].split("?")[0]
    s = open_store(pg_cluster.url(dbname, port=proxy.port), node=HOST, timeout=1.0)
    assert claim(s, "a", T) is not None
    proxy.paused.set()
    t = time.monotonic()
    with pytest.raises(RunLogError, match="no answer from the database within 1s"):
        s.runs("a")
    assert time.monotonic() - t < 5
    proxy.paused.clear()
    assert len(s.runs("a")) == 1


def test_an_upgraded_postgresql_run_log_starts_its_counters_from_the_runs_it_holds(pg_cluster):
    import psycopg

    from cronsup.store.postgres import schema

    url = pg_cluster.url(pg_cluster.new_database())
    with psycopg.connect(url, autocommit=True) as conn:  # the first schema, as issue 14 left it
        conn.execute("CREATE TABLE cronsup_schema (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO cronsup_schema VALUES (1)")
        for statement in schema.MIGRATIONS[0]:
            conn.execute(statement)
        for k, (status, duration) in enumerate([("success", 0.5), ("success", 20.0), ("failed", 2.0),
                                                ("lost", None), ("running", None)]):
            conn.execute(
                "INSERT INTO runs (job, trigger, attempt, scheduled_for, started_at, finished_at, status, "
                "host, boot_id) VALUES ('backup', 'schedule', 1, %s, %s, %s, %s, 'h', 'b')",
                (T + 60 * k, T + 60 * k, None if duration is None else T + 60 * k + duration, status))
    with open_store(url) as s:
        assert s.schema_version() == schema.SCHEMA_VERSION
        found = {(c.name, c.labels): c.value for c in s.counters()}
    assert {dict(k)["status"]: v for (n, k), v in found.items() if n == "runs"} == {
        "success": 2, "failed": 1, "lost": 1}
    assert {dict(k)["le"]: v for (n, k), v in found.items() if n == "run_duration_bucket"} == {
        "1": 1, "5": 1, "30": 1}
    assert found[("run_duration_sum", (("job", "backup"),))] == pytest.approx(22.5)


def test_a_lease_expired_by_another_node_is_counted_once_as_lost(pg_url):
    owner = open_store(pg_url, node="a", lease=0.05)
    others = [open_store(pg_url, node=n) for n in ("b", "c")]
    run_id = claim(owner, "long", T)
    import time
    deadline = time.monotonic() + 10
    lost: list = []
    while not lost and time.monotonic() < deadline:
        lost = [r for o in others for r in o.expire_leases(0.5, "lease lapsed")]
    assert [r.id for r in lost] == [run_id]
    assert not owner.finish_run(run_id, RunStatus.SUCCESS, finished_at=T + 9)
    assert [(dict(c.labels), c.value) for c in others[0].counters() if c.name == "runs"] == [
        ({"job": "long", "status": "lost"}, 1)]


def test_a_snapshot_sees_one_state_while_another_node_writes(store, reader):
    ran_id = claim(store, "backup", T)
    store.finish_run(ran_id, RunStatus.SUCCESS, finished_at=T + 1)
    with reader.snapshot():
        before = reader.counters()
        store.finish_run(claim(store, "backup", T + 60), RunStatus.FAILED, finished_at=T + 61)
        assert reader.counters() == before and reader.job_summaries(["backup"])["backup"].last_status is RunStatus.SUCCESS
    assert reader.counters() != before and reader.job_summaries(["backup"])["backup"].last_status is RunStatus.FAILED


# -- the outbox shared by several nodes --------------------------------------------------------


def _alerts(store, n, at=T):
    from store_contract import alert, ran

    run = ran(store, "a", at, RunStatus.FAILED)
    store.add_deliveries([alert(run, shown=f"https://h{i}", at=at) for i in range(n)], 1000)


def test_an_alert_one_node_is_delivering_is_not_handed_to_another_until_its_attempt_is_recorded(pg_url):
    from cronsup.store import PENDING, DeliveryAttempt

    a, b = open_store(pg_url, node="a"), open_store(pg_url, node="b")
    _alerts(a, 1)
    [item] = a.due_deliveries(T, 10)
    assert b.due_deliveries(T, 10) == [] and b.pending_deliveries() == 1
    # b wakes when a's claim would lapse (the webhook timeout and a margin on), not at once.
    import time
    assert b.next_delivery_at() > time.time() + 30 and a.next_delivery_at() == T
    a.record_delivery(DeliveryAttempt(item.id, "a", "webhook", "https://h0", T, False, "503", T + 5), PENDING)
    assert b.next_delivery_at() == T + 5  # the retry is anyone's
    [again] = b.due_deliveries(T + 5, 10)
    assert again.id == item.id and again.tries == 1 and a.due_deliveries(T + 5, 10) == []


def test_every_node_has_the_same_alerts_mark(pg_url):
    a, b = open_store(pg_url, node="a"), open_store(pg_url, node="b")
    assert a.alerts_mark() == b.alerts_mark() == b.sibling().alerts_mark() and len(a.alerts_mark()) == 16


def test_a_claim_of_a_node_that_died_while_delivering_lapses_and_another_node_takes_the_alert(pg_url):
    a, b = open_store(pg_url, node="a"), open_store(pg_url, node="b")
    _alerts(a, 1)
    [item] = a.due_deliveries(T, 10)
    a.close()
    b._db().execute("SET cronsup.test_clock_offset = '71'")  # past the webhook timeout and margin
    assert [i.id for i in b.due_deliveries(T, 10)] == [item.id]


def test_nodes_racing_for_due_alerts_each_get_different_ones(pg_url):
    import threading

    stores = [open_store(pg_url, node=n) for n in "abc"]
    _alerts(stores[0], 120)
    got: dict[str, list[int]] = {s.node: [] for s in stores}
    go = threading.Barrier(3)

    def take(s):
        go.wait()
        while batch := s.due_deliveries(T, 7, got[s.node]):  # those taken are in flight
            got[s.node] += [i.id for i in batch]

    threads = [threading.Thread(target=take, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    taken = [i for ids in got.values() for i in ids]
    assert len(taken) == 120 and len(set(taken)) == 120


@pytest.mark.parametrize("n_jobs", [10, 60])
def test_status_over_postgresql_takes_the_same_queries_for_10_and_60_jobs(pg_url, monkeypatch, n_jobs):
    import psycopg

    from cronsup import report
    from cronsup.store import DaemonState, JobRow

    names = [f"job{i:03d}" for i in range(n_jobs)]
    with open_store(pg_url, node=HOST) as s:
        s.set_daemon(DaemonState(pid=1, pid_start=1.0, started_at=T, host=HOST, boot_id=BOOT,
                                 jobs_file="/j", last_seen=T))
        s.set_jobs([JobRow(n, "@hourly", "true", "", T + 3600, True, i + 1) for i, n in enumerate(names)])
        for i, n in enumerate(names):
            if i % 10 == 0:  # 20 runs and a retried fire: its rate reads past the newest 20
                for k in range(1, 20):
                    ran(s, n, T - 60 * k, RunStatus.SUCCESS)
            ran(s, n, T, RunStatus.FAILED)
            ran(s, n, T + 60, RunStatus.SUCCESS, trigger=Trigger.CATCHUP)
            if i % 10 == 0:
                ran(s, n, T + 60, RunStatus.SUCCESS, attempt=2, trigger=Trigger.RETRY)
            claim(s, n, T + 120, status=RunStatus.SKIPPED, finished_at=T + 120)
            claim(s, n, T + 180)  # running: `status` looks further back for LAST
    monkeypatch.setenv("CRONSUP_NODE", HOST)
    monkeypatch.setattr(report, "daemon_pid", lambda db_path, state_dir=None: 4242)
    counted: list[str] = []
    execute = psycopg.Connection.execute

    def traced(conn, query, *args, **kw):
        counted.append(query)
        return execute(conn, query, *args, **kw)

    monkeypatch.setattr(psycopg.Connection, "execute", traced)
    st = report.status("/nonexistent/jobs", pg_url, T + 200)
    assert [j.name for j in st.jobs] == names
    assert all(j.last_finished.scheduled_for == T + 60 and j.running for j in st.jobs)
    rates = [j.success_rate for j in st.jobs]
    assert rates[1:10] == [0.5] * 9 and rates[0] == 19 / 20  # T failed, T+60 and 18 more succeeded
    # Schema version (2), daemon row, jobs, running version, internal errors, cron's files,
    # running runs, last runs, paused, success rates (2: the retried jobs'), last finished,
    # failing alert channels: the same for 10 jobs and for 60.
    assert len(counted) == 14


def test_status_over_postgresql_imports_neither_the_sqlite_store_nor_the_alerts_web_or_metrics_libraries(pg_url, tmp_path):
    from test_store_sqlite import NOT_FOR_STATUS, status_modules

    (tmp_path / "jobs").write_text("@hourly true\n")
    loaded = status_modules("--json", "--jobs", str(tmp_path / "jobs"), "--db", pg_url,
                            "--state-dir", str(tmp_path / "state"))
    assert "psycopg" in loaded and "cronsup.store.postgres.store" in loaded
    assert not loaded & (NOT_FOR_STATUS | {"sqlite3", "cronsup.store.sqlite.store"})


def test_pruning_a_thousand_jobs_takes_longer_than_one_call_may_and_still_completes(pg_url):
    """Each job's deletes are a call of their own: pruning 1,000 jobs' backlog (thousands of
    round trips, as a remote database or a daemon's first start after a long time meets it)
    is not cut off by the call timeout, which bounds each call, not the whole prune."""
    import psycopg

    jobs, old = 1000, T - 3600
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO runs (job, trigger, attempt, scheduled_for, started_at, finished_at, status, "
            "exit_code, host, boot_id, owner) SELECT format('j%%s', j), 'schedule', 1, %s + k * 60, "
            "%s + k * 60, %s + k * 60 + 1, 'success', 0, 'h', 'b', 'x' "
            "FROM generate_series(0, 2) k, generate_series(1, %s) j", (old, old, old, jobs))
    store = open_store(pg_url, node=HOST, timeout=0.3)
    try:
        started = __import__("time").monotonic()
        deleted = store.prune(max_runs_per_job=1, max_age_s=90 * 86400, now=T, max_output_bytes=1 << 30)
        took = __import__("time").monotonic() - started
    finally:
        store.close()
    assert deleted == 2 * jobs  # each job keeps its newest run
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*), count(DISTINCT job) FROM runs").fetchone() == (jobs, jobs)
    assert took > 0.3, f"pruned in {took:.2f}s: not enough work to outlast one call's timeout"


def test_a_prune_beside_the_loop_runs_on_its_own_connection_one_at_a_time(pg_url):
    """cronsup/pruner.py: the daemon hands a PostgreSQL prune to a thread and goes on."""
    import psycopg

    from cronsup.pruner import Pruner

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO runs (job, trigger, attempt, scheduled_for, started_at, finished_at, status, "
            "exit_code, host, boot_id, owner) SELECT format('j%%s', j), 'schedule', 1, %s + k * 60, "
            "%s + k * 60, %s + k * 60 + 1, 'success', 0, 'h', 'b', 'x' "
            "FROM generate_series(0, 1) k, generate_series(1, 1000) j", (T, T, T))
    store = open_store(pg_url, node=HOST)
    opened = []

    def connect():
        opened.append(store.sibling())
        return opened[-1]

    pruner = Pruner(connect)
    try:
        assert pruner.start("prune", max_runs_per_job=1, max_age_s=1e9, now=T, max_output_bytes=None)
        assert pruner.busy  # 1,000 jobs' round trips: it is still at it
        assert not pruner.start("prune", max_runs_per_job=1, max_age_s=1e9, now=T)  # one at a time
        pruner.join(60)
        assert not pruner.busy and len(opened) == 1 and opened[0] is not store
        assert len(store.runs_of_all_jobs(limit=None)) == 1000  # each job's newest run is kept
    finally:
        store.close()


def test_a_prune_beside_the_loop_that_fails_is_logged_and_the_next_one_runs(pg_url, caplog):
    from cronsup.pruner import Pruner

    def cannot():
        raise RunLogError("run log postgresql://x@db/y: connection refused")

    pruner = Pruner(cannot)
    with caplog.at_level("ERROR", logger="cronsup"):
        assert pruner.start("prune", max_runs_per_job=1, max_age_s=1.0, now=T)
        pruner.join(10)
    assert "pruning the run log: run log postgresql://x@db/y: connection refused" in caplog.text
    store = open_store(pg_url, node=HOST)
    try:
        pruner = Pruner(store.sibling)
        assert pruner.start("prune", max_runs_per_job=1, max_age_s=1.0, now=T)
        pruner.join(10)
        assert not pruner.busy
    finally:
        store.close()
