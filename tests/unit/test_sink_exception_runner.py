"""Report by exception in the sink runner, with a sink written here (the Sink protocol is ours): a write
that fails is retried with the same samples, and only confirmed writes move the filter and its counters."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from gateway.errors import SinkError
from gateway.model import Batch, Sample, Value
from gateway.sinks.base import Rejected
from gateway.sinks.config import InfluxSinkConfig
from gateway.sinks.runner import SinkRunner
from gateway.store.outbox import Outbox, Row
from tests.delivery_support import metric, running
from tests.support.waits import await_for

S = 1_000_000_000


class FlakySink:
    """Keeps the samples of every attempt and of every confirmed write; fails while `fail` > 0."""

    def __init__(self) -> None:
        self.name = "flaky"
        self.fail = 0
        self.attempts: list[list[tuple[int | None, Value]]] = []
        self.confirmed: list[list[tuple[int | None, Value]]] = []

    async def open(self) -> None:
        pass

    async def write(self, rows: Sequence[Row]) -> Sequence[Rejected]:
        got = [(s.cell, s.value) for r in rows for s in r.batch.samples()]
        self.attempts.append(got)
        if self.fail > 0:
            self.fail -= 1
            raise SinkError("down")
        self.confirmed.append(got)
        return []

    async def close(self) -> None:
        pass


def row(t: int, *volts: float) -> Batch:
    return Batch.of_samples(
        "r1", [Sample(t * S, "cell_voltage", v, "V", "good", "r1", 1, c + 1) for c, v in enumerate(volts)]
    )


async def test_a_failed_write_is_retried_with_the_same_samples(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "o.db")
    cfg = InfluxSinkConfig.model_validate({
        "url": "http://127.0.0.1:1", "backoff_initial": 0.01, "backoff_max": 0.05, "batch_max_age": 0.01,
        "report_by_exception": {"deadbands": {"cell_voltage": 0.005}},
    })  # fmt: skip
    sink = FlakySink()
    runner = SinkRunner("flaky", sink, ob, cfg)
    async with running(runner):
        ob.append([row(0, 3.300, 3.300)])
        runner.notify()
        await await_for(runner.caught_up)
        sink.fail = 2
        ob.append([row(1, 3.306, 3.301)])  # cell 1 moved 6 mV: sent; cell 2 1 mV: suppressed
        runner.notify()
        await await_for(runner.caught_up)
        ob.append([row(2, 3.310, 3.302)])  # 4 mV from the 3.306 SENT: suppressed; cell 2 too
        runner.notify()
        await await_for(runner.caught_up)
    # Both failed attempts and the retry carried 3.306: a failed write never counts as sent (else the
    # retry would compare 3.306 with itself and the uplink would never get it).
    assert sink.attempts == [[(1, 3.3), (2, 3.3)], [(1, 3.306)], [(1, 3.306)], [(1, 3.306)]]
    assert sink.confirmed == [[(1, 3.3), (2, 3.3)], [(1, 3.306)]]
    assert runner.suppressed == 3  # counted once, for the confirmed write (not per attempt)
    assert metric("bms_gateway_sink_suppressed_samples_total", sink="flaky", quantity="cell_voltage") == 3
    assert runner.delivered == 3 and ob.acked("flaky") == 3  # the wholly suppressed row 3 is acknowledged
    ob.close()
