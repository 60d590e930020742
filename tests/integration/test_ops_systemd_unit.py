"""The shipped systemd unit: `systemd-analyze verify` and `security --offline=true`, plus its directives.

Debian's `systemd` package runs both without a booted systemd. `verify` checks that the commands
exist, so the test points ExecStart at this checkout's `bms-gateway` in a copy of the unit.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config.settings import RuntimeConfig
from tests.support.manual import manual_text

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "bms-gateway.service"
OVERRIDE = ROOT / "systemd" / "override.conf.example"
CAN_ADAPTER = ROOT / "systemd" / "can-adapter.conf.example"
INSTALLED = "/opt/bms-gateway/bin/bms-gateway"


def analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        raise RuntimeError("systemd-analyze is not installed: run the README's test command, which installs it")
    return found


def directives(text: str) -> dict[str, list[str]]:
    """Key → values of a unit file (keys may repeat; `#` and `;` comments skipped)."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;[" or "=" not in line:
            continue
        key, value = line.split("=", 1)
        out.setdefault(key.strip(), []).append(value.strip())
    return out


@pytest.fixture
def unit_dir(tmp_path: Path) -> Path:
    """A unit search path holding the unit (with this checkout's command) and the example drop-in."""
    exe = Path(sys.executable).parent / "bms-gateway"
    assert exe.exists(), "install the package (pip install -e .) so the bms-gateway command exists"
    (tmp_path / "bms-gateway.service").write_text(UNIT.read_text().replace(INSTALLED, str(exe)))
    return tmp_path


def run_analyze(args: list[str], unit_path: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if unit_path is not None:
        env["SYSTEMD_UNIT_PATH"] = f"{unit_path}:"  # the trailing colon keeps the default path too
    return subprocess.run([analyze(), *args], capture_output=True, text=True, env=env, timeout=60, cwd=unit_path)


def exposure(output: str) -> float:
    m = re.search(r"Overall exposure level for bms-gateway\.service: (\d+\.\d+)", output)
    assert m, output[-2000:]
    return float(m.group(1))


def test_unit_verifies_without_errors(unit_dir: Path) -> None:
    result = run_analyze(["verify", str(unit_dir / "bms-gateway.service")], unit_dir)
    ours = [line for line in (result.stdout + result.stderr).splitlines() if "bms-gateway" in line]
    assert result.returncode == 0 and not ours, result.stdout + result.stderr


def test_unit_with_the_example_drop_in_verifies(unit_dir: Path) -> None:
    drop_in = unit_dir / "bms-gateway.service.d"
    drop_in.mkdir()
    (drop_in / "override.conf").write_text(OVERRIDE.read_text())
    result = run_analyze(["verify", str(unit_dir / "bms-gateway.service")], unit_dir)
    ours = [line for line in (result.stdout + result.stderr).splitlines() if "bms-gateway" in line]
    assert result.returncode == 0 and not ours, result.stdout + result.stderr
    secured = run_analyze(["security", "--offline=true", "--no-pager", "bms-gateway.service"], unit_dir)
    assert exposure(secured.stdout) <= 2.0  # the drop-in adds an IP allow list; it never weakens the unit


def test_security_exposure_is_low() -> None:
    result = run_analyze(["security", "--offline=true", "--no-pager", "--threshold=15", str(UNIT)], UNIT.parent)
    score = exposure(result.stdout)
    assert score <= 1.5, result.stdout
    assert result.returncode == 0  # --threshold=15: exposure above 1.5 would fail the command too


def with_drop_in(unit_dir: Path, text: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """`verify` and the exposure of the unit with `text` as its drop-in can-adapter.conf."""
    drop_in = unit_dir / "bms-gateway.service.d"
    drop_in.mkdir(exist_ok=True)
    (drop_in / "can-adapter.conf").write_text(text)
    verified = run_analyze(["verify", str(unit_dir / "bms-gateway.service")], unit_dir)
    secured = run_analyze(["security", "--offline=true", "--no-pager", "bms-gateway.service"], unit_dir)
    return verified, exposure(secured.stdout)


def test_the_can_adapter_drop_in_opens_serial_and_usb_adapters_and_keeps_the_unit_hardened(unit_dir: Path) -> None:
    """PrivateDevices=yes and DevicePolicy=closed block USB and serial CAN adapters; the documented drop-in
    allows the device files they need (and no others) at an exposure of at most 2.0."""
    text = CAN_ADAPTER.read_text()
    d = directives(text)
    assert d["PrivateDevices"] == ["no"] and d["DevicePolicy"] == ["closed"]
    assert d["DeviceAllow"] == ["char-ttyACM rw", "char-ttyUSB rw"]
    assert d["SupplementaryGroups"] == ["dialout"]
    verified, score = with_drop_in(unit_dir, text)
    ours = [line for line in (verified.stdout + verified.stderr).splitlines() if "bms-gateway" in line]
    assert verified.returncode == 0 and not ours, verified.stdout + verified.stderr
    assert score <= 2.0
    # Every commented alternative (libusb gs_usb, PEAK's chardev driver) enabled as well: still at most 2.0.
    everything = re.sub(r"^#(DeviceAllow|SupplementaryGroups)=", r"\1=", text, flags=re.MULTILINE)
    assert directives(everything)["DeviceAllow"] == [
        "char-ttyACM rw", "char-ttyUSB rw", "char-usb_device rw", "char-pcan rw"
    ]  # fmt: skip
    verified, score = with_drop_in(unit_dir, everything)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert score <= 2.0


def test_the_manual_shows_the_can_adapter_drop_in() -> None:
    readme = manual_text()
    assert "systemd/can-adapter.conf.example" in readme
    for line in ("PrivateDevices=no", "DeviceAllow=char-ttyACM rw", "DeviceAllow=char-ttyUSB rw"):
        assert line in readme, line


def test_unit_directives() -> None:
    d = directives(UNIT.read_text())
    one = {k: v[-1] for k, v in d.items()}
    assert one["Type"] == "notify" and one["NotifyAccess"] == "main"
    assert one["Restart"] == "on-failure"
    assert one["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert one["ExecStart"] == f"{INSTALLED} run"
    assert one["ExecStartPre"] == f"{INSTALLED} validate"
    assert one["DynamicUser"] == "yes"
    assert one["StateDirectory"] == one["ConfigurationDirectory"] == "bms-gateway"
    assert one["UMask"] == "0077"
    assert one["CapabilityBoundingSet"] == "" and one["AmbientCapabilities"] == ""
    for key in ("NoNewPrivileges", "PrivateTmp", "PrivateDevices", "PrivateMounts", "ProtectHome",
                "ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups",
                "ProtectClock", "ProtectHostname", "RestrictNamespaces", "RestrictRealtime", "RestrictSUIDSGID",
                "LockPersonality", "MemoryDenyWriteExecute"):  # fmt: skip
        assert one[key] == "yes", key
    assert one["ProtectSystem"] == "strict"
    assert set(one["RestrictAddressFamilies"].split()) == {"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK", "AF_CAN"}
    assert d["SystemCallFilter"][0] == "@system-service"
    assert d["SystemCallFilter"][1].startswith("~@privileged")
    assert re.fullmatch(r"\d+[MG]", one["MemoryMax"])
    assert {"influx-token", "mqtt-password", "mqtt-client-key"} <= set(d["LoadCredential"])
    # The watchdog fires well after the daemon's pings (every WatchdogSec/2), and a stop waits for the drain.
    assert int(one["WatchdogSec"].removesuffix("s")) >= 10
    assert int(one["TimeoutStopSec"].removesuffix("s")) > RuntimeConfig().grace_period
