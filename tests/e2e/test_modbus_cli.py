"""The Modbus command line end to end: simulate -> record -> replay -> `bms-gateway run` -> the store."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from gateway.cli.main import main
from gateway.model import Quality
from tests.modbus_support import GENERIC, TINY, site, source, write
from tests.servers import free_port, wait_port
from tests.support.store import batches as batches_of
from tests.support.waits import wait_for


@contextmanager
def process(*args: str, cwd: Path) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args], capture_output=True, text=True, cwd=cwd, timeout=60, check=False
    )


def test_simulate_record_replay_and_run(tmp_path: Path) -> None:
    profile = write(tmp_path / "profiles" / "tiny.yaml", TINY)
    live_port, replay_port = free_port(), free_port()
    config = site(tmp_path, source("rack-a", live_port, 1, interval=0.2) + source("rack-b", live_port, 2, interval=0.2))
    rec = tmp_path / "rec.jsonl"
    with process(
        "modbus", "simulate", "-p", str(profile), "--port", str(live_port), "--unit-ids", "1,2", cwd=tmp_path
    ) as sim:
        wait_port(live_port)
        done = cli("modbus", "record", "-c", str(config), "--duration", "3", "-o", str(rec), cwd=tmp_path)
        sim.send_signal(signal.SIGINT)
        out, err = sim.communicate(timeout=30)
    assert done.returncode == 0, done.stderr
    assert "recorded" in done.stdout and "rack-a" in done.stdout
    assert sim.returncode == 0 and "Traceback" not in err
    assert f"127.0.0.1:{live_port} units [1, 2]" in out
    lines = [json.loads(x) for x in rec.read_text().splitlines()]
    assert lines[0]["format"] == "bms-gateway-modbus-recording"
    assert {f["unit"] for f in lines[1:]} == {1, 2}
    recorded = {tuple(f["words"]) for f in lines[1:] if f["unit"] == 1 and f["table"] == "input" and f["start"] == 0}
    assert recorded

    # replay the recording (looping) and run the gateway on it as a daemon
    run_cfg = site(tmp_path / "replay", source("rack-a", replay_port, 1, interval=0.1))
    cmd = ("modbus", "simulate", "--recording", str(rec), "--loop", "--port", str(replay_port))
    with process(*cmd, cwd=tmp_path) as player:
        wait_port(replay_port)
        with process("run", "-c", str(run_cfg), cwd=tmp_path) as gw:
            store = tmp_path / "replay" / "store.db"

            def polled() -> int:  # a read-only look while the gateway writes
                if not store.exists():
                    return 0
                return sum(1 for b in batches_of(store, check=False) if b.source == "rack-a" and b.samples())

            wait_for(lambda: polled() >= 5, 60, "5 batches of rack-a stored", gw, step=0.2)
            gw.send_signal(signal.SIGTERM)
            _, gw_err = gw.communicate(timeout=60)
        assert gw.returncode == 0, gw_err
        assert player.poll() is None  # still looping
    batches = [b for b in batches_of(store) if b.source == "rack-a" and b.samples()]
    assert len(batches) >= 5
    for b in batches:
        assert all(s.quality == Quality.GOOD for s in b.samples())
        by = {(s.quantity, s.module, s.cell): s.value for s in b.samples()}
        assert by[("serial_number", None, None)] == "SIM-0001"
    volts = {b.samples()[0].value for b in batches}
    assert volts  # values came from the recording, decoded by the profile


def test_plan_prints_the_reads(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["modbus", "plan", "-p", str(GENERIC)]) == 0
    out = capsys.readouterr().out
    assert "389 points in 7 reads" in out
    assert "fc 4  input     1000..1124  ( 125 regs)  125 points" in out


def test_simulate_without_a_source_is_a_usage_error(tmp_path: Path) -> None:
    done = cli("modbus", "simulate", "--duration", "0.1", cwd=tmp_path)
    assert done.returncode == 2 and "give --profile" in done.stderr


def test_a_bad_profile_is_reported_with_its_place(tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.yaml", "protocol: modbus\npoints:\n  - {quantity: soc, address: 70000}\n")
    done = cli("modbus", "simulate", "-p", str(bad), "--duration", "0.1", cwd=tmp_path)
    assert done.returncode == 2
    assert f"error: {bad}:3:21: points.0.address: soc element 1 ends at address 70000, beyond" in done.stderr


def test_profile_schema_lists_the_point_keys(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["modbus", "schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    point = schema["$defs"]["ModbusPoint"]["properties"]
    assert {"address", "type", "byte_order", "scale", "missing", "range", "flags", "states"} <= set(point)
    assert "sunspec" in schema["properties"]
