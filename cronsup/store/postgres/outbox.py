"""The PostgreSQL run log's outbox: alerts waiting for delivery, shared by every node, and each
node's claims on the ones it is delivering.

Several nodes' senders read one outbox. `due_deliveries` claims what it hands out (claimed_by:
this process's owner token; claimed_until: by the database's clock) with SELECT ... FOR UPDATE
SKIP LOCKED, so two nodes never get the same item at once. A claim ends when the attempt is
recorded, or lapses CLAIM_MARGIN after the channel's delivery timeout (a node that died while
delivering): then any node may take the item.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cronsup import clock
from cronsup.store.postgres.ledger import Bumps, _add, apply_bumps
from cronsup.store.postgres.schema import DB_NOW, guarded
from cronsup.store.records import (
    FINISHED_KEPT,
    DELIVERED,
    DROPPED,
    GAVE_UP,
    NOTIFICATIONS_FAILED_COUNTER,
    PENDING,
    Delivery,
    DeliveryAttempt,
    OutboxItem,
)

# Serialises adding to the outbox across nodes, so `max_pending` bounds the shared outbox.
LOCK_OUTBOX = 0x63726F6E737572
# A claim outlives the delivery timeout by this much: the sender may record a result late
# (it waits out a burst of runs for up to 30 s, and retries a locked write for 5 s).
CLAIM_MARGIN = 60.0


def _claim_s() -> str:
    """How long a claim lasts, by channel (SQL). channels (and urllib3 with it) is imported
    here, by the sender, not by every reader of the store."""
    from cronsup import channels

    return (f"(CASE WHEN channel = 'command' THEN {channels.COMMAND_TIMEOUT + CLAIM_MARGIN!r} "
            f"ELSE {channels.TIMEOUT + CLAIM_MARGIN!r} END)")

_ITEM = ("run_id, job, event, channel, target, shown, payload, created_at, id, state, tries, "
         "next_try")
_ATTEMPT = "outbox_id, job, channel, shown, at, ok, answer, next_try"
# Not waiting behind an earlier pending item of its run to the same target (a healthcheck's
# end ping goes after its start ping).
_FIRST_IN_LINE = ("NOT EXISTS (SELECT 1 FROM outbox e WHERE e.run_id = o.run_id AND e.id < o.id "
                  "AND e.state = 'pending' AND e.channel = o.channel AND e.target = o.target)")
_FREE = f"(o.claimed_until IS NULL OR o.claimed_until <= {DB_NOW} OR o.claimed_by = %(owner)s)"


def _item(row) -> OutboxItem:
    return OutboxItem(row[0], row[1], row[2], row[3], row[4], row[5], bytes(row[6]), row[7],
                      row[8], row[9], row[10], row[11])


def _attempt(row) -> DeliveryAttempt:
    return DeliveryAttempt(row[0], row[1], row[2], row[3], row[4], bool(row[5]), row[6], row[7])


def _failed(bumps: Bumps, channel: str) -> None:
    _add(bumps, NOTIFICATIONS_FAILED_COUNTER, {"channel": channel}, 1)


class Outbox:
    """The outbox part of PostgresStore (a mixin; writes through Writes._transaction)."""

    _conn: Any
    owner: str

    @guarded
    def add_deliveries(self, items: Sequence[OutboxItem], max_pending: int) -> list[OutboxItem]:
        """Queue `items`; when more than `max_pending` wait (on every node), the oldest are
        dropped (state "dropped", never sent): returns those dropped."""
        if not items:
            return []
        bumps: Bumps = {}
        with self._transaction() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_OUTBOX,))
            conn.execute(
                "INSERT INTO outbox (run_id, job, event, channel, target, shown, payload, "
                "created_at, state, tries, next_try) SELECT r, j, e, c, t, s, p, a, 'pending', 0, n "
                "FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::text[], %s::text[], "
                "%s::text[], %s::bytea[], %s::float8[], %s::float8[]) WITH ORDINALITY "
                "AS i(r, j, e, c, t, s, p, a, n, k) ORDER BY k",
                ([i.run_id for i in items], [i.job for i in items], [i.event for i in items],
                 [i.channel for i in items], [i.target for i in items], [i.shown for i in items],
                 [i.payload for i in items], [i.created_at for i in items],
                 [i.next_try if i.next_try is not None else i.created_at for i in items]))
            (waiting,) = conn.execute(
                "SELECT COUNT(*) FROM outbox WHERE state = 'pending'").fetchone()
            if waiting <= max_pending:
                return []
            dropped = [_item(r) for r in conn.execute(
                f"SELECT {_ITEM} FROM outbox WHERE state = 'pending' ORDER BY id LIMIT %s FOR UPDATE",
                (waiting - max_pending,))]
            conn.execute("UPDATE outbox SET state = %s, next_try = NULL, claimed_by = NULL, "
                         "claimed_until = NULL WHERE id = ANY(%s)", (DROPPED, [i.id for i in dropped]))
            for item in dropped:  # cronsup_notifications_failed_total, in this transaction
                _failed(bumps, item.channel)
            apply_bumps(conn, bumps)
        return dropped


    @guarded
    def due_deliveries(self, now: float, limit: int, skip: Sequence[int] = ()) -> list[OutboxItem]:
        """Pending items whose next try is due, soonest first, not those in `skip`, nor one
        waiting behind an earlier item of its run to the same target, nor one another node
        is delivering: those returned are claimed for this process."""
        if limit <= 0:
            return []
        with self._transaction() as conn:
            rows = conn.execute(
                f"UPDATE outbox SET claimed_by = %(owner)s, claimed_until = {DB_NOW} + {_claim_s()} "
                f"WHERE id IN (SELECT o.id FROM outbox o WHERE o.state = 'pending' "
                f"AND o.next_try <= %(now)s AND {_FREE} AND NOT (o.id = ANY(%(skip)s::bigint[])) "
                f"AND {_FIRST_IN_LINE} ORDER BY o.next_try, o.id LIMIT %(limit)s "
                f"FOR UPDATE OF o SKIP LOCKED) RETURNING {_ITEM}",
                {"owner": self.owner, "now": now, "skip": list(skip), "limit": limit}).fetchall()
        return sorted((_item(r) for r in rows), key=lambda i: (i.next_try, i.id))

    @guarded
    def next_delivery_at(self, skip: Sequence[int] = ()) -> float | None:
        """When the next item `due_deliveries` would give comes due (those in `skip`, and
        those waiting behind another, left out); one another node is delivering, when its
        claim lapses (by this host's clock); None when none waits."""
        (t,) = self._conn.execute(
            f"SELECT MIN(CASE WHEN {_FREE} THEN o.next_try ELSE GREATEST(o.next_try, "
            f"o.claimed_until - {DB_NOW} + %(wall)s) END) FROM outbox o "
            f"WHERE o.state = 'pending' AND NOT (o.id = ANY(%(skip)s::bigint[])) AND {_FIRST_IN_LINE}",
            {"owner": self.owner, "skip": list(skip), "wall": clock.wall()}).fetchone()
        return t

    @guarded
    def pending_deliveries(self) -> int:
        (n,) = self._conn.execute("SELECT COUNT(*) FROM outbox WHERE state = 'pending'").fetchone()
        return n

    @guarded
    def record_delivery(self, attempt: DeliveryAttempt, state: str) -> None:
        """Record an attempt and the item's new state: pending (try again at
        attempt.next_try), delivered or gave up. The claim on it ends."""
        assert state in (PENDING, DELIVERED, GAVE_UP)
        with self._transaction() as conn:
            conn.execute(f"INSERT INTO outbox_attempts ({_ATTEMPT}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                         (attempt.item_id, attempt.job, attempt.channel, attempt.shown, attempt.at,
                          attempt.ok, attempt.answer, attempt.next_try))
            changed = conn.execute(
                "UPDATE outbox SET state = %s, tries = tries + 1, next_try = %s, claimed_by = NULL, "
                "claimed_until = NULL WHERE id = %s AND state = 'pending'",
                (state, attempt.next_try if state == PENDING else None, attempt.item_id)).rowcount
            if changed and state == GAVE_UP:  # cronsup_notifications_failed_total
                bumps: Bumps = {}
                _failed(bumps, attempt.channel)
                apply_bumps(conn, bumps)

    @guarded
    def deliveries(self, run_id: int) -> list[Delivery]:
        """A run's alerts, oldest first, each with its attempts."""
        items = [_item(r) for r in self._conn.execute(
            f"SELECT {_ITEM} FROM outbox WHERE run_id = %s ORDER BY id", (run_id,))]
        if not items:
            return []
        attempts: dict[int, list[DeliveryAttempt]] = {i.id: [] for i in items}
        for row in self._conn.execute(
                f"SELECT {_ATTEMPT} FROM outbox_attempts WHERE outbox_id = ANY(%s) ORDER BY id",
                ([i.id for i in items],)):
            attempts[row[0]].append(_attempt(row))
        return [Delivery(i, tuple(attempts[i.id])) for i in items]

    @guarded
    def failing_channels(self) -> dict[str, list[DeliveryAttempt]]:
        """Per job, the channels whose latest attempt failed (its latest attempt each)."""
        failing: dict[str, list[DeliveryAttempt]] = {}
        for row in self._conn.execute(
                f"SELECT {_ATTEMPT} FROM (SELECT DISTINCT ON (job, channel, shown) id, {_ATTEMPT} "
                "FROM outbox_attempts ORDER BY job, channel, shown, id DESC) latest "
                "WHERE NOT ok ORDER BY job, id"):
            failing.setdefault(row[1], []).append(_attempt(row))
        return failing

    @guarded
    def alerts_mark(self) -> str:
        """The mark in the alerts' webhook-id and healthchecks rid: the cluster's, not a
        host's, so an alert another host tries again keeps its webhook-id."""
        return self._conn.execute("SELECT mark FROM alerts_mark").fetchone()[0]

    def _prune_outbox(self) -> int:
        """Finished items of runs pruned away, and the oldest beyond FINISHED_KEPT (their
        attempts go with them: ON DELETE CASCADE)."""
        with self._transaction() as conn:
            count = conn.execute(
                "DELETE FROM outbox o WHERE o.state != 'pending' AND o.run_id IS NOT NULL AND "
                "NOT EXISTS (SELECT 1 FROM runs r WHERE r.id = o.run_id)").rowcount
            row = conn.execute("SELECT id FROM outbox WHERE state != 'pending' ORDER BY id DESC "
                               "LIMIT 1 OFFSET %s", (FINISHED_KEPT,)).fetchone()
            if row is not None:
                count += conn.execute("DELETE FROM outbox WHERE state != 'pending' AND id <= %s",
                                      (row[0],)).rowcount
        return count
