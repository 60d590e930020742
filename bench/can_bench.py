"""CAN scenario: frames of the bench DBC replayed onto udp_multicast (loopback) at stepped rates, through
the gateway (decode, normalize, alarms, outbox, MQTT and InfluxDB sinks) and through the naive bridge.

Per rate step and side: a fresh process; the sender replays for `duration` s with a probe frame every
50 ms (raw.bench_probe = sequence number); an MQTT subscriber timestamps each probe's arrival. For the
gateway the latency is also split at the probe sample's time in the store (when the source decoded its
frame): send → decode (the receive buffer and the CAN batch window) and decode → MQTT (the queue, the
group commit, the sink's batching and write).
Lost = samples the sender sent minus samples with good quality stored (gateway) / decoded (naive),
plus what the MQTT subscriber did not receive. Sustained rate = highest step with zero loss and
probe p99 < 500 ms; "with headroom" also asks that gateway + peers left the machine idle enough
(bench/cpu.py). Per step and side the CPU of the process under measurement, of its peers (the sender,
Mosquitto, VictoriaMetrics, the bench's own MQTT subscribers) and the machine's idle time are reported.
"""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path
from typing import Any

from bench import candata, cpu
from bench.common import Gateway, Options, base_config, influx_sink, mqtt_sink, read_json, store_counts, write_yaml
from bench.peers import (
    PROBE_QUANTITY,
    Mosquitto,
    MqttWatch,
    VictoriaMetrics,
    free_port,
    latencies_ms,
    parse_gateway,
    parse_naive,
)
from bench.proc import metric_sum, python, spawn, udp_drops
from bench.stats import Row, Runs, percentile

RATES = [2000, 4000, 8000, 16000, 25000, 32000]
QUICK_RATES = [4000, 8000, 25000]
PROBE_EVERY = 0.05
WARMUP_PROBES = 10  # the first 0.5 s: connections and caches warming up

PROFILE = """protocol: can
description: bench BMS (multiplexed cell frames)
dbc: bench.dbc
points:
  - {signal: RackVoltage, quantity: rack_voltage}
  - {signal: RackCurrent, quantity: rack_current}
  - {signal: SoC, quantity: soc}
  - {signal: SoH, quantity: soh}
  - signal: "Cell{i:03d}_Voltage"
    quantity: cell_voltage
    index_start: 1
    array: {count: 192, per_module: 24}
  - signal: "Sensor{i:02d}_Temperature"
    quantity: cell_temperature
    index_start: 1
    array: {count: 64, per_module: 8}
  - {signal: ProbeSeq, quantity: raw.bench_probe}
"""


def gateway_config(work: Path, port: int, mqtt_port: int, vm_url: str) -> Path:
    (work / "profiles").mkdir(parents=True, exist_ok=True)
    (work / "profiles" / "bench_can.yaml").write_text(PROFILE)
    (work / "dbc").mkdir(exist_ok=True)
    shutil.copy(candata.DBC, work / "dbc" / "bench.dbc")
    doc = base_config(work)
    doc["sources"] = [
        {
            "type": "can",
            "name": "rack-01",
            "profile": "bench_can",
            "interface": "udp_multicast",
            "channel": "239.74.163.2",
            "port": port,
        }
    ]
    doc["sinks"] = {"mqtt": mqtt_sink(mqtt_port), "influx": influx_sink(vm_url)}
    return write_yaml(work / "gateway.yaml", doc)


def send(work: Path, port: int, rate: int, duration: float, window: cpu.CpuWindow | None = None) -> dict[str, Any]:
    out = work / "sent.json"
    out.unlink(missing_ok=True)
    sender = spawn(
        python(
            "-m",
            "bench.can_sender",
            "--port",
            str(port),
            "--rate",
            str(rate),
            "--duration",
            str(duration),
            "--probe-every",
            str(PROBE_EVERY),
            "--out",
            str(out),
        ),
        "sender",
        work / "sender.log",
    )
    if window is not None:
        window.add("can sender", sender.cpu)
    sender.wait(duration + 60)
    return read_json(out)


