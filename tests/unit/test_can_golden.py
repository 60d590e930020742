"""The one CAN decoder against cantools' decoding (golden): signs, byte orders, states, bits, missing codes,
ranges, multiplexers, short and excess frames, J1939 source addresses and special values."""

from __future__ import annotations

import random

from cantools.database.can import Database, Message, Signal
from cantools.database.conversion import BaseConversion

from gateway.model import Quality
from gateway.sources.can.config import CanProfile
from gateway.sources.can.plan import RackPlan, compile_rack
from tests.can_golden import assert_golden


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


def _plan() -> RackPlan:
    plan = compile_rack(CanProfile.model_validate(PROFILE), _db(), rack="r1")
    assert isinstance(plan, RackPlan)
    return plan


def _frames(seed: int, n: int) -> list[tuple[int, bytes]]:
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        fid = rnd.choice([0x200, 0x300])
        size = rnd.choice([8, 8, 8, 8, 12, 5, 0])  # whole, excess, short
        out.append((fid, bytes(rnd.randrange(256) for _ in range(size))))
    return out


def test_the_decoder_gives_what_cantools_gives_signs_byte_orders_states_bits_missing_ranges() -> None:
    plan = _plan()
    frames = [(fid, False, data) for fid, data in _frames(1, 4000)]
    reasons = assert_golden(plan, frames)
    assert reasons >= {"", "out_of_range", "short_frame", "decode_error"}  # mux 3..15: not in the DBC
    qualities = {s.quality for fid, _, data in frames for s in plan.decode_frame(fid, False, data, 1)[0]}
    assert qualities >= {Quality.GOOD, Quality.OUT_OF_RANGE, Quality.BAD, Quality.MISSING}


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


def test_j1939_decoding_gives_what_cantools_gives_source_addresses_and_special_values() -> None:
    from gateway.sources.can.dbcload import load_dbc_text

    db = load_dbc_text(J1939_DBC, "j.dbc").db
    profile = CanProfile.model_validate({"dbc": "j", "j1939": True, "points": J1939_POINTS})
    rnd = random.Random(3)
    for sa in (None, 0x21):
        plan = compile_rack(profile, db, rack="r", source_address=sa)
        assert isinstance(plan, RackPlan)
        frames = []
        for _ in range(3000):
            pgn = rnd.choice([0x00FFFE00, 0x00EA0000 | rnd.randrange(256) << 8])
            aid = rnd.randrange(8) << 26 | pgn | rnd.choice([0x21, 0x22])
            data = bytes(rnd.choice([0xFF, 0xFE, rnd.randrange(256)]) for _ in range(rnd.choice([8, 8, 3, 10])))
            frames.append((aid, True, data))
        reasons = assert_golden(plan, frames)
        qualities = {s.quality for aid, _, data in frames for s in plan.decode_frame(aid, True, data, 1)[0]}
        assert {"", "short_frame"} <= reasons
        assert {Quality.GOOD, Quality.MISSING, Quality.BAD} <= qualities  # 0xFF.. not available, 0xFE.. error
        assert ("wrong_source_address" in reasons) == (sa is not None)
