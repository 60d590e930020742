"""Stored rows that cannot be read back: set aside in a table of their own, counted, never a crash.

A row whose payload does not decode (bytes changed on the disk, a key table it refers to missing) would
stop every sink at the same place on every start. The outbox moves such a row, as it was, from
`batches` to `quarantine` with the error, counts it (`bms_gateway_store_damaged_rows_total`) and logs
it once naming its sequence number; every reader skips it. A sink whose cursor stood just before it
moves past it (nothing else was left to deliver there).
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass

from prometheus_client import Counter

from gateway import metrics

SCHEMA = """
CREATE TABLE IF NOT EXISTS quarantine(
    seq INTEGER PRIMARY KEY,
    ts,
    kind,
    source,
    n,
    payload,
    error TEXT NOT NULL,
    quarantined INTEGER NOT NULL
);
"""
# The columns keep whatever the damaged row held (no types: they may be what was damaged).

DAMAGED_ROWS = Counter(
    "bms_gateway_store_damaged_rows",
    "Stored rows that could not be decoded, moved to the quarantine table and skipped by every reader",
    registry=metrics.REGISTRY,
)


@dataclass(frozen=True, slots=True)
class QuarantinedRow:
    seq: int
    ts: object  # as stored: the damage may be here
    source: object
    n: object
    error: str
    quarantined: int  # when it was set aside, ns


def move(db: sqlite3.Connection, seq: int, error: str) -> None:
    """Move row `seq` from `batches` to `quarantine` (inside the caller's transaction)."""
    db.execute(
        "INSERT OR REPLACE INTO quarantine(seq, ts, kind, source, n, payload, error, quarantined)"
        " SELECT seq, ts, kind, source, n, payload, ?, ? FROM batches WHERE seq = ?",
        (error[:500], time.time_ns(), seq),
    )
    db.execute("DELETE FROM batches WHERE seq = ?", (seq,))
    # A consumer with nothing left to deliver before the row has it behind it now (else a sink whose
    # last row was damaged would wait for it forever).
    db.execute(
        "UPDATE consumers SET acked = ? WHERE acked < ?"
        " AND NOT EXISTS (SELECT 1 FROM batches WHERE seq > consumers.acked AND seq < ?)",
        (seq, seq, seq),
    )


def select(db: sqlite3.Connection, limit: int | None = None) -> list[QuarantinedRow]:
    sql = "SELECT seq, ts, source, n, error, quarantined FROM quarantine ORDER BY seq"
    args: tuple[int, ...] = ()
    if limit is not None:
        sql += " LIMIT ?"
        args = (limit,)
    try:
        rows = db.execute(sql, args).fetchall()
    except sqlite3.OperationalError:  # a store that never had one
        return []
    return [QuarantinedRow(int(r[0]), r[1], r[2], r[3], str(r[4]), int(r[5])) for r in rows]
