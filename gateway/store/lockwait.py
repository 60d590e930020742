"""A store file that another process holds locked: the gateway waits for it instead of ending.

SQLite answers "database is locked" (SQLITE_BUSY) when another connection holds the lock a statement
needs: the write of a command such as `bms-gateway sinks --forget` or `deadletter delete`, a backup
script, or any reader of a file still in rollback-journal mode (made by another program, or not yet
switched to WAL by the daemon's first start). Two layers wait for it:

- Every connection to a store file is made by `connect`, with SQLite's busy timeout (`BUSY_TIMEOUT`): a
  statement that needs a lock waits for it inside SQLite. Read-only tools connect with `readonly`: they
  never write, never switch the journal mode, never make tables.
- The daemon's set-up of the file (the damage check, the switch to WAL mode, the tables, the first
  writes) runs through `wait_unlocked`, which tries a step again every `RETRY_INTERVAL` seconds while
  it is refused: after the busy timeout, or at once (SQLite never waits to switch the journal mode).
  One warning when the wait starts names the file, the step and the processes that hold the file open;
  one info line when it ends. Past `SETUP_WAIT` seconds it logs an error and raises `StoreLocked`:
  `bms-gateway run` then exits with `EXIT_STORE_LOCKED` (75), which systemd's `Restart=on-failure`
  starts again.

A lock is never damage: the damage check (gateway.store.repair) raises it instead of setting a sound
file aside. Once the daemon runs, its statements wait only `LIVE_BUSY_TIMEOUT` and a longer lock is a
state of the outbox (gateway.store.lockfault).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple, TypeVar

import structlog
from prometheus_client import Counter

from gateway import metrics
from gateway.errors import GatewayError

log = structlog.get_logger("outbox")

T = TypeVar("T")

BUSY_TIMEOUT = 5.0  # seconds SQLite waits for a lock within one statement
LIVE_BUSY_TIMEOUT = 0.2  # ... once the daemon runs (its event loop waits meanwhile; see gateway.store.lockfault)
LOCKED_BUSY_TIMEOUT = 0.05  # ... in a retry (once a second) while another process holds the lock
RETRY_INTERVAL = 0.2  # seconds between two tries of a refused set-up step
SETUP_WAIT = 60.0  # seconds a set-up step waits for a lock in all (well within systemd's TimeoutStartSec)
EXIT_STORE_LOCKED = 75  # EX_TEMPFAIL: `bms-gateway run` gave up waiting for the store (systemd restarts it)
HOLDERS_SHOWN = 5  # processes a log line names at most

LOCK_WAITS = Counter(
    "bms_gateway_store_lock_waits",
    "Times the set-up of the store found it locked by another process and waited",
    registry=metrics.REGISTRY,
)


class StoreLocked(GatewayError):
    """The store stayed locked by another process past the set-up's bound."""


class Holder(NamedTuple):
    """A process that has the store file (or its WAL) open."""

    pid: int
    command: str

    def __str__(self) -> str:
        return f"pid {self.pid} ({self.command})"


def is_locked(exc: BaseException) -> bool:
    """SQLite refused a statement for a lock another connection holds (SQLITE_BUSY or SQLITE_LOCKED)."""
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        return "is locked" in str(exc)
    return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """A connection to the store file in autocommit mode, with the busy timeout; `readonly`: opened
    read-only (it cannot write, so it never takes a write lock or changes the file)."""
    if readonly:
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, timeout=BUSY_TIMEOUT,
                               check_same_thread=False)  # fmt: skip
    return sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT, check_same_thread=False)


def holders(path: Path, proc: Path = Path("/proc")) -> list[Holder]:
    """Other processes that have the file, its WAL or its WAL index open, as far as this process may see
    them (Linux; an empty list elsewhere or when none is visible)."""
    names = {os.path.realpath(f"{path}{suffix}") for suffix in ("", "-wal", "-shm", "-journal")}
    found: list[Holder] = []
    try:
        pids = sorted(int(p.name) for p in proc.iterdir() if p.name.isdigit() and int(p.name) != os.getpid())
    except OSError:
        return found
    for pid in pids:
        try:
            fds = list((proc / str(pid) / "fd").iterdir())
            if not any(os.readlink(fd) in names for fd in fds):
                continue
            argv = (proc / str(pid) / "cmdline").read_bytes().split(b"\0")
        except OSError:  # gone meanwhile, or not ours to look at
            continue
        found.append(Holder(pid, b" ".join(a for a in argv if a).decode(errors="replace")[:120]))
        if len(found) == HOLDERS_SHOWN:
            break
    return found


def busy_timeout(db: sqlite3.Connection, seconds: float) -> None:
    """How long `db`'s statements wait for another connection's lock from now on."""
    db.execute(f"PRAGMA busy_timeout={round(seconds * 1000)}")


def who_holds(path: Path) -> str:
    """The processes that have the store open, for a log line."""
    return ", ".join(map(str, holders(path))) or "no process this one can see (another user's, or one that has left)"


def wait_unlocked(
    step: Callable[[], T],
    path: Path,
    what: str | Callable[[], str],
    *,
    give_up_after: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """`step()`, tried again while the store is locked by another process, for up to `give_up_after`
    seconds (`SETUP_WAIT` unless given); then `StoreLocked`. `what` names the step (a function: the step
    in progress when the lock was met). Any other error goes to the caller at once."""
    bound = SETUP_WAIT if give_up_after is None else give_up_after
    since: float | None = None
    while True:
        try:
            result = step()
        except sqlite3.OperationalError as exc:
            if not is_locked(exc):
                raise
            name = what if isinstance(what, str) else what()
            now = clock()
            if since is None:
                since = now
                LOCK_WAITS.inc()
                log.warning("store locked by another process: waiting for it", path=str(path), step=name,
                            held_by=who_holds(path), error=str(exc), gives_up_after_s=bound)  # fmt: skip
            elif now - since >= bound:
                held_by = who_holds(path)
                log.error("store still locked by another process: giving up", path=str(path), step=name,
                          held_by=held_by, waited_s=round(now - since, 1))  # fmt: skip
                raise StoreLocked(f"the store {path} stayed locked by another process for {now - since:.0f} s "
                                  f"({name}); held open by {held_by}") from exc  # fmt: skip
            sleep(RETRY_INTERVAL)
            continue
        if since is not None:
            log.info("store lock released: set-up goes on", path=str(path), waited_s=round(clock() - since, 1))
        return result
