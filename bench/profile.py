"""Profile the gateway on a bench scenario with pyinstrument: `python -m bench.profile modbus|can [seconds]`.

Starts the scenario's peers, runs `python -m pyinstrument ... -m gateway run -c <cfg>` for the given
seconds, stops it with SIGTERM and prints the profile (also written as text beside the config)."""

from __future__ import annotations

import shutil
import signal
import sys
import time
from pathlib import Path

from bench import can_bench, modbus_bench
from bench.peers import Mosquitto, VictoriaMetrics, free_port
from bench.proc import python, spawn


def main() -> None:
    which = sys.argv[1] if len(sys.argv) > 1 else "modbus"
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 30.0
    rate = int(sys.argv[3]) if len(sys.argv) > 3 else 25000
    root = Path("/tmp/bms-bench/profile") / which
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
            python("-m", "bench.profile_run", str(prefix), "run", "-c", str(cfg)), "gateway", root / "gateway.log"
        )
        time.sleep(5)
        if which == "can":
            can_bench.send(root / "gw", port, rate, seconds)
        else:
            time.sleep(seconds)
        gw.proc.send_signal(signal.SIGUSR1)
        gw.proc.wait(120)
        for name in ("tree", "flat"):
            out = root / f"profile-{name}.txt"
            print(f"== {name} ({out})\n" + "\n".join(out.read_text().splitlines()[:100]))
    finally:
        mosq.stop()
        vm.stop()
        modbus_bench.stop_all(servers)


if __name__ == "__main__":
    main()
