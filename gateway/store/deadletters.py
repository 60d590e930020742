"""The dead-letter table: items a server rejected for good (e.g. a point with a field-type conflict),
kept with the server's reason so one bad point never blocks the stream. Bounded per sink: past
`limit`, the oldest go, counted and logged."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass

import structlog

from gateway import metrics

log = structlog.get_logger("outbox")

SCHEMA = """
CREATE TABLE IF NOT EXISTS deadletter(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    stored INTEGER NOT NULL,
    consumer TEXT NOT NULL,
    seq INTEGER NOT NULL,
    status INTEGER NOT NULL,
    reason TEXT NOT NULL,
    item TEXT NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One item (a line-protocol point, a message) a server rejected, with its reason."""

    id: int
    stored: int  # when it was set aside, ns
    consumer: str
    seq: int  # the outbox row it came from
    status: int  # the server's status (e.g. HTTP 400)
    reason: str  # the server's message
    item: str


def add(
    db: sqlite3.Connection, consumer: str, seq: int, status: int, reason: str, items: Iterable[str], limit: int
) -> int:
    """Insert (inside the caller's transaction) and trim to `limit` per consumer; return the count added."""
    now = time.time_ns()
    rows = [(now, consumer, seq, status, reason, item) for item in items]
    db.executemany("INSERT INTO deadletter(stored, consumer, seq, status, reason, item) VALUES (?,?,?,?,?,?)", rows)
    n = int(db.execute("SELECT count(*) FROM deadletter WHERE consumer=?", (consumer,)).fetchone()[0])
    excess = n - limit
    if excess > 0:
        db.execute(
            "DELETE FROM deadletter WHERE id IN (SELECT id FROM deadletter WHERE consumer=? ORDER BY id LIMIT ?)",
            (consumer, excess),
        )
        metrics.sink_dead_letters_discarded.labels(consumer).inc(excess)
        log.warning("dead-letter table full: oldest dead letters deleted", consumer=consumer, points=excess, keep=limit)
    return len(rows)


def select(db: sqlite3.Connection, consumer: str | None = None, limit: int | None = None) -> list[DeadLetter]:
    sql = "SELECT id, stored, consumer, seq, status, reason, item FROM deadletter"
    args: list[object] = []
    if consumer is not None:
        sql += " WHERE consumer=?"
        args.append(consumer)
    sql += " ORDER BY id"
    if limit is not None:
        sql += " LIMIT ?"
        args.append(limit)
    return [DeadLetter(*row) for row in db.execute(sql, args)]


def remove(db: sqlite3.Connection, ids: Iterable[int]) -> int:
    return sum(db.execute("DELETE FROM deadletter WHERE id=?", (i,)).rowcount for i in ids)
