"""Helpers for the store tests: a disk that cannot take more bytes, damaged rows."""

from __future__ import annotations

import resource
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def file_size_limit(nbytes: int) -> Iterator[None]:
    """While inside, no file this process writes may grow past `nbytes` (RLIMIT_FSIZE: a write past it
    fails with EFBIG, which SQLite reports as a disk I/O error, as it reports a failing disk). Python
    ignores SIGXFSZ, so the write fails instead of ending the process. Unlike a full file system it holds
    for every file alike, including a new WAL index (32 kB): a limit below that keeps a store whose WAL
    files are gone from opening, as a full disk does."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def damage_rows(db: Path, seqs: list[int]) -> None:
    """Change a few bytes inside the payload of each row (its last byte and one in the middle): the row no
    longer decodes, as bytes changed on a disk would leave it."""
    con = sqlite3.connect(db, isolation_level=None)
    try:
        for seq in seqs:
            (payload,) = con.execute("SELECT payload FROM batches WHERE seq = ?", (seq,)).fetchone()
            bad = bytearray(payload)
            bad[-1] ^= 0xFF
            bad[len(bad) // 2] ^= 0x5A
            con.execute("UPDATE batches SET payload = ? WHERE seq = ?", (bytes(bad), seq))
    finally:
        con.close()
