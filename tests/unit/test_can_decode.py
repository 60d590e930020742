"""Pure decoding with real DBCs and captures: every frame, multiplexed cells, hygiene, fuzz."""

from __future__ import annotations

import io
import json
from collections import Counter
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import cantools
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.cli.main import main
from gateway.model import Quality
from gateway.sources.can.config import CanProfile
from gateway.sources.can.dbcload import load_dbc
from gateway.sources.can.decode import (
    DECODE_ERROR,
    ERROR_FRAME,
    OUT_OF_RANGE,
    REMOTE,
    SHORT,
    UNKNOWN_ID,
    WRONG_SOURCE,
    FrameTable,
    j1939_key,
    plain,
)
from gateway.sources.can.plan import RackPlan, compile_rack
from tests.can_support import BMS_DBC, BMS_LOG, DBC_DIR, FOX_DBC, FOX_TRC, log_frames, project_plan

RACK_DBC = DBC_DIR / "can-example-rack.dbc"
DEMO_LOG = DBC_DIR.parent / "gateway" / "data" / "can" / "bms-dump-60s.log"


def test_every_frame_of_bms_dump_decodes_like_cantools() -> None:
    ref = cantools.database.load_file(BMS_DBC)
    table = FrameTable(load_dbc(BMS_DBC).db)
    frames = log_frames()
    assert len(frames) == 15796
    ids = set()
    for m in frames:
        result = table.decode(m.arbitration_id, m.is_extended_id, m.data)
        assert not isinstance(result, str), (hex(m.arbitration_id), result)
        assert result.signals == ref.decode_message(m.arbitration_id, m.data)
        ids.add(m.arbitration_id)
    assert len(ids) == 13


def test_can_decode_cli_writes_one_json_object_per_frame_equal_to_cantools() -> None:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        assert main(["can", "decode", "--dbc", str(BMS_DBC), str(BMS_LOG)]) == 0
    lines = out.getvalue().splitlines()
    assert len(lines) == 15796
    ref = cantools.database.load_file(BMS_DBC)
    for line, m in zip(lines, log_frames(), strict=True):
        obj = json.loads(line)
        assert obj["t"] == pytest.approx(m.timestamp) and obj["id"] == m.arbitration_id
        msg = ref.get_message_by_frame_id(m.arbitration_id)
        assert obj["message"] == msg.name
        expected = {k: plain(v) for k, v in msg.decode(m.data).items()}
        assert obj["signals"] == expected
    assert "15796 frames, 15796 decoded" in err.getvalue()


def test_foxbms_trace_multiplexed_cells_decode_through_a_profile() -> None:
    profile = CanProfile.model_validate(
        {
            "dbc": "foxbms.dbc",
            "points": [
                {"signal": "CellVoltage_{i:03d}", "message": "f_CellVoltages", "quantity": "cell_voltage",
                 "array": {"count": 108, "per_module": 18}},
                {"signal": "CellTemperature_{i:03d}", "message": "f_CellTemperatures", "quantity": "cell_temperature",
                 "array": {"count": 90, "per_module": 15}},
                {"signal": "BmsState", "quantity": "bms_state"},
                {"signal": "Voltage", "message": "f_StringValuesP0", "quantity": "rack_voltage"},
            ],
        }
    )  # fmt: skip
    plan = compile_rack(profile, load_dbc(FOX_DBC).db, rack="fox")
    assert isinstance(plan, RackPlan)
    got = []
    for m in log_frames(FOX_TRC):
        samples, _ = plan.decode_frame(m.arbitration_id, False, m.data, 1)
        got.extend((s.quantity, s.value, s.module, s.cell) for s in samples)
    # mux 2 of f_CellVoltages carries cells 8..11 (0-based): module 1, cells 9..12, mV converted to V
    assert ("cell_voltage", 1.996, 1, 9) in got and ("cell_voltage", 1.999, 1, 12) in got
    # mux 1 of f_CellTemperatures carries sensors 6..11
    assert [g for g in got if g[0] == "cell_temperature"] == [
        ("cell_temperature", v, 1, c) for v, c in ((25, 7), (25, 8), (25, 9), (25, 10), (26, 11), (26, 12))
    ]
    assert ("bms_state", "ERROR", None, None) in got  # value table kept as its name
    assert got.count(("rack_voltage", 63.93, None, None)) == 2


