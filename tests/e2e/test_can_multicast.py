"""Across processes: `bms-gateway can replay` onto udp_multicast (loopback) → `bms-gateway run` in another process."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

from tests.can_support import (
    BMS_DBC,
    ROOT,
    log_frames,
    make_site,
    offline_samples,
    profile_path,
    project_plan,
)
from tests.servers import free_udp_port
from tests.support.store import samples_by_quantity as stored_samples
from tests.support.waits import wait_for

# The first 60 s of bms-dump.log (2,945 frames, shipped for the demo) on its recorded timeline, 20 times
# faster (3 s); the whole capture goes through the gateway in tests/integration/test_can_runtime.py.
CAPTURE = ROOT / "gateway" / "data" / "can" / "bms-dump-60s.log"
RATE = 20


def off_loopback_tx_packets() -> int:
    total = 0
    for line in Path("/proc/net/dev").read_text().splitlines()[2:]:
        name, data = line.split(":", 1)
        if name.strip() != "lo":
            total += int(data.split()[9])
    return total


def udp_receive_buffer_errors() -> int:
    """Datagrams the kernel dropped because a socket's receive buffer was full (all sockets: diagnostics)."""
    lines = [ln.split() for ln in Path("/proc/net/snmp").read_text().splitlines() if ln.startswith("Udp:")]
    return int(lines[1][lines[0].index("RcvbufErrors")])


def offline_decode() -> subprocess.Popen[str]:
    """`bms-gateway can decode --profile`: what the capture contains, sample by sample (runs meanwhile)."""
    return subprocess.Popen(
        [sys.executable, "-m", "gateway", "can", "decode", "--dbc", str(BMS_DBC), "--profile",
         str(profile_path("can-redpesk-bms")), "--rack", "pack", str(CAPTURE)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def offline_result(proc: subprocess.Popen[str]) -> Counter[tuple[object, ...]]:
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert "2945 frames, 2945 decoded" in stderr
    out: Counter[tuple[object, ...]] = Counter()
    for line in stdout.splitlines():
        d = json.loads(line)
        out[(d["quantity"], d["value"], d["quality"], d["module"], d["cell"])] += 1
    return out


def test_replay_in_one_process_reaches_a_gateway_in_another(tmp_path: Path) -> None:
    port = free_udp_port()
    group = "239.74.163.2"
    cfg = make_site(
        tmp_path,
        f"  - {{type: can, name: pack, profile: can-redpesk-bms, interface: udp_multicast, channel: '{group}', "
        f"port: {port}}}\n",
        extra="http:\n  enabled: false\nlogging:\n  format: json\n",
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    gw = subprocess.Popen(
        [sys.executable, "-m", "gateway", "run", "-c", str(cfg)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    lines: list[str] = []
    bus_open = threading.Event()

    def pump() -> None:
        assert gw.stderr is not None
        for line in gw.stderr:
            lines.append(line)
            if "CAN bus open" in line:
                bus_open.set()

    threading.Thread(target=pump, daemon=True).start()
    decoder = offline_decode()  # runs while the gateway starts, not during the replay
    try:
        def opened() -> bool:
            assert gw.poll() is None, "".join(lines)
            return bus_open.wait(0.2)

        # A start on a busy machine can take a while.
        wait_for(opened, 60, "the CAN bus open", step=0, detail=lambda: "".join(lines))
        expected = offline_result(decoder)
        assert expected == offline_samples(project_plan("can-redpesk-bms", BMS_DBC, rack="pack"), log_frames(CAPTURE))
        before, dropped_before = off_loopback_tx_packets(), udp_receive_buffer_errors()
        replay = subprocess.run(
            [sys.executable, "-m", "gateway", "can", "replay", str(CAPTURE), "--interface", "udp_multicast",
             "--channel", group, "--port", str(port), "--rate", str(RATE)],
            capture_output=True, text=True, env=env, timeout=120,
        )  # fmt: skip
        assert replay.returncode == 0, replay.stderr
        assert "replayed 2945 frames" in replay.stderr
        # Other traffic of the machine counts too: the frames alone would be 2,945 packets.
        sent_off_loopback = off_loopback_tx_packets() - before
        assert sent_off_loopback < 1000, f"{sent_off_loopback} packets left the machine for 2,945 frames"
        fresh: Counter[tuple[object, ...]] = Counter()

        def all_stored() -> bool:
            nonlocal fresh
            stored = stored_samples(tmp_path / "store.db", rack="pack")
            fresh = Counter({k: n for k, n in stored.items() if k[2] in ("good", "out_of_range")})
            return fresh.total() >= expected.total()

        with contextlib.suppress(AssertionError):  # what is missing is counted and asserted on below
            wait_for(all_stored, 60, "every replayed sample stored", step=0.3)
        dropped = udp_receive_buffer_errors() - dropped_before
        # every frame, every sample, value for value: none lost
        assert fresh == expected, f"{fresh.total()} of {expected.total()} samples; UDP receive buffer drops: {dropped}"
    finally:
        if decoder.poll() is None:
            decoder.kill()
            decoder.communicate()
        gw.send_signal(signal.SIGTERM)
        gw.wait(timeout=60)
    assert gw.returncode == 0, "".join(lines)
    assert "Traceback" not in "".join(lines)
