"""InfluxDB sink against the real VictoriaMetrics (v2 write API) and, for the statuses it cannot produce
(401, 413, 429, field-type conflicts), a real HTTP server answering as InfluxDB documents."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from gateway.model import Batch, BatchKind, Sample
from gateway.sinks.config import InfluxSinkConfig
from gateway.sinks.influx.sink import InfluxSink
from gateway.sinks.runner import SinkRunner
from gateway.store.outbox import Outbox
from tests.delivery_support import (
    Answer,
    InfluxLikeServer,
    metric,
    running,
    sample_batch,
    vm_series,
    vm_wait_points,
)
from tests.servers import VictoriaMetrics
from tests.support.waits import await_for

FAST = {"batch_max_age": 0.05, "backoff_initial": 0.05, "backoff_max": 0.5}


async def deliver(ob: Outbox, runner: SinkRunner, batches: list[Batch]) -> None:
    """Run the sink until it has delivered the batches, stored one row each."""
    async with running(runner):
        for b in batches:
            ob.append([b])
            runner.notify()
        await await_for(runner.caught_up)


def make(tmp_path: Path, url: str, **kw: object) -> tuple[Outbox, SinkRunner]:
    ob = Outbox(tmp_path / "store.db")
    cfg = InfluxSinkConfig.model_validate({"url": url, "token": "t0ken", **FAST, **kw})
    runner = SinkRunner("influx", InfluxSink("influx", cfg, "s1"), ob, cfg)
    return ob, runner


async def test_samples_land_in_victoriametrics_in_order(tmp_path: Path, victoria: VictoriaMetrics) -> None:
    ob, runner = make(tmp_path, victoria.url)
    assert "accepted" in await runner.sink.probe()  # type: ignore[attr-defined]  # an empty write
    t0 = (time.time_ns() // 1_000_000) * 1_000_000
    await deliver(ob, runner, [sample_batch("r1", t0 + i * 10_000_000, 4, base=i) for i in range(50)])
    assert await vm_wait_points(victoria, '{__name__=~"rack_raw.v.*"}', 200) == 200
    series = vm_series(victoria)
    assert set(series) == {"rack_raw.v0", "rack_raw.v1", "rack_raw.v2", "rack_raw.v3"}
    assert series["rack_raw.v2"] == [((t0 + i * 10_000_000) // 1_000_000, i + 2.0) for i in range(50)]
    assert metric("bms_gateway_sink_pending_samples", sink="influx") == 0
    ob.close()


OUTAGE = float(os.environ.get("BMS_TEST_OUTAGE_SECONDS", "4"))
RATE = 1000  # samples per second


async def test_every_reading_of_a_can_window_lands_though_they_share_one_time(
    tmp_path: Path, victoria: VictoriaMetrics
) -> None:
    """A CAN window stamps its samples with its decode time: three frames of one message are three readings
    of one field at one nanosecond, and a second window carries the last reading of the first at that time.
    Each is a point of its own (moved a millisecond on each), none overwritten, no clock step."""
    ob, runner = make(tmp_path, victoria.url)
    t0 = (time.time_ns() // 1_000_000) * 1_000_000
    first = Batch.of_samples("r1", [Sample(t0, "raw.w", float(k), "", "good", "r1") for k in range(3)], device="r1")
    carried = [Sample(t0, "raw.w", 3.0, "", "good", "r1"), Sample(t0 + 20_000_000, "raw.w", 4.0, "", "good", "r1")]
    await deliver(ob, runner, [first, Batch.of_samples("r1", carried, device="r1")])
    assert await vm_wait_points(victoria, '{__name__="rack_raw.w"}', 5) == 5
    ms = t0 // 1_000_000
    assert vm_series(victoria)["rack_raw.w"] == [(ms, 0.0), (ms + 1, 1.0), (ms + 2, 2.0), (ms + 3, 3.0), (ms + 20, 4.0)]
    assert not victoria.export('{__name__="rack_raw.w", clock_step!=""}')
    ob.close()


async def test_outage_loses_nothing_and_keeps_order(tmp_path: Path, victoria: VictoriaMetrics) -> None:
    """VictoriaMetrics down while 1,000 samples/s flow (BMS_TEST_OUTAGE_SECONDS=120 for the full 2 minutes)."""

    ob, runner = make(tmp_path, victoria.url)
    truth: list[tuple[int, float]] = []
    start = (time.time_ns() // 1_000_000) * 1_000_000
    i = 0

    def produce() -> None:
        nonlocal i
        ts = start + i * 100_000_000  # ten batches of 100 samples per second of data
        ob.append([sample_batch("r1", ts, 100, base=i)])
        truth.append((ts // 1_000_000, float(i)))
        runner.notify()
        i += 1

    async with running(runner):
        for _ in range(10):
            produce()
            await asyncio.sleep(0.1)
        await await_for(runner.caught_up)
        victoria.stop()
        t_end = time.monotonic() + OUTAGE
        deadline = t_end + 60
        retries_before = metric("bms_gateway_sink_retries_total", sink="influx")  # the registry is per process

        def noticed() -> bool:  # the runner has failed a write and counts the backlog
            return (
                metric("bms_gateway_sink_retries_total", sink="influx") > retries_before
                and metric("bms_gateway_sink_pending_samples", sink="influx") > 0
            )

        # The outage lasts OUTAGE seconds, and on a busy machine until the runner has noticed it.
        while time.monotonic() < t_end or not noticed():
            assert time.monotonic() < deadline, "the runner did not notice the outage"
            produce()
            await asyncio.sleep(100 / RATE)
        assert not runner.caught_up()
        assert metric("bms_gateway_sink_pending_samples", sink="influx") > 0
        assert metric("bms_gateway_sink_retries_total", sink="influx") > retries_before
        victoria.start()
        for _ in range(10):
            produce()
            await asyncio.sleep(0.1)
        await await_for(runner.caught_up, timeout=60)
    total = len(truth) * 100
    got = await vm_wait_points(victoria, '{__name__=~"rack_raw.v.*"}', total)
    series = vm_series(victoria, '{__name__="rack_raw.v0"}')["rack_raw.v0"]
    lost = total - got
    print(f"outage {OUTAGE}s: produced {total} samples, lost: {lost}")
    assert lost == 0
    assert series == truth  # every sample, in time order, exactly once
    ob.close()


async def test_rejected_point_goes_to_the_dead_letter_table(tmp_path: Path) -> None:
    async with InfluxLikeServer(conflicts=("raw.v3=",)) as srv:
        ob, runner = make(tmp_path, srv.url)
        ob.append([sample_batch("r1", 1_000_000_000 * k, 1, base=k) for k in range(1, 3)])
        bad = sample_batch("r1", 3_000_000_000, 4)  # one line holding raw.v3
        ob.append([bad])
        ob.append([sample_batch("r1", 4_000_000_000, 1)])
        async with running(runner):
            await await_for(runner.caught_up)
    dl = ob.dead_letters("influx")
    assert len(dl) == 1
    assert dl[0].seq == 3 and dl[0].status == 400
    assert "field type conflict" in dl[0].reason
    assert "raw.v3=3.0" in dl[0].item
    # InfluxDB writes the good points of a partly bad request; the bisection writes them again (same
    # series and time: an overwrite, not a duplicate).
    assert len(set(srv.stored)) == 3 and all("raw.v3" not in s for s in srv.stored)
    assert metric("bms_gateway_sink_dead_lettered_total", sink="influx") >= 1
    ob.close()


async def test_413_splits_and_429_retry_after_is_honoured(tmp_path: Path) -> None:
    script = [Answer(429, '{"code":"too many requests","message":"slow down"}', {"Retry-After": "1"})]
    async with InfluxLikeServer(script=script, max_lines=3) as srv:
        ob, runner = make(tmp_path, srv.url, batch_max_samples=100)
        ob.append([sample_batch("r1", 1_000_000_000 * k, 1, base=k) for k in range(1, 11)])
        async with running(runner):
            await await_for(runner.caught_up)
    assert srv.log[0] == 429 and 413 in srv.log
    # Retry-After: 1 is honoured: the next request came a second or more later (backoff alone: 25-50 ms).
    assert srv.times[1] - srv.times[0] >= 1.0
    assert [s.split()[-1] for s in srv.stored] == [str(k * 1000) for k in range(1, 11)]  # ms, in order
    assert srv.headers_seen[0].get("content-encoding") == "gzip"
    ob.close()


async def test_401_keeps_data_raises_an_alarm_and_delivers_after_the_fix(tmp_path: Path) -> None:
    async with InfluxLikeServer(token="right") as srv:
        ob, runner = make(tmp_path, srv.url)
        ob.append([sample_batch("r1", 1_000_000_000, 2)])
        async with running(runner):
            await await_for(lambda: runner.auth_alarm)
            assert metric("bms_gateway_sink_auth_failed", sink="influx") == 1
            assert not runner.caught_up() and srv.stored == []
            srv.token = "t0ken"  # the operator fixes the token on the server side
            runner.notify()
            await await_for(lambda: runner.caught_up() and not runner.auth_alarm, timeout=30)
    alarms = [r.batch for r in ob.query() if r.batch.kind == BatchKind.ALARM]
    states = [str(b.records[0]["state"]) for b in alarms]
    assert states == ["active_unack", "rtn_unack"]
    assert alarms[0].records[0]["alarm_id"] == "gateway:sink_auth_failed:influx"
    assert "t0ken" not in str(alarms[0].records) and "right" not in str(alarms[0].records)
    assert any(s.startswith("rack,") for s in srv.stored)
    assert any(s.startswith("alarm,") for s in srv.stored)
    ob.close()


@pytest.mark.parametrize("status", [500, 503])
async def test_server_errors_retry_until_accepted(tmp_path: Path, status: int) -> None:
    async with InfluxLikeServer(script=[Answer(status, "oops"), Answer(status, "oops")]) as srv:
        ob, runner = make(tmp_path, srv.url)
        ob.append([sample_batch("r1", 1_000_000_000, 3)])
        async with running(runner):
            await await_for(runner.caught_up)
    assert srv.log == [status, status, 204]
    assert len(srv.stored) == 1
    ob.close()


async def test_https_with_a_ca_file_and_a_token_file(tmp_path: Path) -> None:
    import ssl

    from gateway.errors import SinkError
    from tests.delivery_support import make_certs

    certs = make_certs(tmp_path / "pki")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(certs["server.crt"], certs["server.key"])
    (tmp_path / "token").write_text("s3cret-token\n")
    async with InfluxLikeServer(ssl=ctx, token="s3cret-token") as srv:
        ob, runner = make(
            tmp_path, srv.url, token=None, token_file=str(tmp_path / "token"), ca_file=str(certs["ca.crt"])
        )
        assert "s3cret" not in repr(runner.sink) and "s3cret" not in repr(runner.cfg)
        ob.append([sample_batch("r1", 1_000_000_000, 2)])
        async with running(runner):
            await await_for(runner.caught_up)
        assert len(srv.stored) == 1
        # Verification is on by default: without the CA the server's certificate is refused.
        cfg = InfluxSinkConfig(url=srv.url, token="s3cret-token")
        sink = InfluxSink("influx2", cfg, "s1")
        await sink.open()
        with pytest.raises(SinkError, match="network error") as info:
            await sink.write(list(ob.query()))
        assert "s3cret" not in str(info.value)
        await sink.close()
    ob.close()


async def test_a_missing_token_file_keeps_the_data_and_recovers(tmp_path: Path) -> None:
    async with InfluxLikeServer(token="tok") as srv:
        token = tmp_path / "token"
        ob, runner = make(tmp_path, srv.url, token=None, token_file=str(token))
        ob.append([sample_batch("r1", 1_000_000_000, 2)])
        async with running(runner):
            await await_for(lambda: runner.failures > 0)
            assert "cannot read secret file" in runner.last_error and not runner.caught_up()
            token.write_text("tok\n")  # the operator restores the file; no restart needed
            await await_for(runner.caught_up, timeout=30)
    assert len(srv.stored) == 1
    ob.close()


async def test_the_clock_guard_resumes_after_a_restart(tmp_path: Path, victoria: VictoriaMetrics) -> None:
    """A point in the same millisecond as one written before a restart moves one unit on (it would
    overwrite it in InfluxDB), and a clock that stepped back across the restart is tagged."""
    ob, runner = make(tmp_path, victoria.url, precision="ms")
    t0 = (time.time_ns() // 1_000_000) * 1_000_000
    await deliver(ob, runner, [sample_batch("r1", t0 + i * 1_000_000, 1, base=i) for i in range(3)])
    ob.close()

    ob, runner = make(tmp_path, victoria.url, precision="ms")  # a new process: a new sink, a new guard
    assert [r.seq for r in list(runner.delivered_tail())] == [1, 2, 3]
    await deliver(
        ob,
        runner,
        [
            sample_batch("r1", t0 + 2_000_000 + 400_000, 1, base=10),  # same ms as the last one
            sample_batch("r1", t0 - 5_000_000, 1, base=20),  # the clock stepped back 7 ms
        ],
    )
    ob.close()
    ms = t0 // 1_000_000
    assert await vm_wait_points(victoria, '{__name__="rack_raw.v0"}', 5) == 5  # none overwritten
    series = vm_series(victoria, '{__name__="rack_raw.v0"}')
    assert series["rack_raw.v0"] == [(ms - 5, 20.0), (ms, 0.0), (ms + 1, 1.0), (ms + 2, 2.0), (ms + 3, 10.0)]
    tagged = [s["metric"] for s in victoria.export('{__name__="rack_raw.v0", clock_step!=""}')]
    assert len(tagged) == 1 and tagged[0]["clock_step"] == "1"  # type: ignore[index]


async def test_resume_takes_only_the_last_delivered_rows(tmp_path: Path) -> None:
    from gateway.sinks import runner as runner_module

    ob, runner = make(tmp_path, "http://127.0.0.1:9")
    ob.append([sample_batch("r1", 1_000_000 * i, 100) for i in range(1, 11)])
    assert list(runner.delivered_tail()) == []  # nothing delivered yet
    ob.ack("influx", 7)
    runner.position = 7
    assert [r.seq for r in list(runner.delivered_tail())] == list(range(1, 8))
    old = runner_module.RESUME_SAMPLES
    runner_module.RESUME_SAMPLES = 250
    try:
        assert [r.seq for r in list(runner.delivered_tail())] == [6, 7]  # the newest rows within the bound
    finally:
        runner_module.RESUME_SAMPLES = old
    assert runner.sink.resume(runner.delivered_tail()) == 1  # type: ignore[attr-defined]  # one rack line
    ob.close()
