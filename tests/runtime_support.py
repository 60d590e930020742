"""Running a whole Runtime in a test until a condition holds."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from gateway.runtime import Runtime


async def run_until(rt: Runtime, cond: Callable[[], bool], limit: float = 90.0) -> None:
    """Run the runtime until `cond()` holds, then stop it cleanly.

    The limit only stops a hung test (a loaded machine runs simulated time slower); it is not a
    timing check."""
    task = asyncio.create_task(rt.run())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    try:
        while not cond():
            if task.done():
                task.result()
                raise AssertionError("runtime ended early")
            assert loop.time() < deadline, "condition not reached"
            await asyncio.sleep(0.02)
    finally:
        rt.request_stop("test")
        await task