def probe_times(store: Path) -> dict[int, int]:
    """Each probe's sample time in the store (ns: when the gateway decoded its frame), by sequence number."""
    from gateway.store.outbox import Outbox

    out: dict[int, int] = {}
    ob = Outbox(store)
    try:
        for row in ob.query():
            batch = row.batch
            for i, key in enumerate(batch.keys.rows):
                value = float(batch.values[i]) if key.quantity == PROBE_QUANTITY else math.nan
                if value == value:
                    out.setdefault(int(value), int(batch.ts[i]))
    finally:
        ob.close()
    return out


def split_ms(sent: list[tuple[int, int]], decoded: dict[int, int], arrived: dict[int, int]) -> dict[str, float]:
    """p99 and p50 of send → decode and of decode → MQTT arrival over the probes (after the warm-up) seen at both
    (NaN without decode times: the naive bridge)."""
    to_decode, after = [], []
    for seq, t_sent in sent[WARMUP_PROBES:]:
        t_dec, t_mqtt = decoded.get(seq), arrived.get(seq)
        if t_dec is not None and t_mqtt is not None:
            to_decode.append((t_dec - t_sent) / 1e6)
            after.append((t_mqtt - t_dec) / 1e6)
    return {
        "p99_decode": percentile(to_decode, 99),
        "p99_after": percentile(after, 99),
        "p50_decode": percentile(to_decode, 50),
        "p50_after": percentile(after, 50),
    }


def figures(
    sent: dict[str, Any],
    delivered: int,
    mqtt_samples: int,
    cpu_s: float,
    rss: float,
    watch: MqttWatch,
    drops: int,
    t_start: float,
    decoded: dict[int, int] | None = None,
) -> dict[str, float]:
    probes = [(int(p[0]), int(p[1])) for p in sent["probes"]]
    lat, missing = latencies_ms(probes, watch.probes, WARMUP_PROBES)
    lost = max(0, sent["samples"] - delivered) + max(0, sent["samples"] - mqtt_samples)
    split = (
        split_ms(probes, decoded, watch.probes)
        if decoded is not None
        else {"p99_decode": math.nan, "p99_after": math.nan, "p50_decode": math.nan, "p50_after": math.nan}
    )
    return {
        **split,
        "rate": sent["rate"],
        "lost": lost,
        "p50": percentile(lat, 50),
        "p99": percentile(lat, 99),
        "cpu_per_1k": cpu_s / max(1, delivered) * 1000,
        "rss": rss,
        "probes_missing": missing,
        "lost_store": max(0, sent["samples"] - delivered),
        "lost_mqtt": max(0, sent["samples"] - mqtt_samples),
        "udp_drops": drops,
        # frames delivered end to end per second: until the last MQTT message (catch-up included)
        "e2e": min(delivered, mqtt_samples) / sent["samples"] * sent["frames"] / max(1e-3, watch.last_at - t_start),
    }


def run_gateway(work: Path, rate: int, duration: float, mosq: Mosquitto, vm: VictoriaMetrics) -> dict[str, float]:
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    port = free_port()
    gw = Gateway(gateway_config(work, port, mosq.port, vm.url), work)
    watch = MqttWatch(mosq.port, "bench/bench/+/telemetry", parse_gateway)
    window = cpu.CpuWindow("gateway", {"gateway": [gw.proc.cpu], **peers(mosq, vm)})
    try:
        gw.wait_ready(30)
        cpu0 = gw.proc.mark("start")
        window.start()
        t_start = time.monotonic()
        sent = send(work, port, rate, duration, window)
        watch.wait_quiet(quiet=2.0, timeout=60)
        used = gw.proc.mark("end") - cpu0
        share = window.stop()
        drops = udp_drops(port)
        m = gw.metrics()
        (work / "metrics.txt").write_text("\n".join(f"{k} {v}" for k, v in m.items()))
        print(
            f"    gateway frames {metric_sum(m, 'bms_gateway_can_frames_total'):.0f} "
            f"dropped {metric_sum(m, 'bms_gateway_can_frames_dropped_total'):.0f} udp drops {drops}",
            flush=True,
        )
        print(f"    {cpu.run_line(f'can @{rate}/s', share)}", flush=True)
    finally:
        gw.stop()
        watch.close()
    counts = store_counts(gw.store)
    decoded = probe_times(gw.store)
    got = figures(sent, counts["good"], watch.samples, used, gw.proc.last_hwm, watch, drops, t_start, decoded)
    return {**got, **share.figures()}


