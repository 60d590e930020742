"""`bms-gateway can decode | replay | check`: offline decoding, replay onto a bus, DBC checks.

Also adds the demo's CAN rack: a recorded capture replayed onto an in-process virtual bus.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
from collections import Counter
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.config.library import dbc_arg, profile_arg
from gateway.errors import ConfigError

# python-can and cantools (about 14 MB resident) are imported by the commands that use them, not when
# the command line is built: `run` and `validate` of a site without CAN never load them.
if TYPE_CHECKING:
    from gateway.runtime.core import Runtime
    from gateway.sources.can.capture import BadRecord, Capture
    from gateway.sources.can.plan import RackPlan


def _int(text: str) -> int:
    return int(text, 0)


def _ids(text: str) -> set[int]:
    return {int(x, 16) for x in text.replace(" ", "").split(",") if x}


def _rate(text: str) -> float | None:
    if text == "max":
        return None
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("rate must be > 0 or `max`")
    return value


def _load(args: argparse.Namespace) -> Any:
    from gateway.sources.can.dbcload import lenient_from_env, load_dbc

    dbc = load_dbc(args.dbc, lenient=args.lenient or lenient_from_env())
    for r in dbc.repairs:
        line = f":{r.line}" if r.line else ""
        print(f"warning: {args.dbc}{line}: {r}", file=sys.stderr)
    return dbc


def _rack_plan(args: argparse.Namespace, db: Any) -> RackPlan:
    """The compiled plan of `--profile`, as the gateway would run it (ConfigError naming file:line:col)."""
    from gateway.config.profiles import load_profile
    from gateway.config.yamlpos import load_yaml, position
    from gateway.errors import Problem
    from gateway.sources.can.config import CanProfile
    from gateway.sources.can.plan import compile_rack

    profile = load_profile(args.profile)
    if not isinstance(profile, CanProfile):
        raise ConfigError(Problem(str(args.profile), 1, 1, "not a CAN profile (protocol: can)"))
    plan = compile_rack(profile, db, rack=args.rack, id_offset=args.id_offset, source_address=args.source_address)
    if isinstance(plan, list):
        data = load_yaml(args.profile)
        raise ConfigError(
            [Problem(str(args.profile), *position(data, list(p.loc)), f"{'.'.join(map(str, p.loc))}: {p.message}")
             for p in plan]
        )  # fmt: skip
    return plan


def _capture(args: argparse.Namespace) -> Capture:
    """The capture of `args.log`: bad records skipped, counted and the first few warned of (or fatal with --strict)."""
    from gateway.sources.can.capture import Capture

    def warn(bad: BadRecord) -> None:
        print(f"warning: {bad}", file=sys.stderr)

    return Capture(args.log, strict=args.strict, on_bad=warn)


def _finish(capture: Capture, counts: Counter[str]) -> int:
    """The summary on stderr; 2 when nothing could be read of a file with bad records (not a capture)."""
    from gateway.sources.can.capture import REPORT_FIRST
    summary = "".join(f", {k} {v}" for k, v in sorted(counts.items()) if k not in ("frames", "decoded"))
    if capture.bad:
        shown = f", first {REPORT_FIRST} shown" if capture.bad > REPORT_FIRST else ""
        summary += f", {_bad_records(capture.bad)} skipped{shown}"
    print(f"{capture.path}: {capture.frames} frames, {counts['decoded']} decoded{summary}", file=sys.stderr)
    if capture.bad and not capture.frames:
        print(f"error: {capture.path}: no frame could be read", file=sys.stderr)
        return 2
    return 0


def _bad_records(n: int) -> str:
    return f"{n} bad record{'' if n == 1 else 's'}"


def _json(value: Any) -> Any:
    """A decoded value for JSON: a non-finite float (a float signal's NaN) as null, never invalid JSON."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def cmd_decode(args: argparse.Namespace) -> int:
    from gateway.sources.can.capture import CaptureError
    from gateway.sources.can.decode import FrameTable, plain

    dbc = _load(args)
    if args.profile is not None:
        return _decode_samples(args, _rack_plan(args, dbc.db))
    table = FrameTable(dbc.db, id_offset=args.id_offset, j1939=args.j1939)
    counts: Counter[str] = Counter()
    unknown: Counter[int] = Counter()
    out = sys.stdout
    capture = _capture(args)
    try:
        for msg in capture:
            result = table.decode(
                msg.arbitration_id,
                msg.is_extended_id,
                msg.data,
                is_error=msg.is_error_frame,
                is_remote=msg.is_remote_frame,
            )
            if isinstance(result, str):
                counts[result] += 1
                if result == "unknown_id":
                    unknown[msg.arbitration_id] += 1
                continue
            counts["decoded"] += 1
            line = {
                "t": msg.timestamp,
                "id": msg.arbitration_id,
                "message": result.message.name,
                "signals": {k: _json(plain(v)) for k, v in result.signals.items()},
            }
            out.write(json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n")
    except CaptureError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `| head`
        return 0
    code = _finish(capture, counts)
    if unknown:
        top = ", ".join(f"0x{i:X} ({n})" for i, n in unknown.most_common(10))
        print(f"unknown ids: {top}", file=sys.stderr)
    return code


def _decode_samples(args: argparse.Namespace, plan: RackPlan) -> int:
    """`can decode --profile`: the samples the gateway would store, one JSON object per sample."""
    from gateway.sources.can.capture import CaptureError
    counts: Counter[str] = Counter()
    out = sys.stdout
    capture = _capture(args)
    try:
        for msg in capture:
            if msg.is_error_frame:
                counts["error_frame"] += 1
                continue
            aid, ext = msg.arbitration_id, msg.is_extended_id
            ts = int(msg.timestamp * 1e9)
            samples, reason = plan.decode_frame(aid, ext, msg.data, ts, is_remote=msg.is_remote_frame)
            if reason:
                counts[reason] += 1
            if samples and reason in ("", "out_of_range"):
                counts["decoded"] += 1
            for s in samples:
                line = {"t": msg.timestamp, "id": aid, "quantity": s.quantity, "value": _json(s.value), "unit": s.unit,
                        "quality": str(s.quality), "module": s.module, "cell": s.cell}  # fmt: skip
                out.write(json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n")
    except CaptureError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    return _finish(capture, counts)


def cmd_replay(args: argparse.Namespace) -> int:
    from gateway.sources.can.capture import CaptureError
    from gateway.sources.can.reader import open_bus
    from gateway.tools.canreplay import frames_of, replay, text_progress

    capture = _capture(args)
    try:
        frames = frames_of(capture)
    except CaptureError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if capture.bad:
        print(f"{args.log}: {capture.frames} frames, {_bad_records(capture.bad)} skipped", file=sys.stderr)
        if not capture.frames:
            print(f"error: {args.log}: no frame could be read", file=sys.stderr)
            return 2
    try:
        bus = open_bus(
            args.interface, args.channel, bitrate=args.bitrate, fd=args.fd, port=args.port,
            loopback_only=not args.no_loopback,
        )  # fmt: skip
    except Exception as exc:  # python-can raises many kinds for a bus that cannot open
        print(f"error: cannot open {args.interface}:{args.channel}: {exc}", file=sys.stderr)
        return 1
    progress = text_progress() if (args.progress or sys.stderr.isatty()) and not args.quiet else None
    try:
        stats = asyncio.run(replay(frames, bus.send, rate=args.rate, loop=args.loop, ids=args.ids, progress=progress))
    except KeyboardInterrupt:
        return 130
    finally:
        bus.shutdown()
    if progress is not None:
        print(file=sys.stderr)
    if not args.quiet:
        print(
            f"replayed {stats.sent} frames ({stats.skipped} filtered out) onto {args.interface}:{args.channel} "
            f"in {stats.seconds:.1f} s",
            file=sys.stderr,
        )
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from gateway.sources.can.dbcload import lenient_from_env, load_dbc

    code = 0
    for path in args.dbc:
        try:
            dbc = load_dbc(path, lenient=args.lenient or lenient_from_env())
        except ConfigError as exc:
            for p in exc.problems:
                print(f"error: {p}", file=sys.stderr)
            code = 2
            continue
        for r in dbc.repairs:
            print(f"warning: {path}:{r.line}: {r}", file=sys.stderr)
        n_sig = sum(len(m.signals) for m in dbc.db.messages)
        cyclic = sum(1 for m in dbc.db.messages if m.cycle_time)
        print(
            f"{path}: {len(dbc.db.messages)} messages, {n_sig} signals, {cyclic} cyclic, "
            f"{len(dbc.repairs)} repairs, {dbc.encoding}"
        )
    return code


STRICT_HELP = "stop at the first bad line of the capture (default: skip and count bad lines)"


def register(sub: Any) -> None:
    p = sub.add_parser("can", help="CAN tools: decode a capture, replay it onto a bus, check DBC files")
    can_sub = p.add_subparsers(dest="can_command", required=True)

    d = can_sub.add_parser("decode", help="decode a capture with a DBC: one JSON object per frame on stdout")
    d.add_argument("--dbc", type=dbc_arg, required=True, help="DBC file (or the name of one of the library's)")
    d.add_argument("log", type=Path, help="capture: candump .log, .asc, .blf, .trc, .csv, .mf4, SavvyCAN .csv")
    d.add_argument("--lenient", action="store_true", help="load an imperfect DBC, warning once per repair")
    d.add_argument("--id-offset", type=_int, default=0, help="added to the DBC's frame ids (one DBC, many racks)")
    d.add_argument("--j1939", action="store_true", help="match 29-bit ids by PGN")
    d.add_argument(
        "--profile",
        type=profile_arg,
        default=None,
        help="a CAN profile (a file or a shipped one's name): print the samples the gateway would store instead",
    )
    d.add_argument("--rack", default="rack", help="rack tag of the samples with --profile")
    d.add_argument("--source-address", type=_int, default=None, help="J1939 source address with --profile")
    d.add_argument("--strict", action="store_true", help=STRICT_HELP)
    d.set_defaults(func=cmd_decode)

    r = can_sub.add_parser("replay", help="replay a capture onto a bus (virtual, udp_multicast, socketcan, ...)")
    r.add_argument("log", type=Path, help="capture file (any format `can decode` reads)")
    r.add_argument("--interface", default="udp_multicast", help="python-can interface (default udp_multicast)")
    r.add_argument("--channel", default="239.74.163.2", help="channel (udp_multicast: the group address)")
    r.add_argument("--port", type=int, default=None, help="udp_multicast port (default 43113)")
    r.add_argument("--rate", type=_rate, default=1.0, help="1 = recorded timing, N = N times faster, max")
    r.add_argument("--loop", action="store_true", help="start again at the end (until Ctrl-C)")
    r.add_argument("--ids", type=_ids, default=None, help="only these ids, hex, comma-separated (e.g. 201,221)")
    r.add_argument("--bitrate", type=int, default=None, help="bitrate, for interfaces that set it")
    r.add_argument("--fd", action="store_true", help="CAN FD")
    r.add_argument("--no-loopback", action="store_true", help="udp_multicast: send on the network, not loopback only")
    r.add_argument("--progress", action="store_true", help="show a progress bar even when stderr is not a terminal")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    r.add_argument("--strict", action="store_true", help=STRICT_HELP)
    r.set_defaults(func=cmd_replay)

    c = can_sub.add_parser("check", help="load DBC files strictly (or --lenient) and report every problem")
    c.add_argument("dbc", type=Path, nargs="+", help="DBC files")
    c.add_argument("--lenient", action="store_true", help="repair what can be repaired, warning once per repair")
    c.set_defaults(func=cmd_check)


# -- the demo's CAN rack ------------------------------------------------------------------------

DEMO_CAPTURE = "bms-dump-60s.log"


def demo_capture() -> Path:
    return Path(str(resources.files("gateway") / "data" / "can" / DEMO_CAPTURE))


def demo_hook(rt: Runtime) -> None:
    """Replay the bundled capture, looped at recorded speed, onto each virtual bus the demo reads."""
    from gateway.sources.can.config import CanSourceConfig

    channels = {
        c.channel for c in rt.loaded.enabled_sources if isinstance(c, CanSourceConfig) and c.interface == "virtual"
    }
    for channel in sorted(channels):
        rt.services.append((f"can-replay:{channel}", _demo_replayer(channel)))


def _demo_replayer(channel: str) -> Any:
    async def run() -> None:
        import can

        from gateway.sources.can.capture import read_capture
        from gateway.tools.canreplay import frames_of, replay

        frames = frames_of(read_capture(demo_capture()))
        bus = can.Bus(interface="virtual", channel=channel, receive_own_messages=False)
        try:
            await replay(frames, bus.send, rate=1.0, loop=True)
        finally:
            bus.shutdown()

    return run
