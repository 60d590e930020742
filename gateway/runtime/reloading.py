"""Loading a configuration again for a reload (SIGHUP), and rejecting one that cannot be applied.

What to restart is decided by `gateway.ops.reload.plan_reload`; the Runtime applies it. The file is
loaded in a worker thread (profiles and DBC files may take a while; the event loop goes on), and a
stop request abandons the load: the shutdown never waits for a reload.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import structlog

from gateway.config.settings import LoadedConfig
from gateway.errors import ConfigError
from gateway.ops.reload import RELOAD_LOAD_TIMEOUT, ReloadResult, load_or_error, run_in_daemon_thread

log = structlog.get_logger("runtime")


async def load_fresh(path: Path, stopping: Callable[[], bool]) -> LoadedConfig | BaseException | None:
    """The configuration at `path`, or the error that loading it raised (a `TimeoutError` after
    RELOAD_LOAD_TIMEOUT); None when `stopping()` became true first."""
    future = run_in_daemon_thread(load_or_error, path)
    deadline = time.monotonic() + RELOAD_LOAD_TIMEOUT
    while not future.done():
        await asyncio.wait({future}, timeout=0.2)
        if stopping():
            return None
        if time.monotonic() > deadline:
            return TimeoutError(f"loading took longer than {RELOAD_LOAD_TIMEOUT:.0f} s")
    return future.result()


def rejected(path: Path, fresh: BaseException | None) -> ReloadResult:
    """The rejected reload (logged) when loading gave no configuration to apply (see `load_fresh`)."""
    if fresh is None:
        return ReloadResult(False, problems=["abandoned: the gateway is stopping"])
    if isinstance(fresh, ConfigError):
        problems = [str(p) for p in fresh.problems]
        log.error("reload rejected: the configuration is invalid; the running one stays", problems=problems)
        return ReloadResult(False, problems=problems)
    # A bug in a check must not take the running gateway down either.
    log.error(
        "reload rejected: the configuration could not be loaded; the running one stays",
        error=f"{type(fresh).__name__}: {fresh}",
        exc_info=fresh,
    )
    return ReloadResult(False, problems=[f"{path}: {type(fresh).__name__}: {fresh}"])
