"""The daemon's event loop (`gateway.runtime.eventloop`): uvloop by default where it is installed,
asyncio's own when the configuration asks for it."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError

from gateway.config.settings import RuntimeConfig
from gateway.runtime import eventloop


async def _which() -> str:
    await asyncio.sleep(0)
    return eventloop.loop_name(asyncio.get_running_loop())


def test_auto_runs_on_uvloop_when_installed() -> None:
    assert eventloop.run(_which()) == "uvloop"
    assert eventloop.run(_which(), "uvloop") == "uvloop"


def test_asyncio_choice_keeps_the_standard_loop() -> None:
    assert eventloop.loop_factory("asyncio") is None
    assert eventloop.run(_which(), "asyncio") == "asyncio"


def test_config_default_and_choices() -> None:
    assert RuntimeConfig().event_loop == "auto"
    assert RuntimeConfig(event_loop="asyncio").event_loop == "asyncio"
    with pytest.raises(ValidationError):
        RuntimeConfig(event_loop="trio")  # type: ignore[arg-type]


def test_timers_and_threads_behave_the_same_on_uvloop() -> None:
    """What the gateway relies on: call_at timers with `when()` (a Modbus link's read deadline), a
    future ended from a timer, `asyncio.timeout`, and `asyncio.to_thread` (the InfluxDB sink's write)."""

    async def main() -> list[object]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[object] = loop.create_future()
        handle = loop.call_at(loop.time() + 0.01, fut.set_result, None)
        assert handle.when() >= loop.time() - 1
        got: list[object] = [await fut]
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.01):
                await asyncio.Event().wait()
        got.append(await asyncio.to_thread(sum, [1, 2, 3]))
        return got

    assert eventloop.run(main(), "uvloop") == [None, 6]
