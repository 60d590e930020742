"""The daemon's event loop: uvloop (libuv) where it is installed, else asyncio's own.

`runtime.event_loop` chooses: `auto` (the default) takes uvloop when it can be imported and asyncio's
loop otherwise; `uvloop` requires it (a configuration naming it on a machine without it fails at
start, with what to install); `asyncio` keeps the standard library's loop. The gateway's code is the
same on both: only the loop under it changes, so every transport, timer and thread hand-off (pymodbus,
the MQTT client's sockets, the InfluxDB sink's worker thread) runs as before, in C instead of
asyncio's Python. What it saves is the loop's own work per ready socket and per callback: on the
100-rack Modbus site each of 800 requests a second wakes the loop twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar

from gateway.errors import ConfigError

T = TypeVar("T")

EventLoopChoice = Literal["auto", "uvloop", "asyncio"]
LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def loop_factory(choice: EventLoopChoice = "auto") -> LoopFactory | None:
    """The factory of the loop `choice` names (None: asyncio's default loop)."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise ConfigError(
                "runtime.event_loop: uvloop is not installed (pip install uvloop), or choose auto or asyncio"
            ) from None
        return None
    factory: LoopFactory = uvloop.new_event_loop
    return factory


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """`uvloop` or `asyncio`: which loop runs (logged at start)."""
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"


def run(main: Coroutine[Any, Any, T], choice: EventLoopChoice = "auto") -> T:
    """Run `main` to its end on the chosen loop (as `asyncio.run` does: the loop is closed after)."""
    try:
        factory = loop_factory(choice)
    except ConfigError:
        main.close()  # never awaited
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
