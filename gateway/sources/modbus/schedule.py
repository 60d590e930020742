"""Pure timing rules of the poller: a drift-free schedule spread over the interval (its reconnect
backoff is gateway.runtime.backoff, shared by every source)."""

from __future__ import annotations


def next_due(due: float, interval: float, now: float) -> tuple[float, int]:
    """The next due time after a cycle that was due at `due` and finished at `now`, and how many
    cycles were skipped. Cycle k is always due at start + k*interval: a late cycle never shifts the
    later ones, and cycles that can no longer be on time are skipped rather than bunched."""
    nxt = due + interval
    if nxt > now:
        return nxt, 0
    skipped = int((now - nxt) // interval) + 1
    return nxt + skipped * interval, skipped


def first_due(now: float, interval: float, slot: float, slots: int) -> float:
    """When a device's first cycle is due: devices that share an interval start spread over it, one
    slot each (`slot` may be fractional: endpoints interleave their devices' slots), so that a
    hundred racks are not all read in the same instant and then all wait, and a device's cycle does
    not start only when the devices before it on the connection are done."""
    return now + interval * (slot % max(1, slots)) / max(1, slots)
