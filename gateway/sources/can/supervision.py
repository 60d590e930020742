"""Cyclic supervision, pure: which messages stopped arriving, and when a whole rack went silent.

A message with a cycle time goes `stale` when it has not arrived for `stale_after` cycles; it is
fresh again with its next frame. The rack is in `comm_loss` when every supervised message is stale
(or, for a rack without cyclic messages, when no frame came for `comm_loss_timeout` seconds).
Times are monotonic seconds, given by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Verdict:
    stale: list[int] = field(default_factory=list)  # keys that went stale at this check
    comm_loss: bool | None = None  # True: went silent now; False: came back now; None: no change


class Supervisor:
    def __init__(self, limits: dict[int, float], comm_loss_timeout: float, now: float) -> None:
        """`limits`: key -> seconds without a frame before the key is stale (cycle × missed cycles)."""
        self.limits = dict(limits)
        self.comm_loss_timeout = comm_loss_timeout
        self.last_seen: dict[int, float] = dict.fromkeys(self.limits, now)
        self.last_any = now
        self.stale: set[int] = set()
        self.in_comm_loss = False

    def seen(self, key: int, now: float) -> None:
        """A frame of this key arrived (call once per frame; cheap)."""
        self.last_any = now
        if key in self.last_seen:
            self.last_seen[key] = now
            if key in self.stale:
                self.stale.discard(key)

    def check(self, now: float) -> Verdict:
        newly: list[int] = []
        for key, limit in self.limits.items():
            if key not in self.stale and now - self.last_seen[key] > limit:
                self.stale.add(key)
                newly.append(key)
        if self.limits:
            silent = len(self.stale) == len(self.limits)
        else:
            silent = now - self.last_any > self.comm_loss_timeout
        change: bool | None = None
        if silent != self.in_comm_loss:
            self.in_comm_loss = silent
            change = silent
        return Verdict(newly, change)

    def next_check_in(self) -> float:
        """A reasonable interval between checks: a quarter of the shortest limit, within 0.05..1 s."""
        shortest = min(self.limits.values(), default=self.comm_loss_timeout)
        return min(1.0, max(0.05, shortest / 4))
