"""Start-up scenario: wall time of `validate` and of `run` until READY=1 arrives on $NOTIFY_SOCKET
(or, if the gateway never sends it, until /metrics answers) for the 100-rack Modbus config."""

from __future__ import annotations

import shutil
import subprocess
import time

from bench import modbus_bench
from bench.common import Gateway, Options
from bench.proc import ROOT, python
from bench.stats import Row, Runs


def run(opts: Options) -> list[Row]:
    runs = max(3, opts.runs)
    root = opts.work / "startup"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    servers, ports = modbus_bench.start_servers(root)
    r = Runs()
    notes = set()
    try:
        for i in range(runs):
            work = root / f"gw{i}"
            cfg = modbus_bench.site_config(work, ports, None, None)
            t0 = time.monotonic()
            done = subprocess.run(python("-m", "gateway", "validate", "-c", str(cfg)), cwd=ROOT, capture_output=True)
            r.add(validate=time.monotonic() - t0)
            if done.returncode != 0:
                notes.add(f"validate exit {done.returncode}")
            gw = Gateway(cfg, work)
            try:
                ready = gw.wait_ready(30)
                if ready is None:
                    notes.add("no READY=1: time to /metrics")
                    ready = time.monotonic() - gw.t_spawn
            finally:
                gw.stop(modbus_bench.STOP_WAIT)
            r.add(ready=ready)
            print(f"  startup run {i + 1}: validate {r.values['validate'][-1]:.2f} s, ready {ready:.2f} s", flush=True)
    finally:
        modbus_bench.stop_all(servers)
    v, rd = r.med("validate"), r.med("ready")
    note = "; ".join(sorted(notes))
    return [
        Row("startup", "validate s (100 racks)", v, float("nan"), "<3", "lower", met=v < 3, note=note),
        Row("startup", "start to READY=1 s (100 racks)", rd, float("nan"), "<3", "lower", met=rd < 3, note=note),
    ]
