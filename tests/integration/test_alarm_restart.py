"""A restart of the real runtime with a rack that never answers: its restored `stale` alarm stays active
(no return to normal and raise again) until the rack delivers fresh data, which clears it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from gateway.alarms.journal import Journal
from gateway.alarms.service import service_of
from gateway.config.settings import load_config
from gateway.model import BatchKind, Quality
from gateway.runtime.core import Runtime
from gateway.sources.modbus.validate import load_modbus_profile
from gateway.tools.modbussim import ModbusSimulator
from tests.modbus_support import TINY, write
from tests.runtime_support import run_until
from tests.servers import free_port
from tests.support.waits import await_for

STALE = "rack-a:stale"


def config(tmp_path: Path, port: int) -> Path:
    write(tmp_path / "profiles" / "tiny.yaml", TINY)
    return write(tmp_path / "gateway.yaml", f"""\
        site: {{name: t, profiles_dir: profiles}}
        sources:
          - {{type: modbus, name: rack-a, profile: tiny, host: 127.0.0.1, port: {port}, unit_id: 1, timeout: 0.2,
              backoff_initial: 0.1, backoff_max: 0.2}}
        store: {{path: {tmp_path / "store.db"}, commit_interval: 0.02}}
        http: {{enabled: false}}
        alarms:
          tick_interval: 0.05
          overrides:
            stale: {{max_age: 0.5}}
        """)  # fmt: skip


def journal_events(path: Path, after_seq: int = 0) -> list[tuple[int, str, str]]:
    """(seq, alarm_id, state) of the journal's events after `after_seq`."""
    j = Journal(path, readonly=True)
    try:
        events = [e for e in j.entries() if e.kind == "event" and e.seq > after_seq]
        return [(e.seq, e.body["alarm_id"], e.body["state"]) for e in events]
    finally:
        j.close()


def last_start(path: Path) -> int:
    j = Journal(path, readonly=True)
    try:
        return max(e.seq for e in j.entries() if e.kind == "start")
    finally:
        j.close()


def rack_batches(rt: Runtime, after_seq: int) -> list[Any]:
    return [r.batch for r in rt.outbox.query(after_seq=after_seq) if r.batch.kind == BatchKind.SAMPLES]


async def test_a_dead_racks_stale_alarm_stays_active_across_a_restart(tmp_path: Path) -> None:
    port = free_port()  # nothing listens: the rack never answers
    cfg = config(tmp_path, port)
    store = tmp_path / "store.db"
    rt = Runtime(load_config(cfg))
    await run_until(rt, lambda: (STALE, "active_unack") in [e[1:] for e in journal_events(store)])

    rt2 = Runtime(load_config(cfg))
    svc = service_of(rt2)
    assert svc is not None and svc.engine.by_id[STALE].alarm.state == "active_unack"  # restored
    started = last_start(store)
    mark = rt2.outbox.last_seq()

    def comm_loss_stored() -> bool:
        # The dead rack's comm_loss samples of this run (it went offline again): what used to clear the alarm.
        return any(s.quality == Quality.COMM_LOSS for b in rack_batches(rt2, mark) for s in b.samples())

    sim = ModbusSimulator.from_profile(load_modbus_profile(write(tmp_path / "sim" / "tiny.yaml", TINY)), [1])
    task = asyncio.create_task(rt2.run())
    try:
        await await_for(comm_loss_stored, timeout=60, what="the dead rack's comm_loss samples after the restart")
        assert svc.engine.by_id[STALE].alarm.state == "active_unack"
        assert [e for e in journal_events(store, started) if e[1] == STALE] == []  # no flap: nothing journaled
        # The rack answers: fresh data clears the stale alarm (it was active all along).
        await sim.start(port)
        await await_for(lambda: any(e[1:] == (STALE, "rtn_unack") for e in journal_events(store, started)),
                         timeout=60, what="fresh data clears the stale alarm")  # fmt: skip
        assert any(s.quality == Quality.GOOD for b in rack_batches(rt2, mark) for s in b.samples())  # it delivered
    finally:
        rt2.request_stop("test")
        await task
        await sim.stop()
    states = [e[2] for e in journal_events(store, started) if e[1] == STALE]
    assert states == ["rtn_unack"]  # the one change after the restart: fresh data
