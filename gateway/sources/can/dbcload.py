"""Loading DBC files: strict by default, lenient on request, errors that name file and line.

Real DBC files are imperfect. Strict loading reports every defect as a problem; lenient loading
repairs what it can and returns one warning per repair, naming the line (and message and signal):

- a signal that does not fit in its frame is dropped (it would decode into a wrong value);
- a duplicate signal name in one message is renamed `<name>__<n>`;
- overlapping signals are kept (each decodes its own bits) and reported;
- `VAL_`/`SIG_VALTYPE_` entries no message claims (e.g. of `VECTOR__INDEPENDENT_SIG_MSG`) are dropped;
- an `NS_` section without `BS_`/`BU_` gets them (in strict mode too: missing sections are accepted).

A file that cannot be loaded at all (syntax error) raises `ConfigError`. The text is read as UTF-8,
falling back to cp1252 (the encoding of most Windows DBC tools).
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
from gateway.lru import LruCache
from gateway.sources.can.dbclayout import find_defects
from gateway.sources.can.dbcrepair import PSEUDO_ID, Repair, add_missing_sections, drop_unclaimed, unclaimed_entries
from gateway.textsafe import shorten

__all__ = ["LoadedDbc", "Repair", "load_dbc", "load_dbc_text"]


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

# Parsed DBC files by (path, mtime, size, lenient): a reload or a second source reuses the parse; an edited
# file is parsed again, and the versions no one asked for lately go (a site names a few DBC files).
DBC_CACHE_SIZE = 16
_CACHE: LruCache[tuple[str, int, int, bool], LoadedDbc] = LruCache(DBC_CACHE_SIZE)


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
        _CACHE.put(key, cached)
    return cached


def load_dbc_text(
    text: str, name: str, *, lenient: bool = False, encoding: str = "utf-8", path: Path | None = None
) -> LoadedDbc:
    if not text.strip():
        raise ConfigError(Problem(name, 1, 1, "empty DBC file: expected VERSION, BU_ and BO_ sections"))
    text, accepted = add_missing_sections(text)
    db, text, dropped = _parse(text, name)
    defects = find_defects(db, text)
    refused = sorted([*dropped, *defects], key=lambda r: r.line)
    if refused and not lenient:
        hint = " (set `lenient: true` in the profile, or --lenient, to load it with repairs)"
        raise ConfigError([Problem(name, r.line, 1 if r.line else 0, r.as_problem + hint) for r in refused])
    if defects:
        apply_repairs(db, defects)
    elif not lenient:
        try:  # our checks found nothing; let cantools' own strict checks have the last word
            cantools.database.load_string(text, "dbc", strict=True)
        except UnsupportedDatabaseFormatError as exc:
            raise ConfigError(_problem_from_cantools(exc, text, name)) from exc
    return LoadedDbc(path or Path(name), db, encoding, [*accepted, *dropped, *defects])


def _parse(text: str, name: str) -> tuple[Any, str, list[Repair]]:
    """cantools' database of the text (not strict), without the entries no message claims; those dropped."""
    dropped: list[Repair] = []
    while True:
        try:
            return cantools.database.load_string(text, "dbc", strict=False), text, dropped
        except UnsupportedDatabaseFormatError as exc:
            cause = getattr(exc, "e_dbc", None) or exc.__cause__ or exc
            text, more = drop_unclaimed(text, unclaimed_entries(str(cause)))
            if not more:  # not an unclaimed entry, or one we cannot find in the text
                raise ConfigError(_problem_from_cantools(exc, text, name)) from exc
            dropped += more
        except Exception as exc:  # cantools raises assorted errors on garbage; all are the file's fault
            raise ConfigError(Problem(name, 0, 0, f"cannot load DBC: {type(exc).__name__}: {exc}")) from exc


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
            f"(message id 0x{int(fid):X}{_PSEUDO if int(fid) == PSEUDO_ID else ''}); "
            "remove these VAL_ lines or define the signals"
        )
    msg = shorten(msg.replace("\n", " ").replace("    ", " "), 300)  # Problem escapes its controls
    return Problem(name, line, col, f"cannot load DBC: {msg}")


def _line_of_first(text: str, msg: str) -> int:
    """The line of the first statement an error message quotes (e.g. `VAL_ 3221225472 X`)."""
    for quoted in re.findall(r"(VAL_ \d+ \w+|BO_ \d+)", msg):
        for i, line in enumerate(text.splitlines(), 1):
            if line.strip().startswith(quoted):
                return i
    return 0


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
