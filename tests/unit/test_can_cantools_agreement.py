"""The daemon's CAN decoding agrees with cantools on every frame, in every mapping mode.

A seeded generator writes DBC files (every kind of signal layout, `tests.can_generate`), frames for
each message (random, edge-of-range, every value-table entry, short, remote, with excess bytes, an
undefined mux value) and a profile per mapping mode: every signal mapped, `unmapped: raw`, the
profile keys (`scale`, `offset`, `invert`, `missing`, `bits`, `names`, `--id-offset`) and `j1939:
true`. Each runs through `bms-gateway can decode --profile` (the plan the daemon runs, through the
same frame → samples call as its CAN source), and every sample is compared with what cantools'
scaled decoding of the same frame says it must be (`tests.can_oracle`); the counted reasons too.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import cantools

from gateway.cli.main import main
from tests.can_generate import dbc_text, phys
from tests.can_oracle import Expect, Key, Want, expect, same
from tests.can_scenarios import N_J1939, N_MESSAGES, Frame, Mode, build_modes, pgn


def _log(frames: list[Frame]) -> str:
    lines = []
    for i, f in enumerate(frames):
        fid = f"{f.aid:08X}" if f.extended else f"{f.aid:03X}"
        body = "R" if f.remote else (f"#0{f.data.hex().upper()}" if len(f.data) > 8 else f.data.hex().upper())
        lines.append(f"({i}.000000) can0 {fid}#{body}")
    return "\n".join(lines) + "\n"


def run_cli(tmp: Path, mode: Mode, dbc: str, frames: list[Frame]) -> tuple[dict[int, dict[Key, Any]], Counter[str]]:
    """`can decode --profile` on the frames: samples by frame and (quantity, module), and the summary."""
    (tmp / f"{mode.name}.dbc").write_text(dbc, encoding="utf-8")
    (tmp / f"{mode.name}.yaml").write_text(json.dumps(mode.profile), encoding="utf-8")
    (tmp / f"{mode.name}.log").write_text(_log(frames), encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    argv = ["can", "decode", "--dbc", str(tmp / f"{mode.name}.dbc"), str(tmp / f"{mode.name}.log")]
    with redirect_stdout(out), redirect_stderr(err):
        code = main([*argv, "--profile", str(tmp / f"{mode.name}.yaml"), "--rack", "r", *mode.args])
    assert code == 0, err.getvalue()
    got: dict[int, dict[Key, Any]] = {}
    for line in out.getvalue().splitlines():
        s = json.loads(line)
        key = (s["quantity"], s["module"])
        assert s["cell"] is None and key not in got.setdefault(int(s["t"]), {}), line
        got[int(s["t"])][key] = s
    summary = err.getvalue().strip().splitlines()[-1]  # "f.log: 9 frames, 7 decoded, remote_frame 1, ..."
    counts: Counter[str] = Counter()
    for part in summary.split(": ", 1)[1].split(", "):
        a, b = part.split(" ")
        counts[b if a.isdigit() else a] = int(a if a.isdigit() else b)
    return got, counts


def check_mode(tmp: Path, mode: Mode, frames: list[Frame]) -> tuple[int, int]:
    """Every frame of one mode against the oracle; (frames, samples) compared."""
    dbc = dbc_text(mode.messages)
    db: Any = cantools.database.load_string(dbc, "dbc", strict=True)
    got, counts = run_cli(tmp, mode, dbc, frames)
    by_msg: dict[str, list[Expect]] = {}
    for p in mode.points:
        by_msg.setdefault(p.message, []).append(p)
    want_counts: Counter[str] = Counter({"frames": len(frames)})
    wrong: list[str] = []
    samples = 0
    for i, f in enumerate(frames):
        msg, reason = mode.route(f)
        want: dict[Key, Want] = {}
        if msg is not None and f.remote:
            reason = "remote_frame"
        elif msg is not None:
            want, reason = expect(db.get_message_by_name(msg.name), msg, by_msg.get(msg.name, []), f.data)
        want_counts[reason] += bool(reason)
        want_counts["decoded"] += bool(want) and reason in ("", "out_of_range")
        have = got.get(i, {})
        samples += len(want)
        if have.keys() != want.keys():
            wrong.append(f"{mode.name} frame {i} {f}: samples {sorted(have)} != {sorted(want)}")
            continue
        for key, w in want.items():
            s = have[key]
            if not same(s["value"], w) or s["quality"] != w.quality or s["unit"] != w.unit:
                wrong.append(f"{mode.name} frame {i} {f}: {key}: {s} != {w}")
    assert not wrong, f"{len(wrong)} disagreements, first: " + "\n".join(wrong[:8])
    del want_counts[""]
    assert counts == want_counts, (mode.name, counts, want_counts)
    return len(frames), samples


def test_every_sample_of_every_mapping_mode_agrees_with_cantools(tmp_path: Path) -> None:
    modes, frames = build_modes()
    totals = Counter[str]()
    for mode in modes:
        n_frames, n_samples = check_mode(tmp_path, mode, frames.get(mode.name, frames["plain"]))
        print(f"{mode.name}: {len(mode.messages)} definitions, {n_frames} frames, {n_samples} samples")
        totals["frames"] += n_frames
        totals["samples"] += n_samples
    definitions = len(modes[0].messages) + len(modes[-1].messages)
    print(f"agreement: {definitions} definitions, {totals['frames']} frames, {totals['samples']} samples compared")
    assert definitions >= N_MESSAGES + N_J1939 and totals["samples"] > 100_000


def test_the_generator_covers_what_it_promises() -> None:
    """Both byte orders, signed, unsigned, floats, lengths 1..64, negative scales, value tables, muxes
    with ranges, CAN FD and odd lengths, J1939 PGNs twice: the agreement test sees every kind."""
    modes, _ = build_modes()
    sigs = [s for m in modes[0].messages for s in m.signals]
    assert {s.big for s in sigs} == {False, True} and {s.float_type for s in sigs} == {0, 1, 2}
    assert any(s.signed for s in sigs) and any(s.length == 64 for s in sigs) and any(s.length == 1 for s in sigs)
    assert any(s.scale < 0 for s in sigs) and any(s.choices for s in sigs) and any(s.lo is not None for s in sigs)
    assert any(len(s.mux_ids) > 1 for s in sigs) and any(m.mux and m.mux.choices for m in modes[0].messages)
    assert {m.length for m in modes[0].messages} & {12, 13, 33, 64} and any(m.extended for m in modes[0].messages)
    assert len({pgn(m.frame_id) for m in modes[-1].messages}) < len(modes[-1].messages)
    assert any(phys(s, 1) != 1 for s in sigs)
