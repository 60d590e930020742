"""Running a whole Runtime in a test until a condition holds."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from gateway.runtime.core import Runtime


async def run_until(rt: Runtime, cond: Callable[[], bool], limit: float = 90.0) -> None:
    """Run the runtime until `cond()` holds, then stop it cleanly.

    The limit only stops a hung test (a loaded machine runs simulated time slower); it is not a
    timing check."""
    task = asyncio.create_task(rt.run())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    try:
        while True:
            checked = loop.time()
            if cond():
                break
            if task.done():
                task.result()
                raise AssertionError("runtime ended early")
            assert loop.time() < deadline, "condition not reached"
            # The check runs on the runtime's loop (it often reads the growing store): it gets at most a
            # third of the loop's time, so a slow check on a busy machine does not starve the runtime.
            await asyncio.sleep(max(0.02, 2 * (loop.time() - checked)))
    finally:
        rt.request_stop("test")
        await task
