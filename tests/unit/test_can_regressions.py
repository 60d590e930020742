"""One test per defect the cantools comparison found in the daemon's CAN decoding, and per profile gap.

Each goes through the frame → samples call the CAN source and `can decode --profile` share
(`RackPlan.decode_frame`), on both decoders a plan has: the generated samplers and the cantools path.
"""

from __future__ import annotations

import io
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import cantools
import pytest

from gateway.cli.main import main
from gateway.config.profiles import load_profile
from gateway.errors import ConfigError
from gateway.metrics import REGISTRY
from gateway.sources.can.config import CanProfile, CanSourceConfig
from gateway.sources.can.dbcload import load_dbc_text
from gateway.sources.can.decode import FrameTable
from gateway.sources.can.plan import PlanProblem, RackPlan, compile_rack
from gateway.sources.can.rack import Rack
from gateway.sources.can.reader import Frame
from gateway.sources.can.source import CanBusSource

HEAD = 'VERSION ""\n\nNS_ :\n\nBS_:\n\nBU_: BMS\n\n'


def plans(dbc: str, profile: dict[str, Any], **kw: Any) -> list[RackPlan]:
    """The rack plan (a list: each test checks every plan it is given)."""
    db = load_dbc_text(HEAD + dbc, "t.dbc").db
    prof = CanProfile.model_validate({"dbc": "t.dbc", **profile})
    out = [compile_rack(prof, db, rack="r", **kw)]
    assert all(isinstance(p, RackPlan) for p in out), out
    return out  # type: ignore[return-value]


def decoded(plan: RackPlan, aid: int, data: bytes, ext: bool = False, remote: bool = False) -> tuple[Any, str]:
    samples, reason = plan.decode_frame(aid, ext, data, 1, is_remote=remote)
    return {s.quantity: (s.value, str(s.quality)) for s in samples}, reason


# -- 1. a value-table signal on a raw. point -----------------------------------------------------

STATE_DBC = (
    "BO_ 256 Status: 8 BMS\n"
    ' SG_ Mode : 0|8@1+ (0.5,10) [10|12] "kW" BMS\n'
    ' SG_ Level : 8|8@1+ (1,0) [0|5] "" BMS\n'
    'VAL_ 256 Mode 2 "run" 4 "stop" 9 "weird" ;\n'
    'VAL_ 256 Level 0 "empty" 9 "broken" ;\n'
)


def test_1_a_value_table_signal_on_a_raw_point_stores_its_scaled_value_not_the_raw_integer() -> None:
    for plan in plans(STATE_DBC, {"points": [{"signal": "Mode", "quantity": "raw.mode"}]}):
        assert decoded(plan, 0x100, bytes([2]) + bytes(7)) == ({"raw.mode": (11.0, "good")}, "")  # 2 × 0.5 + 10
        assert decoded(plan, 0x100, bytes([3]) + bytes(7)) == ({"raw.mode": (11.5, "good")}, "")  # not in the table


# -- 2. state quantities and unmapped value tables are range checked ------------------------------


def test_2_state_points_and_unmapped_value_tables_are_out_of_range_outside_the_dbc_range() -> None:
    profile = {"points": [{"signal": "Mode", "quantity": "bms_state"}], "unmapped": "raw"}
    for plan in plans(STATE_DBC, profile):
        # Mode raw 9 → 14.5 kW outside [10|12], a table entry; Level 9 outside [0|5], a table entry
        got = decoded(plan, 0x100, bytes([9, 9]) + bytes(6))
        assert got == (
            {"bms_state": ("weird", "out_of_range"), "raw.Level": ("broken", "out_of_range")},
            "out_of_range",
        )
        assert decoded(plan, 0x100, bytes([2, 0]) + bytes(6)) == (
            {"bms_state": ("run", "good"), "raw.Level": ("empty", "good")},
            "",
        )


# -- 3. unmapped: raw keeps the multiplexer --------------------------------------------------------

MUX_DBC = (
    "BO_ 512 Cells: 8 BMS\n"
    ' SG_ Group M : 0|4@1+ (1,0) [0|0] "" BMS\n'
    ' SG_ V1 m0 : 8|16@1+ (1,0) [0|0] "mV" BMS\n'
    ' SG_ V4 m1 : 8|16@1+ (1,0) [0|0] "mV" BMS\n'
    ' SG_ Temp : 24|8@1- (1,0) [0|0] "degC" BMS\n'
)


def test_3_unmapped_raw_keeps_the_multiplexer_itself() -> None:
    for plan in plans(MUX_DBC, {"points": [{"signal": "Temp", "quantity": "raw.temp"}], "unmapped": "raw"}):
        got, _ = decoded(plan, 0x200, bytes([1, 0xE4, 0x0C, 0xFB]) + bytes(4))
        assert got == {"raw.temp": (-5, "good"), "raw.Group": (1, "good"), "raw.V4": (3300, "good")}


