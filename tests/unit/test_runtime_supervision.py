"""A source that fails (a bug) is logged and restarted; the other sources and the daemon go on."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from gateway.config.settings import load_config
from gateway.model import Batch, Quality, Sample
from gateway.runtime.backoff import Backoff
from gateway.runtime.core import Runtime
from gateway.runtime.supervise import restart_backoff, supervise
from gateway.sources.base import SourceContext
from gateway.store.outbox import Outbox
from tests.support.waits import await_for


async def until(cond: Callable[[], bool], task: asyncio.Task[int], timeout: float = 60.0) -> None:
    """Wait while the runtime runs in `task` until `cond()` holds (the deadline only stops a hung test)."""
    await await_for(cond, timeout, step=0.01, task=task)


def simulated_runtime(tmp_path: Path) -> Runtime:
    """A runtime with one fast simulated rack, its store under tmp_path, no HTTP."""
    cfg = tmp_path / "gateway.yaml"
    cfg.write_text(
        "sources:\n  - {type: simulated, name: sim, interval: 0.02}\n"
        f"store: {{path: {tmp_path / 's.db'}}}\nhttp: {{enabled: false}}\n"
    )
    return Runtime(load_config(cfg))


class Flaky:
    name = "flaky"

    def __init__(self) -> None:
        self.runs = 0

    async def run(self, ctx: SourceContext) -> None:
        self.runs += 1
        ctx.started()
        await ctx.emit(Batch.of_samples(self.name, [Sample(1, "soc", float(self.runs), "%", Quality.GOOD, "flaky")]))
        if self.runs < 3:
            raise RuntimeError("bug in a source")
        await asyncio.Event().wait()


async def test_failing_source_is_restarted_without_stopping_the_others(tmp_path: Path) -> None:
    rt = simulated_runtime(tmp_path)
    flaky = Flaky()
    rt.sources.append(flaky)
    rt.source_restart_delay = 0.01
    task = asyncio.create_task(rt.run())
    await until(lambda: flaky.runs >= 3 and rt.outbox.stored_samples() > 100, task)
    rt.request_stop("test")
    assert await task == 0
    assert flaky.runs == 3
    values = []
    ob = Outbox(tmp_path / "s.db")
    for row in ob.query():
        values += [s.value for s in row.batch.samples() if s.rack == "flaky"]
    assert values == [1.0, 2.0, 3.0]
    assert any(row.batch.source == "sim" for row in ob.query())


async def test_failing_processor_and_observer_do_not_lose_batches(tmp_path: Path) -> None:
    rt = simulated_runtime(tmp_path)
    calls = {"p": 0, "o": 0}

    def bad_processor(batches: list[Batch]) -> list[Batch]:
        calls["p"] += 1
        raise ValueError("bug")

    def bad_observer(batches: list[Batch]) -> None:
        calls["o"] += 1
        raise ValueError("bug")

    rt.processors.append(bad_processor)
    rt.observers.append(bad_observer)
    task = asyncio.create_task(rt.run())
    await until(lambda: calls["p"] >= 5, task)
    rt.request_stop("test")
    assert await task == 0
    assert calls["p"] >= 5 and calls["o"] >= 5
    produced = sum(s.produced for s in rt.sources if hasattr(s, "produced"))
    ob = Outbox(tmp_path / "s.db")
    assert ob.stored_samples() == produced > 0


async def test_failing_service_is_restarted_and_the_daemon_goes_on(tmp_path: Path) -> None:
    rt = simulated_runtime(tmp_path)
    rt.source_restart_delay = 0.01
    runs = 0

    async def broken_service() -> None:
        nonlocal runs
        runs += 1
        if runs < 3:
            raise OSError("address already in use")
        await asyncio.Event().wait()

    rt.services.append(("broken", broken_service))
    task = asyncio.create_task(rt.run())
    await until(lambda: runs >= 3 and rt.outbox.stored_samples() > 0, task)
    rt.request_stop("test")
    assert await task == 0
    assert runs == 3


class Stubborn:
    """Swallows the first cancellation, as a library's `wait_for` can on Python 3.11."""

    name = "stubborn"

    def __init__(self) -> None:
        self.cancels = 0

    async def run(self, ctx: SourceContext) -> None:
        ctx.started()
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                self.cancels += 1
                if self.cancels >= 2:
                    raise


async def test_shutdown_asks_again_when_a_source_swallows_the_cancellation(tmp_path: Path) -> None:
    rt = simulated_runtime(tmp_path)
    stubborn = Stubborn()
    rt.sources.append(stubborn)
    task = asyncio.create_task(rt.run())
    await until(lambda: rt.ready and rt.outbox.stored_samples() > 0, task)
    rt.request_stop("test")
    assert await task == 0
    assert stubborn.cancels == 2


def test_restart_delays_follow_the_one_backoff_rule_without_jitter() -> None:
    backoff = restart_backoff(1.0)
    assert isinstance(backoff, Backoff) and backoff.jitter == 0.0
    delays = [backoff.next_delay() for _ in range(9)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]  # capped at 60 s
    backoff.reset()  # a run of more than a minute starts over
    assert backoff.next_delay() == 1.0


async def test_supervise_restarts_until_the_run_returns_and_gives_up_while_stopping() -> None:
    runs, failures = 0, 0

    async def fails_twice() -> None:
        nonlocal runs
        runs += 1
        if runs <= 2:
            raise RuntimeError("bug")

    def failed() -> None:
        nonlocal failures
        failures += 1

    async with asyncio.timeout(60):
        await supervise(fails_twice, kind="service", name="t", first_delay=0.01, stopping=lambda: False, failed=failed)
    assert (runs, failures) == (3, 2)
    runs = 0
    async with asyncio.timeout(60):  # stopping: the first failure ends it, with no restart
        await supervise(fails_twice, kind="service", name="t", first_delay=0.01, stopping=lambda: True, failed=failed)
    assert (runs, failures) == (1, 3)
