"""Captures from the wild: bad lines skipped, counted and named (file:line, or byte offset for binary
files), `--strict` stopping at the first, non-finite timestamps refused, never a traceback."""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import can
import pytest

from gateway.cli.main import main
from gateway.sources.can.capture import Capture, CaptureError
from gateway.sources.can.textlines import MAX_LINE
from tests.can_support import BMS_DBC, FOX_DBC, FOX_TRC, ROOT, log_frames

FRAMES = log_frames()[:40]


def _written(path: Path) -> list[str]:
    """A capture of FRAMES in the format of the path's suffix (python-can's writer), as lines."""
    with can.Logger(str(path)) as writer:
        for m in FRAMES:
            writer.on_message_received(m)
    return path.read_text(encoding="utf-8").splitlines(keepends=True)


def _with_bad_lines(lines: list[str], bad: dict[int, str]) -> list[str]:
    """The lines with the bad ones inserted so that each lands on its given line number (1-based)."""
    out = list(lines)
    for number in sorted(bad):
        out.insert(number - 1, bad[number] + "\n")
    return out


# what a damaged line looks like in each text format: garbage, a truncated frame, a non-finite timestamp
BAD_LINES = {
    ".log": {
        3: "garbage here",
        9: "(1621945397.1) elmcan 32",
        20: "(inf) elmcan 301#0000 R",
        21: "(nan) elmcan 2A1#00",
    },
    ".asc": {9: "0.5 1  2A1 Rx d 8 ZZ 00", 12: "1.0 1 321 Rx d", 30: "1.0 1 2C1 Rx d 8 00 0G"},
    ".csv": {3: "garbage", 9: "1.0,zz,0,0,0,2,AAA=", 20: "inf,301,0,0,0,2,AAA=", 21: "nan,301,0,0,0,2,AAA="},
}


def _reported(path: Path, strict: bool = False) -> tuple[list[can.Message], Capture, list[str]]:
    seen: list[str] = []
    capture = Capture(path, strict=strict, on_bad=lambda r: seen.append(str(r)))
    return list(capture), capture, seen


