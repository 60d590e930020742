"""Memory scenario: the 100-rack Modbus site (MQTT and InfluxDB sinks on) for a while; peak RSS (VmHWM)
and growth in MB/hour (least-squares slope of VmRSS sampled every 5 s, after the first quarter).
From the gateway's metrics at the end: the share of group-commit steps that held the event loop
longer than 20 ms, the seconds sources waited for room in the full source queue, and the share of the
samples sinks read that came from the decoded-row cache (at most a half with two sinks). The gateway's
CPU beside its peers' and the machine's idle time over the run (bench/cpu.py)."""

from __future__ import annotations

import shutil
import time

from bench import cpu, modbus_bench
from bench.common import Gateway, Options
from bench.peers import Mosquitto, VictoriaMetrics
from bench.proc import metric_sum
from bench.stats import Row, Runs, slope


def run(opts: Options) -> list[Row]:
    duration = opts.duration or (120.0 if opts.quick else 600.0)
    root = opts.work / "memory"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    servers, ports = modbus_bench.start_servers(root)
    mosq = Mosquitto(root / "mosquitto").start()
    vm = VictoriaMetrics(root / "vm").start()
    r = Runs()
    metrics: dict[str, float] = {}
    try:
        gw = Gateway(modbus_bench.site_config(root / "gw", ports, mosq.port, vm.url), root / "gw")
        usage = cpu.CpuWindow("gateway", {"gateway": [gw.proc.cpu], **modbus_bench.peers(servers, mosq, vm)})
        try:
            gw.wait_ready(60)
            usage.start()
            t0 = time.monotonic()
            ts: list[float] = []
            rss: list[float] = []
            while time.monotonic() - t0 < duration and gw.proc.alive():
                ts.append(time.monotonic() - t0)
                rss.append(gw.proc.rss_mb())
                gw.proc.peak_rss_mb()
                time.sleep(5)
            metrics = gw.metrics()
            r.add(**usage.stop().figures())
        finally:
            gw.stop(modbus_bench.STOP_WAIT)
    finally:
        mosq.stop()
        vm.stop()
        modbus_bench.stop_all(servers)
    q = len(ts) // 4
    growth = slope(ts[q:], rss[q:]) * 3600
    r.add(peak=gw.proc.last_hwm, growth=growth, end=rss[-1] if rss else float("nan"))
    steps = metrics.get("bms_gateway_pipeline_step_seconds_count", float("nan"))
    long_steps = 1 - metrics.get('bms_gateway_pipeline_step_seconds_bucket{le="0.02"}', float("nan")) / steps
    waited = metric_sum(metrics, "bms_gateway_queue_wait_seconds_total")
    cached = metric_sum(metrics, "bms_gateway_outbox_read_cached_samples_total")
    hit = cached / (cached + metric_sum(metrics, "bms_gateway_outbox_read_decoded_samples_total"))
    print("  RSS MB every 5 s: " + " ".join(f"{x:.0f}" for x in rss), flush=True)
    print(f"  memory: peak {r.med('peak'):.0f} MB, growth {growth:.1f} MB/h over {duration:.0f} s; "
          f"{steps:.0f} commit steps, {long_steps:.1%} > 20 ms; sources waited {waited:.1f} s; "
          f"sink reads from the decoded-row cache {hit:.1%}", flush=True)  # fmt: skip
    print(f"  {cpu.line('memory', r, 'gateway')}", flush=True)
    out = [
        # the Modbus scenario's target, held for the whole run (its own 30 s window ends before the plateau)
        Row("memory", "peak RSS MB (100 racks)", r.med("peak"), float("nan"), "<150", "lower", met=r.med("peak") < 150),
        Row("memory", f"RSS growth MB/hour ({duration:.0f} s run)", growth, float("nan"), "~0", "lower"),
        Row("memory", "share of commit steps > 20 ms", long_steps, float("nan"), "~0", "lower"),
        Row("memory", "seconds sources waited for queue room", waited, float("nan"), "0", "lower"),
        Row("memory", "share of sink reads from the decoded-row cache", hit, float("nan"), "~0.5 (2 sinks)", "higher"),
        *cpu.rows("memory", "", r, Runs()),
    ]
    for row in out:
        cpu.note(row, cpu.flag(r))
    return out
