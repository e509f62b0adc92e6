"""The SQLite run log's outbox: alerts waiting for delivery, and every attempt at one."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from cronsup.store.records import (
    FINISHED_KEPT,
    NOTIFICATIONS_FAILED_COUNTER,
    DELIVERED,
    DROPPED,
    GAVE_UP,
    PENDING,
    Delivery,
    DeliveryAttempt,
    OutboxItem,
)
from cronsup.store.sqlite.schema import _guarded, _placeholders
from cronsup.store.sqlite.writes import _bump

_ITEM = ("run_id, job, event, channel, target, shown, payload, created_at, id, state, tries, "
         "next_try")
_ATTEMPT = "outbox_id, job, channel, shown, at, ok, answer, next_try"


def _item(row) -> OutboxItem:
    return OutboxItem(row[0], row[1], row[2], row[3], row[4], row[5], bytes(row[6]), row[7],
                      row[8], row[9], row[10], row[11])


def _attempt(row) -> DeliveryAttempt:
    return DeliveryAttempt(row[0], row[1], row[2], row[3], row[4], bool(row[5]), row[6], row[7])


class Outbox:
    """The outbox part of SqliteStore (a mixin: the connection and transactions are its)."""

    _conn: sqlite3.Connection

    @_guarded
    def add_deliveries(self, items: Sequence[OutboxItem], max_pending: int) -> list[OutboxItem]:
        """Queue `items`; when more than `max_pending` wait, the oldest are dropped (state
        "dropped", never sent): returns those dropped."""
        dropped: list[OutboxItem] = []
        with self._transaction() as conn:
            conn.executemany(
                "INSERT INTO outbox (run_id, job, event, channel, target, shown, payload, "
                "created_at, state, tries, next_try) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?)",
                [(i.run_id, i.job, i.event, i.channel, i.target, i.shown, i.payload, i.created_at,
                  PENDING, i.next_try if i.next_try is not None else i.created_at) for i in items])
            (waiting,) = conn.execute(
                "SELECT COUNT(*) FROM outbox WHERE state = ?", (PENDING,)).fetchone()
            if waiting > max_pending:
                rows = conn.execute(
                    f"SELECT {_ITEM} FROM outbox WHERE state = ? ORDER BY id LIMIT ?",
                    (PENDING, waiting - max_pending)).fetchall()
                dropped = [_item(r) for r in rows]
                conn.execute(
                    f"UPDATE outbox SET state = ?, next_try = NULL WHERE id IN "
                    f"({_placeholders(len(rows))})", (DROPPED, *(r[8] for r in rows)))
                for item in dropped:  # cronsup_notifications_failed_total, in this transaction
                    _bump(conn, NOTIFICATIONS_FAILED_COUNTER, {"channel": item.channel}, 1)
        return dropped

    @_guarded
    def due_deliveries(self, now: float, limit: int, skip: Sequence[int] = ()) -> list[OutboxItem]:
        """Pending items whose next try is due, soonest first, not those in `skip`, nor one
        waiting behind an earlier item of its run to the same target (a healthcheck's end
        ping goes after its start ping)."""
        rows = self._conn.execute(
            f"SELECT {_ITEM} FROM outbox o WHERE state = ? AND next_try <= ? AND NOT EXISTS "
            "(SELECT 1 FROM outbox e WHERE e.run_id = o.run_id AND e.id < o.id AND e.state = ? "
            "AND e.channel = o.channel AND e.target = o.target) ORDER BY next_try, id LIMIT ?",
            (PENDING, now, PENDING, limit + len(skip))).fetchall()
        skipped = set(skip)
        return [_item(r) for r in rows if r[8] not in skipped][:limit]

    @_guarded
    def next_delivery_at(self, skip: Sequence[int] = ()) -> float | None:
        """When the next item `due_deliveries` would give comes due (those in `skip`, and
        those waiting behind another, left out); None when none waits."""
        (t,) = self._conn.execute(
            "SELECT MIN(next_try) FROM outbox o WHERE state = ? AND NOT EXISTS "
            "(SELECT 1 FROM outbox e WHERE e.run_id = o.run_id AND e.id < o.id AND e.state = ? "
            "AND e.channel = o.channel AND e.target = o.target)"
            f"{f' AND id NOT IN ({_placeholders(len(skip))})' if skip else ''}",
            (PENDING, PENDING, *skip)).fetchone()
        return t

    @_guarded
    def pending_deliveries(self) -> int:
        (n,) = self._conn.execute("SELECT COUNT(*) FROM outbox WHERE state = ?",
                                  (PENDING,)).fetchone()
        return n

    @_guarded
    def record_delivery(self, attempt: DeliveryAttempt, state: str) -> None:
        """Record an attempt and the item's new state: pending (try again at
        attempt.next_try), delivered or gave up."""
        assert state in (PENDING, DELIVERED, GAVE_UP)
        with self._transaction() as conn:
            conn.execute(f"INSERT INTO outbox_attempts ({_ATTEMPT}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         (attempt.item_id, attempt.job, attempt.channel, attempt.shown, attempt.at,
                          int(attempt.ok), attempt.answer, attempt.next_try))
            changed = conn.execute(
                "UPDATE outbox SET state = ?, tries = tries + 1, next_try = ? "
                "WHERE id = ? AND state = ?",
                (state, attempt.next_try if state == PENDING else None, attempt.item_id,
                 PENDING)).rowcount
            if changed and state == GAVE_UP:  # cronsup_notifications_failed_total
                _bump(conn, NOTIFICATIONS_FAILED_COUNTER, {"channel": attempt.channel}, 1)

    @_guarded
    def deliveries(self, run_id: int) -> list[Delivery]:
        """A run's alerts, oldest first, each with its attempts."""
        items = [_item(r) for r in self._conn.execute(
            f"SELECT {_ITEM} FROM outbox WHERE run_id = ? ORDER BY id", (run_id,))]
        if not items:
            return []
        attempts: dict[int, list[DeliveryAttempt]] = {i.id: [] for i in items}
        for row in self._conn.execute(
                f"SELECT {_ATTEMPT} FROM outbox_attempts WHERE outbox_id IN "
                f"({_placeholders(len(items))}) ORDER BY id", [i.id for i in items]):
            attempts[row[0]].append(_attempt(row))
        return [Delivery(i, tuple(attempts[i.id])) for i in items]

    @_guarded
    def failing_channels(self) -> dict[str, list[DeliveryAttempt]]:
        """Per job, the channels whose latest attempt failed (its latest attempt each)."""
        failing: dict[str, list[DeliveryAttempt]] = {}
        for row in self._conn.execute(
                f"SELECT {_ATTEMPT} FROM outbox_attempts WHERE id IN (SELECT MAX(id) FROM "
                "outbox_attempts GROUP BY job, channel, shown) AND ok = 0 ORDER BY job, id"):
            failing.setdefault(row[1], []).append(_attempt(row))
        return failing

    def _prune_outbox(self) -> int:
        """Finished items of runs pruned away, and the oldest beyond FINISHED_KEPT."""
        with self._transaction() as conn:
            count = conn.execute(
                "DELETE FROM outbox WHERE state != ? AND run_id IS NOT NULL AND "
                "run_id NOT IN (SELECT id FROM runs)", (PENDING,)).rowcount
            row = conn.execute("SELECT id FROM outbox WHERE state != ? ORDER BY id DESC "
                               "LIMIT 1 OFFSET ?", (PENDING, FINISHED_KEPT)).fetchone()
            if row is not None:
                count += conn.execute("DELETE FROM outbox WHERE state != ? AND id <= ?",
                                      (PENDING, row[0])).rowcount
        return count