def run_naive(work: Path, rate: int, duration: float, mosq: Mosquitto, vm: VictoriaMetrics) -> dict[str, float]:
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    port = free_port()
    out = work / "naive.json"
    watch = MqttWatch(mosq.port, "naive/#", parse_naive)
    naive = spawn(
        python(
            "-m",
            "bench.baselines.can_naive",
            "--port",
            str(port),
            "--dbc",
            str(candata.DBC),
            "--mqtt-port",
            str(mosq.port),
            "--influx-url",
            vm.url,
            "--out",
            str(out),
        ),
        "naive",
        work / "naive.log",
    )
    window = cpu.CpuWindow("naive", {"naive": [naive.cpu], **peers(mosq, vm)})
    try:
        time.sleep(2.0)  # imports, bus, MQTT connect
        cpu0 = naive.mark("start")
        window.start()
        t_start = time.monotonic()
        sent = send(work, port, rate, duration, window)
        watch.wait_quiet(quiet=2.0, timeout=60)
        used = naive.mark("end") - cpu0
        share = window.stop()
        drops = udp_drops(port)
        print(f"    {cpu.run_line(f'can @{rate}/s', share)}", flush=True)
    finally:
        naive.stop()
        watch.close()
    got = read_json(out)
    per_frame = sent["samples"] / max(1, sent["frames"])
    delivered = round(got["frames"] * per_frame)
    mqtt = round(watch.messages * per_frame)
    got = figures(sent, delivered, mqtt, used, naive.last_hwm, watch, drops, t_start)
    return {**got, **share.figures()}


def peers(mosq: Mosquitto, vm: VictoriaMetrics) -> dict[str, list[cpu.CpuReader]]:
    assert mosq.proc is not None and vm.proc is not None, "peers not started"
    return cpu.bench_peers(mosq.proc.pid, vm.proc.pid)


def sustained(results: dict[int, Runs], headroom: bool = False) -> float:
    """Highest rate step whose median run lost nothing and kept p99 under 500 ms (the step's nominal
    rate when the sender reached it within 1 %, else the rate it reached); with `headroom`, only
    steps where gateway + peers did not saturate the machine."""
    best = 0.0
    for rate, runs in sorted(results.items()):
        if headroom and cpu.saturated(runs):
            continue
        if runs.med("lost") == 0 and runs.med("p99") < 500:
            sent = runs.med("rate")
            best = max(best, float(rate) if sent >= 0.99 * rate else sent)
    return best


def run(opts: Options) -> list[Row]:
    rates = opts.rates or (QUICK_RATES if opts.quick else RATES)
    duration = opts.duration or (5.0 if opts.quick else 15.0)
    runs = opts.runs
    root = opts.work / "can"
    mosq = Mosquitto(root / "mosquitto").start()
    vm = VictoriaMetrics(root / "vm").start()
    gw: dict[int, Runs] = {r: Runs() for r in rates}
    nv: dict[int, Runs] = {r: Runs() for r in rates}
    try:
        for i in range(runs):
            for rate in rates:
                gw[rate].add(**run_gateway(root / "gw", rate, duration, mosq, vm))
                nv[rate].add(**run_naive(root / "naive", rate, duration, mosq, vm))
                print(
                    f"  can run {i + 1} {rate}/s: gateway {summary(gw[rate])} | naive {summary(nv[rate])}", flush=True
                )
    finally:
        mosq.stop()
        vm.stop()
    for rate in rates:
        print(f"  {cpu.line(f'can @{rate}/s', gw[rate], 'gateway')}", flush=True)
        print(f"  {cpu.line(f'can @{rate}/s', nv[rate], 'naive')}", flush=True)
    return table(rates, gw, nv)


