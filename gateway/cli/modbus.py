"""`bms-gateway modbus simulate | record | decode | plan` (aliases modbus-sim, modbus-record); demo hook."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.config.library import profile_arg

# pymodbus and the simulators (about 11 MB resident) are imported by the commands that use them, not
# when the command line is built: `run` and `validate` load only what the site's sources need.
if TYPE_CHECKING:
    from gateway.tools.modbusline import Serving
    from gateway.tools.modbussim import ModbusSimulator


def _units(text: str) -> list[int]:
    try:
        units = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected unit ids like 1,2,3, got {text!r}") from None
    if not units or not all(0 <= u <= 255 for u in units):
        raise argparse.ArgumentTypeError("unit ids are 0..255")
    return units


def _exception(text: str) -> tuple[str, int, int]:
    try:
        table, address, code = text.split(":")
        return table, int(address, 0), int(code, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected TABLE:ADDRESS:CODE (e.g. input:1005:2), got {text!r}") from None


def _serving(args: argparse.Namespace) -> Serving | str:
    """How to serve, from the options (an error message when they do not fit)."""
    import ssl

    from gateway.sources.modbus.transport import SerialLine
    from gateway.tools.modbusline import Serving

    line = SerialLine(args.baudrate, args.parity, args.stopbits, args.bytesize)
    sslctx = None
    if args.cert_file is not None:
        sslctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            sslctx.load_cert_chain(args.cert_file, args.key_file)
            if args.ca_file is not None:  # Modbus/TCP Security: clients show a certificate of this CA
                sslctx.verify_mode = ssl.CERT_REQUIRED
                sslctx.load_verify_locations(args.ca_file)
        except (OSError, ssl.SSLError) as exc:
            return f"cannot load the TLS files: {exc}"
    return Serving(args.transport, args.serial_port, line, sslctx)


def _where(port: int | str, sim: ModbusSimulator, host: str) -> str:
    if sim.serving.transport == "rtu":
        return f"RTU on {sim.tty} (for {port})" if isinstance(port, str) else f"RTU on {sim.tty}"
    return f"{sim.serving.transport} {host}:{port}"


def cmd_simulate(args: argparse.Namespace) -> int:
    from gateway.ops.logs import configure_logging
    from gateway.tools.modbusserve import modbus_sources, serve, simulators_for
    from gateway.tools.modbussim import ModbusSimulator

    configure_logging("info" if args.verbose else "warning", "console")
    serving = _serving(args)
    if isinstance(serving, str):
        print(f"error: {serving}", file=sys.stderr)
        return 2
    replay_task = None
    sims: dict[int | str, ModbusSimulator]
    if args.recording is not None:
        from gateway.tools.modbusrecord import read_recording, replay, replay_simulator

        header, cycles = read_recording(args.recording)
        sims = {args.port: replay_simulator(header)}

        def replay_task(sim: ModbusSimulator) -> Coroutine[Any, Any, None]:
            return replay(sim, cycles, loop=args.loop, speed=args.speed)

        what = f"recording {args.recording} ({len(cycles)} cycles{', looping' if args.loop else ''})"
    elif args.profile is not None:
        from gateway.sources.modbus.validate import load_modbus_profile

        profile = load_modbus_profile(args.profile)
        sims = {args.port: ModbusSimulator.from_profile(profile, args.unit_ids, args.seed)}
        what = f"profile {args.profile}"
    elif args.config is not None:
        from gateway.config.settings import load_config

        loaded = load_config(args.config)
        sims = simulators_for(loaded, modbus_sources(loaded, args.source), serving)
        what = f"the modbus sources of {args.config}"
    else:
        print("error: give --profile, --recording or -c/--config", file=sys.stderr)
        return 2
    if args.config is None:
        for sim in sims.values():
            sim.serving = serving
    if any(s.serving.transport == "tls" and s.serving.sslctx is None for s in sims.values()):
        print("error: serving TLS needs --cert-file and --key-file", file=sys.stderr)
        return 2
    for sim in sims.values():
        sim.faults.delay = args.delay
        sim.faults.silent = set(args.silent or [])
        sim.faults.one_client = args.one_client
        sim.faults.drop_every = args.drop_every
        sim.faults.exceptions = {(t, a): c for t, a, c in args.exception or []}

    def started() -> None:
        ports = ", ".join(f"{_where(p, s, args.host)} units {sorted(s.devices)}" for p, s in sims.items())
        print(f"bms-gateway modbus simulator: {what} on {ports} (Ctrl-C stops)", flush=True)

    async def main() -> None:
        job = asyncio.ensure_future(
            serve(sims, args.host, args.interval, args.speed, started=started, replay_task=replay_task)
        )
        with contextlib.suppress(asyncio.CancelledError):
            await (asyncio.wait_for(job, args.duration) if args.duration else job)

    with contextlib.suppress(KeyboardInterrupt, TimeoutError):
        asyncio.run(main())
    return 0


def cmd_record(args: argparse.Namespace) -> int:
    from gateway.cli.main import load_or_exit
    from gateway.model import Batch
    from gateway.ops.logs import configure_logging
    from gateway.sources.base import SourceContext
    from gateway.sources.modbus.source import endpoints
    from gateway.tools.modbusrecord import Recorder
    from gateway.tools.modbusserve import modbus_sources

    configure_logging("info" if args.verbose else "warning", "console")
    loaded = load_or_exit(args)
    srcs = modbus_sources(loaded, args.source)
    if not srcs:
        print("error: no enabled modbus source to record", file=sys.stderr)
        return 2
    args.output.parent.mkdir(parents=True, exist_ok=True)
    samples = 0

    async def emit(batch: Batch) -> None:
        nonlocal samples
        samples += batch.n

    async def main(out: Any) -> int:
        eps = endpoints(srcs, loaded.profiles, base_dir=loaded.base_dir)
        recorder = Recorder(out, [d for ep in eps for d in ep.devices], {s.name: s.profile for s in srcs})
        for ep in eps:
            ep.on_response = recorder
        ctx = SourceContext(emit, lambda: None, loaded.config.site.name)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(args.duration), asyncio.TaskGroup() as tg:
                for ep in eps:
                    tg.create_task(ep.run(ctx), name=f"source:{ep.name}")
        return recorder.frames

    with args.output.open("w", encoding="utf-8") as out:
        frames = asyncio.run(main(out))
    print(f"recorded {frames} block reads ({samples} samples) of {[s.name for s in srcs]} to {args.output}")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from gateway.sources.modbus.plan import compile_points, plan_reads, unreadable_ranges
    from gateway.sources.modbus.validate import load_modbus_profile

    profile = load_modbus_profile(args.profile)
    points, _ = compile_points(profile)
    blocks = plan_reads(
        points,
        max_registers=profile.max_registers,
        max_bits=profile.max_bits,
        max_gap=profile.max_gap,
        unreadable=unreadable_ranges(profile),
        one_per_point=args.one_request_per_point,
    )
    base = profile.address_base
    print(f"{args.profile}: {len(points)} points in {len(blocks)} reads (addresses as in the profile, base {base})")
    if profile.sunspec:
        print(f"  + the SunSpec models found at {profile.sunspec_bases} when the device is first reached")
    for b in blocks:
        first, last = b.points[0], b.points[-1]
        print(
            f"  every {b.interval:g} s  fc {b.function_code}  {b.table:8} {b.start + base:5}..{b.end - 1 + base:<5} "
            f"({b.count:4} {'bits' if b.function_code < 3 else 'regs'})  {len(b.points):3} points  "
            f"{first.quantity}..{last.quantity}"
        )
    return 0


def cmd_decode(args: argparse.Namespace) -> int:
    import json

    from gateway.sources.modbus.plan import compile_points
    from gateway.sources.modbus.validate import load_modbus_profile
    from gateway.tools.modbusrecord import decode_recording, read_recording

    profile = load_modbus_profile(args.profile)
    points, _ = compile_points(profile)
    _, cycles = read_recording(args.recording)
    if args.unit is not None:
        cycles = [c for c in cycles if c.unit == args.unit]
    for cycle, batch in decode_recording(points, cycles, args.rack):
        for s in batch.samples():
            print(json.dumps({"unit_id": cycle.unit, **s._asdict()}, ensure_ascii=False))
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from gateway.cli.main import print_schema
    from gateway.sources.modbus.profile import ModbusProfile

    return print_schema(ModbusProfile, "bms-gateway Modbus profile")


def _add_simulate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-p", "--profile", type=profile_arg, default=None, help="Modbus profile YAML to serve (or a shipped one's name)"
    )
    p.add_argument("-c", "--config", type=Path, default=None, help="serve every modbus source of a gateway.yaml")
    p.add_argument("--source", action="append", help="with -c: only this source (repeatable)")
    p.add_argument("--recording", "--replay", type=Path, default=None, help="serve a recording instead of a model")
    p.add_argument("--loop", action="store_true", help="replay the recording again and again")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=5020, help="TCP port (default 5020; with -c the sources' ports)")
    p.add_argument("--unit-ids", type=_units, default=[1], help="unit ids to serve with --profile (e.g. 1,2)")
    p.add_argument("--seed", type=int, default=1, help="seed of the rack models")
    p.add_argument("--interval", type=float, default=0.5, help="seconds between model steps")
    p.add_argument("--speed", type=float, default=1.0, help="simulated seconds per second (and replay speed)")
    p.add_argument("--delay", type=float, default=0.0, help="fault: seconds before every answer")
    p.add_argument("--silent", type=_units, default=None, help="fault: unit ids that never answer")
    p.add_argument("--exception", type=_exception, action="append", help="fault: TABLE:ADDRESS:CODE (repeatable)")
    p.add_argument("--one-client", action="store_true", help="fault: refuse a second simultaneous connection")
    p.add_argument("--drop-every", type=float, default=0.0, help="fault: drop every connection each S seconds")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.add_argument(
        "--transport",
        choices=["tcp", "rtu_over_tcp", "tls", "rtu"],
        default="tcp",
        help="how to serve (default tcp; with -c each source's own): rtu on --serial-port or a new pseudo-terminal",
    )
    p.add_argument("--serial-port", default=None, help="rtu: serve on this serial device (default: a new pty)")
    p.add_argument("--baudrate", type=int, default=19200, help="rtu: bits per second (default 19200)")
    p.add_argument("--parity", choices=["N", "E", "O"], default="E", help="rtu: parity (default E)")
    p.add_argument("--stopbits", type=int, choices=[1, 2], default=1, help="rtu: stop bits (default 1)")
    p.add_argument("--bytesize", type=int, choices=[7, 8], default=8, help="rtu: data bits (default 8)")
    p.add_argument("--cert-file", type=Path, default=None, help="tls: the server's certificate")
    p.add_argument("--key-file", type=Path, default=None, help="tls: the server certificate's key")
    p.add_argument("--ca-file", type=Path, default=None, help="tls: require client certificates of this CA")
    p.add_argument("-v", "--verbose", action="store_true", help="log every connection")
    p.set_defaults(func=cmd_simulate)


def _add_record_args(p: argparse.ArgumentParser) -> None:
    from gateway.cli.main import add_config_arg

    add_config_arg(p)
    p.add_argument("--source", action="append", help="modbus source to record (repeatable; default all)")
    p.add_argument("--duration", type=float, required=True, help="seconds to record")
    p.add_argument("-o", "--output", type=Path, required=True, help="recording file (JSON lines)")
    p.add_argument("-v", "--verbose", action="store_true", help="show the poller's log lines")
    p.set_defaults(func=cmd_record)


def register(sub: Any) -> None:
    p = sub.add_parser("modbus", help="Modbus tools: simulate a device, record one, show a read plan")
    msub = p.add_subparsers(dest="modbus_command", required=True)
    _add_simulate_args(msub.add_parser("simulate", help="serve simulated (or recorded) Modbus devices"))
    _add_record_args(msub.add_parser("record", help="record the raw register blocks of live devices"))
    pp = msub.add_parser("plan", help="print the compiled read plan of a profile")
    pp.add_argument(
        "-p", "--profile", type=profile_arg, required=True, help="Modbus profile YAML (or a shipped one's name)"
    )
    pp.add_argument("--one-request-per-point", action="store_true", help="the plan with that workaround")
    pp.set_defaults(func=cmd_plan)
    dp = msub.add_parser("decode", help="decode a recording offline with a profile (JSON lines of samples)")
    dp.add_argument(
        "-p", "--profile", type=profile_arg, required=True, help="Modbus profile YAML (or a shipped one's name)"
    )
    dp.add_argument("--recording", type=Path, required=True, help="recording file (modbus record)")
    dp.add_argument("--unit", type=int, default=None, help="only this unit id")
    dp.add_argument("--rack", default="", help="rack tag of the samples")
    dp.set_defaults(func=cmd_decode)
    msub.add_parser("schema", help="print the JSON Schema of Modbus profiles").set_defaults(func=cmd_schema)
    _add_simulate_args(sub.add_parser("modbus-sim", help="same as `modbus simulate`"))
    _add_record_args(sub.add_parser("modbus-record", help="same as `modbus record`"))
