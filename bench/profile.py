"""Profile the gateway on a bench scenario: `python -m bench.profile modbus|can [seconds] [rate] [--cpu]`.

pyinstrument (wall-clock time), or with `--cpu` a sampler of the process's CPU time that a busy machine
does not distort (`bench/cpuprofiler.py`), started after a 10 s warm-up; with `--memory` what tracemalloc
finds allocated at the end, by line and by file; with `--rss` no profiler, and where the resident
memory is at the end (per mapping, live objects by type, imported modules).

Starts the scenario's peers, runs `python -m pyinstrument ... -m gateway run -c <cfg>` for the given
seconds, stops it with SIGTERM and prints the profile (also written as text beside the config)."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from pathlib import Path

from bench import can_bench, modbus_bench
from bench.peers import Mosquitto, VictoriaMetrics, free_port
from bench.proc import python, spawn


def main() -> None:
    modes = [a[2:] for a in sys.argv[1:] if a in ("--cpu", "--memory", "--rss")]
    args = [a for a in sys.argv[1:] if a[2:] not in modes]
    mode = modes[0] if modes else None
    on_cpu = mode == "cpu"
    which = args[0] if args else "modbus"
    seconds = float(args[1]) if len(args) > 1 else 30.0
    rate = int(args[2]) if len(args) > 2 else 25000
    root = Path(os.environ.get("TMPDIR", "/tmp")) / "bms-bench" / "profile" / which
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    mosq = Mosquitto(root / "mosquitto").start()
    vm = VictoriaMetrics(root / "vm").start()
    servers = []
    try:
        if which == "modbus":
            servers, ports = modbus_bench.start_servers(root)
            cfg = modbus_bench.site_config(root / "gw", ports, mosq.port, vm.url)
        else:
            port = free_port()
            cfg = can_bench.gateway_config(root / "gw", port, mosq.port, vm.url)
        prefix = root / "profile"
        gw = spawn(
            python("-m", "bench.profile_run", str(prefix), "run", "-c", str(cfg)),
            "gateway",
            root / "gateway.log",
            env={"BENCH_PROFILER": mode} if mode else None,
        )
        time.sleep(10 if on_cpu else 5)
        if on_cpu:
            gw.proc.send_signal(signal.SIGUSR2)  # the CPU profile starts after the warm-up
        if which == "can":
            can_bench.send(root / "gw", port, rate, seconds)
        else:
            time.sleep(seconds)
        gw.proc.send_signal(signal.SIGUSR1)
        gw.proc.wait(120)
        for name in (mode,) if mode else ("tree", "flat"):
            out = root / f"profile-{name}.txt"
            print(f"== {name} ({out})\n" + "\n".join(out.read_text().splitlines()[: 140 if on_cpu else 100]))
    finally:
        mosq.stop()
        vm.stop()
        modbus_bench.stop_all(servers)


if __name__ == "__main__":
    main()
