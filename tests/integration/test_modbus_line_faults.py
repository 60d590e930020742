"""Faults of the world on the new Modbus transports, against real peers: the read-only guard on RTU over
TCP and on TLS (as on Modbus TCP and a serial line), a USB-RS485 adapter unplugged while the gateway
runs and plugged in again, and a device on a serial line whose answers come damaged, after noise, or
from another unit id."""

from __future__ import annotations

import asyncio
import os
import ssl
from pathlib import Path

import pytest
import structlog
from pymodbus.framer import FramerRTU

from gateway.config.settings import load_config
from gateway.metrics import REGISTRY
from gateway.model import DeviceState, Quality
from gateway.runtime.core import Runtime
from gateway.sources.modbus.config import ModbusSourceConfig
from gateway.sources.modbus.device import DeviceRun
from gateway.sources.modbus.framing import WriteRefused
from gateway.sources.modbus.poller import ModbusEndpoint
from gateway.sources.modbus.profile import ModbusProfile
from gateway.sources.modbus.validate import load_modbus_profile
from gateway.tools.modbusline import open_pty
from gateway.tools.modbussim import ModbusSimulator
from tests.delivery_support import make_certs
from tests.modbus_support import ROOT, TINY, of, site, write
from tests.runtime_support import run_until
from tests.servers import free_port
from tests.support.waits import await_for

LINE = "  transport: rtu\n  parity: N\n  baudrate: 115200\n  interval: 0.1\n  timeout: 0.5\n  retries: 0\n"


def rtu_source(name: str, port: str | Path, unit: int = 1) -> str:
    return f"- type: modbus\n  name: {name}\n  profile: tiny\n  port: {port}\n  unit_id: {unit}\n" + LINE


def states(rt: Runtime, name: str) -> list[DeviceState]:
    return [b.status.state for b in of(rt, name) if b.status is not None]


def good(rt: Runtime, name: str, after: int = 0) -> int:
    """Batches of the device, from the `after`-th on, whose rack voltage was read well."""
    return sum(
        1
        for b in of(rt, name)[after:]
        if any(s.quantity == "rack_voltage" and s.quality == Quality.GOOD for s in b.samples())
    )


def plug(port: Path, tty: str | None) -> None:
    """The adapter's stable name appears (pointing at `tty`) or, with None, goes."""
    if tty is None:
        port.unlink()
    else:
        port.symlink_to(tty)


def failed_connects(port: Path) -> float:
    labels = {"endpoint": str(port), "result": "failed"}
    return REGISTRY.get_sample_value("bms_gateway_modbus_connects_total", labels) or 0


def tls_context(tmp_path: Path) -> tuple[ssl.SSLContext, str]:
    certs = make_certs(tmp_path / "pki")
    for key in ("server.key", "client.key", "ca.key"):
        certs[key].chmod(0o600)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certs["server.crt"], certs["server.key"])
    extra = "  ca_file: pki/ca.crt\n  cert_file: pki/client.crt\n  key_file: pki/client.key\n"
    return ctx, extra


@pytest.mark.parametrize("transport", ["rtu_over_tcp", "tls"])
async def test_the_read_only_guard_holds_on_rtu_over_tcp_and_tls(tmp_path: Path, transport: str) -> None:
    profile = load_modbus_profile(write(tmp_path / "sim" / "tiny.yaml", TINY))
    sim = ModbusSimulator.from_profile(profile, [1])
    sslctx, tls = tls_context(tmp_path) if transport == "tls" else (None, "")
    await sim.start(free_port(), transport=transport, sslctx=sslctx)
    text = f"- type: modbus\n  name: rack-a\n  profile: tiny\n  transport: {transport}\n  host: localhost\n"
    text += f"  port: {sim.port}\n  unit_id: 1\n" + tls
    loaded = load_config(site(tmp_path, text))
    (cfg,) = loaded.config.sources
    assert isinstance(cfg, ModbusSourceConfig)
    ep = ModbusEndpoint("localhost", sim.port, [DeviceRun(cfg, profile)], base_dir=tmp_path)
    assert ep.link.settings.transport == transport
    try:
        assert await ep.link.connect()
        client = ep.link.client
        with pytest.raises(WriteRefused):
            await client.write_register(0, 1, device_id=1)
        with pytest.raises(WriteRefused):
            await client.write_coils(0, [True], device_id=1)
        with pytest.raises(WriteRefused):
            await client.write_registers(0, [1, 2], device_id=1)
        rr = await ep.link.read(1, 4, 0, 2, 5.0)
        assert rr is not None and not rr.isError() and len(rr.registers) == 2
    finally:
        ep.link.close()
        await sim.stop()
    assert sim.function_codes == [4] and sim.writes == 0  # the writes never left the process


async def test_an_unplugged_serial_adapter_is_comm_loss_and_is_read_again_when_plugged_back(tmp_path: Path) -> None:
    """The port is a symlink, as /dev/serial/by-id/... is: unplugging closes the pty (the adapter's end
    and the device file go away); plugging in makes a new pty behind the same name."""
    profile = load_modbus_profile(write(tmp_path / "sim" / "tiny.yaml", TINY))
    port = tmp_path / "serial" / "by-id" / "usb-FTDI_RS485-if00-port0"
    port.parent.mkdir(parents=True)
    sim = ModbusSimulator.from_profile(profile, [1])
    port.symlink_to(await sim.start_serial())
    text = rtu_source("rack-a", port) + "  offline_after: 1\n  reconnect_initial: 0.1\n  reconnect_max: 0.5\n"
    rt = Runtime(load_config(site(tmp_path, text)))
    task = asyncio.create_task(rt.run())
    with structlog.testing.capture_logs() as logs:
        code = await unplug_and_plug_back(rt, task, sim, port, profile)
    assert code == 0
    assert states(rt, "rack-a")[-2:] == [DeviceState.OFFLINE, DeviceState.ONLINE]
    offline = next(b for b in of(rt, "rack-a") if b.status is not None and b.status.state == DeviceState.OFFLINE)
    assert {s.quality for s in offline.samples()} == {Quality.COMM_LOSS}
    # one line when the adapter went and one when it came back, whatever the connect attempts between
    events = [e["event"] for e in logs if e.get("endpoint") == str(port)]
    assert events.count("modbus connection lost") == 1 and events.count("modbus endpoint reconnected") == 1, events
    assert "modbus endpoint unreachable" not in events


