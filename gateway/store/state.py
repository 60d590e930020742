"""What the parts of `Outbox` share (see gateway.store.outbox, which puts them together): its state, and the
methods one part calls in another. Each method is defined in exactly one part; the declarations here
only type the calls across parts (the parts come before this class in `Outbox`'s bases)."""

from __future__ import annotations

import sqlite3
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.model import Keys
from gateway.store.diskfault import Deferred, UnstoredRows

if TYPE_CHECKING:
    from gateway.alarms.gatewayalarm import GatewayAlarms
    from gateway.store.read import Row
    from gateway.store.repair import RepairReport
    from gateway.store.walcheckpoint import WalCheckpointer


class OutboxState:
    path: Path
    db: sqlite3.Connection
    alarms: GatewayAlarms
    synchronous: str
    max_bytes: int
    max_dead_letters: int
    retention_ns: int | None
    checkpointer: WalCheckpointer | None
    repair_report: RepairReport | None
    appended_samples: int
    dropped_total: dict[str, int]
    page_size: int
    mark_open: bool
    # faults of the disk (gateway.store.faults)
    disk_full: bool
    disk_full_clear_after: float
    unstored: UnstoredRows
    deferred: Deferred
    fault: str
    retry_interval: float
    opened: bool
    readonly: bool
    _check: bool
    _opening: str
    _last_full: float
    _retry_at: float
    _schema_pending: bool
    _fault_dropped: int
    _open_error: BaseException | None
    _setting_up: bool
    # another process's lock while the daemon runs (gateway.store.lockfault)
    locked: bool
    _lock_announced: bool
    _locked_since: float
    _busy_timeout: float
    # reading (gateway.store.read)
    damaged: dict[int, str]
    quarantine_damaged: bool
    decoded_max_samples: int
    _decoded: dict[int, tuple[int, int, int, Row]]
    _decoded_samples: int
    # writing
    _in_tx: bool
    _stored_layouts: set[str]
    _holds: dict[str, int]

    # gateway.store.outbox
    def _insert(self, rows: list[tuple[int, str, str, int, bytes]], layouts: dict[str, Keys] | None = None) -> int:
        raise NotImplementedError

    def _set_disk_full(self, full: bool) -> None:
        raise NotImplementedError

    def _tx(self) -> AbstractContextManager[None]:
        raise NotImplementedError

    # gateway.store.faults
    def waiting(self) -> bool:
        raise NotImplementedError

    def _failed(self, exc: BaseException, write: str) -> None:
        raise NotImplementedError

    def _fault_of(self, exc: BaseException) -> str | None:
        raise NotImplementedError

    def _keep(self, rows: list[tuple[int, str, str, int, bytes]], layouts: dict[str, Keys]) -> None:
        raise NotImplementedError

    def retry(self, *, force: bool = False) -> bool:
        raise NotImplementedError

    def _write(self, what: str, sql: str, args: tuple[object, ...]) -> bool:
        raise NotImplementedError

    # gateway.store.lockfault
    def _lock_met(self, exc: BaseException, write: str) -> None:
        raise NotImplementedError

    def _lock_gone(self) -> None:
        raise NotImplementedError

    # gateway.store.read
    def _forget_through(self, cut: int) -> None:
        raise NotImplementedError

    def last_seq(self) -> int:
        raise NotImplementedError

    def used_bytes(self) -> int:
        raise NotImplementedError
