"""Text from a DBC or YAML file in an error is shown escaped: a control character (ESC, a newline, a
bidirectional override) can neither forge a line nor rewrite the terminal."""

from __future__ import annotations

import io
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from gateway.cli.main import main
from gateway.config.settings import load_config
from gateway.errors import ConfigError, Problem
from gateway.sources.can.dbcload import load_dbc_text
from gateway.sources.can.dbcrepair import Repair

RAW = ("\x1b", "\x07", "\u202e", "\x9b")

# A DBC whose broken line carries a terminal escape (clear screen, set title) and a right-to-left override.
EVIL_DBC = (
    'VERSION ""\nBU_: A\nBO_ 100 M1: 8 A\n SG_ S1 : 0|8@1+ (1,0) [0|0] "" A\nBO_ 200 \x1b[2J\x1b]0;pwned\x07\u202eX\n'
)


def assert_safe(text: str) -> None:
    assert not any(c in text for c in RAW), repr(text)


def test_a_dbc_syntax_error_shows_the_line_escaped() -> None:
    with pytest.raises(ConfigError) as info:
        load_dbc_text(EVIL_DBC, "evil.dbc")
    text = str(info.value)
    assert_safe(text)
    assert "\n" not in text
    assert text.startswith("evil.dbc:5:") and "\\x1b[2J\\x1b]0;pwned\\x07\\u202eX" in text


def test_can_check_prints_the_escaped_error(tmp_path: Path) -> None:
    path = tmp_path / "evil.dbc"
    path.write_text(EVIL_DBC)
    err = io.StringIO()
    with redirect_stdout(io.StringIO()), redirect_stderr(err):
        code = main(["can", "check", str(path)])
    assert code == 2
    assert_safe(err.getvalue())
    assert err.getvalue().count("\n") == 1 and "\\x1b[2J" in err.getvalue()


def test_a_repair_warning_is_escaped() -> None:
    repair = Repair("M1\x1b[31m", "S\nforged", "overlaps signal T", "both kept", 7)
    assert str(repair) == "message M1\\x1b[31m: signal S\\nforged: overlaps signal T: both kept"


def test_a_yaml_key_with_control_characters_is_escaped(tmp_path: Path) -> None:
    cfg = tmp_path / "gateway.yaml"
    cfg.write_text('site: {name: t}\n"runtime\\e[2J\\nerror: forged": 1\n')
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    text = str(info.value)
    assert_safe(text)
    assert len(text.splitlines()) == len(info.value.problems) == 1
    assert "runtime\\x1b[2J\\nerror: forged: unknown key" in text


def test_a_problem_is_always_one_line() -> None:
    p = Problem("a\nb.yaml", 3, 4, "x\ry\u2028z")
    assert str(p) == "a\\nb.yaml:3:4: x\\ry\\u2028z"
