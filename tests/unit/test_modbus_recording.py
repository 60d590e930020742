"""Recordings: the file format, offline decoding, and a golden recording of the generic rack."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import ConfigError
from gateway.model import Quality
from gateway.sources.modbus.plan import compile_points
from gateway.sources.modbus.validate import load_modbus_profile
from gateway.tools.modbusrecord import decode_recording, read_recording
from tests.modbus_support import GENERIC, write

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "modbus"


def _where(s: dict[str, Any]) -> tuple[Any, ...]:
    return (s["unit_id"], s["ts"], s["quantity"], s["module"] or 0, s["cell"] or 0)


def test_golden_recording_decodes_to_the_expected_samples() -> None:
    header, cycles = read_recording(FIXTURES / "generic-rack.rec.jsonl")
    assert header["devices"][0]["profile"] == "modbus-generic-rack"
    points, _ = compile_points(load_modbus_profile(GENERIC))
    decoded = decode_recording(points, cycles, "rack-01")
    got = [{"unit_id": c.unit, **s._asdict()} for c, batch in decoded for s in batch.samples()]
    expected = [json.loads(x) for x in (FIXTURES / "generic-rack.expected.jsonl").read_text().splitlines()]
    assert sorted(got, key=_where) == sorted(expected, key=_where)  # every value; the order of rows is the plan's
    # and the content is a plausible rack, independent of the golden file
    cells = [s for c, batch in decoded for s in batch.samples() if s.quantity == "cell_voltage"]
    assert len(cells) == 2 * 240  # the 2 s cell group came twice in 2.5 s
    assert all(s.quality == Quality.GOOD and 3.0 < float(s.value) < 3.5 for s in cells)  # type: ignore[arg-type]
    by = {s.quantity: s.value for _, batch in decoded[:1] for s in batch.samples()}
    assert by["bms_state"] == "run" and by["contactor_positive"] == "closed"
    assert by["manufacturer"] == "bms-gateway"


def test_exceptions_and_timeouts_in_a_recording(tmp_path: Path) -> None:
    header = {"format": "bms-gateway-modbus-recording", "version": 1, "devices": []}
    frames = [
        {"t": 0.0, "ts": 5, "unit": 1, "cycle": 0, "table": "input", "start": 0, "count": 2, "code": 2},
        {"t": 0.1, "ts": 6, "unit": 1, "cycle": 0, "table": "input", "start": 2, "count": 1, "error": "timeout"},
    ]
    path = write(tmp_path / "r.jsonl", "\n".join(json.dumps(x) for x in [header, *frames]) + "\n")
    _, cycles = read_recording(path)
    points, _ = compile_points(load_modbus_profile(GENERIC))
    ((_, batch),) = decode_recording(points, cycles)
    qualities = {(s.quantity, s.quality) for s in batch.samples()}
    assert ("rack_voltage", Quality.BAD) in qualities
    assert ("soc", Quality.COMM_LOSS) in qualities


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"format": "other"}\n', ":1:1: not a Modbus recording"),
        ('{"format": "bms-gateway-modbus-recording"}\n{"t": 0, "unit": 1}\n', ":2:1: frame lacks"),
        ('{"format": "bms-gateway-modbus-recording"}\n{oops\n', ":2:2: not JSON"),
    ],
)
def test_bad_recordings_name_the_line(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path / "bad.jsonl", text)
    with pytest.raises(ConfigError) as info:
        read_recording(path)
    assert message in str(info.value)