def test_bms_profile_decodes_every_frame_with_units_converted() -> None:
    plan = project_plan("can-redpesk-bms", BMS_DBC)
    frames = log_frames()
    reasons: Counter[str] = Counter()
    by_q: dict[str, object] = {}
    for m in frames:
        samples, reason = plan.decode_frame(m.arbitration_id, False, m.data, 1)
        reasons[reason] += 1
        assert samples
        for s in samples:
            by_q[s.quantity] = s.value
    assert reasons == Counter({"": len(frames)})
    first = cantools.database.load_file(BMS_DBC).decode_message(0x221, bytes.fromhex("5DC2ED815D029F00"))
    assert first["MaxCellVoltage"] == 3000  # mV in the DBC
    assert isinstance(by_q["cell_voltage_max"], float) and 2.5 < by_q["cell_voltage_max"] < 4.5  # V
    assert "raw.plc_day_of_year" in by_q and "raw.SubSafetyMode1" in by_q  # unmapped: raw


def rack_plan(**kw: int) -> RackPlan:
    return project_plan("can-example-rack", RACK_DBC, **kw)  # type: ignore[arg-type]


def encode(name: str, **values: object) -> tuple[int, bytes]:
    db = cantools.database.load_file(RACK_DBC)
    msg = db.get_message_by_name(name)
    full = {s.name: 0 for s in msg.signals}
    full.update(values)
    return msg.frame_id, msg.encode(full, strict=False)


def test_example_rack_mux_cells_enums_bits_and_id_offset() -> None:
    plan = rack_plan(id_offset=0x20)
    fid, data = encode("CellVoltages", CellGroup=5, CellVoltage1=3301, CellVoltage2=3302, CellVoltage3=3303)
    assert plan.decode_frame(fid, False, data, 1)[1] == UNKNOWN_ID  # without the offset
    samples, reason = plan.decode_frame(fid + 0x20, False, data, 1)
    assert reason == ""
    # group 5 = cells 16, 17, 18 of the rack = module 2, cells 4..6
    assert [(s.value, s.module, s.cell) for s in samples] == [(3.301, 2, 4), (3.302, 2, 5), (3.303, 2, 6)]
    fid, data = encode("RackStatus", RackVoltage=700.0, RackCurrent=-123.4, SoC=50.5, BmsState=2, ContactorPositive=1)
    samples, reason = plan.decode_frame(fid + 0x20, False, data, 1)
    by = {s.quantity: s for s in samples}
    assert by["rack_voltage"].value == 700.0 and by["rack_current"].value == pytest.approx(-123.4)
    assert by["bms_state"].value == "run" and by["contactor_positive"].value == "closed"
    assert by["contactor_negative"].value == "open"
    assert by["soc"].value == 50.5
    fid, data = encode("RackAlarms", AlarmWord=0b101, WarningWord=2, InsulationResistance=1500)
    samples, _ = plan.decode_frame(fid + 0x20, False, data, 1)
    by = {s.quantity: s.value for s in samples}
    assert by["alarm.cell_overvoltage"] == 1 and by["alarm.cell_undervoltage"] == 0
    assert by["alarm.overtemperature"] == 1 and by["alarm_word"] == 5
    assert by["warning.cell_low"] == 1 and by["warning.cell_high"] == 0
    assert by["insulation_resistance"] == 1_500_000  # 150 × 10 kOhm → Ω


def test_hygiene_short_unknown_error_remote_out_of_range() -> None:
    plan = rack_plan()
    fid, data = encode("RackStatus", RackVoltage=700.0, SoC=100)
    samples, reason = plan.decode_frame(fid, False, data[:5], 1)
    assert reason == SHORT
    assert samples and all(s.quality == Quality.BAD and s.value is None for s in samples)  # flagged, not decoded
    assert plan.decode_frame(0x7FF, False, data, 1) == ([], UNKNOWN_ID)
    # SoC raw 250 → 125 %: outside the DBC's [0|100]
    fid, data = encode("RackStatus", SoC=125.0)
    samples, reason = plan.decode_frame(fid, False, data, 1)
    assert reason == OUT_OF_RANGE
    soc = next(s for s in samples if s.quantity == "soc")
    assert soc.quality == Quality.OUT_OF_RANGE and soc.value == 125.0
    table = plan.table
    assert table.decode(fid, False, data, is_error=True) == ERROR_FRAME
    assert table.decode(fid, False, b"", is_remote=True) == REMOTE
    # a multiplexed frame with a mux value the DBC does not know
    fid, data = encode("CellTemperatures", SensorGroup=0)
    bad = bytes([200]) + data[1:]
    assert table.decode(fid, False, bad) == DECODE_ERROR


