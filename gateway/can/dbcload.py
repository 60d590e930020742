"""Loading DBC files: strict by default, lenient on request, errors that name file and line.

Real DBC files are imperfect. Strict loading reports every defect as a problem; lenient loading
repairs what it can and returns one warning per repair, naming the message and signal:

- a signal that does not fit in its frame is dropped (it would decode into a wrong value);
- a duplicate signal name in one message is renamed `<name>__<n>`;
- overlapping signals are kept (each decodes its own bits) and reported.

A file that cannot be loaded at all (syntax error, VAL_ on an unknown message) raises `ConfigError`.
The text is read as UTF-8, falling back to cp1252 (the encoding of most Windows DBC tools).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cantools
from cantools.database.errors import UnsupportedDatabaseFormatError

from gateway.errors import ConfigError, Problem


@dataclass(frozen=True, slots=True)
class Repair:
    message: str
    signal: str
    problem: str
    fix: str
    line: int = 0

    def __str__(self) -> str:
        return f"message {self.message}: signal {self.signal}: {self.problem}: {self.fix}"

    @property
    def as_problem(self) -> str:
        return f"message {self.message}: signal {self.signal}: {self.problem}"


@dataclass
class LoadedDbc:
    path: Path
    db: Any  # cantools.database.can.Database
    encoding: str
    repairs: list[Repair] = field(default_factory=list)


def lenient_from_env() -> bool:
    """`bms-gateway validate --lenient` (and the environment) asks for lenient loading everywhere."""
    return os.environ.get("BMS_GATEWAY_LENIENT", "") not in ("", "0", "false", "no")


def read_text(path: Path) -> tuple[str, str]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(Problem(str(path), 0, 0, f"cannot read DBC file: {exc.strerror}")) from exc
    for encoding in ("utf-8", "cp1252", "latin-1"):
        try:
            return raw.decode(encoding), encoding
        except UnicodeDecodeError:
            continue
    raise AssertionError("latin-1 decodes any bytes")  # pragma: no cover


_PSEUDO = ", VECTOR__INDEPENDENT_SIG_MSG: the pseudo-message of signals without a message"

_CACHE: dict[tuple[str, int, int, bool], LoadedDbc] = {}


def load_dbc(path: Path, *, lenient: bool = False) -> LoadedDbc:
    """Load a DBC; strict raises ConfigError listing every defect, lenient repairs and reports them."""
    try:
        st = path.stat()
    except OSError as exc:
        raise ConfigError(Problem(str(path), 0, 0, f"DBC file not found or unreadable: {exc.strerror}")) from exc
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size, lenient)
    cached = _CACHE.get(key)
    if cached is None:
        text, encoding = read_text(path)
        cached = load_dbc_text(text, str(path), lenient=lenient, encoding=encoding, path=path)
        _CACHE[key] = cached
    return cached


def load_dbc_text(
    text: str, name: str, *, lenient: bool = False, encoding: str = "utf-8", path: Path | None = None
) -> LoadedDbc:
    if not text.strip():
        raise ConfigError(Problem(name, 1, 1, "empty DBC file: expected VERSION, BU_ and BO_ sections"))
    try:
        db = cantools.database.load_string(text, "dbc", strict=False)
    except UnsupportedDatabaseFormatError as exc:
        raise ConfigError(_problem_from_cantools(exc, text, name)) from exc
    except Exception as exc:  # cantools raises assorted errors on garbage; all are the file's fault
        raise ConfigError(Problem(name, 0, 0, f"cannot load DBC: {type(exc).__name__}: {exc}")) from exc
    repairs = find_defects(db, text)
    if repairs and not lenient:
        hint = " (set `lenient: true` in the profile, or --lenient, to load it with repairs)"
        raise ConfigError([Problem(name, r.line, 1 if r.line else 0, r.as_problem + hint) for r in repairs])
    if repairs:
        apply_repairs(db, repairs)
    elif not lenient:
        try:  # our checks found nothing; let cantools' own strict checks have the last word
            cantools.database.load_string(text, "dbc", strict=True)
        except UnsupportedDatabaseFormatError as exc:
            raise ConfigError(_problem_from_cantools(exc, text, name)) from exc
    return LoadedDbc(path or Path(name), db, encoding, repairs)


def _problem_from_cantools(exc: Exception, text: str, name: str) -> Problem:
    cause = getattr(exc, "e_dbc", None) or exc.__cause__
    line = int(getattr(cause, "line", 0) or 0)
    col = int(getattr(cause, "column", 0) or 0)
    msg = str(cause if cause is not None else exc).strip()
    if not line:
        line = _line_of_first(text, msg)
        col = 1 if line else 0
    unused = re.findall(r"VAL_ (\d+) (\w+)", msg) if "unused VAL_" in msg else []
    if unused:
        fid, sig = unused[0]
        msg = (
            f"{len(unused)} value tables (VAL_) name signals that no message defines, first VAL_ {fid} {sig} "
            f"(message id 0x{int(fid):X}{_PSEUDO if int(fid) == 0xC0000000 else ''}); "
            "remove these VAL_ lines or define the signals"
        )
    msg = msg.replace("\n", " ").replace("    ", " ")
    if len(msg) > 300:
        msg = msg[:300] + " ..."
    return Problem(name, line, col, f"cannot load DBC: {msg}")


def _line_of_first(text: str, msg: str) -> int:
    """The line of the first statement an error message quotes (e.g. `VAL_ 3221225472 X`)."""
    for quoted in re.findall(r"(VAL_ \d+ \w+|BO_ \d+)", msg):
        for i, line in enumerate(text.splitlines(), 1):
            if line.strip().startswith(quoted):
                return i
    return 0


def signal_bits(sig: Any) -> set[int]:
    """The bit positions (0 = LSB of byte 0) a signal occupies, in either byte order."""
    if sig.byte_order == "little_endian":
        return set(range(sig.start, sig.start + sig.length))
    bits = set()
    pos = sig.start
    for _ in range(sig.length):
        bits.add(pos)
        pos = pos + 15 if pos % 8 == 0 else pos - 1
    return bits


def _can_coexist(a: Any, b: Any) -> bool:
    if a.multiplexer_signal is None or b.multiplexer_signal is None:
        return True
    if a.multiplexer_signal != b.multiplexer_signal:
        return True
    return bool(set(a.multiplexer_ids or ()) & set(b.multiplexer_ids or ()))


def _message_lines(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for i, line in enumerate(text.splitlines(), 1):
        m = re.match(r"\s*BO_\s+\d+\s+(\w+)\s*:", line)
        if m:
            out.setdefault(m.group(1), i)
    return out


def _signal_line(text_lines: list[str], start: int, signal: str, nth: int = 1) -> int:
    seen = 0
    for i in range(start, min(len(text_lines), start + 5000)):
        line = text_lines[i - 1] if i > 0 else ""
        stripped = line.strip()
        if i > start and stripped.startswith("BO_ "):
            break
        if re.match(rf"SG_\s+{re.escape(signal)}\b", stripped):
            seen += 1
            if seen == nth:
                return i
    return start


def find_defects(db: Any, text: str) -> list[Repair]:
    """Every defect strict loading rejects that lenient loading repairs, in file order."""
    lines = text.splitlines()
    msg_lines = _message_lines(text)
    out: list[Repair] = []
    for msg in db.messages:
        mline = msg_lines.get(msg.name, 0)
        nbits = 8 * msg.length
        counts: dict[str, int] = {}
        for sig in msg.signals:
            counts[sig.name] = counts.get(sig.name, 0) + 1
            if counts[sig.name] > 1:
                line = _signal_line(lines, mline, sig.name, counts[sig.name]) if mline else 0
                out.append(
                    Repair(msg.name, sig.name, "duplicate signal name", f"renamed {sig.name}__{counts[sig.name]}", line)
                )
        seen: list[tuple[Any, set[int]]] = []
        for sig in msg.signals:
            bits = signal_bits(sig)
            line = _signal_line(lines, mline, sig.name) if mline else 0
            if any(b < 0 or b >= nbits for b in bits):
                out.append(
                    Repair(
                        msg.name,
                        sig.name,
                        f"does not fit in the {msg.length}-byte frame (start {sig.start}, length {sig.length})",
                        "dropped",
                        line,
                    )
                )
                continue
            for other, obits in seen:
                if other.name != sig.name and bits & obits and _can_coexist(sig, other):
                    out.append(Repair(msg.name, sig.name, f"overlaps signal {other.name}", "both kept", line))
                    break
            seen.append((sig, bits))
    return out


def apply_repairs(db: Any, repairs: list[Repair]) -> None:
    by_msg: dict[str, list[Repair]] = {}
    for r in repairs:
        by_msg.setdefault(r.message, []).append(r)
    for msg in db.messages:
        todo = by_msg.get(msg.name)
        if not todo:
            continue
        drop = {r.signal for r in todo if r.fix == "dropped"}
        kept = []
        counts: dict[str, int] = {}
        for sig in msg.signals:
            counts[sig.name] = counts.get(sig.name, 0) + 1
            if counts[sig.name] > 1:
                sig.name = f"{sig.name}__{counts[sig.name]}"
            elif sig.name in drop:
                continue
            kept.append(sig)
        msg.signals[:] = kept
        msg.refresh(strict=False)