def table(rates: list[int], gw: dict[int, Runs], nv: dict[int, Runs]) -> list[Row]:
    rows: list[Row] = []
    g_best, n_best = sustained(gw), sustained(nv)
    rows.append(
        Row(
            "can",
            "sustained frames/s (0 lost, p99<500ms)",
            g_best,
            n_best,
            ">=25,000 and >=4x",
            met=g_best >= 25000 and g_best >= 4 * n_best,
        )
    )
    g_room, n_room = sustained(gw, headroom=True), sustained(nv, headroom=True)
    rows.append(
        Row(
            "can",
            f"sustained frames/s with headroom (gateway + peers <= {cpu.SATURATION_PCT:.0f} % of the machine)",
            g_room,
            n_room,
            ">=35,000",
            met=g_room >= 35000,
        )
    )
    for rate in rates:
        g, n = gw[rate], nv[rate]
        first = len(rows)
        tag = f"@{rate // 1000}k/s"
        target = "<50" if rate == 8000 else "<500"
        limit = 50 if rate == 8000 else 500
        rows.append(Row("can", f"{tag} sent frames/s", g.med("rate"), n.med("rate")))
        rows.append(Row("can", f"{tag} delivered frames/s (to last MQTT msg)", g.med("e2e"), n.med("e2e")))
        rows.append(
            Row("can", f"{tag} lost samples", g.med("lost"), n.med("lost"), "0", "lower", met=g.med("lost") == 0)
        )
        rows.append(Row("can", f"{tag} latency p50 ms", g.med("p50"), n.med("p50"), better="lower"))
        rows.append(
            Row(
                "can",
                f"{tag} latency p99 ms",
                g.med("p99"),
                n.med("p99"),
                target,
                "lower",
                met=None if math.isnan(g.med("p99")) else g.med("p99") < limit,
            )
        )
        rows.append(Row("can", f"{tag} latency p99 ms send -> decode", g.med("p99_decode"), better="lower"))
        rows.append(Row("can", f"{tag} latency p99 ms decode -> MQTT", g.med("p99_after"), better="lower"))
        rows.append(Row("can", f"{tag} latency p50 ms send -> decode", g.med("p50_decode"), better="lower"))
        rows.append(Row("can", f"{tag} latency p50 ms decode -> MQTT", g.med("p50_after"), better="lower"))
        rows.append(Row("can", f"{tag} CPU s/1k samples", g.med("cpu_per_1k"), n.med("cpu_per_1k"), better="lower"))
        rows.append(
            Row("can", f"{tag} peak RSS MB", g.med("rss"), n.med("rss"), "<150", "lower", met=g.med("rss") < 150)
        )
        rows += cpu.rows("can", f"{tag} ", g, n)
        for row in rows[first:]:
            cpu.note(row, cpu.flag(g))
    return rows


def summary(r: Runs) -> str:
    return (
        f"{r.values['rate'][-1]:.0f}/s lost {r.values['lost'][-1]:.0f} p99 {r.values['p99'][-1]:.0f} ms "
        f"(store {r.values['lost_store'][-1]:.0f} mqtt {r.values['lost_mqtt'][-1]:.0f} udp-drops "
        f"{r.values['udp_drops'][-1]:.0f} frames) cpu/1k {r.values['cpu_per_1k'][-1]:.3f} "
        f"p99 split {r.values['p99_decode'][-1]:.0f} + {r.values['p99_after'][-1]:.0f} ms"
    )
