"""Modbus scenario: 10 endpoints (pymodbus server processes) × 10 unit ids = 100 racks of 1,000 registers
(800 cell voltages, 200 temperatures) polled at 1 Hz by the gateway (MQTT and InfluxDB sinks on), and
by the naive one-read-per-point loop.

Figures over a measured window after a warm-up: cycle start jitter p99 and drift (each rack's first
sample timestamp per cycle against a drift-free schedule), CPU µs per point (the process's own CPU /
points stored), points/s, requests per rack cycle (the gateway's request counter on /metrics over its
poll counter), peak RSS; the CPU of the process under measurement beside its peers' (the Modbus
server processes, Mosquitto, VictoriaMetrics, the bench's own MQTT subscribers) and the machine's idle
time over the same window (bench/cpu.py), with the figures flagged when the machine had no headroom.
"""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path

from bench import cpu
from bench.common import Gateway, Options, base_config, influx_sink, mqtt_sink, read_json, store_counts, write_yaml
from bench.peers import Mosquitto, VictoriaMetrics, free_port, wait_port
from bench.proc import Measured, metric_sum, python, spawn
from bench.stats import Row, Runs, median, percentile, schedule_jitter
from bench.telemetry_latency import TelemetryLatency

ENDPOINTS, UNITS, REGISTERS, VOLTAGES = 10, 10, 1000, 800
STOP_WAIT = 20.0  # seconds after SIGTERM before SIGKILL (the gateway's grace period is 10 s)

PROFILE = f"""protocol: modbus
description: bench rack, {REGISTERS} holding registers
interval: 1.0
points:
  - {{quantity: cell_voltage, address: 0, type: uint16, scale: 0.001, array: {{count: {VOLTAGES}, per_module: 20}}}}
  - quantity: cell_temperature
    address: {VOLTAGES}
    type: uint16
    scale: 0.1
    array: {{count: {REGISTERS - VOLTAGES}, per_module: 5}}
"""


def start_servers(work: Path, endpoints: int = ENDPOINTS) -> tuple[list[Measured], list[int]]:
    ports = [free_port() for _ in range(endpoints)]
    procs = [
        spawn(
            python(
                "-m",
                "bench.modbus_server",
                "--port",
                str(p),
                "--units",
                str(UNITS),
                "--registers",
                str(REGISTERS),
                "--voltages",
                str(VOLTAGES),
            ),
            f"modbus-{p}",
            work / f"modbus-{p}.log",
        )
        for p in ports
    ]
    for p in ports:
        wait_port(p, 30)
    return procs, ports


def stop_all(procs: list[Measured]) -> None:
    for p in procs:
        p.stop(5)


def site_config(work: Path, ports: list[int], mqtt_port: int | None, vm_url: str | None) -> Path:
    (work / "profiles").mkdir(parents=True, exist_ok=True)
    (work / "profiles" / "bench_modbus.yaml").write_text(PROFILE)
    doc = base_config(work)
    doc["sources"] = [
        {
            "type": "modbus",
            "name": f"rack-{e + 1:02d}-{u:02d}",
            "profile": "bench_modbus",
            "host": "127.0.0.1",
            "port": port,
            "unit_id": u,
        }
        for e, port in enumerate(ports)
        for u in range(1, UNITS + 1)
    ]
    if mqtt_port:
        doc["sinks"]["mqtt"] = mqtt_sink(mqtt_port)
    if vm_url:
        doc["sinks"]["influx"] = influx_sink(vm_url)
    return write_yaml(work / "gateway.yaml", doc)


def peers(servers: list[Measured], mosq: Mosquitto, vm: VictoriaMetrics) -> dict[str, list[cpu.CpuReader]]:
    assert mosq.proc is not None and vm.proc is not None, "peers not started"
    return {f"modbus servers ({len(servers)})": [s.cpu for s in servers], **cpu.bench_peers(mosq.proc.pid, vm.proc.pid)}


