"""Reading CAN captures: every format python-can reads, plus SavvyCAN / GVRET CSV.

The format is picked by suffix as python-can's `LogReader` does: candump `.log`, `.asc`, `.blf`,
`.trc`, `.csv` (python-can's own columns), `.db`, `.mf4` (with asammdf), each optionally `.gz`. A
`.csv` whose header starts with `Time Stamp` is SavvyCAN/GVRET: timestamps in microseconds, ids in
hex, one column per data byte.

Captures from the field are imperfect. A record that cannot be read (a garbage or truncated line, a
non-finite timestamp, a line over 64 KiB) is skipped and counted, and the first few are handed to
`on_bad` naming `file:line`; with `strict` the first one is a `CaptureError` naming it. Text formats
go on after a bad line; a binary file (`.blf`, `.mf4`, `.db`) is read up to its damage, named by byte
offset and the number of frames before it. A file that is not a capture at all is a `CaptureError`.
"""

from __future__ import annotations

import csv
import gzip
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

import can
from can.io.generic import BinaryIOMessageReader, TextIOMessageReader
from can.io.player import MESSAGE_READERS

from gateway.errors import GatewayError
from gateway.sources.can.textlines import LineTooLong, NumberedLines, TRCLineReader, UnreadableText, resume_lines

REPORT_FIRST = 5  # bad records handed to `on_bad` (all are counted)


class CaptureError(GatewayError):
    """A capture that cannot be read; names the file and, where known, the line or byte offset."""


@dataclass(frozen=True, slots=True)
class BadRecord:
    """A record of a capture that was not read: where (`file:line`, or a byte offset) and why."""

    place: str
    reason: str

    def __str__(self) -> str:
        return f"{self.place}: {self.reason}"


