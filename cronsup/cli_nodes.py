"""`cronsup nodes`: the hosts sharing a PostgreSQL run log, their heartbeats and definitions."""

from __future__ import annotations

import click

from cronsup import fmt, paths
from cronsup.cli import EXIT_USAGE, common_options, fail

LIVE_FOR = 90.0  # a node silent longer than this is shown as silent (3 default leases)


def node_rows(db: str) -> list[dict]:
    from cronsup.cluster import disagreements
    from cronsup.store import open_store

    with open_store(db, readonly=True) as store:
        nodes = store.nodes()
        differ = disagreements(nodes, store.job_digests(), LIVE_FOR)
        now = store.db_now()
    rows = []
    for n in nodes:
        if n["stopped_at"] is not None:
            state = "stopped"
        elif n["age"] is None or n["age"] > LIVE_FOR:
            state = "silent"
        else:
            state = "up"
        rows.append({
            "node": n["node"], "state": state, "pid": n["pid"], "host": n["host"],
            "version": n["version"], "started_at": n["started_at"],
            "last_heartbeat": n["last_seen"], "heartbeat_age_s": n["age"],
            "jobs_file": n["jobs_file"], "jobs_digest": n["jobs_digest"],
            "running": n["running"], "differs": sorted(differ.get(n["node"], ())),
            "now": now,
        })
    return rows


@click.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object with every node.")
@common_options
def nodes(as_json: bool, jobs_path: str, db: str) -> None:
    """List the hosts (nodes) sharing this postgresql:// run log.

    Each node's name, state (up, silent: no heartbeat for 90s, stopped), pid, version, start,
    last heartbeat, jobs-file digest and running runs; and the jobs a node defines
    differently from the cluster (it does not claim them).

    \b
    Example:
      cronsup nodes --db postgresql://cronsup@db1/cronsup
    """
    if not paths.is_url(db):
        fail("`cronsup nodes` needs a postgresql:// run log (--db); a SQLite run log has one host",
             EXIT_USAGE)
    from cronsup.store import RunLogError

    try:
        rows = node_rows(db)
    except RunLogError as e:
        fail(str(e))
    if as_json:
        click.echo(fmt.dump_json({"nodes": [{k: v for k, v in r.items() if k != "now"} for r in rows]}))
        return
    if not rows:
        click.echo("no node has used this run log yet")
        return
    now = rows[0]["now"]
    columns = [fmt.Column("NODE", wrap=True), fmt.Column("STATE"), fmt.Column("PID", right=True),
               fmt.Column("VERSION"), fmt.Column("STARTED"), fmt.Column("HEARTBEAT"),
               fmt.Column("DIGEST"), fmt.Column("RUNNING", right=True), fmt.Column("DIFFERS", shrink=True)]
    table = [[r["node"], r["state"], str(r["pid"]), r["version"] or "-",
              fmt.stamp(r["started_at"], now), fmt.relative(r["last_heartbeat"], now) if r["last_heartbeat"] else "-",
              r["jobs_digest"] or "-", str(r["running"]), ", ".join(r["differs"]) or "-"] for r in rows]
    for line in fmt.table(columns, table, fmt.width()):
        click.echo(line)


REQUEST_WAIT = 10.0  # how long `cronsup run` waits for a node to take its request


def request_run(db: str, job: str) -> dict:
    """`cronsup run JOB` with no daemon on this machine: a request in the store, which a node
    that may run the job takes; the answer as the control socket gives it."""
    from cronsup import clock
    from cronsup.store import RunLogError, open_store
    from cronsup.store.postgres.schema import default_node

    try:
        with open_store(db) as store:
            request_id = store.request_run(job, default_node())
            for _ in clock.poll(0.2, REQUEST_WAIT):
                node, run_id = store.request(request_id)
                if run_id is not None:
                    break
            else:
                if store.cancel_request(request_id):
                    fail(f"no node took the run request for {job} within {REQUEST_WAIT:g}s (is a "
                         "daemon running with this run log, and may it run the job?); withdrawn")
                node, run_id = store.request(request_id)
            if run_id is None or run_id < 0:
                fail(f"{job}: node {node} took the request but did not start it (overlap, or "
                     "the job is unknown there; see its log)")
            run = store.run(run_id)
    except RunLogError as e:
        fail(str(e))
    # Started (it may have ended already: `--wait` reads how).
    state = str(run.status) if run is not None and run.status in ("skipped", "error") else "running"
    return {"ok": True, "run_id": run_id, "status": state,
            "reason": run.reason if run else None, "pid": run.pid if run else None, "after_id": 0,
            "node": node}
