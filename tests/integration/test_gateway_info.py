"""The gateway's info and heartbeat against real peers: the retained MQTT `gateway/info` (at start, after
a reload, again after a broker lost its retained messages) and the InfluxDB `gateway` measurement's
series in VictoriaMetrics, with the field names the manual documents."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

from gateway import metrics
from gateway.config.settings import load_config
from gateway.ops.service import VERSION
from gateway.runtime.core import Runtime
from gateway.runtime.gatewayinfo import config_digest
from tests.delivery_support import Collector
from tests.servers import Mosquitto, VictoriaMetrics
from tests.support.manual import manual_text
from tests.support.waits import await_for


def documented(table: str) -> tuple[str, ...]:
    """The field names of a manual table (first column, in backticks) whose header starts with `table`."""
    lines = manual_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {table}"))
    names: list[str] = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        names += re.findall(r"`(\w+)`", line.split("|")[1])
    return tuple(names)


INFO_FIELDS = {"site", "type", "component", "ts", *documented("info field")}
GATEWAY_FIELDS = documented("heartbeat field (`component=gateway`)")
SINK_FIELDS = documented("heartbeat field (`component=sink`")
FAST = "batch_max_age: 0.05, backoff_initial: 0.05, backoff_max: 0.5"


def config(tmp_path: Path, vm: VictoriaMetrics, broker: Mosquitto, racks: list[str]) -> Path:
    sources = "".join(
        f"  - {{type: simulated, name: {r}, interval: 0.1, modules: 1, cells_per_module: 4}}\n" for r in racks
    )
    text = (
        "site: {name: s1}\n"
        f"sources:\n{sources}"
        "sinks:\n"
        f"  influx: {{type: influxdb, url: '{vm.url}', token: t, precision: ms, {FAST}}}\n"
        f"  mqtt: {{type: mqtt, host: 127.0.0.1, port: {broker.port}, tls: false, {FAST}}}\n"
        f"store: {{path: '{tmp_path / 'store.db'}'}}\n"
        "http: {enabled: false}\n"
        "runtime: {heartbeat_interval: 0.2}\n"
    )
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    return path


def infos(sub: Collector) -> list[dict[str, object]]:
    return [json.loads(p) for p in sub.payloads("bms/s1/gateway/info")]


def beats(sub: Collector) -> list[dict[str, object]]:
    return [json.loads(p) for p in sub.payloads("bms/s1/gateway/heartbeat")]


def delivered(beat: dict[str, object], sink: str) -> int:
    sinks = beat["sinks"]
    assert isinstance(sinks, dict)
    return int(sinks[sink]["delivered_samples"])


async def test_info_and_heartbeat_reach_the_broker_and_the_database(
    tmp_path: Path, victoria: VictoriaMetrics, mosquitto: Mosquitto
) -> None:
    path = config(tmp_path, victoria, mosquitto, ["rack-01"])
    rt = Runtime(load_config(path))
    async with Collector(mosquitto.port, topic="bms/s1/gateway/#") as sub:
        task = asyncio.create_task(rt.run())
        try:
            # At start: the retained info, then heartbeats counting what both sinks delivered.
            await await_for(lambda: len(infos(sub)) >= 1)
            [info] = infos(sub)
            assert set(info) == INFO_FIELDS
            assert info["type"] == "info" and info["reason"] == "start" and info["version"] == VERSION
            assert info["config_digest"] == config_digest(rt.loaded)
            assert info["sources"] == ["rack-01"] and info["sinks"] == ["influx", "mqtt"]
            await await_for(lambda: any(delivered(b, "influx") > 0 and delivered(b, "mqtt") > 0 for b in beats(sub)))
            beat = beats(sub)[-1]
            assert set(GATEWAY_FIELDS) <= set(beat) and set(beat["sinks"]["mqtt"]) == set(SINK_FIELDS)  # type: ignore[index]
            assert beat["samples_stored"] > 0 and beat["racks_online"] == 1 and beat["store_bytes"] > 0  # type: ignore[operator]
            assert beat["samples_stored"] <= metrics.REGISTRY.get_sample_value("bms_gateway_samples_stored_total")  # type: ignore[operator]
            # A reload that adds a source: a new info, with the new source and digest.
            path.write_text(config(tmp_path, victoria, mosquitto, ["rack-01", "rack-02"]).read_text())
            assert (await rt.reload()).ok
            await await_for(lambda: len(infos(sub)) >= 2)
            reloaded = infos(sub)[-1]
            assert reloaded["reason"] == "reload" and reloaded["sources"] == ["rack-01", "rack-02"]
            assert reloaded["config_digest"] != info["config_digest"] and reloaded["started"] == info["started"]
            # A broker that lost its retained messages gets the info again when the sink reconnects.
            seen = len(infos(sub))
            mosquitto.stop()
            for f in mosquitto.workdir.glob("*.db"):
                f.unlink()
            mosquitto.start()
            await await_for(lambda: len(infos(sub)) > seen, timeout=60)  # published again at the connect
            async with Collector(mosquitto.port, topic="bms/s1/gateway/info", client_id="late") as late:
                await await_for(lambda: any(r for t, _p, r in late.messages), timeout=60)
                retained = [json.loads(p) for _t, p, r in late.messages if r]
            assert retained[-1]["reason"] == "reload" and retained[-1]["sources"] == ["rack-01", "rack-02"]
        finally:
            rt.request_stop("test")
            await task
    # The `gateway` measurement in VictoriaMetrics: the counters as fields, one series per component.
    names: dict[str, set[tuple[str, str]]] = {}

    async def exported() -> bool:
        names.clear()
        for s in await asyncio.to_thread(victoria.export, '{__name__=~"gateway_.*"}'):
            m = dict(s["metric"])  # type: ignore[call-overload]
            names.setdefault(m.pop("__name__"), set()).add((m.get("component", ""), m.get("sink", "")))
        return {"gateway_started", "gateway_delivered_samples"} <= set(names)

    await await_for(exported, 60, "the gateway's own series in VictoriaMetrics", step=0.5, detail=lambda: sorted(names))
    for field in GATEWAY_FIELDS:
        assert ("gateway", "") in names[f"gateway_{field}"], field
    for field in SINK_FIELDS:
        assert names[f"gateway_{field}"] >= {("sink", "influx"), ("sink", "mqtt")}, field
    assert ("info", "") in names["gateway_started"] and ("info", "") in names["gateway_pid"]