async def unplug_and_plug_back(
    rt: Runtime, task: asyncio.Task[int], sim: ModbusSimulator, port: Path, profile: ModbusProfile
) -> int:
    replugged: ModbusSimulator | None = None
    try:
        await await_for(lambda: good(rt, "rack-a") >= 3, 60, "rack-a read over the adapter", task=task)
        await sim.stop()  # unplugged
        plug(port, None)
        await await_for(lambda: DeviceState.OFFLINE in states(rt, "rack-a"), 60, "rack-a offline", task=task)
        attempts = failed_connects(port)
        await await_for(lambda: failed_connects(port) > attempts, 60, "a connect on the missing port", task=task)
        n = len(of(rt, "rack-a"))
        replugged = ModbusSimulator.from_profile(profile, [1])
        plug(port, await replugged.start_serial())  # plugged in again
        await await_for(lambda: good(rt, "rack-a", n) >= 3, 60, "rack-a read again", task=task)
        assert not task.done()
    finally:
        rt.request_stop("test")
        code = await asyncio.wait_for(task, 60)
        await sim.stop()
        if replugged is not None:
            await replugged.stop()
    return code


async def test_a_missing_serial_port_is_one_log_line_naming_the_port_and_the_drop_in(tmp_path: Path) -> None:
    """A port that is not there at start (unplugged, or hidden by the systemd unit's PrivateDevices=yes)."""
    port = tmp_path / "ttyUSB7"
    rt = Runtime(load_config(site(tmp_path, rtu_source("rack-a", port) + "  reconnect_initial: 0.05\n")))

    with structlog.testing.capture_logs() as logs:
        await run_until(rt, lambda: failed_connects(port) >= 3 and DeviceState.OFFLINE in states(rt, "rack-a"))
    lines = [e for e in logs if e["event"] == "modbus endpoint unreachable"]
    assert len(lines) == 1, lines
    assert lines[0]["reason"] == (
        f"serial port {port} does not exist (adapter unplugged? under systemd the unit needs the drop-in "
        "systemd/serial-port.conf.example)"
    )
    assert (ROOT / "systemd" / "serial-port.conf.example").exists()


class RawDevice:
    """A device on the far end of a pty that answers each read with zeros, framed by hand: the n-th
    request's answer is damaged (a wrong CRC), preceded by line noise, sent as from unit 9, or clean,
    in a turn of 7 (a prime: each block of a cycle of fewer reads meets every kind in turn)."""

    MODES = ("bad_crc", "good", "noise", "good", "other_unit", "good", "good")

    def __init__(self) -> None:
        self.pty = open_pty()
        self.buffer = b""
        self.answered = dict.fromkeys(set(self.MODES), 0)
        self.n = 0
        asyncio.get_running_loop().add_reader(self.pty.master, self._read)

    def _read(self) -> None:
        try:
            self.buffer += os.read(self.pty.master, 4096)
        except BlockingIOError:
            return
        while len(self.buffer) >= 8:  # a read request: unit, function, address, count, CRC
            request, self.buffer = self.buffer[:8], self.buffer[8:]
            unit, fc, count = request[0], request[1], int.from_bytes(request[4:6], "big")
            size = (count + 7) // 8 if fc in (1, 2) else 2 * count
            mode = self.MODES[self.n % len(self.MODES)]
            self.n += 1
            body = bytes([9 if mode == "other_unit" else unit, fc, size]) + bytes(size)
            crc = FramerRTU.compute_CRC(body).to_bytes(2, "big")
            if mode == "bad_crc":
                crc = bytes([crc[0] ^ 0xFF, crc[1]])
            noise = b"\xff\x00\x13\x37\xaa" if mode == "noise" else b""
            os.write(self.pty.master, noise + body + crc)
            self.answered[mode] += 1

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.pty.master)
        self.pty.close()


async def test_damaged_noisy_and_misaddressed_answers_on_a_serial_line_are_counted_never_a_crash(
    tmp_path: Path,
) -> None:
    dev = RawDevice()
    rt = Runtime(load_config(site(tmp_path, rtu_source("rack-raw", dev.pty.name))))

    def enough() -> bool:
        return min(dev.answered.values()) >= 5 and good(rt, "rack-raw") >= 3

    try:
        await run_until(rt, enough)
    finally:
        dev.close()

    def errors(kind: str) -> float:
        return REGISTRY.get_sample_value("bms_gateway_modbus_errors_total", {"device": "rack-raw", "kind": kind}) or 0

    assert errors("bad_crc") >= 5
    assert errors("wrong_unit_id") >= 5
    discarded = REGISTRY.get_sample_value("bms_gateway_modbus_discarded_bytes_total", {"endpoint": dev.pty.name})
    assert (discarded or 0) >= 5 * 5  # the noise before the answers, skipped and counted
    assert DeviceState.OFFLINE not in states(rt, "rack-raw")  # the device answers: never comm_loss
