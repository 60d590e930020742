"""`bms-gateway demo`: the gateway's main job on the embedded default, with a live view."""

from __future__ import annotations

import argparse
import asyncio
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from gateway.model import Batch


def demo_config_path() -> Path:
    return Path(str(resources.files("gateway") / "data" / "demo.yaml"))


class LiveView:
    """Prints one line per rack and batch: the numbers an operator looks at first."""

    def __init__(self, out: Any = None) -> None:
        self.out = out or sys.stdout
        self.samples = 0

    def __call__(self, batches: list[Batch]) -> None:
        for b in batches:
            if b.status is not None:
                print(f"{b.source:10} device {b.status.state} {b.status.reason}", file=self.out, flush=True)
            if not b.n:
                continue
            self.samples += b.n
            rows = b.keys.rows
            by = {k.quantity: b.value(i) for i, k in enumerate(rows) if k.module is None}
            rack = rows[0].rack
            print(
                f"{rack:10} {b.n:4} samples  SoC {by.get('soc', '-'):>6} %  "
                f"{by.get('rack_voltage', '-'):>7} V  {by.get('rack_current', '-'):>7} A  "
                f"cells {by.get('cell_voltage_min', '-')}..{by.get('cell_voltage_max', '-')} V  "
                f"Tmax {by.get('cell_temperature_max', '-')} °C  stored {self.samples}",
                file=self.out,
                flush=True,
            )


def cmd_demo(args: argparse.Namespace) -> int:
    from gateway.app import DEMO_PARTS, build_runtime, install_parts
    from gateway.config.settings import load_config
    from gateway.ops.logs import configure_logging

    loaded = load_config(args.config or demo_config_path())
    if args.store is not None:
        store = loaded.config.store.model_copy(update={"path": args.store})
        loaded = type(loaded)(loaded.config.model_copy(update={"store": store}), loaded.path, loaded.profiles)
    configure_logging("warning" if not args.verbose else "info", "console")
    print(
        f"bms-gateway demo: {len(loaded.config.sources)} simulated racks -> {loaded.config.store.path} (Ctrl-C stops)"
    )

    async def main() -> int:
        rt = build_runtime(loaded)
        rt.observers.append(LiveView())
        from gateway.ops.service import on_status_page

        on_status_page(rt, lambda url: print(f"status page: {url}", flush=True))
        install_parts(rt, DEMO_PARTS)  # what the demo racks need (a Modbus simulator, a CAN replay)
        if args.duration:
            asyncio.get_running_loop().call_later(args.duration, rt.request_stop, "duration")
        return await rt.run()

    code = asyncio.run(main())
    print(
        f"stopped; the samples are in {loaded.config.store.path} "
        f"(bms-gateway export --store {loaded.config.store.path})"
    )
    return code


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="run simulated racks into the local store with a live view")
    p.add_argument("-c", "--config", type=Path, default=None, help="a config instead of the embedded demo")
    p.add_argument("--store", type=Path, default=None, help="store file (default var/demo.db)")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.add_argument("-v", "--verbose", action="store_true", help="show the gateway's log lines")
    p.set_defaults(func=cmd_demo)
