"""A store repair carries the alarm journal that lives in the store file into the new file.

Every readable entry is copied as it was (columns, body, `prev` and `hash`), so the hash chain verifies
as before and a restart restores the latched and acknowledged alarms from it. Entries that could not
be read leave a gap the chain check names. The repair itself is appended as an entry of kind `repair`
(what was carried, what could not be read, where the damaged file went), chained to the last entry
read: a loss at the tail stays on record although new entries follow it.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.alarms.journal import GENESIS, SCHEMA, canonical, chain_hash
from gateway.store.salvage import copy_rows

_SELECT = "SELECT seq, ts, kind, alarm_id, rack, body, prev, hash FROM alarm_journal WHERE seq"
_INSERT = "INSERT INTO alarm_journal(seq, ts, kind, alarm_id, rack, body, prev, hash) VALUES (?,?,?,?,?,?,?,?)"


@dataclass(frozen=True, slots=True)
class Carried:
    entries: int  # entries copied with their chain
    unreadable: int  # entries that were in the journal and could not be read


def has_journal(old: sqlite3.Connection) -> bool:
    try:
        return old.execute("SELECT 1 FROM sqlite_master WHERE name = 'alarm_journal'").fetchone() is not None
    except sqlite3.DatabaseError:
        return False


def create_tables(new: sqlite3.Connection) -> None:
    new.executescript(SCHEMA)


def _entry(row: Sequence[object]) -> bool:
    seq, ts, kind, aid, rack, body, prev, h = row
    texts = (kind, body, prev, h)
    return (
        type(seq) is int and seq > 0 and type(ts) is int and all(type(t) is str for t in texts)
        and (aid is None or type(aid) is str) and (rack is None or type(rack) is str)
    )  # fmt: skip


def _int(db: sqlite3.Connection, sql: str) -> int:
    try:
        row = db.execute(sql).fetchone()
    except sqlite3.DatabaseError:
        return 0
    return int(row[0]) if row is not None and type(row[0]) is int and row[0] > 0 else 0


def carry(old: sqlite3.Connection, new: sqlite3.Connection, damaged_file: str) -> Carried:
    """Copy the journal (inside the caller's transaction on `new`; its tables exist) and chain a
    `repair` entry to the last entry read."""
    last = max(_int(old, "SELECT seq FROM alarm_journal_head WHERE id = 1"),
               _int(old, "SELECT max(seq) FROM alarm_journal"))  # fmt: skip
    copied = copy_rows(old, new, _SELECT, _INSERT, last, _entry)
    unreadable = max(0, max(last, copied.last) - copied.rows)  # entries 1..last: the journal is never pruned
    seq, prev = 0, GENESIS
    if copied.last:
        seq, prev = new.execute("SELECT seq, hash FROM alarm_journal ORDER BY seq DESC LIMIT 1").fetchone()
    entry = {
        "type": "repair",
        "ts": time.time_ns(),
        "damaged_file": damaged_file,
        "entries_carried": copied.rows,
        "entries_unreadable": unreadable,
    }
    body = canonical(entry)
    seq += 1
    h = chain_hash(seq, prev, body)
    new.execute(_INSERT, (seq, entry["ts"], "repair", None, None, body, prev, h))
    new.execute("INSERT OR REPLACE INTO alarm_journal_head(id, seq, hash) VALUES (1, ?, ?)", (seq, h))
    return Carried(copied.rows, unreadable)
