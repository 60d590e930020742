"""The outbox's tables (see gateway.store.outbox), one definition for the store and its repair."""

from __future__ import annotations

from gateway.store import deadletters, quarantine

SCHEMA = """
CREATE TABLE IF NOT EXISTS batches(
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    ts INTEGER NOT NULL,
    kind TEXT NOT NULL,
    source TEXT NOT NULL,
    n INTEGER NOT NULL,
    payload BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS batches_ts ON batches(ts);
CREATE TABLE IF NOT EXISTS consumers(
    name TEXT PRIMARY KEY,
    acked INTEGER NOT NULL,
    dropped INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS layouts(digest TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS layout_use(digest TEXT PRIMARY KEY, last_seq INTEGER NOT NULL);
"""
# `layouts`: the key tables rows refer to by digest (see gateway.store.codec; rows of format 2 refer to
# layouts, a key table with segments, here too), each kept while a row uses it. `layout_use.last_seq`
# is at least the seq of every row stored with the table (updated by every commit that uses it: a
# small row apart from the body, which is written once), so dropping rows through a seq may drop the
# tables whose last_seq is not above it.
STORE_SCHEMA = SCHEMA + deadletters.SCHEMA + quarantine.SCHEMA
CORE_TABLES = frozenset({"batches", "consumers", "meta", "layouts", "layout_use", "deadletter"})
