"""Memory scenario: the 100-rack Modbus site (MQTT and InfluxDB sinks on) for a while; peak RSS (VmHWM)
and growth in MB/hour (least-squares slope of VmRSS sampled every 5 s, after the first quarter)."""

from __future__ import annotations

import shutil
import time

from bench import modbus_bench
from bench.common import Gateway, Options
from bench.peers import Mosquitto, VictoriaMetrics
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
    try:
        gw = Gateway(modbus_bench.site_config(root / "gw", ports, mosq.port, vm.url), root / "gw")
        try:
            gw.wait_ready(60)
            t0 = time.monotonic()
            ts: list[float] = []
            rss: list[float] = []
            while time.monotonic() - t0 < duration and gw.proc.alive():
                ts.append(time.monotonic() - t0)
                rss.append(gw.proc.rss_mb())
                gw.proc.peak_rss_mb()
                time.sleep(5)
        finally:
            gw.stop(modbus_bench.STOP_WAIT)
    finally:
        mosq.stop()
        vm.stop()
        modbus_bench.stop_all(servers)
    q = len(ts) // 4
    growth = slope(ts[q:], rss[q:]) * 3600
    r.add(peak=gw.proc.last_hwm, growth=growth, end=rss[-1] if rss else float("nan"))
    print(f"  memory: peak {r.med('peak'):.0f} MB, growth {growth:.1f} MB/h over {duration:.0f} s", flush=True)
    return [
        Row("memory", "peak RSS MB (100 racks)", r.med("peak"), float("nan"), "<200", "lower", met=r.med("peak") < 200),
        Row("memory", f"RSS growth MB/hour ({duration:.0f} s run)", growth, float("nan"), "~0", "lower"),
    ]
