"""systemd integration: READY=1, WATCHDOG=1 from the event loop, STATUS=, RELOADING=1, STOPPING=1.

`WATCHDOG=1` is sent by a task of the event loop itself, every `$WATCHDOG_USEC`/2: when the loop
hangs (a blocking call, a deadlock) the pings stop and systemd restarts the service. `READY=1` is
sent from the runtime's `on_ready` (every source started, the store open), `STOPPING=1` from
`on_stopping`, and `RELOADING=1` / `READY=1` around a configuration reload.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Mapping

from prometheus_client import Counter

from gateway import metrics
from gateway.ops.sdnotify import Notifier, watchdog_interval

STATUS_EVERY = 2.0  # seconds between STATUS= refreshes (only sent when the line changed)

watchdog_pings = Counter(
    "bms_gateway_watchdog_pings", "WATCHDOG=1 notifications sent to systemd", registry=metrics.REGISTRY
)


def monotonic_usec() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


class SystemdNotifier:
    """Tells systemd how the daemon is doing; every method is a no-op outside systemd."""

    def __init__(
        self, status: Callable[[], str], env: Mapping[str, str] | None = None, notifier: Notifier | None = None
    ) -> None:
        env = os.environ if env is None else env
        self.notifier = notifier or Notifier(env)
        self.interval = watchdog_interval(env, os.getpid())
        self.status = status
        self._last_status = ""
        self.pings = 0
        self._next_ping = 0.0  # monotonic times at which the next WATCHDOG=1 and STATUS= are due
        self._next_status = 0.0

    def ready(self) -> None:
        self._last_status = self._status()
        self.notifier.notify(READY=1, STATUS=self._last_status)

    def stopping(self) -> None:
        self.notifier.notify(STOPPING=1, STATUS="stopping: draining to the store and sinks")

    def reloading(self) -> None:
        self.notifier.notify(RELOADING=1, MONOTONIC_USEC=monotonic_usec(), STATUS="reloading configuration")

    def reloaded(self, summary: str) -> None:
        self._last_status = f"{self._status()} ({summary})"
        self.notifier.notify(READY=1, STATUS=self._last_status)

    def _status(self) -> str:
        try:
            return self.status()
        except Exception:  # a status view must never stop the watchdog
            return "running"

    def tick(self, now: float) -> float:
        """Send what is due at monotonic time `now`; return the seconds until something is due again."""
        if self.interval is not None and now >= self._next_ping:
            if self.notifier.notify(WATCHDOG=1):
                self.pings += 1
                watchdog_pings.inc()
            self._next_ping = now + self.interval
        if now >= self._next_status:
            self._next_status = now + STATUS_EVERY
            line = self._status()
            if line != self._last_status:
                self._last_status = line
                self.notifier.notify(STATUS=line)
        due = self._next_status if self.interval is None else min(self._next_ping, self._next_status)
        return max(0.0, due - now)

    async def run(self) -> None:
        """The watchdog loop (a runtime service): WATCHDOG=1 every `$WATCHDOG_USEC`/2, STATUS= when it changed."""
        if not self.notifier.enabled:
            return
        self._next_status = time.monotonic() + STATUS_EVERY
        while True:  # noqa: ASYNC110 - a timer for periodic messages, not a wait for a condition
            await asyncio.sleep(self.tick(time.monotonic()))

    def close(self) -> None:
        self.notifier.close()
