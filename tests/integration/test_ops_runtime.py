"""Operations inside one process: READY waits for the slowest source; a reload moves the HTTP endpoint.

Real parts: the runtime with its extensions, a unix datagram socket as NOTIFY_SOCKET, the HTTP
server on loopback, SIGHUP delivered to this process.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from gateway.config.settings import load_config
from gateway.metrics import REGISTRY
from gateway.model import Batch, Quality, Sample
from gateway.ops.service import operations
from gateway.runtime.core import Runtime
from gateway.sources.base import SourceContext
from gateway.store.outbox import Outbox
from tests.ops_support import NotifyListener, eventually
from tests.servers import VictoriaMetrics, free_port
from tests.support.waits import await_for


class GatedSource:
    """A source that starts only when the test lets it (a device that takes long to connect)."""

    name = "gated"

    def __init__(self) -> None:
        self.gate = asyncio.Event()

    async def run(self, ctx: SourceContext) -> None:
        await self.gate.wait()
        ctx.started()
        await ctx.emit(Batch(self.name, [Sample(1, "soc", 50.0, "%", Quality.GOOD, "gated")]))
        await asyncio.Event().wait()


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


async def aget(url: str) -> tuple[int, str]:
    return await asyncio.to_thread(get, url)


async def until(cond, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    await await_for(cond, timeout, step=0.02)


def config(tmp_path: Path, port: int, level: str = "info") -> Path:
    p = tmp_path / "gateway.yaml"
    p.write_text(
        "sources:\n  - {type: simulated, name: sim, interval: 0.02, modules: 1, cells_per_module: 4}\n"
        f"store: {{path: {tmp_path / 's.db'}}}\nhttp: {{port: {port}}}\nlogging: {{level: {level}}}\n"
    )
    return p


async def test_ready_only_after_every_source_started(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    listener = NotifyListener()
    monkeypatch.setenv("NOTIFY_SOCKET", listener.env_value)
    port = free_port()
    rt = Runtime(load_config(config(tmp_path, port)))
    gated = GatedSource()
    rt.sources.append(gated)
    task = asyncio.create_task(rt.run())
    try:
        base = f"http://127.0.0.1:{port}"

        async def sim_storing() -> bool:
            return rt.outbox.stored_samples() > 200

        await until(sim_storing)
        status, body = await aget(f"{base}/readyz")
        assert status == 503 and "sources not started: gated" in body
        await asyncio.to_thread(listener.poll)
        assert not [m for m in listener.messages if m.get("READY")]  # the other source runs; not ready yet
        gated.gate.set()

        async def ready_sent() -> bool:
            await asyncio.to_thread(listener.poll)
            return any(m.get("READY") == "1" for m in listener.messages)

        await until(ready_sent)
        assert (await aget(f"{base}/readyz")) == (200, "ready\n")
    finally:
        rt.request_stop("test")
        assert await task == 0
        listener.close()


async def test_sighup_moves_the_http_endpoint(tmp_path: Path) -> None:
    first, second = free_port(), free_port()
    cfg = config(tmp_path, first)
    rt = Runtime(load_config(cfg))
    task = asyncio.create_task(rt.run())
    try:
        ops = operations(rt)
        assert ops is not None

        async def serving(port: int) -> bool:
            try:
                return (await aget(f"http://127.0.0.1:{port}/healthz"))[0] == 200
            except OSError:
                return False

        await until(lambda: serving(first))
        cfg.write_text(config(tmp_path, second, level="debug").read_text())
        os.kill(os.getpid(), signal.SIGHUP)
        await until(lambda: serving(second))
        assert not await serving(first)
        assert rt.last_reload is not None and rt.last_reload.ok
        assert rt.last_reload.changes == ["http updated", "logging updated"]
        assert ops.http is not None and ops.http.port == second
        assert rt.source_types == {"sim": "simulated"}  # the source did not restart
    finally:
        rt.request_stop("test")
        assert await task == 0


async def test_sighup_restarts_a_changed_sink_which_resumes_from_its_cursor(
    tmp_path: Path, victoria: VictoriaMetrics
) -> None:
    cfg = tmp_path / "gateway.yaml"

    def write(batch_max: int) -> None:
        cfg.write_text(
            "sources:\n  - {type: simulated, name: sim, interval: 0.02, modules: 1, cells_per_module: 4}\n"
            f"store: {{path: {tmp_path / 's.db'}}}\nhttp: {{enabled: false}}\n"
            f"sinks:\n  influx: {{type: influxdb, url: '{victoria.url}', token: t, batch_max_samples: {batch_max}}}\n"
        )

    write(5000)
    rt = Runtime(load_config(cfg))
    task = asyncio.create_task(rt.run())
    try:

        async def delivered(n: int) -> bool:
            return sum(r.delivered for r in rt.runners) > n

        await until(lambda: delivered(200))
        old_runner = rt.runners[0]
        write(50)
        os.kill(os.getpid(), signal.SIGHUP)

        async def replaced() -> bool:
            return bool(rt.runners) and rt.runners[0] is not old_runner and rt.runners[0].delivered > 200

        await until(replaced)
        assert rt.last_reload is not None and rt.last_reload.changes == ["sink influx restarted"]
        assert rt.runners[0].cfg.batch_max_samples == 50
    finally:
        rt.request_stop("test")
        assert await task == 0
    # Everything stored reached the sink: the new runner took over the old one's cursor.
    ob = Outbox(tmp_path / "s.db")
    try:
        (state,) = ob.consumers()
        assert state.name == "influx" and state.pending_samples == 0 and state.dropped == 0
        assert state.acked == ob.last_seq()
    finally:
        ob.close()
    exported = eventually(lambda: victoria.export('{__name__=~"rack_soc"}'), None, timeout=60)
    assert sum(len(s["values"]) for s in exported) > 0


async def test_reload_removes_a_rack_and_survives_a_failing_loader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "gateway.yaml"
    two = (
        "sources:\n  - {type: simulated, name: keep, interval: 0.02, modules: 1, cells_per_module: 4}\n"
        "  - {type: simulated, name: gone, interval: 0.02, modules: 1, cells_per_module: 4}\n"
        f"store: {{path: {tmp_path / 's.db'}}}\nhttp: {{enabled: false}}\n"
    )
    cfg.write_text(two)
    rt = Runtime(load_config(cfg))
    task = asyncio.create_task(rt.run())
    try:

        async def both_online() -> bool:
            return {"keep", "gone"} <= {s.labels.get("device") for s in samples("bms_gateway_device_online")}

        await until(both_online)
        cfg.write_text(
            two.replace("  - {type: simulated, name: gone", "  - {type: simulated, enabled: false, name: gone")
        )
        result = await rt.reload()
        assert result.ok and result.changes == ["source gone removed"] and result.removed == ["gone"]
        assert [s.name for s in rt.sources] == ["keep"]
        assert "gone" not in {s.labels.get("device") for s in samples("bms_gateway_device_online")}

        def broken(path: Path) -> None:
            raise RuntimeError("a bug in a check")

        monkeypatch.setattr("gateway.ops.reload.load_config", broken)
        result = await rt.reload()
        assert not result.ok and "RuntimeError: a bug in a check" in result.problems[0]
        assert not task.done() and [s.name for s in rt.sources] == ["keep"]
        before = rt.outbox.stored_samples()

        async def still_storing() -> bool:
            return rt.outbox.stored_samples() > before + 50

        await until(still_storing)
    finally:
        rt.request_stop("test")
        assert await task == 0


def samples(name: str) -> list[Any]:
    return [s for f in REGISTRY.collect() for s in f.samples if s.name == name]


async def test_busy_http_port_never_stops_the_gateway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("gateway.ops.service.RETRY_BIND", 0.1)
    port = free_port()
    blocker = socket.create_server(("127.0.0.1", port))
    rt = Runtime(load_config(config(tmp_path, port)))
    task = asyncio.create_task(rt.run())
    try:
        ops = operations(rt)
        assert ops is not None

        async def storing() -> bool:
            return rt.outbox.stored_samples() > 100

        await until(storing)
        assert ops.http is None and not task.done()  # collecting goes on without the endpoint
        blocker.close()

        async def serving() -> bool:
            return ops.http is not None and (await aget(f"http://127.0.0.1:{port}/healthz"))[0] == 200

        await until(serving)
    finally:
        blocker.close()
        rt.request_stop("test")
        assert await task == 0


async def test_sources_with_the_same_name_all_stop(tmp_path: Path) -> None:
    rt = Runtime(load_config(config(tmp_path, 0)))
    twins = [GatedSource(), GatedSource()]
    rt.sources += twins
    task = asyncio.create_task(rt.run())
    for twin in twins:
        twin.gate.set()

    async def both_stored() -> bool:
        return rt.outbox.stored_samples() > 100 and len(rt._source_tasks["gated"]) == 2

    await until(both_stored)
    rt.request_stop("test")
    async with asyncio.timeout(60):  # a twin left running would hold the task group open forever
        assert await task == 0


async def test_a_stop_never_waits_for_a_slow_reload(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    release = threading.Event()
    loading = threading.Event()

    def slow_load(path: Path) -> None:
        loading.set()
        release.wait(30)  # e.g. huge DBC files on a slow disk
        raise RuntimeError("finished too late")

    rt = Runtime(load_config(config(tmp_path, 0)))
    monkeypatch.setattr("gateway.ops.reload.load_config", slow_load)
    task = asyncio.create_task(rt.run())
    try:

        async def storing() -> bool:
            return rt.outbox.stored_samples() > 50

        await until(storing)
        rt.request_reload()

        async def load_started() -> bool:
            return loading.is_set()

        await until(load_started)
        rt.request_stop("test")
        assert await task == 0
        assert not release.is_set()  # the daemon stopped while the load was still running
        assert rt.last_reload is not None and rt.last_reload.problems == ["abandoned: the gateway is stopping"]
    finally:
        release.set()


async def test_a_task_that_swallowed_a_cancellation_is_cancelled_again() -> None:
    from gateway.runtime.supervise import cancel_and_wait

    swallowed = 0

    async def stubborn() -> None:  # what asyncio.wait_for does on 3.11 when its wait ends in the same instant
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed += 1

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    async with asyncio.timeout(20):
        await cancel_and_wait([task])
    assert task.cancelled() and swallowed == 1
