"""The one store reader of the tests: what a gateway's SQLite outbox holds, read with the gateway's own
`Outbox` (so rows decode exactly as the daemon and its sinks decode them).

Every function opens the file, reads, and closes it again; none keeps a connection to a store that a
running gateway writes. `check=False` skips the damage check and repair on open: a read-only look at a
store another process has open."""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from gateway.model import Batch, BatchKind, Sample
from gateway.store.outbox import Outbox
from gateway.store.read import Row

if TYPE_CHECKING:
    from gateway.runtime.core import Runtime


class SampleKey(NamedTuple):
    """A stored sample without its time and rack: what a decoder's expected values are compared by."""

    quantity: str
    value: Any
    quality: str
    module: int | None
    cell: int | None


@contextmanager
def opened(db: Path, *, check: bool = True, **options: Any) -> Iterator[Outbox]:
    """The outbox of file `db`, closed on leaving."""
    ob = Outbox(db, check=check, **options)
    try:
        yield ob
    finally:
        ob.close()


def rows(db: Path, *, kind: BatchKind | None = None, check: bool = True) -> list[Row]:
    """Every stored row, oldest first (of one kind of batch, if given)."""
    with opened(db, check=check) as ob:
        return [r for r in ob.query() if kind is None or r.batch.kind == kind]


def batches(db: Path, *, kind: BatchKind | None = None, check: bool = True) -> list[Batch]:
    return [r.batch for r in rows(db, kind=kind, check=check)]


def runtime_batches(rt: Runtime) -> list[Batch]:
    """The batches a runtime stored: read through its own outbox while it runs, from the file after."""
    try:
        return [row.batch for row in rt.outbox.query()]
    except sqlite3.ProgrammingError:  # the runtime has stopped and closed it: read the file
        return batches(rt.cfg.store.path)


def samples_by_source(db: Path, *, check: bool = True) -> dict[str, list[Sample]]:
    """The stored samples of each source, in order."""
    out: dict[str, list[Sample]] = {}
    for b in batches(db, kind=BatchKind.SAMPLES, check=check):
        out.setdefault(b.source, []).extend(b.samples())
    return out


def sample_counts(db: Path, *, check: bool = True) -> dict[str, int]:
    """How many samples each source stored."""
    return {source: len(samples) for source, samples in samples_by_source(db, check=check).items()}


def samples_by_quantity(db: Path, rack: str | None = None, *, check: bool = True) -> Counter[SampleKey]:
    """Every stored sample (of one rack, if given) as (quantity, value, quality, module, cell), counted."""
    out: Counter[SampleKey] = Counter()
    for b in batches(db, check=check):
        for s in b.samples():
            if rack is None or s.rack == rack:
                out[SampleKey(s.quantity, s.value, str(s.quality), s.module, s.cell)] += 1
    return out


def statuses(db: Path, *, check: bool = True) -> list[tuple[str, str]]:
    """(device, state) of every stored device-status change, in order."""
    return [(b.status.device, str(b.status.state)) for b in batches(db, check=check) if b.status is not None]


def last_seq(db: Path) -> int:
    """The sequence number of the last row appended: 0 while the file does not exist yet, or while the
    gateway that makes it has not made its tables. A look that writes nothing, for waits on a gateway
    starting beside it: an `Outbox` opened here would set WAL mode and make the tables at the same time
    as the gateway, whose own open then failed now and then ("database is locked") on a loaded machine."""
    if not db.exists():
        return 0
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        row = con.execute("SELECT seq FROM sqlite_sequence WHERE name = 'batches'").fetchone()
    except sqlite3.OperationalError:  # no tables yet (or no sqlite_sequence before the first row)
        return 0
    finally:
        con.close()
    return 0 if row is None else int(row[0])


def stored_sample_total(db: Path, kind: BatchKind | None = BatchKind.SAMPLES, *, check: bool = True) -> int:
    """How many samples (of one kind of batch; all with None) the store holds."""
    with opened(db, check=check) as ob:
        return ob.stored_samples(kind)


@contextmanager
def lock_held(path: Path, how: str = "IMMEDIATE", *, write: bool = False) -> Iterator[sqlite3.Connection]:
    """Another connection holding `BEGIN <how>` on a store file until it commits (or the block ends): its
    first statement a read of `meta`, or with `write` a write to it (the write lock taken at once)."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute(f"BEGIN {how}")
    if write:
        db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('other', 'x')")
    else:
        db.execute("SELECT count(*) FROM meta").fetchone()
    try:
        yield db
    finally:
        if db.in_transaction:
            db.execute("COMMIT")
        db.close()