def test_j1939_pgn_matching_masks_priority_and_source_address() -> None:
    text = (
        'VERSION ""\nBO_ 2566913790 BatteryInfo: 8 BMS\n'  # 0x98FFFEFE... extended flag + 0x18FFFEFE
        ' SG_ Soc : 0|8@1+ (0.4,0) [0|100] "%" X\n'
    )
    from gateway.sources.can.dbcload import load_dbc_text
    db = load_dbc_text(text, "j.dbc").db
    msg = db.messages[0]
    assert msg.is_extended_frame and msg.frame_id == 0x18FFFEFE
    table = FrameTable(db, j1939=True, source_address=0x21)
    other_prio_and_sa = 0x0CFFFE21  # priority 3, same PGN, source 0x21
    result = table.decode(other_prio_and_sa, True, bytes([100]) + bytes(7))
    assert not isinstance(result, str) and result.signals["Soc"] == 40.0
    assert table.decode(0x0CFFFE22, True, bytes(8)) == WRONG_SOURCE
    assert table.decode(0x0CFFFD21, True, bytes(8)) == UNKNOWN_ID  # another PGN
    assert j1939_key(0x18EA21F9) == j1939_key(0x0CEA33AA)  # PDU1: destination masked too


def test_profile_problems_name_the_entry() -> None:
    profile = CanProfile.model_validate(
        {"dbc": "x", "messages": {"NoSuch": {"cycle_time": 1}},
         "points": [{"signal": "Nope", "quantity": "soc"},
                    {"signal": "CellVoltage_{i}", "quantity": "cell_voltage", "array": {"count": 2}}]}
    )  # fmt: skip
    problems = compile_rack(profile, load_dbc(RACK_DBC).db, rack="r")
    assert isinstance(problems, list)
    assert [(p.loc, p.message) for p in problems] == [
        (("messages", "NoSuch"), "message 'NoSuch' is not in the DBC"),
        (("points", 0, "signal"), "signal 'Nope' is not in the DBC"),
        (("points", 1, "signal"), "signal 'CellVoltage_0' is not in the DBC"),
    ]


PLANS = [rack_plan(), project_plan("can-redpesk-bms", BMS_DBC)]


@settings(max_examples=400, deadline=None)
@given(
    which=st.integers(0, 1),
    fid=st.one_of(st.sampled_from([0x100, 0x103, 0x110, 0x111, 0x201, 0x221, 0x301]), st.integers(0, 0x7FF)),
    ext=st.booleans(),
    data=st.binary(min_size=0, max_size=64),
)
def test_fuzz_no_input_crashes_the_decoder(which: int, fid: int, ext: bool, data: bytes) -> None:
    plan = PLANS[which]
    samples, reason = plan.decode_frame(fid, ext, data, 1)
    assert reason in ("", UNKNOWN_ID, SHORT, DECODE_ERROR, OUT_OF_RANGE)
    if reason in (SHORT, DECODE_ERROR):
        assert all(s.value is None and s.quality == Quality.BAD for s in samples)
    for s in samples:
        assert s.quality != Quality.GOOD or s.value is not None


def test_savvycan_csv_reads(tmp_path: Path) -> None:
    from gateway.sources.can.capture import read_capture
    csv = tmp_path / "s.csv"
    csv.write_text(
        "Time Stamp,ID,Extended,Dir,Bus,LEN,D1,D2,D3,D4,D5,D6,D7,D8\n"
        "1000000,00000221,false,Rx,0,8,5D,C2,ED,81,5D,02,9F,00\n"
        "1100000,18FFFE21,true,Rx,0,2,01,02\n"
    )
    frames = list(read_capture(csv))
    assert [(f.timestamp, f.arbitration_id, f.is_extended_id, bytes(f.data)) for f in frames] == [
        (1.0, 0x221, False, bytes.fromhex("5DC2ED815D029F00")),
        (1.1, 0x18FFFE21, True, b"\x01\x02"),
    ]


