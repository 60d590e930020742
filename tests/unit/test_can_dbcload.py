"""DBC loading: strict errors with file:line, lenient repairs with one warning each, encodings."""

from __future__ import annotations

from pathlib import Path

import cantools
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import ConfigError
from gateway.sources.can.dbclayout import signal_bits
from gateway.sources.can.dbcload import load_dbc, load_dbc_text
from gateway.sources.can.decode import FrameTable
from tests.can_support import BMS_DBC, FIX, FOX_DBC

MODEL3 = FIX / "Model3CAN.dbc"
ZEROEV = FIX / "ZeroEvDBC(onlyBMS&DU).dbc"
OVERLAP = FIX / "overlap-mux.dbc"


def problems(path: Path, lenient: bool = False) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_dbc(path, lenient=lenient)
    return [str(p) for p in info.value.problems]


def test_clean_files_load_strictly() -> None:
    for path, n in ((BMS_DBC, 13), (FOX_DBC, 41)):
        dbc = load_dbc(path)
        assert len(dbc.db.messages) == n
        assert dbc.repairs == []


def test_model3_strict_names_every_signal_past_the_frame_end() -> None:
    found = problems(MODEL3)
    assert len(found) == 6
    assert found[0].startswith(f"{MODEL3}:1722:1: message ID5D5RearDItemps: signal DI_lashAngle: does not fit")
    assert all("lenient: true" in p for p in found)


def test_model3_lenient_loads_with_one_warning_per_repair() -> None:
    dbc = load_dbc(MODEL3, lenient=True)
    assert len(dbc.db.messages) == 148
    assert [(r.message, r.signal, r.fix) for r in dbc.repairs][:3] == [
        ("ID5D5RearDItemps", "DI_lashAngle", "dropped"),
        ("ID5D5RearDItemps", "DI_lashCheckCount", "dropped"),
        ("ID5D5RearDItemps", "DI_torqueWearTotal", "dropped"),
    ]
    msg = dbc.db.get_message_by_name("ID5D5RearDItemps")
    names = {s.name for s in msg.signals}
    assert "DI_lashAngle" not in names and names  # dropped, the rest kept
    assert msg.decode(bytes(msg.length))  # the repaired message decodes a frame of its length
    # what strict cantools refuses, the repaired database agrees with for the untouched messages
    ref = cantools.database.load_file(MODEL3, strict=False)
    m_ref = ref.get_message_by_frame_id(0x132)
    m_ours = dbc.db.get_message_by_frame_id(0x132)
    data = bytes(range(m_ref.length))
    assert m_ours.decode(data) == m_ref.decode(data)


def test_overlapping_mux_and_duplicate_names_strict_error_lenient_repair() -> None:
    found = problems(OVERLAP)
    assert any(":14:1: message BatteryStatus: signal Segments: duplicate signal name" in p for p in found)
    assert any(":12:1: message BatteryStatus: signal SegmentFlag: overlaps signal Mux" in p for p in found)
    dbc = load_dbc(OVERLAP, lenient=True)
    assert sorted(str(r) for r in dbc.repairs) == [
        "message BatteryStatus: signal SegmentFlag: overlaps signal Mux: both kept",
        "message BatteryStatus: signal Segments: duplicate signal name: renamed Segments__2",
    ]
    msg = dbc.db.get_message_by_frame_id(1468)
    values = msg.decode(bytes([0x01, 7, 11, 13, 0x10, 0x00, 0, 0]))
    assert values["Segments"] == 11 and values["Segments__2"] == 13 and values["Voltage"] == pytest.approx(1.6)


def test_zero_ev_value_tables_without_a_message_strict_errors_lenient_drops() -> None:
    # cantools refuses VAL_ entries of VECTOR__INDEPENDENT_SIG_MSG even with strict=False
    found = problems(ZEROEV)
    assert len(found) == 38  # one per VAL_ line, each with its place
    assert found[0].startswith(
        f"{ZEROEV}:386:1: message VECTOR__INDEPENDENT_SIG_MSG: signal DCDC_Control_Command: value table (VAL_)"
    )
    assert found[-1].startswith(f"{ZEROEV}:423:1: ") and all("lenient: true" in p for p in found)
    dbc = load_dbc(ZEROEV, lenient=True)
    assert [(r.line, r.signal, r.fix) for r in dbc.repairs][:2] == [
        (386, "DCDC_Control_Command", "VAL_ line dropped"),
        (387, "DCDC_Protect_Command", "VAL_ line dropped"),
    ]
    assert len(dbc.repairs) == 38 and len(dbc.db.messages) == 9
    assert all(m.name != "VECTOR__INDEPENDENT_SIG_MSG" for m in dbc.db.messages)