@pytest.mark.parametrize("suffix", sorted(BAD_LINES))
def test_bad_lines_are_skipped_counted_and_named_by_line(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"cap{suffix}"
    lines = _with_bad_lines(_written(path), BAD_LINES[suffix])
    path.write_text("".join(lines), encoding="utf-8")
    frames, capture, seen = _reported(path)
    assert [(m.arbitration_id, bytes(m.data)) for m in frames] == [(m.arbitration_id, bytes(m.data)) for m in FRAMES]
    assert capture.bad == len(BAD_LINES[suffix]) and capture.frames == len(FRAMES)
    assert [s.split(": ")[0] for s in seen] == [f"{path}:{n}" for n in sorted(BAD_LINES[suffix])]
    if suffix != ".asc":  # (an ASC line must start with a decimal time to be read as a frame at all)
        assert "non-finite timestamp inf" in seen[2] and "non-finite timestamp nan" in seen[3]
    with pytest.raises(CaptureError) as info:
        _reported(path, strict=True)
    assert str(info.value).startswith(f"{path}:{min(BAD_LINES[suffix])}: ")


def test_trc_bad_lines_including_ones_python_can_only_warns_about(tmp_path: Path) -> None:
    lines = FOX_TRC.read_text(encoding="utf-8").splitlines(keepends=True)
    bad = {
        17: "     7)        41.000 1  Rx        02ZZ -  8    01 00 19 19 19 19 1A 1A",
        18: "     8)           inf 1  Rx        0260 -  8    01 00 19 19 19 19 1A 1A",
        19: "     9)  1.0 1",  # too few columns: python-can logs a warning with no place and goes on
    }
    path = tmp_path / "cap.trc"
    path.write_text("".join(_with_bad_lines(lines, bad)), encoding="utf-8")
    frames, capture, seen = _reported(path)
    assert len(frames) == 9 and capture.bad == 3  # every frame of the original trace
    assert [s.split(": ")[0] for s in seen] == [f"{path}:17", f"{path}:18", f"{path}:19"]


def test_savvycan_gzip_and_overlong_lines(tmp_path: Path) -> None:
    savvy = tmp_path / "s.csv"
    savvy.write_text(
        "Time Stamp,ID,Extended,Dir,Bus,LEN,D1,D2\n1000000,00000221,false,Rx,0,2,5D,C2\n"
        "garbage,,\n1100000,221,false,Rx,0,2,01\n1200000,221,false,Rx,0,2,01,02\n"
    )
    frames, _, seen = _reported(savvy)
    assert len(frames) == 2 and [s.split(": ")[0] for s in seen] == [f"{savvy}:3", f"{savvy}:4"]
    zipped = tmp_path / "cap.log.gz"
    text = "".join(_with_bad_lines(_written(tmp_path / "cap.log"), {5: "x" * (3 * MAX_LINE)}))
    zipped.write_bytes(gzip.compress(text.encode()))
    frames, _, seen = _reported(zipped)
    assert len(frames) == len(FRAMES) and seen == [f"{zipped}:5: line longer than {MAX_LINE} characters"]


def _decode(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["can", "decode", *args])
    return code, out.getvalue(), err.getvalue()


def _strict_json(line: str) -> Any:
    def refuse(name: str) -> None:
        raise ValueError(f"not JSON: {name}")

    return json.loads(line, parse_constant=refuse)


def test_can_decode_counts_bad_lines_warns_of_the_first_five_and_writes_valid_json(tmp_path: Path) -> None:
    path = tmp_path / "cap.log"
    bad = {n: "(inf) elmcan 301#0000 R" if n % 4 == 0 else "not a frame" for n in range(2, 17, 2)}  # 8 bad lines
    bad[40] = "(nan) elmcan 2A1#0000000000000000"
    path.write_text("".join(_with_bad_lines(_written(path), bad)), encoding="utf-8")
    code, out, err = _decode("--dbc", str(BMS_DBC), str(path))
    assert code == 0
    assert [_strict_json(line)["t"] for line in out.splitlines()] == [m.timestamp for m in FRAMES]
    warnings = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert [w.split(": ")[1] for w in warnings] == [f"{path}:{n}" for n in (2, 4, 6, 8, 10)]
    assert f"{path}: 40 frames, 40 decoded, 9 bad records skipped, first 5 shown" in err
    code, out, err = _decode("--strict", "--dbc", str(BMS_DBC), str(path))
    assert code == 2 and err.startswith(f"error: {path}:2: not a frame: 'not a frame'")
    code, out, err = _decode("--dbc", str(FOX_DBC), str(FOX_TRC), "--strict")
    assert code == 0 and len(out.splitlines()) == 9


def test_float_signal_nan_is_null_in_the_json(tmp_path: Path) -> None:
    dbc = tmp_path / "f.dbc"
    dbc.write_text(
        'VERSION ""\nBS_:\nBU_: X\nBO_ 256 F: 4 X\n SG_ Value : 0|32@1- (1,0) [0|0] "" X\nSIG_VALTYPE_ 256 Value : 1;\n'
    )
    log = tmp_path / "f.log"
    log.write_text("(1.0) can0 100#0000C07F\n(2.0) can0 100#0000803F\n")  # NaN, then 1.0
    code, out, _ = _decode("--dbc", str(dbc), str(log))
    assert code == 0 and [_strict_json(line)["signals"]["Value"] for line in out.splitlines()] == [None, 1.0]


def test_binary_captures_name_the_offset_of_their_damage_never_a_traceback(tmp_path: Path) -> None:
    good = tmp_path / "good.blf"
    with can.Logger(str(good)) as writer:
        for m in FRAMES:
            writer.on_message_received(m)
    data = good.read_bytes()
    random = tmp_path / "random.blf"
    random.write_bytes(bytes((i * 151 + 7) % 256 for i in range(5000)))
    code, out, err = _decode("--dbc", str(BMS_DBC), str(random))
    assert (
        code == 2
        and out == ""
        and err == f"error: {random}: byte offset 0: not a .blf capture: Unexpected file format\n"
    )
    damaged = tmp_path / "damaged.blf"
    damaged.write_bytes(data[:200] + bytes(50) + data[250:])  # inside the first compressed container
    code, out, err = _decode("--dbc", str(BMS_DBC), str(damaged))
    assert code == 2 and f"warning: {damaged}: byte offset " in err and "the rest of the file is not read" in err
    assert f"error: {damaged}: no frame could be read" in err
    short = tmp_path / "short.blf"
    short.write_bytes(data[:-40])
    frames, capture, seen = _reported(short)
    assert 0 < len(frames) < len(FRAMES) and capture.bad == 1
    assert seen == [f"{short}: byte offset {len(data) - 40}, after frame {len(frames)}: truncated: the header "
                    f"gives {len(data)} bytes; the frames of the rest are lost"]  # fmt: skip
    with pytest.raises(CaptureError):
        _reported(short, strict=True)
    unknown = tmp_path / "cap.xyz"
    unknown.write_text("x")
    code, _, err = _decode("--dbc", str(BMS_DBC), str(unknown))
    assert code == 2 and err.startswith(f"error: {unknown}: unknown capture format '.xyz'")


def test_can_replay_skips_non_finite_timestamps_instead_of_waiting_forever(tmp_path: Path) -> None:
    path = tmp_path / "cap.log"
    path.write_text("(1.00) vcan0 301#0000\n(inf) vcan0 301#0001\n(1.01) vcan0 301#0002\n(nan) vcan0 301#03\n")
    cmd = [sys.executable, "-m", "gateway", "can", "replay", str(path), "--interface", "virtual", "--channel", "t"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert f"warning: {path}:2: non-finite timestamp inf" in done.stderr
    assert f"{path}: 2 frames, 2 bad records skipped" in done.stderr and "replayed 2 frames" in done.stderr
    done = subprocess.run([*cmd, "--strict"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 2 and done.stderr == f"error: {path}:2: non-finite timestamp inf\n"


def test_a_cut_off_gzip_capture_keeps_the_frames_before_the_cut(tmp_path: Path) -> None:
    text = "".join(f"({i}.5) can0 2A1#{i % 256:02X}00\n" for i in range(20_000)).encode()
    whole = gzip.compress(text)
    cut = tmp_path / "cut.log.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    frames, capture, seen = _reported(cut)
    assert 0 < len(frames) < 20_000 and capture.bad == 1
    assert seen == [f"{cut}:{len(frames) + 1}: cannot read on: Compressed file ended before the end-of-stream "
                    "marker was reached; the rest of the file is not read"]  # fmt: skip
    assert [m.timestamp for m in frames] == [i + 0.5 for i in range(len(frames))]
    (tmp_path / "not.log.gz").write_bytes(b"plain text")
    code, _, err = _decode("--dbc", str(BMS_DBC), str(tmp_path / "not.log.gz"))
    assert code == 2 and "not.log.gz:1: cannot read on: Not a gzipped file" in err
