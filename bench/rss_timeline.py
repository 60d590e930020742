"""When the gateway's resident memory grows: `python -m bench.rss_timeline modbus|can [seconds] [rate]`.

Starts the scenario's peers and the gateway as in `bench.profile`, reads the gateway's VmRSS and VmHWM
every 50 ms from spawn to the end, and prints the RSS at READY=1, where the peak was reached (seconds
after spawn) and a coarse timeline, so a peak made at start-up (config load, plans) is told apart from
one made by steady work. With `--env KEY=VALUE` (repeatable) the gateway runs with that environment."""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from pathlib import Path

from bench import can_bench, modbus_bench
from bench.common import Gateway
from bench.peers import Mosquitto, VictoriaMetrics, free_port
from bench.proc import status_mb


def main() -> None:
    args = sys.argv[1:]
    env = dict(a.split("=", 1) for a in args[args.index("--env") + 1 :: 2]) if "--env" in args else {}
    args = args[: args.index("--env")] if "--env" in args else args
    which = args[0] if args else "modbus"
    seconds = float(args[1]) if len(args) > 1 else 30.0
    rate = int(args[2]) if len(args) > 2 else 8000
    root = Path(os.environ.get("TMPDIR", "/tmp")) / "bms-bench" / "rss-timeline" / which
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    mosq = Mosquitto(root / "mosquitto").start()
    vm = VictoriaMetrics(root / "vm").start()
    servers = []
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        if which == "modbus":
            servers, ports = modbus_bench.start_servers(root)
            cfg = modbus_bench.site_config(root / "gw", ports, mosq.port, vm.url)
        else:
            port = free_port()
            cfg = can_bench.gateway_config(root / "gw", port, mosq.port, vm.url)
        gw = Gateway(cfg, root / "gw")
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
        samples: list[tuple[float, float, float]] = []  # (seconds after spawn, VmRSS MB, VmHWM MB)
        ready: float | None = None
        sender: threading.Thread | None = None
        while gw.proc.alive():
            t = time.monotonic() - gw.t_spawn
            try:
                samples.append((t, status_mb(gw.proc.pid, "VmRSS"), status_mb(gw.proc.pid, "VmHWM")))
            except OSError:
                break
            if ready is None and gw.notify.wait_ready(0) is not None:
                ready = t
                if which == "can":  # the frames are sent from a thread while this one reads the RSS
                    sender = threading.Thread(target=can_bench.send, args=(root / "gw", port, rate, seconds))
                    sender.start()
            if ready is not None and t - ready > seconds:
                break
            time.sleep(0.05)
        gw.stop(modbus_bench.STOP_WAIT)
        if sender is not None:
            sender.join()
    finally:
        mosq.stop()
        vm.stop()
        modbus_bench.stop_all(servers)
    report(samples, ready)


def report(samples: list[tuple[float, float, float]], ready: float | None) -> None:
    if not samples:
        print("no samples: the gateway did not start")
        return
    peak = max(s[2] for s in samples)
    at = next(s[0] for s in samples if s[2] >= peak)
    at_ready = next((s[1] for s in samples if ready is not None and s[0] >= ready), float("nan"))
    print(f"READY after {ready if ready is not None else float('nan'):.2f} s at {at_ready:.1f} MB; "
          f"peak (VmHWM) {peak:.1f} MB reached {at:.2f} s after spawn; at the end {samples[-1][1]:.1f} MB")  # fmt: skip
    step = 0.5 if samples[-1][0] < 20 else 1.0
    next_t = 0.0
    line: list[str] = []
    for t, rss, _ in samples:
        if t >= next_t:
            line.append(f"{t:5.1f}s {rss:6.1f}")
            next_t = t + step
    for i in range(0, len(line), 6):
        print("   ".join(line[i : i + 6]))


if __name__ == "__main__":
    main()
