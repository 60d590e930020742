"""Reading CAN captures: every format python-can reads, plus SavvyCAN / GVRET CSV.

python-can's `LogReader` picks the format by suffix: candump `.log`, `.asc`, `.blf`, `.trc`,
`.csv` (python-can's own columns), `.mf4` (with asammdf). A `.csv` whose header starts with
`Time Stamp` is SavvyCAN/GVRET: timestamps in microseconds, ids in hex, one column per data byte.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import can

from gateway.errors import GatewayError


class CaptureError(GatewayError):
    """A capture that cannot be read; names the file and, where known, the line."""


def is_savvycan(path: Path) -> bool:
    if path.suffix.lower() != ".csv":
        return False
    try:
        with path.open(encoding="utf-8", errors="replace") as f:
            head = f.readline()
    except OSError:
        return False
    return head.lower().startswith("time stamp")


def read_savvycan(path: Path) -> Iterator[can.Message]:
    with path.open(encoding="utf-8", errors="replace", newline="") as f:
        rows = csv.reader(f)
        header = [h.strip().lower() for h in next(rows, [])]
        try:
            i_ts, i_id, i_ext, i_len = (header.index(k) for k in ("time stamp", "id", "extended", "len"))
        except ValueError as exc:
            raise CaptureError(f"{path}:1: SavvyCAN header lacks {exc}") from exc
        i_dir = header.index("dir") if "dir" in header else None
        i_d1 = header.index("d1") if "d1" in header else i_len + 1
        for n, row in enumerate(rows, 2):
            if not row or not row[0].strip():
                continue
            try:
                length = int(row[i_len])
                data = bytes(int(x, 16) for x in row[i_d1 : i_d1 + length])
                yield can.Message(
                    timestamp=int(row[i_ts]) / 1e6,
                    arbitration_id=int(row[i_id], 16),
                    is_extended_id=row[i_ext].strip().lower() == "true",
                    is_rx=i_dir is None or row[i_dir].strip().lower() != "tx",
                    dlc=length,
                    data=data,
                    is_fd=length > 8,
                )
            except (ValueError, IndexError) as exc:
                raise CaptureError(f"{path}:{n}: not a SavvyCAN frame row: {exc}") from exc


def read_capture(path: Path) -> Iterator[can.Message]:
    """Frames of a capture file in recorded order; CaptureError for an unreadable file."""
    if not path.exists():
        raise CaptureError(f"{path}: no such file")
    if is_savvycan(path):
        yield from read_savvycan(path)
        return
    try:
        reader = can.LogReader(str(path))
    except (ValueError, NotImplementedError, ImportError) as exc:
        raise CaptureError(f"{path}: cannot read this capture format: {exc}") from exc
    try:
        yield from reader
    except (ValueError, IndexError, UnicodeDecodeError) as exc:
        raise CaptureError(f"{path}: malformed capture: {exc}") from exc
    finally:
        reader.stop()
