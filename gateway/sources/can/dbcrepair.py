"""Repairs of DBC text that the parser would refuse, made before it reads the file.

Line numbers never move: an inserted section goes on a blank line (or in front of the statement it
precedes), a dropped statement becomes blanks with its line breaks kept, so every later report still
names the line of the original file.

- `NS_` not followed by `BS_`/`BU_`: the parser reads the words of the next statement as part of
  `NS_` (`Invalid syntax ... "BO_ 127 >>!<<UNK_07F: 8 XXX"`, or value tables silently swallowed).
  `BS_:` is inserted, and `BU_:` declaring the transmitting nodes when the file has none. The manual (docs/can.md)
  accepts missing optional sections in either mode: a warning, never an error.
- `VAL_` (and `SIG_VALTYPE_`) entries that no message claims, e.g. those of the pseudo-message
  `VECTOR__INDEPENDENT_SIG_MSG` (signals without a message), which cantools refuses in every mode:
  dropped in lenient mode, one error each in strict mode.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gateway.textsafe import printable

PSEUDO_ID = 0xC0000000  # VECTOR__INDEPENDENT_SIG_MSG: the pseudo-message of signals without a message
_NS = re.compile(r"\s*NS_\s*:")
_BU = re.compile(r"\s*BU_\s*:", re.MULTILINE)
_BARE_WORD = re.compile(r"\s*\w+\s*")
_TRANSMITTER = re.compile(r"^\s*BO_\s+\d+\s+\w+\s*:\s*\d+\s+(\w+)", re.MULTILINE)
_UNUSED = re.compile(r"(VAL_|SIG_VALTYPE_) (\d+) (\w+)")
_STATEMENT = re.compile(r"^[ \t]*(VAL_|SIG_VALTYPE_)\s+(\d+)\s+(\w+)\b", re.MULTILINE)
_MESSAGE = re.compile(r"^\s*BO_\s+(\d+)\s+(\w+)\s*:", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Repair:
    """One defect of a DBC file and what lenient loading did about it; `accepted` ones load in strict mode too."""

    message: str
    signal: str
    problem: str
    fix: str
    line: int = 0
    accepted: bool = False

    def __str__(self) -> str:
        return printable(f"{self.as_problem}: {self.fix}")  # names and text from the file: controls escaped

    @property
    def as_problem(self) -> str:
        if not self.message:
            return self.problem
        return f"message {self.message}: signal {self.signal}: {self.problem}"


def add_missing_sections(text: str) -> tuple[str, list[Repair]]:
    """The text with `BS_:` (and `BU_:`) after an `NS_` section that lacks them; the repair made."""
    lines = text.split("\n")
    ns = next((i for i, line in enumerate(lines) if _NS.match(line)), None)
    if ns is None:
        return text, []
    after = ns + 1
    while after < len(lines) and (not lines[after].strip() or _BARE_WORD.fullmatch(lines[after])):
        after += 1
    if after >= len(lines) or re.match(r"\s*(BS_|BU_)\s*:", lines[after]):
        return text, []
    inserted = "BS_:"
    if not _BU.search(text):
        nodes = dict.fromkeys(n for n in _TRANSMITTER.findall(text) if n != "Vector__XXX")
        inserted += " BU_:" + "".join(f" {n}" for n in nodes)
    if after > ns + 1 and not lines[after - 1].strip():
        lines[after - 1] = inserted
    else:
        lines[after] = f"{inserted} {lines[after]}"
    problem = f"NS_ section not followed by BS_ or BU_ (the parser would take line {after + 1} as part of NS_)"
    return "\n".join(lines), [Repair("", "", problem, f"inserted `{inserted}`", after + 1, accepted=True)]


@dataclass(frozen=True, slots=True)
class Unclaimed:
    """A `VAL_` or `SIG_VALTYPE_` entry no message claims, as cantools names it."""

    keyword: str
    frame_id: int
    signal: str


def unclaimed_entries(error: str) -> list[Unclaimed]:
    """The entries of cantools' `unused VAL_ entries` / `unused SIG_VALTYPE_ entries` error, else []."""
    if "unused VAL_ entries" not in error and "unused SIG_VALTYPE_ entries" not in error:
        return []
    return [Unclaimed(k, int(fid), sig) for k, fid, sig in _UNUSED.findall(error)]


def drop_unclaimed(text: str, entries: list[Unclaimed]) -> tuple[str, list[Repair]]:
    """The text without those statements (blanked, line breaks kept); one repair per statement dropped."""
    wanted = {(e.keyword, e.frame_id, e.signal) for e in entries}
    names = {int(fid): name for fid, name in _MESSAGE.findall(text)}
    parts: list[str] = []
    out: list[Repair] = []
    done = line = 0
    for m in _STATEMENT.finditer(text):
        keyword, fid, signal = m.group(1), int(m.group(2)), m.group(3)
        if (keyword, fid, signal) not in wanted or m.start() < done:
            continue
        line += text.count("\n", done, m.start())
        end = _statement_end(text, m.end())
        parts += [text[done : m.start()], re.sub(r"[^\n]", " ", text[m.start() : end])]
        out.append(
            Repair(
                names.get(fid, f"id {fid}"),
                signal,
                _unclaimed_problem(keyword, fid, names),
                f"{keyword} line dropped",
                line + 1,
            )
        )
        line += text.count("\n", m.start(), end)
        done = end
    return "".join([*parts, text[done:]]), out


def _unclaimed_problem(keyword: str, fid: int, names: dict[int, str]) -> str:
    what = "value table (VAL_)" if keyword == "VAL_" else "value type (SIG_VALTYPE_)"
    if fid == PSEUDO_ID or names.get(fid) == "VECTOR__INDEPENDENT_SIG_MSG":
        return f"{what} of a signal without a message, which cantools cannot load"
    if fid in names:
        return f"{what} of a signal the message does not define"
    return f"{what} of a message the file does not define"


def _statement_end(text: str, pos: int) -> int:
    """The position after the `;` that ends the statement at pos (quoted text may hold `;`)."""
    quoted = False
    while pos < len(text):
        c = text[pos]
        if c == '"' and text[pos - 1] != "\\":
            quoted = not quoted
        elif c == ";" and not quoted:
            return pos + 1
        pos += 1
    return pos
