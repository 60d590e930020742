"""What the alarms CLI prints for people is one line per entry whatever the entry holds: a reason with a
newline and an ESC sequence cannot forge a line of `history` or recolour the terminal (issue 13, item 10)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.alarms.journal import Journal
from gateway.cli.main import main
from gateway.textsafe import json_text, printable, shorten

S = 1_000_000_000
FORGED = "seen\n     9 2025-01-01T00:00:00.000+00:00 critical rack-01:x normal -> normal: \x1b[32mall clear\x1b[0m"


def event(ts: int, state: str, user: str | None = None, reason: str | None = None) -> dict[str, object]:
    return {"type": "event", "ts": ts * S, "rack": "rack-01", "alarm_id": "rack-01:door\u202egnp.exe", "user": user,
            "severity": "critical", "state": state, "previous": "active_unack", "message": "door\x1b]0;owned\x07",
            "value": 1, "rule": "door", "reason": reason, "detail": {"since": ts * S}}  # fmt: skip


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "store.db"
    j = Journal(path)
    j.append([event(1, "active_unack"), event(2, "active_ack", "mallory\u2028x", FORGED)])
    j.append([{"type": "command_refused", "ts": 3 * S, "rack": "rack-01", "reason": "a\u0085b\x9b31m", "code": "x"}])
    j.close()
    return path


def unsafe(text: str) -> list[str]:
    return [c for c in text if (ord(c) < 32 and c != "\n") or 0x7F <= ord(c) <= 0x9F or c in "\u2028\u2029\u202e"]


@pytest.mark.parametrize("command", ["history", "list"])
def test_human_output_escapes_control_characters(command: str, store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["alarms", command, "--store", str(store)]) == 0
    out = capsys.readouterr().out
    assert unsafe(out) == []
    lines = out.splitlines()
    assert len(lines) == (3 if command == "history" else 1)  # one line per entry: no forged line
    if command == "history":
        assert "seen\\n     9 2025" in lines[1] and "\\x1b[32mall clear" in lines[1] and "mallory\\u2028x" in lines[1]
    assert "door\\u202egnp.exe" in lines[-1 if command == "list" else 0] and "\\x1b]0;owned\\x07" in out


def test_json_output_keeps_the_exact_text_safely(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["alarms", "export", "--store", str(store)]) == 0
    out = capsys.readouterr().out
    assert unsafe(out) == []
    docs = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert docs[1]["reason"] == FORGED and docs[2]["reason"] == "a\u0085b\x9b31m"  # the same value, exactly


def test_verify_names_a_path_with_control_characters_safely(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "evil\x1b[2J.db"
    Journal(path).close()
    assert main(["alarms", "verify", "--store", str(path)]) == 0
    assert "evil\\x1b[2J.db" in capsys.readouterr().out


def test_printable_and_friends() -> None:
    assert printable("a\nb\tc\x1b[0m\x00\x7f\x9b") == "a\\nb\\tc\\x1b[0m\\x00\\x7f\\x9b"
    assert printable("°C é 电池") == "°C é 电池"  # text stays text
    assert printable("x\u202ey\u200bz\ufeff\U000e0001") == "x\\u202ey\\u200bz\\ufeff\\U000e0001"
    assert printable(b"\x1b") == "b'\\x1b'" and printable(None) == "None"
    assert printable("abcdef", 3) == "abc…(+3 chars)" and shorten("abc", 3) == "abc"
    assert json.loads(json_text(json.dumps("a\u2028\x85\x1b", ensure_ascii=False))) == "a\u2028\x85\x1b"
    assert unsafe(json_text(json.dumps("a\u2028\x85\x1b", ensure_ascii=False))) == []
