"""The serial line's settings are bounded: a baud rate or a frame gap typed in the wrong unit is an error
at its line, not a bus that waits minutes per request (the wait of a read grows with the frames' time
on the wire, and the gap is kept before every request)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config.settings import load_config
from gateway.errors import ConfigError
from tests.modbus_support import site

SOURCE = "- {{type: modbus, name: rack-a, profile: tiny, transport: rtu, port: /dev/ttyUSB0, {key}: {value}}}\n"


@pytest.mark.parametrize(
    ("key", "value", "ok"),
    [("baudrate", 9600, True), ("baudrate", 300, True), ("baudrate", 921600, True), ("baudrate", 96, False),
     ("baudrate", 96_000_000, False), ("frame_gap", 0.1, True), ("frame_gap", 1.0, True), ("frame_gap", 100, False)],
)  # fmt: skip
def test_line_settings_in_the_wrong_unit_are_errors_at_their_line(
    tmp_path: Path, key: str, value: float, ok: bool
) -> None:
    path = site(tmp_path, SOURCE.format(key=key, value=value))
    if ok:
        load_config(path)
        return
    with pytest.raises(ConfigError) as info:
        load_config(path)
    (problem,) = [str(p) for p in info.value.problems]
    assert problem.startswith(f"{path}:12:") and f"sources.0.{key}:" in problem, problem
