"""DBC loading: strict errors with file:line, lenient repairs with one warning each, encodings."""

from __future__ import annotations

from pathlib import Path

import cantools
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.can.dbcload import load_dbc, load_dbc_text, signal_bits
from gateway.can.decode import FrameTable
from gateway.errors import ConfigError
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


def test_zero_ev_is_a_clear_error_even_when_lenient() -> None:
    for lenient in (False, True):
        (only,) = problems(ZEROEV, lenient)
        assert only.startswith(f"{ZEROEV}:386:1: cannot load DBC: 38 value tables (VAL_)")
        assert "VAL_ 3221225472 DCDC_Control_Command" in only


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


def test_can_check_prints_one_warning_per_repair_and_errors_for_the_rest() -> None:
    import io
    from contextlib import redirect_stderr, redirect_stdout

    from gateway.cli import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["can", "check", "--lenient", str(MODEL3), str(ZEROEV), str(BMS_DBC)])
    assert code == 2  # ZeroEv cannot be loaded, even leniently
    warnings = [line for line in err.getvalue().splitlines() if line.startswith("warning:")]
    assert len(warnings) == 6
    assert warnings[0] == (
        f"warning: {MODEL3}:1722: message ID5D5RearDItemps: signal DI_lashAngle: "
        "does not fit in the 5-byte frame (start 40, length 10): dropped"
    )
    assert f"error: {ZEROEV}:386:1: cannot load DBC" in err.getvalue()
    assert f"{MODEL3}: 148 messages" in out.getvalue() and f"{BMS_DBC}: 13 messages" in out.getvalue()
