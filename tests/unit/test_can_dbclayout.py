"""The DBC signal checks: the same defects as comparing every pair of signals, in work that grows with
the signals' bits (a message of 20,000 signals), and never across values of one multiplexer."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import cantools
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.sources.can.dbclayout import OverlapFinder, find_defects, mux_path, signal_bits
from gateway.sources.can.dbcload import read_text
from gateway.sources.can.dbcrepair import Repair
from tests.can_support import FIX

# -- the reference: every pair of signals compared (the check before it became a sweep) -------------


def _can_coexist(a: Any, b: Any) -> bool:
    if a.multiplexer_signal is None or b.multiplexer_signal is None:
        return True
    if a.multiplexer_signal != b.multiplexer_signal:
        return True
    return bool(set(a.multiplexer_ids or ()) & set(b.multiplexer_ids or ()))


def _signal_line(text_lines: list[str], start: int, signal: str, nth: int = 1) -> int:
    seen = 0
    for i in range(start, len(text_lines) + 1):
        stripped = text_lines[i - 1].strip() if i > 0 else ""
        if i > start and stripped.startswith("BO_ "):
            break
        if re.match(rf"SG_\s+{re.escape(signal)}\b", stripped):
            seen += 1
            if seen == nth:
                return i
    return start


def reference_defects(db: Any, text: str) -> list[Repair]:
    lines = text.splitlines()
    msg_lines: dict[str, int] = {}
    for i, line in enumerate(lines, 1):
        m = re.match(r"\s*BO_\s+\d+\s+(\w+)\s*:", line)
        if m:
            msg_lines.setdefault(m.group(1), i)
    out: list[Repair] = []
    for msg in db.messages:
        mline = msg_lines.get(msg.name, 0)
        counts: dict[str, int] = {}
        for sig in msg.signals:
            counts[sig.name] = counts.get(sig.name, 0) + 1
            if counts[sig.name] > 1:
                line = _signal_line(lines, mline, sig.name, counts[sig.name]) if mline else 0
                fix = f"renamed {sig.name}__{counts[sig.name]}"
                out.append(Repair(msg.name, sig.name, "duplicate signal name", fix, line))
        seen: list[tuple[Any, set[int]]] = []
        for sig in msg.signals:
            bits = signal_bits(sig)
            line = _signal_line(lines, mline, sig.name) if mline else 0
            if any(b < 0 or b >= 8 * msg.length for b in bits):
                fit = f"does not fit in the {msg.length}-byte frame (start {sig.start}, length {sig.length})"
                out.append(Repair(msg.name, sig.name, fit, "dropped", line))
                continue
            for other, obits in seen:
                if other.name != sig.name and bits & obits and _can_coexist(sig, other):
                    out.append(Repair(msg.name, sig.name, f"overlaps signal {other.name}", "both kept", line))
                    break
            seen.append((sig, bits))
    return out


# -- random small messages --------------------------------------------------------------------------

_signal = st.builds(
    SimpleNamespace,
    name=st.sampled_from(["A", "B", "C", "D", "E"]),
    start=st.integers(0, 70),
    length=st.integers(1, 16),
    byte_order=st.sampled_from(["little_endian", "big_endian"]),
    multiplexer_signal=st.sampled_from([None, None, "M", "M", "N"]),
    multiplexer_ids=st.one_of(st.none(), st.lists(st.integers(0, 3), max_size=3)),
)
_message = st.builds(
    SimpleNamespace,
    name=st.sampled_from(["One", "Two"]),
    length=st.sampled_from([1, 2, 4, 8]),
    signals=st.lists(_signal, max_size=14),
)


def _text(db: Any) -> str:
    """DBC-like text placing each message and signal on a line (what the line lookup reads)."""
    out = []
    for i, msg in enumerate(db.messages):
        out.append(f"BO_ {i} {msg.name}: {msg.length} X")
        out += [f' SG_ {s.name} : {s.start}|{s.length}@1+ (1,0) [0|0] "" X' for s in msg.signals]
        out.append("")
    return "\n".join(out)


@settings(max_examples=400, deadline=None)
@given(messages=st.lists(_message, min_size=1, max_size=3))
def test_defects_are_those_of_comparing_every_pair(messages: list[Any]) -> None:
    db = SimpleNamespace(messages=messages)
    text = _text(db)
    assert find_defects(db, text) == reference_defects(db, text)
    assert find_defects(db, "") == reference_defects(db, "")  # lines unknown: 0


REAL_FILES = ("Model3CAN.dbc", "foxbms.dbc", "BMS.dbc", "overlap-mux.dbc", "IVT-S_12082020.dbc", "iso165_IMD.dbc")


def test_real_files_give_the_same_defects_as_comparing_every_pair() -> None:
    for name in REAL_FILES:
        text, _ = read_text(FIX / name)
        db = cantools.database.load_string(text, "dbc", strict=False)  # unrepaired, as cantools reads it
        assert find_defects(db, text) == reference_defects(db, text), name
    assert len(find_defects(cantools.database.load_file(FIX / "Model3CAN.dbc", strict=False), "")) == 6


def test_signals_under_different_values_of_one_multiplexer_never_overlap() -> None:
    finder = OverlapFinder()
    assert finder.add("Mux", range(8)) is None
    assert finder.add("Cell1", range(8, 24), [("Mux", [0])]) is None
    assert finder.add("Cell4", range(8, 24), [("Mux", [1])]) is None  # same bits, another mux value
    assert finder.add("Both", range(16, 20), [("Mux", [1, 2])]) == "Cell4"
    assert finder.add("Flag", [7]) == "Mux"  # a plain signal shares frames with every one
    assert finder.add("Other", [9], [("Sub", [0])]) == "Cell1"  # under another multiplexer: may coexist


# -- scale ------------------------------------------------------------------------------------------

N_SIGNALS = 20_000


def _big_message() -> Any:
    """A 64-byte frame: a 16-bit multiplexer, 20,000 cell signals under 2,500 values, some overlaps."""
    signals = [SimpleNamespace(name="Mux", start=0, length=16, byte_order="little_endian",
                               multiplexer_signal=None, multiplexer_ids=None)]  # fmt: skip
    for i in range(N_SIGNALS):
        value, slot = divmod(i, 8)
        start = 16 + 16 * slot - (8 if i % 1000 == 999 else 0)  # every 1000th overlaps its neighbour
        signals.append(SimpleNamespace(name=f"Cell{i}", start=start, length=16, byte_order="little_endian",
                                       multiplexer_signal="Mux", multiplexer_ids=[value]))  # fmt: skip
    return SimpleNamespace(name="Cells", length=64, signals=signals)


def test_overlap_check_of_20000_signals_visits_each_bit_a_few_times() -> None:
    msg = _big_message()
    finder = OverlapFinder()
    found = [
        (s.name, other)
        for s in msg.signals
        if (other := finder.add(s.name, signal_bits(s), mux_path(s, {}))) is not None
    ]
    total_bits = sum(s.length for s in msg.signals)
    # each signal: looked up in 2 groups (plain signals, its mux value), written to 3 (all, mux, value)
    assert finder.visits <= 5 * total_bits  # 1.6 million; every pair compared would be 2 x 10^8 pairs
    assert len(found) == N_SIGNALS // 1000 and found[0] == ("Cell999", "Cell998")


def test_find_defects_on_20000_signals_completes(tmp_path: Path) -> None:
    db = SimpleNamespace(messages=[_big_message()])
    repairs = find_defects(db, _text(db))
    assert len(repairs) == N_SIGNALS // 1000
    assert repairs[0] == Repair("Cells", "Cell999", "overlaps signal Cell998", "both kept", 1002)
