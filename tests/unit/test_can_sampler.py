"""The generated per-message samplers against the plan's cantools path: same samples, types included."""

from __future__ import annotations

import random

from cantools.database.can import Database, Message, Signal
from cantools.database.conversion import BaseConversion

from gateway.model import Quality
from gateway.sources.can.config import CanProfile
from gateway.sources.can.fastdecode import Spec
from gateway.sources.can.plan import RackPlan, compile_rack
from gateway.sources.can.sampler import TABLE_MAX, RawTable


def _sig(name: str, start: int, length: int, **kw: object) -> Signal:
    order = str(kw.pop("order", "little_endian"))
    conv = BaseConversion.factory(
        scale=kw.pop("scale", 1),  # type: ignore[arg-type]
        offset=kw.pop("offset", 0),  # type: ignore[arg-type]
        choices=kw.pop("choices", None),  # type: ignore[arg-type]
        is_float=False,
    )
    mux = kw.pop("mux", None)
    return Signal(
        name,
        start,
        length,
        order,  # type: ignore[arg-type]
        conversion=conv,
        multiplexer_ids=None if mux is None else [mux],  # type: ignore[list-item]
        multiplexer_signal=None if mux is None else "Mux",
        **kw,  # type: ignore[arg-type]
    )


def _db() -> Database:
    odd = Message(
        0x200,
        "Odd",
        8,
        [
            _sig("Current", 7, 16, order="big_endian", is_signed=True, scale=0.1, minimum=-500, maximum=500, unit="A"),
            _sig("Temp", 16, 8, is_signed=True, scale=1, offset=-40, minimum=-40, maximum=100),
            _sig("Raw1", 24, 4, scale=1.0, offset=0.0),  # a float scale of 1: float values
            _sig("Raw2", 28, 4),  # identity: ints
            _sig("State", 32, 3, choices={0: "idle", 1: "run", 2: "fault"}),
            _sig("Word", 40, 8),
            _sig("Soc", 48, 16, scale=0.01, minimum=0, maximum=100, unit="%"),
        ],
    )
    muxed = Message(
        0x300,
        "Muxed",
        8,
        [
            _sig("Mux", 0, 4, is_multiplexer=True),
            *[_sig(f"V{m}", 8, 16, scale=0.001, unit="V", mux=m, minimum=2.5, maximum=3.65) for m in range(3)],
            _sig("Extra", 24, 16, order="big_endian", scale=1, offset=0, mux=1),
        ],
    )
    muxed.signals[-1].multiplexer_signal = "Mux"
    return Database([odd, muxed])


PROFILE = {
    "dbc": "x.dbc",
    "points": [
        {"signal": "Current", "quantity": "rack_current", "invert": True},
        {"signal": "Temp", "quantity": "module_temperature", "module": 2},
        {"signal": "Raw1", "quantity": "raw.raw1"},
        {"signal": "Raw2", "quantity": "raw.raw2", "missing": [15]},
        {"signal": "State", "quantity": "bms_state"},
        {"signal": "Word", "quantity": "alarm_word", "bits": {0: "cell_overvoltage", 3: "warning.low"}},
        {"signal": "Soc", "quantity": "soc", "offset": 0.5},
        {"signal": "Soc", "quantity": "raw.soc_again", "scale": 2},
        {"signal": "V1", "quantity": "cell_voltage", "module": 1},
        {"signal": "Extra", "quantity": "raw.extra"},
    ],
    "unmapped": "raw",
}


def _plans() -> tuple[RackPlan, RackPlan]:
    profile = CanProfile.model_validate(PROFILE)
    db = _db()
    fast = compile_rack(profile, db, rack="r1")
    slow = compile_rack(profile, db, rack="r1", fast=False)
    assert isinstance(fast, RackPlan) and isinstance(slow, RackPlan)
    assert all(m.sampler is not None for m in fast.messages.values())
    return fast, slow


def _frames(seed: int, n: int) -> list[tuple[int, bytes]]:
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        fid = rnd.choice([0x200, 0x300])
        size = rnd.choice([8, 8, 8, 8, 12, 5, 0])  # whole, excess, short
        out.append((fid, bytes(rnd.randrange(256) for _ in range(size))))
    return out