def test_val_of_an_unknown_message_or_signal_is_dropped_leniently_with_its_line() -> None:
    text = (
        'VERSION ""\nBS_:\nBU_: BMS\nBO_ 100 T: 1 BMS\n SG_ State : 0|8@1+ (1,0) [0|255] "" BMS\n'
        'VAL_ 100 State 0 "off" 1 "on" ;\nVAL_ 100 Gone 0 "x;y" ;\n'
        'VAL_ 200\n  Lost 0 "a" ;\nSIG_VALTYPE_ 300 F : 1;\n'
    )
    with pytest.raises(ConfigError) as info:
        load_dbc_text(text, "v.dbc")
    assert [(p.line, p.message.split(" (set")[0]) for p in info.value.problems] == [
        (7, "message T: signal Gone: value table (VAL_) of a signal the message does not define"),
        (8, "message id 200: signal Lost: value table (VAL_) of a message the file does not define"),
        (10, "message id 300: signal F: value type (SIG_VALTYPE_) of a message the file does not define"),
    ]
    dbc = load_dbc_text(text, "v.dbc", lenient=True)
    assert [(r.line, r.message, r.signal, r.fix) for r in dbc.repairs] == [
        (7, "T", "Gone", "VAL_ line dropped"),
        (8, "id 200", "Lost", "VAL_ line dropped"),
        (10, "id 300", "F", "SIG_VALTYPE_ line dropped"),
    ]
    msg = dbc.db.get_message_by_name("T")
    assert str(msg.decode(b"\x01")["State"]) == "on"  # the claimed value table is kept


NS_ONLY = """VERSION ""

NS_ :
\tCM_
\tBA_DEF_
\tVAL_

BO_ 127 UNK_07F: 8 XXX
 SG_ Speed : 0|16@1+ (0.01,0) [0|655.35] "km/h" XXX
 SG_ Gear : 16|4@1+ (1,0) [0|15] "" XXX

VAL_ 127 Gear 0 "P" 1 "R" 2 "N" 3 "D" ;
"""


def test_ns_without_bs_and_bu_is_repaired_in_either_mode_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "ns.dbc"
    path.write_text(NS_ONLY, encoding="utf-8")
    for lenient in (False, True):
        dbc = load_dbc(path, lenient=lenient)
        (repair,) = dbc.repairs
        assert repair.line == 8 and "NS_ section not followed by BS_ or BU_" in str(repair)
        assert "inserted `BS_: BU_: XXX`" in str(repair)
        assert [n.name for n in dbc.db.nodes] == ["XXX"]
        msg = dbc.db.get_message_by_name("UNK_07F")
        assert msg.senders == ["XXX"] and str(msg.decode(bytes([0x10, 0x27, 3, 0, 0, 0, 0, 0]))["Gear"]) == "D"
    # no blank line before the first statement: inserted in front of it; a later syntax error keeps its line
    text = NS_ONLY.replace("\tVAL_\n\n", "\tVAL_\n").replace(" SG_ Gear : 16|4@1+", " SG_ Gear : 16|4@1+ +")
    with pytest.raises(ConfigError) as info:
        load_dbc_text(text, "ns.dbc", lenient=True)
    assert str(info.value.problems[0]).startswith("ns.dbc:9:")
    # BU_ present, BS_ missing, value tables between NS_ and BU_ (the parser swallowed them silently)
    text = NS_ONLY.replace("\tVAL_\n\n", '\tVAL_\n\nVAL_TABLE_ G 0 "P" ;\nBU_: XXX\n')
    dbc = load_dbc_text(text, "ns.dbc")
    assert dbc.repairs[0].line == 8 and dbc.repairs[0].fix == "inserted `BS_:`"
    assert "G" in dbc.db.dbc.value_tables


def test_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    text = BMS_DBC.read_text(encoding="utf-8").replace("BO_ 577 Main_Temp: 8 Main", "BO_ 577 Main_Temp 8 Main")
    bad = tmp_path / "bad.dbc"
    bad.write_text(text, encoding="utf-8")
    (only,) = problems(bad)
    assert only.startswith(f"{bad}:73:19: cannot load DBC: Invalid syntax")