class Capture:
    """The frames of one capture file in recorded order; `bad` counts the records skipped."""

    def __init__(self, path: Path, *, strict: bool = False, on_bad: Callable[[BadRecord], None] | None = None) -> None:
        self.path = path
        self.strict = strict
        self.on_bad = on_bad
        self.bad = 0
        self.frames = 0

    def __iter__(self) -> Iterator[can.Message]:
        path = self.path
        if not path.is_file():
            raise CaptureError(f"{path}: no such file")
        if is_savvycan(path):
            yield from self._savvycan()
            return
        suffixes = [s.lower() for s in path.suffixes[-2:]]
        zipped = suffixes[-1:] == [".gz"]
        suffix = suffixes[0] if zipped and len(suffixes) == 2 else path.suffix.lower()
        reader = MESSAGE_READERS.get(suffix)
        if reader is None or (zipped and suffix in (".db", ".mf4")):
            known = ", ".join(sorted(MESSAGE_READERS))
            raise CaptureError(f"{path}: unknown capture format {''.join(path.suffixes)!r}: expected one of {known}")
        try:
            if issubclass(reader, TextIOMessageReader):
                with _open(path, zipped, text=True) as f:
                    yield from self._text(reader, f)
            elif issubclass(reader, BinaryIOMessageReader):
                with _open(path, zipped, text=False) as f:
                    yield from self._records(reader, f)
            else:  # a database (.db) or a plugin's reader: it opens the path itself
                yield from self._records(reader, None)
        except OSError as exc:
            raise CaptureError(f"{path}: cannot read: {exc.strerror or exc}") from exc

    def _bad(self, place: str, reason: str) -> None:
        self.bad += 1
        record = BadRecord(place, reason)
        if self.strict:
            raise CaptureError(str(record))
        if self.on_bad is not None and self.bad <= REPORT_FIRST:
            self.on_bad(record)

    def _checked(self, msg: can.Message, place: str) -> Iterator[can.Message]:
        if not math.isfinite(msg.timestamp):
            self._bad(place, f"non-finite timestamp {msg.timestamp!r}")
            return
        self.frames += 1
        yield msg

    def _text(self, reader_class: type[Any], f: IO[str]) -> Iterator[can.Message]:
        """python-can's reader over numbered lines; after a bad line, the same reader goes on at the next."""
        lines = NumberedLines(f)
        if reader_class is can.TRCReader:
            reader_class = TRCLineReader
        reader = reader_class(lines)
        frames = iter(reader)
        while True:
            try:
                msg = next(frames)
            except StopIteration:
                return
            except UnreadableText as exc:
                self._bad(f"{self.path}:{lines.number + 1}", f"{exc}; the rest of the file is not read")
                return
            except Exception as exc:  # the library's parser on a line from outside: the line's fault
                self._bad(f"{self.path}:{lines.number}", _line_reason(exc, lines.text))
                if lines.at_end():
                    return
                lines.push(resume_lines(reader_class))
                frames = iter(reader)
                continue
            yield from self._checked(msg, f"{self.path}:{lines.number}")

    def _records(self, reader_class: type[Any], f: IO[bytes] | None) -> Iterator[can.Message]:
        """A binary capture up to its first damage (a binary file has no next line to go on at)."""
        try:
            reader = reader_class(f if f is not None else str(self.path))
        except (ImportError, NotImplementedError) as exc:  # e.g. .mf4 without asammdf
            raise CaptureError(f"{self.path}: cannot read this format: {exc}") from exc
        except Exception as exc:  # a header the library cannot parse: not a capture of this format
            raise CaptureError(f"{self.path}: byte offset 0: not a {self.path.suffix} capture: {_reason(exc)}") from exc
        try:
            frames = iter(reader)
            while True:
                try:
                    msg = next(frames)
                except StopIteration:
                    self._check_length(reader, f)
                    return
                except Exception as exc:  # damage the library met inside the file
                    offset = f"byte offset {_tell(f)}, " if f is not None else ""
                    where = f"{self.path}: {offset}after frame {self.frames}"
                    self._bad(where, f"{_reason(exc)}; the rest of the file is not read")
                    return
                yield from self._checked(msg, f"{self.path}: frame {self.frames + 1}")
        finally:
            reader.stop()

    def _check_length(self, reader: Any, f: IO[bytes] | None) -> None:
        """A BLF file shorter than its header says was cut off: the frames of its lost end are a bad record."""
        if not isinstance(reader, can.BLFReader) or isinstance(f, gzip.GzipFile):
            return  # (a compressed file's own length says nothing)
        expected, end = reader.file_size, self.path.stat().st_size
        if expected > end:
            where = f"{self.path}: byte offset {end}, after frame {self.frames}"
            self._bad(where, f"truncated: the header gives {expected} bytes; the frames of the rest are lost")

    def _savvycan(self) -> Iterator[can.Message]:
        with self.path.open(encoding="utf-8", errors="replace", newline="") as f:
            rows = csv.reader(f)
            header = [h.strip().lower() for h in next(rows, [])]
            try:
                i_ts, i_id, i_ext, i_len = (header.index(k) for k in ("time stamp", "id", "extended", "len"))
            except ValueError as exc:
                raise CaptureError(f"{self.path}:1: SavvyCAN header lacks {exc}") from exc
            i_dir = header.index("dir") if "dir" in header else None
            i_d1 = header.index("d1") if "d1" in header else i_len + 1
            while True:
                try:
                    row = next(rows)
                except StopIteration:
                    return
                except csv.Error as exc:
                    self._bad(f"{self.path}:{rows.line_num}", f"not a SavvyCAN frame row: {exc}")
                    continue
                if not row or not row[0].strip():
                    continue
                try:
                    length = int(row[i_len])
                    data = bytes(int(x, 16) for x in row[i_d1 : i_d1 + length])
                    if len(data) != length:
                        raise ValueError(f"LEN {length} but {len(data)} data bytes")
                    msg = can.Message(
                        timestamp=int(row[i_ts]) / 1e6,
                        arbitration_id=int(row[i_id], 16),
                        is_extended_id=row[i_ext].strip().lower() == "true",
                        is_rx=i_dir is None or row[i_dir].strip().lower() != "tx",
                        dlc=length,
                        data=data,
                        is_fd=length > 8,
                    )
                except (ValueError, IndexError) as exc:
                    self._bad(f"{self.path}:{rows.line_num}", f"not a SavvyCAN frame row: {_reason(exc)}")
                    continue
                yield from self._checked(msg, f"{self.path}:{rows.line_num}")


def is_savvycan(path: Path) -> bool:
    if path.suffix.lower() != ".csv":
        return False
    try:
        with path.open(encoding="utf-8", errors="replace") as f:
            head = f.readline(256)
    except OSError:
        return False
    return head.lower().startswith("time stamp")


def read_capture(
    path: Path, *, strict: bool = False, on_bad: Callable[[BadRecord], None] | None = None
) -> Iterator[can.Message]:
    """Frames of a capture file in recorded order (see `Capture`); CaptureError for an unreadable file."""
    return iter(Capture(path, strict=strict, on_bad=on_bad))


def _open(path: Path, zipped: bool, *, text: bool) -> IO[Any]:
    if text:
        if zipped:
            return gzip.open(path, "rt", encoding="utf-8", errors="replace")
        return path.open(encoding="utf-8", errors="replace")
    return cast(IO[bytes], gzip.open(path, "rb")) if zipped else path.open("rb")


def _tell(f: IO[bytes]) -> int | str:
    try:
        return f.tell()
    except (OSError, ValueError):
        return "?"


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:200] + " ..."


def _line_reason(exc: BaseException, line: str) -> str:
    if isinstance(exc, LineTooLong):
        return str(exc)
    shown = line.strip()
    shown = shown if len(shown) <= 80 else shown[:80] + " ..."
    return f"not a frame: {shown!r} ({_reason(exc)})"
