"""Task supervision: a failed source or service is logged and restarted with backoff; tasks are
cancelled until they end; a failing hook is counted and logged, never fatal.

A failure here is a bug in our own code (device faults are data inside the sources), yet one failing
source or service never takes the daemon or the others down. The restart delay follows the one
backoff rule (`gateway.runtime.backoff`), without jitter (a bug does not hammer a peer): the first
delay, doubled after each failure up to RESTART_MAX_DELAY, and back to the first one after a run of
more than RESTART_RESET_AFTER seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable

import structlog
from prometheus_client import Counter

from gateway import metrics
from gateway.runtime.backoff import Backoff

log = structlog.get_logger("runtime")

SOURCE_FAILURES = Counter(
    "bms_gateway_source_failures", "Sources that failed and were restarted", ["source"], registry=metrics.REGISTRY
)

EXTENSION_FAILURES = Counter(
    "bms_gateway_extension_failures", "Processor or observer calls that raised", ["name"], registry=metrics.REGISTRY
)

RESTART_MAX_DELAY = 60.0  # seconds: the longest wait before restarting a failed source or service
RESTART_RESET_AFTER = 60.0  # seconds: a run at least this long starts the delays over


def restart_backoff(first_delay: float) -> Backoff:
    """The restart delays of a failed source or service: `first_delay`, doubled up to RESTART_MAX_DELAY."""
    return Backoff(first_delay, max(first_delay, RESTART_MAX_DELAY), jitter=0.0)


def name_of(fn: object) -> str:
    """A callable's name for a metric label or a log line."""
    return str(getattr(fn, "__qualname__", None) or type(fn).__qualname__)


async def supervise(
    run: Callable[[], Awaitable[None]],
    *,
    kind: str,
    name: str,
    first_delay: float,
    stopping: Callable[[], bool],
    failed: Callable[[], None],
) -> None:
    """Run `run()` until it returns; when it raises, call `failed()`, log it and run it again after the
    restart delay. While the gateway is `stopping()` a failure ends the supervision instead."""
    backoff = restart_backoff(first_delay)
    while True:
        started = time.monotonic()
        try:
            await run()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            failed()
            if stopping():
                log.exception(f"{kind} failed while stopping", **{kind: name})
                return
            if time.monotonic() - started >= RESTART_RESET_AFTER:
                backoff.reset()  # it ran for a while: start over with the first delay
            delay = backoff.next_delay()
            log.exception(f"{kind} failed; restarting", restart_in=round(delay, 1), **{kind: name})
        await asyncio.sleep(delay)


async def cancel_and_wait(tasks: Iterable[asyncio.Task[None]]) -> None:
    """Cancel tasks and wait until they ended, cancelling again if one swallowed the request.

    A task inside `asyncio.wait_for` (ours use `asyncio.timeout`, but libraries such as pymodbus do)
    whose inner wait completes in the same instant can lose a cancellation on Python 3.11; asking
    again (after a second, so that a clean-up in progress is not cut short) ends it. Used at reload
    and at shutdown."""
    tasks = list(tasks)
    while pending := [t for t in tasks if not t.done()]:
        for t in pending:
            t.cancel()
        await asyncio.wait(pending, timeout=1.0)


def call_hooks(hooks: Iterable[Callable[..., None]], *args: object, what: str = "hook") -> None:
    """Call each hook; one that raises is counted and logged, and the others still run."""
    for cb in hooks:
        try:
            cb(*args)
        except Exception:
            EXTENSION_FAILURES.labels(name_of(cb)).inc()
            log.exception(f"{what} failed", hook=name_of(cb))
