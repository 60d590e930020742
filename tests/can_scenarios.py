"""The scenarios of the CAN agreement test: generated definitions, their frames, and a profile per mapping mode.

Modes: every signal mapped (value tables to a state quantity, units converted), one signal mapped
per message with `unmapped: raw` keeping the rest, every signal on a `raw.` point with profile keys
(`scale`, `offset`, `invert`, `missing`, `bits`, `names`) and `--id-offset`, and `j1939: true` with
a rack source address, per-message source addresses and PGNs defined twice. Each mode says which
message a frame must decode as (`route`), as the README says.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from typing import Any

import cantools

from tests.can_generate import Generator, Msg, Sig, dbc_text, edge_raws
from tests.can_oracle import Expect

SEED = 17
N_MESSAGES = 200  # definitions with standard and extended ids
N_J1939 = 60  # J1939 definitions (a quarter of their PGNs defined again for another source address)
RACK_SA = 0x21  # the rack's source address in the J1939 mode
ID_OFFSET = 0x10


@dataclass
class Frame:
    aid: int
    extended: bool
    data: bytes
    remote: bool = False


@dataclass
class Mode:
    name: str
    messages: list[Msg]
    profile: dict[str, Any]
    points: list[Expect]
    args: list[str]
    route: Any  # frame -> (Msg, "") or (None, reason): which message the gateway must decode it as


# -- definitions -----------------------------------------------------------------------------------


def plain_messages(gen: Generator) -> list[Msg]:
    rnd = gen.rnd
    ids = rnd.sample(range(0x20, 0x7F0), N_MESSAGES // 2) + rnd.sample(range(0x800, 0x1FFFFF00), N_MESSAGES // 2)
    return [gen.message(fid, fid > 0x7FF) for fid in ids]


def j1939_messages(gen: Generator) -> tuple[list[Msg], dict[str, int]]:
    """J1939 messages (some PGNs twice, from two source addresses) and per-message source addresses."""
    rnd = gen.rnd
    out: list[Msg] = []
    sources: dict[str, int] = {}
    pgns = rnd.sample(range(0x100, 0x3FF00), N_J1939)
    for i, pgn in enumerate(pgns):
        pf = (pgn >> 8) & 0xFF
        sa = rnd.randrange(256)
        m = gen.message(rnd.randrange(8) << 26 | pgn << 8 | sa, True, j1939=True)
        out.append(m)
        if i % 4 == 0:  # the same PGN from another source address, with its own layout
            da = rnd.randrange(256) if pf < 240 else pgn & 0xFF
            twin = ((pgn >> 8) << 16) | da << 8 | (sa + 1 + rnd.randrange(250)) % 256
            out.append(gen.message(rnd.randrange(8) << 26 | twin, True, j1939=True))
        elif i % 4 == 1:
            sources[m.name] = rnd.choice([RACK_SA, rnd.randrange(256)])
    return out, sources


def pgn(aid: int) -> int:
    return aid & (0x03FF0000 if (aid >> 16) & 0xFF < 240 else 0x03FFFF00)


# -- frames ----------------------------------------------------------------------------------------


def _mux_for(rnd: random.Random, msg: Msg, sig: Sig | None) -> int | None:
    if msg.mux is None:
        return None
    if sig is not None and sig.mux_ids:
        return rnd.choice(sig.mux_ids)
    defined = sorted({v for s in msg.signals for v in s.mux_ids})
    return rnd.choice(defined) if defined else 0


def frames_of(rnd: random.Random, msg: Msg) -> list[bytes | None]:
    """Data of the frames for one message (None: a remote frame)."""

    def frame(sig: Sig | None = None, raw: Any = None) -> bytes:
        data = bytearray(rnd.randrange(256) for _ in range(msg.length))
        mux = _mux_for(rnd, msg, sig)
        if msg.mux is not None and mux is not None:
            msg.put(data, msg.mux, mux)
        if sig is not None:
            msg.put(data, sig, raw)
        return bytes(data)

    out: list[bytes | None] = [frame() for _ in range(4)]
    for sig in msg.signals:
        out += [frame(sig, raw) for raw in edge_raws(sig)]
    whole = frame()
    out += [whole[: rnd.randrange(msg.length)] for _ in range(2)]  # short
    if msg.length < 64:  # excess bytes (a DBC length under the frame's DLC)
        out.append(whole + bytes(rnd.randrange(256) for _ in range(1 + rnd.randrange(min(8, 64 - msg.length)))))
    out.append(None)  # remote
    if msg.mux is not None:
        undefined = [v for v in range(1 << msg.mux.length) if not any(v in s.mux_ids for s in msg.signals)]
        if undefined:
            data = bytearray(frame())
            msg.put(data, msg.mux, rnd.choice(undefined))
            out.append(bytes(data))
    return out


def plain_frames(rnd: random.Random, messages: list[Msg], offset: int = 0) -> list[Frame]:
    out = []
    for m in messages:
        out += [Frame(m.frame_id + offset, m.extended, d or b"", d is None) for d in frames_of(rnd, m)]
    out.append(Frame(0x7FF, False, bytes(8)))  # an id no message has
    return out


def j1939_frames(rnd: random.Random, messages: list[Msg], sources: dict[str, int]) -> list[Frame]:
    own = source_addresses(messages, sources)
    out = []
    for m in messages:
        sa_of = own[m.name]
        reads = RACK_SA if sa_of is None else sa_of
        for d in frames_of(rnd, m):
            sa = rnd.choice([reads, reads, reads, reads, m.frame_id & 0xFF, RACK_SA, rnd.randrange(256)])
            da = rnd.randrange(256) << 8 if (m.frame_id >> 16) & 0xFF < 240 else m.frame_id & 0xFF00
            aid = rnd.randrange(8) << 26 | (m.frame_id & 0x03FF0000) | da | sa
            out.append(Frame(aid, True, d or b"", d is None))
    return out


# -- profiles --------------------------------------------------------------------------------------


def _point(p: Expect, **keys: Any) -> dict[str, Any]:
    return {"signal": p.signal, "message": p.message, "quantity": p.quantity, "module": p.module, **keys}


def mapped_points(messages: list[Msg]) -> tuple[list[dict[str, Any]], list[Expect]]:
    """Every signal mapped: value tables to a state quantity, units converted to catalog quantities."""
    points: list[dict[str, Any]] = []
    expects: list[Expect] = []
    for m in messages:
        for s in m.signals:
            k = len(expects) + 1
            if s.choices:
                e = Expect(m.name, s.name, "bms_state", "", k, names=True)
            elif s.unit in ("mV", "V"):
                e = Expect(m.name, s.name, "rack_voltage", "V", k, factor=0.001 if s.unit == "mV" else 1.0)
            elif s.unit == "kW":
                e = Expect(m.name, s.name, "rack_power", "W", k, factor=1000.0)
            else:
                e = Expect(m.name, s.name, f"raw.{m.name}_{s.name}", s.unit, k)
            points.append(_point(e))
            expects.append(e)
    return points, expects


def unmapped_points(messages: list[Msg], j1939: bool = False) -> tuple[list[dict[str, Any]], list[Expect]]:
    """One signal mapped per message, `unmapped: raw` keeps the others (the multiplexer too)."""
    points: list[dict[str, Any]] = []
    expects: list[Expect] = []
    for m in messages:
        first = next(s for s in m.signals if not s.is_mux)
        e = Expect(m.name, first.name, f"raw.first_{first.name}", first.unit, len(expects) + 1, j1939=j1939)
        points.append(_point(e))
        expects.append(e)
        expects += [
            Expect(m.name, s.name, f"raw.{s.name}", s.unit, None, names=bool(s.choices), j1939=j1939)
            for s in m.signals
            if s is not first
        ]
    return points, expects


def keyed_points(
    rnd: random.Random, messages: list[Msg], db: Any, j1939: bool = False
) -> tuple[list[dict[str, Any]], list[Expect]]:
    """Every signal on a raw. point with profile keys: scale, offset, invert, missing, bits, names."""
    points: list[dict[str, Any]] = []
    expects: list[Expect] = []
    for m in messages:
        cmsg = db.get_message_by_name(m.name)
        for s in m.signals:
            k = len(expects) + 1
            scale = rnd.choice([None, None, 2, -1.5, 0.001, -0.001, 1e-6, 1000, 0.1])
            invert = rnd.random() < 0.2
            offset = rnd.choice([0.0, 0.0, 0.0, 5.0, -273.15])
            factor = (1.0 if scale is None else scale) * (-1 if invert else 1)
            e = Expect(m.name, s.name, f"raw.k_{s.name}", s.unit, k, factor=factor, offset=offset, j1939=j1939)
            keys: dict[str, Any] = {"invert": invert, "offset": offset}
            if scale is not None:
                keys["scale"] = scale
            if s.choices or rnd.random() < 0.1:
                e.names = rnd.random() < 0.8
                keys["names"] = e.names
            if not s.float_type and s.length >= 2 and rnd.random() < 0.2:
                e.bits = sorted((b, f"alarm.b{k}_{b}") for b in rnd.sample(range(s.length), 2))
                keys["bits"] = {b: name.removeprefix("alarm.") for b, name in e.bits}
            if rnd.random() < 0.3:
                sentinels = [cmsg.get_signal_by_name(s.name).conversion.raw_to_scaled(r, False)
                             for r in rnd.sample(edge_raws(s), 2)]  # fmt: skip
                e.missing = [v for v in sentinels if v == v and abs(v) != float("inf")]
                keys["missing"] = [hex(v) if isinstance(v, int) and v >= 2**53 else v for v in e.missing]
            points.append(_point(e, **keys))
            expects.append(e)
    return points, expects


def profile(points: list[dict[str, Any]], **keys: Any) -> dict[str, Any]:
    return {"protocol": "can", "dbc": "generated.dbc", "points": points, **keys}


# -- routing: which message a frame is, as the README says ----------------------------------------


def plain_route(messages: list[Msg], offset: int = 0) -> Any:
    by_id = {(m.frame_id + offset, m.extended): m for m in messages}

    def route(f: Frame) -> tuple[Msg | None, str]:
        m = by_id.get((f.aid, f.extended))
        return (None, "unknown_id") if m is None else (m, "")

    return route


def source_addresses(messages: list[Msg], sources: dict[str, int]) -> dict[str, int | None]:
    """The source address each J1939 message is read from (None: the rack's): the profile's, else the
    DBC id's when the DBC defines the PGN more than once."""
    per_pgn = Counter(pgn(m.frame_id) for m in messages)
    return {m.name: sources.get(m.name, m.frame_id & 0xFF if per_pgn[pgn(m.frame_id)] > 1 else None) for m in messages}


def j1939_route(messages: list[Msg], sources: dict[str, int]) -> Any:
    own = source_addresses(messages, sources)

    def route(f: Frame) -> tuple[Msg | None, str]:
        same_pgn = [m for m in messages if pgn(m.frame_id) == pgn(f.aid)]
        if not same_pgn:
            return None, "unknown_id"
        if own[same_pgn[0].name] is not None:  # keyed by source address
            m = next((m for m in same_pgn if own[m.name] == f.aid & 0xFF), None)
            return (None, "wrong_source_address") if m is None else (m, "")
        if not f.remote and f.aid & 0xFF != RACK_SA:
            return None, "wrong_source_address"
        return same_pgn[0], ""

    return route


def build_modes() -> tuple[list[Mode], dict[str, list[Frame]]]:
    gen = Generator(SEED)
    rnd = random.Random(SEED + 1)
    messages = plain_messages(gen)
    j1939, sources = j1939_messages(gen)
    db = cantools.database.load_string(dbc_text(messages), "dbc", strict=True)
    jdb = cantools.database.load_string(dbc_text(j1939), "dbc", strict=True)
    mapped, mapped_e = mapped_points(messages)
    kept, kept_e = unmapped_points(messages)
    keyed, keyed_e = keyed_points(rnd, messages, db)
    half = len(j1939) // 2
    j_keyed, j_keyed_e = keyed_points(rnd, j1939[:half], jdb, j1939=True)
    j_kept, j_kept_e = unmapped_points(j1939[half:], j1939=True)
    overrides = {n: {"source_address": sa} for n, sa in sources.items()}
    modes = [
        Mode("mapped", messages, profile(mapped), mapped_e, [], plain_route(messages)),
        Mode("unmapped", messages, profile(kept, unmapped="raw"), kept_e, [], plain_route(messages)),
        Mode("keys", messages, profile(keyed), keyed_e, ["--id-offset", str(ID_OFFSET)],
             plain_route(messages, ID_OFFSET)),
        Mode("j1939", j1939, profile(j_keyed + j_kept, j1939=True, unmapped="raw", messages=overrides),
             j_keyed_e + j_kept_e, ["--source-address", str(RACK_SA)], j1939_route(j1939, sources)),
    ]  # fmt: skip
    frames = {
        "plain": plain_frames(rnd, messages),
        "keys": plain_frames(rnd, messages, ID_OFFSET),
        "j1939": j1939_frames(rnd, j1939, sources),
    }
    return modes, frames
