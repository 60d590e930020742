"""Stopping: the signal handlers, the orderly shutdown and the forced exit.

Orderly (SIGTERM, a first SIGINT): stop the sources, drain the queue into the outbox, let every sink
catch up within the grace period, close the sinks. Forced (a second SIGINT): every task is cancelled
(no drain, no grace period), the close hooks run and the store closes as in any stop, then the process
exits 130; what hangs longer than FORCED_EXIT_SECONDS is cut short by a timer thread.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import suppress

import structlog

from gateway.runtime.batchqueue import BatchQueue
from gateway.runtime.supervise import cancel_and_wait
from gateway.sinks.runner import SinkRunner

log = structlog.get_logger("runtime")

FORCED_EXIT_SECONDS = 3.0  # a second SIGINT: closing the store and the journal may take this long at most
SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def install_signal_handlers(
    loop: asyncio.AbstractEventLoop,
    *,
    stop: Callable[[str], None],
    interrupt: Callable[[], None],
    reload: Callable[[], None],
) -> None:
    """SIGTERM stops, SIGINT interrupts (a second one forces the exit), SIGHUP reloads. Each handler
    only sets a flag or cancels a task; the work happens on the main task."""
    loop.add_signal_handler(signal.SIGTERM, stop, "SIGTERM")
    loop.add_signal_handler(signal.SIGINT, interrupt)
    loop.add_signal_handler(signal.SIGHUP, reload)


def remove_signal_handlers(loop: asyncio.AbstractEventLoop) -> None:
    for sig in SIGNALS:
        loop.remove_signal_handler(sig)


async def shut_down(
    *,
    grace_period: float,
    queue: BatchQueue,
    source_tasks: Sequence[asyncio.Task[None]],
    pipeline: asyncio.Task[None],
    runners: Sequence[SinkRunner],
    other_tasks: Sequence[asyncio.Task[None]],
) -> None:
    """The orderly shutdown: everything the sources emitted is stored, and the sinks get what is left
    of the grace period to deliver it (a sink not caught up resumes from its cursor at the next start)."""
    deadline = time.monotonic() + grace_period
    await cancel_and_wait(source_tasks)  # asks again if a source swallowed the cancellation
    await queue.put(None)  # everything the sources emitted is ahead of this
    await pipeline
    for runner in runners:
        left = max(0.0, deadline - time.monotonic())
        if not await runner.drain(left):
            log.warning("sink not caught up at shutdown; it resumes from its cursor", sink=runner.name)
    await cancel_and_wait(other_tasks)
    for runner in runners:
        with suppress(Exception):
            async with asyncio.timeout(max(0.1, deadline - time.monotonic())):
                await runner.sink.close()


def force_exit(main_task: asyncio.Task[object] | None) -> bool:
    """A second SIGINT: cancel the main task now (its `finally` closes the store and the journal, then
    calls `exit_forced`); a timer thread exits anyway after FORCED_EXIT_SECONDS. False when there was
    no main task to cancel (then the process has already exited)."""
    log.warning("second interrupt: stopping now, closing the store", within_s=FORCED_EXIT_SECONDS)
    timer = threading.Timer(FORCED_EXIT_SECONDS, exit_now)
    timer.daemon = True
    timer.start()
    if main_task is None or main_task.done():
        exit_now()
        return False
    main_task.cancel()
    return True


def exit_now() -> None:
    """The forced exit when closing did not finish in time (or nothing was running)."""
    with suppress(Exception):
        log.error("forced exit: the store was not closed in time", within_s=FORCED_EXIT_SECONDS)
        sys.stderr.flush()
    os._exit(130)


def exit_forced(stored_samples: int) -> None:
    """The forced exit once the tasks were cancelled and the store and journal closed."""
    with suppress(Exception):
        log.warning("stopped (forced): store closed", stored_samples=stored_samples)
        sys.stderr.flush()
    os._exit(130)
