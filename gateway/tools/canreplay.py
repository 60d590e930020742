"""Replaying a capture onto a bus: at the recorded timing (drift-free), faster, as fast as possible, looped.

Frame k is due at `start + (t_k - t_0) / rate` on the monotonic clock, so the error never adds up
over a long capture; a loop continues the timeline one median gap after the last frame.
Recorded timestamps are kept on the frames (python-can may overwrite them on send).
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TextIO

import can


@dataclass
class ReplayStats:
    sent: int = 0
    skipped: int = 0  # filtered out by --ids
    loops: int = 0  # passes completed
    position: int = 0  # frames sent in the current pass
    seconds: float = 0.0


def schedule(timestamps: list[float], rate: float | None) -> list[float]:
    """Offsets in seconds from the start at which each frame is due (0 for all when rate is None)."""
    if not timestamps:
        return []
    if rate is None:
        return [0.0] * len(timestamps)
    t0 = timestamps[0]
    out = []
    last = 0.0
    for t in timestamps:
        last = max(last, (t - t0) / rate)  # never go back in time on an unordered capture
        out.append(last)
    return out


def loop_gap(timestamps: list[float], rate: float | None) -> float:
    if rate is None or len(timestamps) < 2:
        return 0.0
    gaps = sorted(b - a for a, b in itertools.pairwise(timestamps) if b >= a)
    return (gaps[len(gaps) // 2] if gaps else 0.0) / rate


async def replay(
    frames: list[can.Message],
    send: Callable[[can.Message], None],
    *,
    rate: float | None = 1.0,
    loop: bool = False,
    ids: set[int] | None = None,
    progress: Callable[[ReplayStats, int], None] | None = None,
    stop: asyncio.Event | None = None,
) -> ReplayStats:
    """Send `frames` with `send` on their recorded timeline; returns counts. Cancellable."""
    stats = ReplayStats()
    chosen = [m for m in frames if ids is None or m.arbitration_id in ids]
    stats.skipped = len(frames) - len(chosen)
    stamps = [m.timestamp for m in chosen]
    due = schedule(stamps, rate)
    period = (due[-1] + loop_gap(stamps, rate)) if due else 0.0
    start = time.monotonic()
    base = 0.0
    last_progress = 0.0
    while chosen:
        for pos, (msg, offset) in enumerate(zip(chosen, due, strict=True), 1):
            if stop is not None and stop.is_set():
                return _done(stats, start)
            wait = start + base + offset - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            elif stats.sent % 256 == 0:
                await asyncio.sleep(0)  # as fast as possible, but let the loop breathe
            send(msg)
            stats.sent += 1
            stats.position = pos
            if progress is not None and time.monotonic() - last_progress > 0.25:
                last_progress = time.monotonic()
                progress(stats, len(chosen))
        stats.loops += 1
        if not loop:
            break
        base += max(period, 1e-3)
    if progress is not None:
        progress(stats, len(chosen))
    return _done(stats, start)


def _done(stats: ReplayStats, start: float) -> ReplayStats:
    stats.seconds = time.monotonic() - start
    return stats


def copy_for_send(msg: can.Message) -> can.Message:
    return can.Message(
        timestamp=msg.timestamp,
        arbitration_id=msg.arbitration_id,
        is_extended_id=msg.is_extended_id,
        is_remote_frame=msg.is_remote_frame,
        is_error_frame=msg.is_error_frame,
        dlc=msg.dlc,
        data=msg.data,
        is_fd=msg.is_fd,
        bitrate_switch=msg.bitrate_switch,
    )


def text_progress(out: TextIO = sys.stderr) -> Callable[[ReplayStats, int], None]:
    """A one-line progress bar (frames sent of the capture, loops)."""

    def show(stats: ReplayStats, total: int) -> None:
        done = stats.position
        frac = done / total if total else 1.0
        bar = "#" * int(30 * frac)
        loops = f" pass {stats.loops + 1}" if stats.loops and done < total else ""
        out.write(f"\r[{bar:30}] {done}/{total} frames{loops}")
        out.flush()

    return show


def frames_of(messages: Iterable[can.Message]) -> list[can.Message]:
    return [copy_for_send(m) for m in messages]