def run_gateway(
    work: Path,
    ports: list[int],
    mosq: Mosquitto,
    vm: VictoriaMetrics,
    warmup: float,
    window: float,
    servers: list[Measured],
) -> dict[str, float]:
    gw = Gateway(site_config(work, ports, mosq.port, vm.url), work)
    latency = TelemetryLatency(mosq.port, [f"bench/bench/rack-{e + 1:02d}-01/telemetry" for e in range(len(ports))])
    usage = cpu.CpuWindow("gateway", {"gateway": [gw.proc.cpu], **peers(servers, mosq, vm)})
    try:
        gw.wait_ready(60)
        time.sleep(warmup)
        m0, t0, c0 = gw.metrics(), time.time_ns(), gw.proc.mark("start")
        usage.start()
        latency.start()
        time.sleep(window)
        lat = latency.stop()
        m1, t1, c1 = gw.metrics(), time.time_ns(), gw.proc.mark("end")
        share = usage.stop()
        t_stop = time.monotonic()
        print(f"    {cpu.run_line('modbus', share)}", flush=True)
    finally:
        latency.close()
        gw.stop(STOP_WAIT)
    stop_s = time.monotonic() - t_stop
    counts = store_counts(gw.store, t0, t1)
    jit: list[float] = []
    drifts: list[float] = []
    for starts in counts["starts"].values():
        j, d = schedule_jitter([t / 1e9 for t in starts], 1.0)
        jit += j
        if not math.isnan(d):
            drifts.append(d)
    polls = metric_sum(m1, "bms_gateway_modbus_polls_total") - metric_sum(m0, "bms_gateway_modbus_polls_total")
    reqs = metric_sum(m1, "bms_gateway_modbus_requests_total") - metric_sum(m0, "bms_gateway_modbus_requests_total")
    points = counts["samples"]
    expected = len(ports) * UNITS * REGISTERS * window
    return {
        "jitter_p99_ms": percentile(jit, 99) * 1000,
        "latency_p50_ms": percentile(lat, 50),
        "latency_p99_ms": percentile(lat, 99),
        "lag_mqtt_s": m1.get('bms_gateway_sink_lag_seconds{sink="mqtt"}', math.nan),
        "lag_influx_s": m1.get('bms_gateway_sink_lag_seconds{sink="influx"}', math.nan),
        "drift_ms_h": median([abs(d) for d in drifts]) * 1000,
        "us_per_point": (c1 - c0) / max(1, points) * 1e6,
        "points_s": points / ((t1 - t0) / 1e9),
        "req_per_cycle": reqs / polls if polls else math.nan,
        "rss": gw.proc.last_hwm,
        "lost": max(0.0, expected - points),
        "bad": points - counts["good"],
        "stop_s": stop_s,
        **share.figures(),
    }


def run_naive(
    work: Path,
    ports: list[int],
    mosq: Mosquitto,
    window: float,
    vm: VictoriaMetrics,
    servers: list[Measured],
) -> dict[str, float]:
    out = work / "naive.json"
    out.unlink(missing_ok=True)
    naive = spawn(
        python(
            "-m",
            "bench.baselines.modbus_naive",
            "--ports",
            ",".join(map(str, ports)),
            "--units",
            str(UNITS),
            "--points",
            str(REGISTERS),
            "--voltages",
            str(VOLTAGES),
            "--mqtt-port",
            str(mosq.port),
            "--out",
            str(out),
        ),
        "naive",
        work / "naive.log",
    )
    latency = TelemetryLatency(mosq.port, ["naive/#"])
    usage = cpu.CpuWindow("naive", {"naive": [naive.cpu], **peers(servers, mosq, vm)})
    try:
        time.sleep(1.5)
        c0 = naive.mark("start")
        usage.start()
        latency.start()
        time.sleep(window)
        lat = latency.stop()
        c1 = naive.mark("end")
        share = usage.stop()
        print(f"    {cpu.run_line('modbus', share)}", flush=True)
    finally:
        latency.close()
        naive.stop()
    got = read_json(out)
    points = max(1, got["points"])
    rate = points / (window + 1.5)
    cycle_s = len(ports) * UNITS * REGISTERS / rate
    return {
        "jitter_p99_ms": max(0.0, cycle_s - 1.0) * 1000,  # a cycle that takes cycle_s starts that late
        "latency_p50_ms": percentile(lat, 50),
        "latency_p99_ms": percentile(lat, 99),
        "drift_ms_h": math.nan,
        "us_per_point": (c1 - c0) / max(1, points * window / (window + 1.5)) * 1e6,
        "points_s": rate,
        "req_per_cycle": got["requests"] / max(1, points) * REGISTERS,
        "rss": naive.last_hwm,
        "cycle_s": cycle_s,
        **share.figures(),
    }