@pytest.mark.parametrize("suffix", [".asc", ".blf", ".csv", ".log"])
def test_captures_in_every_python_can_format_decode_the_same(tmp_path: Path, suffix: str) -> None:
    import can

    from gateway.sources.can.capture import read_capture
    frames = log_frames()[:300]
    path = tmp_path / f"cap{suffix}"
    with can.Logger(str(path)) as writer:  # python-can picks the writer by suffix
        for m in frames:
            writer.on_message_received(m)
    back = list(read_capture(path))
    assert [(m.arbitration_id, bytes(m.data)) for m in back] == [(m.arbitration_id, bytes(m.data)) for m in frames]
    out = io.StringIO()
    with redirect_stdout(out), redirect_stderr(io.StringIO()):
        assert main(["can", "decode", "--dbc", str(BMS_DBC), str(path)]) == 0
    assert len(out.getvalue().splitlines()) == 300


def test_unreadable_capture_is_a_clean_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.log"
    bad.write_text("(1.0) can0 12G#zz\nnot a frame\n")
    err = io.StringIO()
    with redirect_stdout(io.StringIO()), redirect_stderr(err):
        code = main(["can", "decode", "--dbc", str(BMS_DBC), str(bad)])
    assert code == 2 and err.getvalue().startswith(f"warning: {bad}:1: not a frame")
    assert f"error: {bad}: no frame could be read" in err.getvalue()
    with redirect_stdout(io.StringIO()), redirect_stderr(err):
        assert main(["can", "decode", "--dbc", str(BMS_DBC), str(tmp_path / "none.log")]) == 2


def test_can_decode_with_a_profile_prints_samples_and_names_profile_errors(tmp_path: Path) -> None:
    from tests.can_support import profile_path

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["can", "decode", "--dbc", str(FOX_DBC), str(FOX_TRC), "--profile", str(tmp_path / "p.yaml")])
    assert code == 2 and "p.yaml" in err.getvalue()  # a missing profile: a clean error
    bad = tmp_path / "bad.yaml"
    bad.write_text("protocol: can\ndbc: x\npoints:\n  - {signal: NoSuch, quantity: soc}\n")
    err = io.StringIO()
    with redirect_stdout(io.StringIO()), redirect_stderr(err):
        assert main(["can", "decode", "--dbc", str(BMS_DBC), str(BMS_LOG), "--profile", str(bad)]) == 2
    assert f"{bad}:4:6: points.0.signal: signal 'NoSuch' is not in the DBC" in err.getvalue()
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        args = [
            "can",
            "decode",
            "--dbc",
            str(BMS_DBC),
            str(DEMO_LOG),  # the first 60 s of bms-dump.log
            "--profile",
            str(profile_path("can-redpesk-bms")),
        ]
        assert main(args) == 0
    first = json.loads(out.getvalue().splitlines()[0])
    assert (
        first["quantity"].startswith("raw.")
        and first["quality"] == "good"
        and first["t"] == pytest.approx(1621945396.763904)
    )
    assert "2945 frames, 2945 decoded" in err.getvalue()


def test_shipped_foxbms_profile_decodes_the_foxbms_trace() -> None:
    plan = project_plan("can-foxbms", FOX_DBC)
    got = []
    reasons = Counter()
    for m in log_frames(FOX_TRC):
        samples, reason = plan.decode_frame(m.arbitration_id, False, m.data, 1)
        reasons[reason] += 1
        got.extend((s.quantity, s.value, s.module, s.cell) for s in samples)
    assert reasons == Counter({"": 5, "unknown_id": 4})  # the string-level frames are not mapped
    assert ("bms_state", "ERROR", None, None) in got and ("alarm.general_error", 1, None, None) in got
    assert ("cell_voltage", 1.996, 1, 9) in got and ("cell_temperature", 26, 2, 4) in got  # 8 sensors per module
    assert ("charge_voltage_limit", 88, None, None) in got


def test_nested_multiplexing_is_a_clear_profile_error() -> None:
    from gateway.sources.can.dbcload import load_dbc_text
    text = (
        'VERSION ""\nBO_ 100 N: 8 X\n SG_ Outer M : 0|4@1+ (1,0) [0|15] "" X\n'
        ' SG_ Inner m1M : 4|4@1+ (1,0) [0|15] "" X\n SG_ Deep m2 : 8|8@1+ (1,0) [0|255] "" X\n\n'
        "SG_MUL_VAL_ 100 Inner Outer 1-1;\nSG_MUL_VAL_ 100 Deep Inner 2-2;\n"
    )
    db = load_dbc_text(text, "n.dbc").db
    profile = CanProfile.model_validate({"dbc": "n.dbc", "points": [{"signal": "Deep", "quantity": "raw.deep"}]})
    problems = compile_rack(profile, db, rack="r")
    assert isinstance(problems, list)
    assert (
        problems[0].message
        == "signal 'Deep' is under the nested multiplexer Inner: only one multiplexer level is supported"
    )