def test_sampler_gives_what_the_cantools_path_gives_signs_byte_orders_states_bits_missing_ranges() -> None:
    fast, slow = _plans()
    reasons = set()
    qualities: set[str] = set()
    for fid, data in _frames(1, 4000):
        key = fast.key(fid, False)
        got = fast.decode(key, fid, False, data, 11)
        want = slow.decode(key, fid, False, data, 11)
        assert repr(got) == repr(want), (hex(fid), data.hex())  # repr: 1 and 1.0, 0.0 and -0.0 differ
        reasons.add(got[1])
        qualities.update(s.quality for s in got[0])
    assert repr(fast.last) == repr(slow.last)
    assert reasons >= {"", "out_of_range", "short_frame", "decode_error"}  # mux 3..15: not in the DBC
    assert qualities >= {Quality.GOOD, Quality.OUT_OF_RANGE, Quality.BAD, Quality.MISSING}


def test_raw_tables_keep_apart_what_equality_merges_and_stay_bounded() -> None:
    fast, _ = _plans()
    plan = fast.messages[fast.key(0x200, False)]
    p = plan.plain[0]
    spec_int = Spec("x", False, 0, 0xFFFF, 0, 1, 1, 0, None)
    spec_float = Spec("x", False, 0, 0xFFFF, 0, 1, 1.0, 0.0, None)
    spec_neg = Spec("x", False, 0, 0xFFFF, 0, 1, 1.0, -0.0, None)
    keys = {RawTable.key(p, s) for s in (spec_int, spec_float, spec_neg)}
    assert len(keys) == 3
    table = RawTable(p, spec_float)
    for raw in range(TABLE_MAX + 10):
        assert table.miss(raw) is not None
    assert len(table.entries) == TABLE_MAX
    assert table.miss(TABLE_MAX + 5) == table.miss(TABLE_MAX + 5)  # past the bound: computed, not kept


J1939_DBC = (
    'VERSION ""\nBO_ 2566913790 BatteryInfo: 8 BMS\n SG_ Soc : 0|8@1+ (0.4,0) [0|100] "%" X\n'
    ' SG_ PackVoltage : 8|16@1+ (0.05,0) [0|3200] "V" X\n SG_ Contactor : 24|2@1+ (1,0) [0|3] "" X\n'
    ' SG_ Current : 32|16@1- (0.1,0) [-1000|1000] "A" X\n'
    'BO_ 2566844670 Request: 8 BMS\n SG_ Cmd : 0|8@1+ (1,0) [0|0] "" X\n'  # PDU1 (PF 0xEA)
    'VAL_ 2566913790 Contactor 0 "open" 1 "closed" 2 "error" 3 "not_available";\n'
)
J1939_POINTS = [
    {"signal": "Soc", "quantity": "soc"},
    {"signal": "PackVoltage", "quantity": "rack_voltage"},
    {"signal": "Contactor", "quantity": "contactor_positive"},
    {"signal": "Current", "quantity": "rack_current"},
    {"signal": "Cmd", "quantity": "raw.cmd"},
]


def test_j1939_samplers_give_what_the_cantools_path_gives_source_addresses_and_special_values() -> None:
    from gateway.sources.can.dbcload import load_dbc_text
    db = load_dbc_text(J1939_DBC, "j.dbc").db
    profile = CanProfile.model_validate({"dbc": "j", "j1939": True, "points": J1939_POINTS})
    rnd = random.Random(3)
    for sa in (None, 0x21):
        plans = [
            compile_rack(profile, db, rack="r", source_address=sa, fast=fast)  # type: ignore[arg-type]
            for fast in (True, False)
        ]
        fast, slow = plans
        assert isinstance(fast, RackPlan) and isinstance(slow, RackPlan)
        assert all(m.sampler is not None for m in fast.messages.values())
        reasons = set()
        qualities: set[str] = set()
        for _ in range(3000):
            pgn = rnd.choice([0x00FFFE00, 0x00EA0000 | rnd.randrange(256) << 8])
            aid = rnd.randrange(8) << 26 | pgn | rnd.choice([0x21, 0x22])
            data = bytes(rnd.choice([0xFF, 0xFE, rnd.randrange(256)]) for _ in range(rnd.choice([8, 8, 3, 10])))
            key = fast.key(aid, True)
            got, want = fast.decode(key, aid, True, data, 5), slow.decode(key, aid, True, data, 5)
            assert repr(got) == repr(want), (hex(aid), data.hex())
            reasons.add(got[1])
            qualities.update(s.quality for s in got[0])
        assert repr(fast.last) == repr(slow.last)
        assert {"", "short_frame"} <= reasons
        assert {Quality.GOOD, Quality.MISSING, Quality.BAD} <= qualities  # 0xFF.. not available, 0xFE.. error
        assert ("wrong_source_address" in reasons) == (sa is not None)