def run(opts: Options) -> list[Row]:
    runs = opts.runs
    window = opts.duration or (20.0 if opts.quick else 60.0)
    warmup = 5.0 if opts.quick else 10.0
    root = opts.work / "modbus"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    servers, ports = start_servers(root)
    mosq = Mosquitto(root / "mosquitto").start()
    vm = VictoriaMetrics(root / "vm").start()
    gw, nv = Runs(), Runs()
    try:
        for i in range(runs):
            work = root / f"gw{i}"
            gw.add(**run_gateway(work, ports, mosq, vm, warmup, window, servers))
            print(f"  modbus run {i + 1}: gateway {brief(gw)}", flush=True)
            nv.add(**run_naive(root / f"naive{i}", ports, mosq, min(window, 20.0), vm, servers))
            print(f"  modbus run {i + 1}: naive {brief(nv)}", flush=True)
    finally:
        mosq.stop()
        vm.stop()
        stop_all(servers)
    print(f"  {cpu.line('modbus', gw, 'gateway')}", flush=True)
    print(f"  {cpu.line('modbus', nv, 'naive')}", flush=True)
    return rows(gw, nv)


def brief(r: Runs) -> str:
    v = {k: x[-1] for k, x in r.values.items()}
    return (
        f"{v['points_s']:.0f} pts/s, {v['us_per_point']:.1f} µs/pt, jitter p99 {v['jitter_p99_ms']:.0f} ms, "
        f"{v['req_per_cycle']:.0f} req/cycle"
    )


def rows(gw: Runs, nv: Runs) -> list[Row]:
    out = figure_rows(gw, nv) + cpu.rows("modbus", "", gw, nv)
    for row in out:
        cpu.note(row, cpu.flag(gw))
    return out


def figure_rows(gw: Runs, nv: Runs) -> list[Row]:
    j, us, req = gw.med("jitter_p99_ms"), gw.med("us_per_point"), gw.med("req_per_cycle")
    nreq = nv.med("req_per_cycle")
    return [
        Row("modbus", "points/s (100 racks × 1,000 @ 1 Hz)", gw.med("points_s"), nv.med("points_s"), "100,000"),
        Row(
            "modbus",
            "cycle start jitter p99 ms",
            j,
            nv.med("jitter_p99_ms"),
            "<20",
            "lower",
            met=j < 20,
            note="naive: its cycle overrun",
        ),
        Row("modbus", "drift ms/hour", gw.med("drift_ms_h"), math.nan, "~0", "lower"),
        Row(
            "modbus",
            "latency p50 ms (block answered -> MQTT)",
            gw.med("latency_p50_ms"),
            nv.med("latency_p50_ms"),
            better="lower",
            note="naive: from a device's first read",
        ),
        Row("modbus", "latency p99 ms", gw.med("latency_p99_ms"), nv.med("latency_p99_ms"), better="lower"),
        Row("modbus", "MQTT sink lag at the end s", gw.med("lag_mqtt_s"), math.nan, better="lower"),
        Row("modbus", "InfluxDB sink lag at the end s", gw.med("lag_influx_s"), math.nan, better="lower"),
        Row("modbus", "CPU µs per point", us, nv.med("us_per_point"), "<=4", "lower", met=us <= 4),
        Row(
            "modbus",
            "requests per rack cycle",
            req,
            nreq,
            ">=10x fewer",
            "lower",
            met=not math.isnan(req) and nreq / req >= 10,
        ),
        Row("modbus", "peak RSS MB", gw.med("rss"), nv.med("rss"), "<150", "lower", met=gw.med("rss") < 150),
        Row("modbus", "points not stored (window)", gw.med("lost"), math.nan, "0", "lower"),
        Row(
            "modbus",
            "exit after SIGTERM s",
            gw.med("stop_s"),
            math.nan,
            "<=10 (grace)",
            "lower",
            met=gw.med("stop_s") <= 11,
            note=f"killed at {STOP_WAIT:.0f} s" if gw.max("stop_s") >= STOP_WAIT else "",
        ),
    ]
