"""The store, the alarm journal and a repaired store are created owner-only (0600, their -wal and -shm
too, in a 0700 directory) under a umask that would have given 0644 and 0755."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.alarms.journal import Journal
from gateway.model import Batch, Quality, Sample
from gateway.store.outbox import Outbox
from gateway.store.repair import repair
from gateway.store.schema import STORE_SCHEMA


@pytest.fixture(autouse=True)
def open_umask() -> Iterator[None]:
    """The umask of a shell started outside systemd (files 0644, directories 0755)."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def batch() -> Batch:
    t = time.time_ns()
    return Batch.of_samples("src", [Sample(t, "soc", 50.0, "%", Quality.GOOD, "r1")], device="r1", created=t)


def test_the_store_and_its_wal_and_shm_are_owner_only_in_an_owner_only_directory(tmp_path: Path) -> None:
    path = tmp_path / "state" / "var" / "store.db"
    ob = Outbox(path)
    try:
        ob.append([batch()])
        files = {p.name: mode(p) for p in path.parent.iterdir()}
        assert files == {"store.db": 0o600, "store.db-wal": 0o600, "store.db-shm": 0o600}
    finally:
        ob.close()
    assert mode(path.parent) == 0o700 and mode(tmp_path / "state") == 0o700


def test_an_existing_store_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    path.touch(mode=0o640)
    os.chmod(path, 0o640)
    Outbox(path).close()
    assert mode(path) == 0o640


def test_a_journal_of_its_own_is_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "journal" / "alarms.db"
    j = Journal(path)
    try:
        j.append([{"type": "start", "ts": 0}])
        assert {p.name: mode(p) for p in path.parent.iterdir()} == {
            "alarms.db": 0o600,
            "alarms.db-wal": 0o600,
            "alarms.db-shm": 0o600,
        }
    finally:
        j.close()
    assert mode(path.parent) == 0o700


def test_the_store_a_repair_writes_is_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    ob = Outbox(path)
    ob.append([batch()])
    ob.close()
    os.chmod(path, 0o644)  # a store of an older version
    repair(path, STORE_SCHEMA, "test")
    assert mode(path) == 0o600