def test_empty_missing_and_garbage_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.dbc"
    empty.write_text("\n")
    assert "empty DBC file" in problems(empty)[0]
    assert "not found" in problems(tmp_path / "nope.dbc")[0]
    junk = tmp_path / "junk.dbc"
    junk.write_bytes(bytes(range(256)) * 4)
    assert problems(junk)[0].startswith(str(junk))


def test_cp1252_degree_sign_and_missing_optional_sections(tmp_path: Path) -> None:
    text = 'VERSION ""\nBO_ 100 T: 1 X\n SG_ Temp : 0|8@1+ (1,-40) [-40|125] "\xb0C" X\n'
    path = tmp_path / "cp1252.dbc"
    path.write_bytes(text.encode("cp1252"))  # not valid UTF-8
    dbc = load_dbc(path)  # no NS_, BS_, BU_ sections: fine
    assert dbc.encoding == "cp1252"
    assert dbc.db.messages[0].signals[0].unit == "°C"
    assert load_dbc_text(text, "t.dbc").db.messages[0].signals[0].unit == "°C"


def test_signal_bits_both_byte_orders() -> None:
    db = cantools.database.load_file(BMS_DBC)
    sig = db.get_message_by_name("Main_Volt_Current").get_signal_by_name("BatCurrent")  # 10|12@0
    assert signal_bits(sig) == {10, 9, 8, 23, 22, 21, 20, 19, 18, 17, 16, 31}
    fox = load_dbc(FOX_DBC).db
    little = [s for m in fox.messages for s in m.signals if s.byte_order == "little_endian"]
    for s in little[:5]:
        assert signal_bits(s) == set(range(s.start, s.start + s.length))


BMS_TEXT = BMS_DBC.read_text(encoding="utf-8")


@settings(max_examples=80, deadline=None)
@given(start=st.integers(0, len(BMS_TEXT)), length=st.integers(1, 400), junk=st.text(max_size=20))
def test_corrupt_dbc_is_a_config_error_never_a_crash(start: int, length: int, junk: str) -> None:
    text = BMS_TEXT[:start] + junk + BMS_TEXT[start + length :]
    for lenient in (False, True):
        try:
            dbc = load_dbc_text(text, "corrupt.dbc", lenient=lenient)
        except ConfigError as exc:
            assert all(p.file == "corrupt.dbc" and p.message for p in exc.problems)
        else:
            assert dbc.db.messages is not None


@settings(max_examples=300, deadline=None)
@given(fid=st.integers(0x200, 0x280), data=st.binary(max_size=12))
def test_fuzz_multiplexed_big_endian_table(fid: int, data: bytes) -> None:
    table = FOX_TABLE
    result = table.decode(fid, False, data)
    if not isinstance(result, str):
        assert result.message.frame_id == fid and len(data) >= result.message.length


FOX_TABLE = FrameTable(load_dbc(FOX_DBC).db)


def test_can_check_prints_one_warning_per_repair_and_errors_for_the_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    from contextlib import redirect_stderr, redirect_stdout

    from gateway.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["can", "check", "--lenient", str(MODEL3), str(ZEROEV), str(BMS_DBC)])
    assert code == 0
    warnings = [line for line in err.getvalue().splitlines() if line.startswith("warning:")]
    assert len(warnings) == 6 + 38
    assert warnings[0] == (
        f"warning: {MODEL3}:1722: message ID5D5RearDItemps: signal DI_lashAngle: "
        "does not fit in the 5-byte frame (start 40, length 10): dropped"
    )
    assert f"warning: {ZEROEV}:386: message VECTOR__INDEPENDENT_SIG_MSG: signal DCDC_Control_Command" in err.getvalue()
    assert f"{MODEL3}: 148 messages" in out.getvalue() and f"{BMS_DBC}: 13 messages" in out.getvalue()
    err = io.StringIO()
    monkeypatch.delenv("BMS_GATEWAY_LENIENT")  # `--lenient` above set it for the process
    with redirect_stdout(io.StringIO()), redirect_stderr(err):
        assert main(["can", "check", str(ZEROEV)]) == 2  # strict: one error per VAL_ line
    assert sum(line.startswith("error: ") for line in err.getvalue().splitlines()) == 38
    assert f"error: {ZEROEV}:386:1: " in err.getvalue()
