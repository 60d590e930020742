"""Reading what is left of a damaged store file: its header corrected when that is what keeps SQLite out,
then its tables copied in chunks, row by row around damaged pages, every value checked for its type.

Used by gateway.store.repair. The damaged file itself is never written here: a corrected header goes
into a copy next to it, removed afterwards.
"""

from __future__ import annotations

import shutil
import sqlite3
import struct
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from gateway.store.lockwait import is_locked

MAGIC = b"SQLite format 3\x00"
PAGE_SIZES = tuple(2**k for k in range(9, 17))  # 512 ... 65536
CHUNK = 500
PROBE_ROWS = 8


@dataclass(frozen=True, slots=True)
class Source:
    """The damaged file opened for reading (or a copy of it with a corrected header)."""

    db: sqlite3.Connection
    header_fixed: str  # what the copy's header corrects ("": the file is read as it is)
    pages: int  # the file's size in pages (of the page size it is read with)


@dataclass(frozen=True, slots=True)
class Copied:
    rows: int  # rows copied
    probed_bad: int  # keys probed one by one that could not be read
    first: int  # lowest key copied (0: none)
    last: int  # highest key seen (copied)
    damaged: bool  # some part of the table could not be read at all


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    # Lets SQLite read a file shorter than its header claims (else every query reports corruption).
    db.execute("PRAGMA writable_schema=ON")
    return db