# -- 4. J1939 messages that share a PGN ------------------------------------------------------------

# PGN 0xFF10 from source address 0x10 (a voltage) and from 0x20 (a temperature and a counter)
SHARED_PGN_DBC = (
    "BO_ 2566852624 PackA: 8 BMS\n"  # 0x98FF1010: extended, priority 6, PGN 0xFF10, SA 0x10
    ' SG_ VoltA : 0|16@1+ (0.05,0) [0|3212.75] "V" BMS\n'
    "BO_ 2566852640 PackB: 8 BMS\n"  # 0x98FF1020: the same PGN, SA 0x20
    ' SG_ TempB : 0|8@1+ (1,-40) [-40|210] "degC" BMS\n'
    ' SG_ CountB : 8|8@1+ (1,0) [0|250] "" BMS\n'
)


def test_4_j1939_messages_sharing_a_pgn_decode_each_with_its_own_layout() -> None:
    profile = {
        "j1939": True,
        "points": [
            {"signal": "VoltA", "quantity": "rack_voltage"},
            {"signal": "TempB", "quantity": "module_temperature", "module": 1},
            {"signal": "CountB", "quantity": "raw.count"},
        ],
    }
    for plan in plans(SHARED_PGN_DBC, profile):
        data = bytes([0x40, 0x1F, 7, 0, 0, 0, 0, 0])
        assert decoded(plan, 0x0CFF1010, data, ext=True) == ({"rack_voltage": (400.0, "good")}, "")
        assert decoded(plan, 0x18FF1020, data, ext=True) == (
            {"module_temperature": (24, "good"), "raw.count": (31, "good")},
            "",
        )
        assert decoded(plan, 0x18FF1030, data, ext=True) == ({}, "wrong_source_address")  # the PGN, another SA
        assert decoded(plan, 0x18FF1110, data, ext=True) == ({}, "unknown_id")
    table = FrameTable(load_dbc_text(HEAD + SHARED_PGN_DBC, "t.dbc").db, j1939=True)  # can decode --j1939
    got = table.decode(0x18FF1020, True, bytes(8))
    assert not isinstance(got, str) and got.message.name == "PackB"
    assert table.decode(0x18FF1030, True, bytes(8)) == "wrong_source_address"


def test_4_two_messages_a_frame_cannot_tell_apart_are_a_profile_problem() -> None:
    dbc = SHARED_PGN_DBC.replace("2566852640 PackB", "2499743760 PackB")  # 0x94FF1010: PGN and SA of PackA
    db = load_dbc_text(HEAD + dbc, "t.dbc").db
    profile = CanProfile.model_validate(
        {"dbc": "t", "j1939": True, "points": [{"signal": "VoltA", "quantity": "rack_voltage"},
                                                {"signal": "TempB", "quantity": "raw.t"}]}
    )  # fmt: skip
    problems = compile_rack(profile, db, rack="r")
    assert problems == [
        PlanProblem(
            ("points", 1, "signal"),
            "messages PackA and PackB are both PGN 0x0FF10 from source address 0x10: a frame cannot tell them "
            "apart (map one of them, or give each its own source address under `messages:`)",
        )
    ]


# -- 5. remote frames ------------------------------------------------------------------------------


def _errors(bus: str, aid: int, reason: str) -> float:
    labels = {"bus": bus, "id": f"0x{aid:X}", "reason": reason}
    return REGISTRY.get_sample_value("bms_gateway_can_errors_total", labels) or 0.0


def test_5_remote_frames_are_counted_as_remote_frame_by_the_source_never_stored_as_bad() -> None:
    [fast] = plans(MUX_DBC, {"points": [{"signal": "Temp", "quantity": "raw.temp"}]})
    assert decoded(fast, 0x200, b"", remote=True) == ({}, "remote_frame")
    cfg = CanSourceConfig(name="remote-test", profile="p", interface="virtual", channel="remote-test")
    source = CanBusSource("remote-test", [cfg], [Rack(cfg, fast, 5.0)])
    source._decode([Frame(0x200, False, False, False, bytes(8), 8, False, time.time())])  # the id's group exists
    source.racks[0].take(1)
    source.racks[0].seen.clear()
    before = _errors("virtual:remote-test", 0x200, "remote_frame")
    now = time.time()
    source._decode(
        [Frame(0x200, False, False, True, b"", 8, False, now), Frame(0x200, False, False, True, b"", 0, False, now)]
    )
    assert source.racks[0].take(1) == [] and not source.racks[0].seen
    assert _errors("virtual:remote-test", 0x200, "remote_frame") == before + 2
    assert _errors("virtual:remote-test", 0x200, "short_frame") == 0