def test_unit_conversion_respects_milli_and_mega() -> None:
    from types import SimpleNamespace

    from gateway.sources.can.config import CanPoint
    from gateway.sources.can.values import point_factor
    def factor(dbc_unit: str, quantity: str, **kw: object) -> float:
        point = CanPoint.model_validate({"signal": "S", "quantity": quantity, **kw})
        return point_factor(point, SimpleNamespace(unit=dbc_unit), point.resolved_unit())

    assert factor("mOhm", "insulation_resistance") == 1e-3
    assert factor("MOhm", "insulation_resistance") == 1e6
    assert factor("kOhm", "insulation_resistance") == 1e3
    assert factor("mV", "cell_voltage") == 1e-3 and factor("V", "cell_voltage") == 1.0
    assert factor("MWh", "energy_charged") == 1e6 and factor("kWh", "energy_charged") == 1e3
    assert factor("mV", "cell_voltage", scale=0.002) == 0.002  # an explicit scale wins
    assert factor("A", "rack_current", invert=True) == -1.0
    assert factor("furlong", "raw.x") == 1.0


def test_not_available_values_are_missing_never_a_number() -> None:
    profile = CanProfile.model_validate(
        {"dbc": "x", "points": [{"signal": "CellVoltage1", "quantity": "cell_voltage", "mux_step": 3,
                                 "array": {"count": 96, "per_module": 12}, "missing": [65535]},
                                {"signal": "CellVoltage2", "quantity": "cell_voltage", "mux_step": 3, "mux_slot": 1,
                                 "array": {"count": 96, "per_module": 12}}]}
    )  # fmt: skip
    plan = compile_rack(profile, load_dbc(RACK_DBC).db, rack="r")
    assert isinstance(plan, RackPlan)
    fid, data = encode("CellVoltages", CellGroup=0, CellVoltage1=65535, CellVoltage2=3300)
    samples, _ = plan.decode_frame(fid, False, data, 1)
    assert [(s.value, s.quality, s.cell) for s in samples] == [(None, Quality.MISSING, 1), (3.3, Quality.GOOD, 2)]


def test_j1939_not_available_and_error_indicators() -> None:
    from gateway.sources.can.dbcload import load_dbc_text
    text = (
        'VERSION ""\nBO_ 2566913790 BatteryInfo: 8 BMS\n SG_ Soc : 0|8@1+ (0.4,0) [0|100] "%" X\n'
        ' SG_ PackVoltage : 8|16@1+ (0.05,0) [0|3200] "V" X\n SG_ Contactor : 24|2@1+ (1,0) [0|3] "" X\n'
        'VAL_ 2566913790 Contactor 0 "open" 1 "closed" 2 "error" 3 "not_available";\n'
    )
    profile = CanProfile.model_validate(
        {"dbc": "j", "j1939": True, "points": [{"signal": "Soc", "quantity": "soc"},
                                               {"signal": "PackVoltage", "quantity": "rack_voltage"},
                                               {"signal": "Contactor", "quantity": "contactor_positive"}]}
    )  # fmt: skip
    plan = compile_rack(profile, load_dbc_text(text, "j.dbc").db, rack="r")
    assert isinstance(plan, RackPlan)

    def decode(data: bytes) -> list[tuple[str, object, str]]:
        samples, _ = plan.decode_frame(0x18FFFE21, True, data + bytes(8 - len(data)), 1)
        return [(s.quantity, s.value, str(s.quality)) for s in samples]

    assert decode(bytes([100, 0x40, 0x1F, 0b01])) == [
        ("soc", 40.0, "good"),
        ("rack_voltage", 400.0, "good"),
        ("contactor_positive", "closed", "good"),
    ]
    assert decode(bytes([0xFF, 0x10, 0xFF, 0b11])) == [
        ("soc", None, "missing"),
        ("rack_voltage", None, "missing"),
        ("contactor_positive", None, "missing"),
    ]
    assert decode(bytes([0xFE, 0x10, 0xFE, 0b10])) == [
        ("soc", None, "bad"),
        ("rack_voltage", None, "bad"),
        ("contactor_positive", None, "bad"),
    ]
