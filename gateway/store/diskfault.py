"""When the store cannot be written (a full disk, an I/O error, another process's lock): what is kept in
memory meanwhile.

A write that fails for a fault of the disk, or for a lock another process holds, never ends the gateway.
The outbox keeps what it could not write here and writes it, in order, when a retry succeeds:

- `UnstoredRows`: encoded batches not yet stored, oldest first, bounded by their samples
  (`store.memory_buffer_samples`). Past the bound the oldest go first (the caller counts them as
  dropped, reason `disk_full`, or `store_locked` while another process holds the store locked): the
  newest data is what an operator looks at when the disk returns.
- `Deferred`: the small writes that wait for the rows (sink acknowledgements, meta values, new
  consumers, dead letters, rows to quarantine); each is kept as its latest value, so memory stays
  bounded by the number of sinks and keys.

Pure: no SQLite here but the classification of its errors.
"""

from __future__ import annotations

import errno
import sqlite3
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from gateway.model import Keys
from gateway.store.lockwait import is_locked

# Primary result codes of a store fault (the disk, not the data): the write is kept and retried.
_FAULT_CODES = {
    sqlite3.SQLITE_FULL: "disk_full",
    sqlite3.SQLITE_IOERR: "io_error",
    sqlite3.SQLITE_CANTOPEN: "io_error",
    sqlite3.SQLITE_READONLY: "io_error",  # e.g. the file system remounted read-only after errors
}
# I/O errors that mean the file's content could not be read (damage, see gateway.store.repair), not a fault.
_READ_DAMAGE = {sqlite3.SQLITE_IOERR_READ, sqlite3.SQLITE_IOERR_SHORT_READ, sqlite3.SQLITE_IOERR_CORRUPTFS}


def fault_kind(exc: BaseException) -> str | None:
    """`disk_full` or `io_error` when `exc` is SQLite (or the OS) failing to write or open the store file,
    else None (a bug, or damage to the data: not a fault of the disk)."""
    if isinstance(exc, OSError):
        return "disk_full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "io_error"
    if not isinstance(exc, sqlite3.OperationalError):
        return None
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:  # no code: the message is all there is
        text = str(exc)
        return "disk_full" if "disk is full" in text else "io_error" if "disk I/O error" in text else None
    return _FAULT_CODES.get(code & 0xFF)


LOCKED = "locked"  # the store fault of another process's lock (see gateway.store.lockfault)


def store_fault(exc: BaseException) -> str | None:
    """Why a write of the running daemon's store failed when that is the world's doing: `locked` (another
    process holds the lock), `disk_full` or `io_error` (`fault_kind`); None for anything else."""
    return LOCKED if is_locked(exc) else fault_kind(exc)


def is_open_fault(exc: BaseException) -> bool:
    """A fault that stops opening a sound file (no room for its WAL index, say), never damage to repair."""
    return fault_kind(exc) is not None and getattr(exc, "sqlite_errorcode", None) not in _READ_DAMAGE


@dataclass(frozen=True, slots=True)
class UnstoredRow:
    """A batch encoded for the `batches` table, with the key tables its payload refers to."""

    ts: int
    kind: str
    source: str
    n: int
    payload: bytes
    layouts: dict[str, Keys]


class UnstoredRows:
    """Encoded batches waiting for room, oldest first, at most `max_samples` samples (at least one row)."""

    def __init__(self, max_samples: int) -> None:
        self.max_samples = max_samples
        self.samples = 0
        self._rows: deque[UnstoredRow] = deque()

    def push(self, rows: Iterable[UnstoredRow]) -> int:
        """Add rows at the end; return the samples of the oldest rows dropped to stay within the bound."""
        for row in rows:
            self._rows.append(row)
            self.samples += row.n
        dropped = 0
        while len(self._rows) > 1 and self.samples > self.max_samples:
            gone = self._rows.popleft()
            self.samples -= gone.n
            dropped += gone.n
        return dropped

    def peek(self, max_samples: int) -> list[UnstoredRow]:
        """The oldest rows up to `max_samples` samples (at least one), left in place until `pop`."""
        out: list[UnstoredRow] = []
        total = 0
        for row in self._rows:
            if out and total + row.n > max_samples:
                break
            out.append(row)
            total += row.n
        return out

    def pop(self, count: int) -> None:
        for _ in range(count):
            self.samples -= self._rows.popleft().n

    def clear(self) -> int:
        """Forget every row; return their samples."""
        gone = self.samples
        self._rows.clear()
        self.samples = 0
        return gone

    def __len__(self) -> int:
        return len(self._rows)


@dataclass(slots=True)
class DeadLetterItems:
    consumer: str
    seq: int
    status: int
    reason: str
    items: list[str]


@dataclass(slots=True)
class Deferred:
    """Small writes that failed (or wait behind unstored rows), each as its latest value."""

    acks: dict[str, int] = field(default_factory=dict)  # consumer -> highest seq acknowledged
    consumers: dict[str, bool] = field(default_factory=dict)  # new consumer -> starts at the oldest row
    meta: dict[str, str] = field(default_factory=dict)
    quarantine: dict[int, str] = field(default_factory=dict)  # damaged row seq -> the error
    dead_letters: list[DeadLetterItems] = field(default_factory=list)
    dead_letter_items: int = 0

    def ack(self, consumer: str, seq: int) -> None:
        self.acks[consumer] = max(seq, self.acks.get(consumer, 0))

    def add_dead_letters(self, letters: DeadLetterItems, limit: int) -> int:
        """Keep up to `limit` items in all (the table's own bound); return the items that did not fit."""
        room = max(0, limit - self.dead_letter_items)
        kept = letters.items[:room]
        if kept:
            self.dead_letters.append(DeadLetterItems(letters.consumer, letters.seq, letters.status, letters.reason,
                                                     kept))  # fmt: skip
            self.dead_letter_items += len(kept)
        return len(letters.items) - len(kept)

    def __bool__(self) -> bool:
        return bool(self.acks or self.consumers or self.meta or self.quarantine or self.dead_letters)