def test_5_can_decode_with_a_profile_counts_remote_frames(tmp_path: Path) -> None:
    (tmp_path / "t.dbc").write_text(HEAD + MUX_DBC, encoding="utf-8")
    (tmp_path / "p.yaml").write_text(
        "protocol: can\ndbc: t.dbc\npoints:\n  - {signal: Temp, quantity: raw.temp}\n", encoding="utf-8"
    )
    (tmp_path / "c.log").write_text("(1.0) can0 200#R\n(2.0) can0 200#01E40CFB00000000\n", encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        argv = ["can", "decode", "--dbc", str(tmp_path / "t.dbc"), str(tmp_path / "c.log")]
        assert main([*argv, "--profile", str(tmp_path / "p.yaml")]) == 0
    assert len(out.getvalue().splitlines()) == 1  # the data frame's sample only
    assert err.getvalue().strip().endswith("2 frames, 1 decoded, remote_frame 1")


# -- 6. no rounding --------------------------------------------------------------------------------

FLOAT_DBC = (
    "BO_ 768 Meas: 8 BMS\n"
    ' SG_ Tiny : 0|32@1- (1,0) [0|0] "" BMS\n'
    ' SG_ Cell : 32|16@1+ (1,0) [0|0] "mV" BMS\n'
    "SIG_VALTYPE_ 768 Tiny : 1;\n"
)


def test_6_values_are_never_rounded_a_tiny_float_keeps_its_value() -> None:
    import struct

    profile = {"points": [{"signal": "Tiny", "quantity": "raw.tiny", "invert": True},
                          {"signal": "Cell", "quantity": "cell_voltage", "module": 1}]}  # fmt: skip
    tiny = struct.unpack("<f", struct.pack("<f", 1.76e-36))[0]
    for plan in plans(FLOAT_DBC, profile):
        got, _ = decoded(plan, 0x300, struct.pack("<fH", 1.76e-36, 3300) + bytes(2))
        assert got == {"raw.tiny": (-tiny, "good"), "cell_voltage": (3.3, "good")}  # 3300 mV: 3.3 V, not 3.300...03
        assert got["raw.tiny"][0] != 0.0


# -- 7. no false overlap in strict loading ---------------------------------------------------------

# Values 0 of Mux carry A; value 1 carries the nested multiplexer Sub, whose value 1 carries B on
# A's bits: A and B are under different values of Mux, never in one frame.
NESTED_DBC = (
    "BO_ 1024 Nested: 8 BMS\n"
    ' SG_ Mux M : 16|2@1+ (1,0) [0|0] "" BMS\n'
    ' SG_ Sub m1M : 33|4@1+ (1,0) [0|0] "" BMS\n'
    ' SG_ B m1 : 41|17@1+ (1,0) [0|0] "" BMS\n'
    ' SG_ A m0 : 45|17@0+ (1,0) [0|0] "" BMS\n'
    "SG_MUL_VAL_ 1024 Sub Mux 1-1;\n"
    "SG_MUL_VAL_ 1024 B Sub 1-1;\n"
    "SG_MUL_VAL_ 1024 A Mux 0-0;\n"
)


def test_7_signals_under_different_values_behind_a_nested_multiplexer_are_no_overlap() -> None:
    cantools.database.load_string(HEAD + NESTED_DBC, "dbc", strict=True)  # cantools loads it strictly
    loaded = load_dbc_text(HEAD + NESTED_DBC, "n.dbc")
    assert loaded.repairs == []
    real = NESTED_DBC.replace("SG_MUL_VAL_ 1024 A Mux 0-0;", "SG_MUL_VAL_ 1024 A Mux 0-1;").replace(" A m0 ", " A m1 ")
    with pytest.raises(ConfigError, match="signal A: overlaps signal B"):  # under value 1 too: a real overlap
        load_dbc_text(HEAD + real, "n.dbc")


# -- the gaps of the profile format ----------------------------------------------------------------

WIDE_DBC = 'BO_ 1280 Wide: 8 BMS\n SG_ Energy : 0|64@1+ (1,0) [0|0] "Wh" BMS\n'


def test_gap_missing_takes_a_64_bit_sentinel_exactly_as_a_hex_string(tmp_path: Path) -> None:
    import gateway.sources.can.source  # noqa: F401  (registers the `can` profile kind)

    path = tmp_path / "p.yaml"
    path.write_text(
        "protocol: can\ndbc: t.dbc\npoints:\n"
        '  - {signal: Energy, quantity: raw.energy, missing: ["0xFFFFFFFFFFFFFFFF"]}\n',
        encoding="utf-8",
    )
    profile = load_profile(path)
    assert isinstance(profile, CanProfile) and profile.points[0].missing == [0xFFFFFFFFFFFFFFFF]
    for plan in plans(WIDE_DBC, profile.model_dump(exclude={"protocol", "dbc"})):
        assert decoded(plan, 0x500, bytes([0xFF] * 8)) == ({"raw.energy": (None, "missing")}, "")
        # one below: the same float (1.8446744073709552e19), yet a value
        assert decoded(plan, 0x500, bytes([0xFE] + [0xFF] * 7)) == (
            {"raw.energy": (0xFFFFFFFFFFFFFFFE, "good")},
            "",
        )
    path.write_text(path.read_text().replace("0xFFFFFFFFFFFFFFFF", "0xZZ"), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"p.yaml:4:\d+: points.0.missing.*'0xZZ' is not an integer"):
        load_profile(path)


def test_gap_names_keeps_value_table_names_on_a_raw_point() -> None:
    profile = {"points": [{"signal": "Mode", "quantity": "raw.mode", "names": True},
                          {"signal": "Level", "quantity": "bms_state", "names": False}]}  # fmt: skip
    for plan in plans(STATE_DBC, profile):
        assert decoded(plan, 0x100, bytes([2, 9]) + bytes(6)) == (
            {"raw.mode": ("run", "good"), "bms_state": (9, "out_of_range")},
            "out_of_range",
        )
        assert decoded(plan, 0x100, bytes([3, 1]) + bytes(6))[0] == {
            "raw.mode": (11.5, "good"),
            "bms_state": (1, "good"),
        }
    with pytest.raises(ValueError, match=r"soc \(a number\) cannot hold"):
        CanProfile.model_validate({"dbc": "x", "points": [{"signal": "Mode", "quantity": "soc", "names": True}]})


# one DBC message for a PGN; the profile takes it from two source addresses, as two DBC messages
SOURCES_DBC = (
    "BO_ 2566855680 String1: 8 BMS\n"  # 0x98FF1C00: PGN 0xFF1C
    ' SG_ Soc1 : 0|8@1+ (0.4,0) [0|100] "%" BMS\n'
    "BO_ 2566855681 String2: 8 BMS\n"  # 0x98FF1C01: the same PGN
    ' SG_ Soc2 : 0|8@1+ (0.4,0) [0|100] "%" BMS\n'
    "BO_ 2566855936 Limits: 8 BMS\n"  # 0x98FF1D00: PGN 0xFF1D
    ' SG_ MaxCharge : 0|16@1+ (0.1,0) [0|6000] "A" BMS\n'
)


def test_gap_one_j1939_profile_takes_one_pgn_from_several_source_addresses() -> None:
    profile = {
        "j1939": True,
        "messages": {"String1": {"source_address": 0x80}, "String2": {"source_address": 0x81},
                     "Limits": {"source_address": 0x80}},
        "points": [{"signal": "Soc1", "quantity": "soc", "module": 1}, {"signal": "Soc2", "quantity": "raw.soc2"},
                   {"signal": "MaxCharge", "quantity": "charge_current_limit"}],
    }  # fmt: skip
    for plan in plans(SOURCES_DBC, profile, source_address=0x21):  # the rack's address: overridden per message
        data = bytes([200, 0x10, 0, 0, 0, 0, 0, 0])
        assert decoded(plan, 0x18FF1C80, data, ext=True) == ({"soc": (80.0, "good")}, "")
        assert decoded(plan, 0x18FF1C81, data, ext=True) == ({"raw.soc2": (80.0, "good")}, "")
        assert decoded(plan, 0x18FF1C21, data, ext=True) == ({}, "wrong_source_address")
        assert decoded(plan, 0x18FF1D80, data, ext=True) == ({"charge_current_limit": (429.6, "good")}, "")
        assert decoded(plan, 0x18FF1D21, data, ext=True) == ({}, "wrong_source_address")
    cfg = CanSourceConfig(name="sa", profile="p", interface="virtual", channel="sa", source_address=0x21)
    filters = CanBusSource("sa", [cfg], [Rack(cfg, plans(SOURCES_DBC, profile)[0], 5.0)]).filters()
    assert filters is not None
    assert sorted((f["can_id"], f["can_mask"]) for f in filters) == [
        (0x00FF1C80, 0x03FFFFFF),
        (0x00FF1C81, 0x03FFFFFF),
        (0x00FF1D80, 0x03FFFFFF),
    ]
    bad = CanProfile.model_validate({**profile, "dbc": "t", "j1939": False})
    problems = compile_rack(bad, load_dbc_text(HEAD + SOURCES_DBC, "t.dbc").db, rack="r")
    assert isinstance(problems, list) and problems[0].loc == ("messages", "String1", "source_address")
