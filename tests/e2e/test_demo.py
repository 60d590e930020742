"""The README's first command: `bms-gateway demo` shows samples arriving and stops cleanly on Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.support.store import stored_sample_total


def test_demo_shows_samples_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    store = tmp_path / "demo.db"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "BMS_GATEWAY__HTTP__PORT": "0"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "demo", "--store", str(store)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if sum("samples" in x and "SoC" in x for x in lines) >= 4:
            break
    proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
    out, err = proc.communicate(timeout=30)
    text = "".join(lines) + out
    assert proc.returncode == 0, err
    assert "Traceback" not in text + err
    assert "rack-01" in text and "rack-02" in text
    assert "stopped; the samples are in" in text
    assert stored_sample_total(store) > 0