def plausible_batch(row: Sequence[object]) -> bool:
    seq, ts, kind, source, n = row[:5]
    return (
        type(seq) is int and seq > 0 and type(ts) is int and type(kind) is str and type(source) is str
        and type(n) is int and n >= 0
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Probe:
    score: int  # -1: the tables cannot be listed; else 1 + the plausible rows among the oldest few
    sound: bool  # the tables list and every row probed is plausible


def probe(db: sqlite3.Connection) -> Probe:
    """How well a connection reads the store. The path to the oldest rows crosses the file's structure
    (schema, root page, leftmost leaves), so a wrong page size rarely yields plausible rows."""
    try:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "batches" not in tables:
            return Probe(0, "consumers" in tables)
        rows = db.execute(f"SELECT seq, ts, kind, source, n FROM batches ORDER BY seq LIMIT {PROBE_ROWS}").fetchall()
    except sqlite3.DatabaseError:
        return Probe(-1, False)
    good = sum(map(plausible_batch, rows))
    return Probe(1 + good, good == len(rows))


def header_candidates(head: bytes, has_wal: bool) -> Iterator[tuple[bytes, str]]:
    """Headers to try on a copy: the fields SQLite insists on set to what they must be, with each page size."""
    fixed = bytearray(head[:100].ljust(100, b"\x00"))
    notes = []
    if not fixed.startswith(MAGIC):
        fixed[:16] = MAGIC
        notes.append("magic string")
    if fixed[18] not in (1, 2) or fixed[19] not in (1, 2):
        fixed[18:20] = b"\x02\x02" if has_wal else b"\x01\x01"
        notes.append("file format version")
    if fixed[21:24] != b"\x40\x20\x20":
        fixed[21:24] = b"\x40\x20\x20"
        notes.append("payload fractions")
    if struct.unpack(">I", bytes(fixed[56:60]))[0] not in (1, 2, 3):
        fixed[56:60] = struct.pack(">I", 1)
        notes.append("text encoding")
    (stored,) = struct.unpack(">H", bytes(fixed[16:18]))
    stored = 65536 if stored == 1 else stored
    sizes = ([stored] if stored in PAGE_SIZES else []) + [p for p in PAGE_SIZES if p != stored]
    for size in sizes:
        fixed[16:18] = struct.pack(">H", 1 if size == 65536 else size)
        changed = notes + ([f"page size {stored} (the file has {size}-byte pages)"] if size != stored else [])
        if changed:
            yield bytes(fixed), ", ".join(changed)


@contextmanager
def readable(path: Path) -> Iterator[Source]:
    """The damaged file for reading; when its header keeps SQLite from reading it, a copy with the best
    of the candidate headers (by `probe`) instead. Closed (and the copy removed) on exit."""
    db = _connect(path)
    found = probe(db)
    sized = _size_names_other_page_size(path)
    copy = None if found.sound and not sized else _corrected_copy(path, found.score, sized)
    if copy is None:
        try:
            yield Source(db, "", _pages(path))
        finally:
            db.close()
        return
    db.close()
    fixed = _connect(copy[0])
    try:
        yield Source(fixed, copy[1], _pages(copy[0]))
    finally:
        fixed.close()
        _remove(copy[0])


def _size_names_other_page_size(path: Path) -> int:
    """The page size the file's size names (0: none): the header's page count (when valid) times its page
    size is not the file's size, but times this other page size it is (the page size field was changed)."""
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(100)
    except OSError:
        return 0
    if len(head) < 100 or head[24:28] != head[92:96]:
        return 0  # the page count is valid only with a matching change counter
    (pages,) = struct.unpack(">I", head[28:32])
    (stored,) = struct.unpack(">H", head[16:18])
    stored = 65536 if stored == 1 else stored
    if pages == 0 or pages * stored == size:
        return 0
    return next((p for p in PAGE_SIZES if pages * p == size), 0)


def _corrected_copy(path: Path, score: int, sized: int = 0) -> tuple[Path, str] | None:
    """A copy of the file with the header that reads it best, and what that header corrects; None when
    no header reads some row, and reads more than its own (or there is no room for a copy). The page
    size the file's size names (`sized`) wins a tie with its own (a small file may read plausibly with
    a wrong page size)."""
    copy = path.with_name(f"{path.name}.readable")
    best: tuple[int, bytes, str] | None = None
    try:
        shutil.copyfile(path, copy)
        wal = Path(f"{path}-wal")
        if wal.exists():
            shutil.copyfile(wal, f"{copy}-wal")
        with path.open("rb") as f:
            head = f.read(100)
        for header, note in header_candidates(head, wal.exists()):
            _write_header(copy, header)
            db = _connect(copy)
            try:
                got = probe(db).score
            finally:
                db.close()
            bar = best[0] if best else score
            if got >= 2 and (got > bar or (got == bar and _header_page_size(header) == sized)):  # a plausible row
                best = (got, header, note)
        if best is not None:
            _write_header(copy, best[1])
            return copy, best[2]
    except OSError:
        pass  # no room for a copy: the file is read as it is
    _remove(copy)
    return None


def _header_page_size(header: bytes) -> int:
    (size,) = struct.unpack(">H", header[16:18])
    return 65536 if size == 1 else int(size)


def _write_header(path: Path, header: bytes) -> None:
    with path.open("r+b") as f:
        f.write(header)


def _pages(path: Path) -> int:
    """The file's size in pages of the size its header names (4096 when that is no page size)."""
    try:
        with path.open("rb") as f:
            head = f.read(100)
        size = struct.unpack(">H", head[16:18])[0] if len(head) >= 18 else 4096
        size = 65536 if size == 1 else size
        return max(1, -(-path.stat().st_size // (size if size in PAGE_SIZES else 4096)))
    except OSError:
        return 0


def _remove(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        with suppress(OSError):
            Path(f"{path}{suffix}").unlink()


def copy_rows(
    old: sqlite3.Connection,
    new: sqlite3.Connection,
    select: str,
    insert: str,
    last: int,
    keep: Callable[[Sequence[object]], bool],
) -> Copied:
    """Copy the rows `select` gives (columns led by an integer key; `select` ends in a WHERE clause
    open for `key > ?` / `key = ?` and the key's name) to `insert`, in chunks; around a damaged page
    probe the keys one by one up to `last`. A row `keep` refuses (damaged values) is not copied."""
    table_select, key = select.rsplit(" ", 1)
    copied = probed_bad = first = seen = 0
    damaged = False
    after = 0
    while True:
        try:
            rows = old.execute(f"{table_select} {key} > ? ORDER BY {key} LIMIT ?", (after, CHUNK)).fetchall()
        except sqlite3.DatabaseError as exc:
            if is_locked(exc):
                raise  # another process's lock, no damage: the repair is tried again (gateway.store.lockwait)
            rows = None
        if rows is not None:
            if not rows:
                if after >= last:
                    break
                after = last  # nothing readable beyond: the rest is gone
                continue
            good = [r for r in rows if type(r[0]) is int and keep(r)]
            new.executemany(insert, good)
            copied += len(good)
            first = first or (int(good[0][0]) if good else 0)
            keys = [int(r[0]) for r in rows if type(r[0]) is int]
            if not keys or max(keys) <= after:
                damaged = True
                break  # keys that do not ascend: nothing sound to go on from
            after = max(keys)
            seen = max(seen, after)
            continue
        damaged = True
        for k in range(after + 1, min(after + CHUNK, last) + 1):  # a damaged page: one by one
            try:
                row = old.execute(f"{table_select} {key} = ?", (k,)).fetchone()
            except sqlite3.DatabaseError:
                probed_bad += 1
                continue
            if row is not None and keep(row):
                new.execute(insert, row)
                first = first or k
                copied += 1
                seen = max(seen, k)
        after += CHUNK
        if after >= last:
            break
    return Copied(copied, probed_bad, first, seen, damaged)
