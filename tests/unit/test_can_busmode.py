"""Listen-only CAN: the key and its default, the python-can arguments each interface is opened with (checked
against the installed python-can), and what a source on an interface that cannot do it is told."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import can
import pytest
from can.interfaces import BACKENDS

from gateway.config.settings import load_config
from gateway.errors import ConfigError
from gateway.sources.can.busmode import LISTEN_ONLY_ARGS, bus_kwargs, listen_only_note
from gateway.sources.can.config import CanSourceConfig
from tests.can_support import make_site

BASE = {"interface": "pcan", "channel": "PCAN_USBBUS1", "receive_own_messages": False}


@pytest.mark.parametrize(
    ("interface", "extra"),
    [
        ("pcan", {"state": can.BusState.PASSIVE}),
        ("systec", {"state": can.BusState.PASSIVE}),
        ("kvaser", {"driver_mode": False}),
        ("vector", {"listen_only": True}),
        ("slcan", {"listen_only": True}),
        ("nixnet", {"listen_only": True}),
        ("cantact", {"monitor": True}),
        ("seeedstudio", {"operation_mode": "silent"}),
        ("socketcan", {}),  # set on the interface (ip link), not by python-can
        ("gs_usb", {}),  # cannot be opened listen-only through python-can
        ("virtual", {}),
    ],
)
def test_listen_only_arguments_per_interface(interface: str, extra: dict[str, object]) -> None:
    got = bus_kwargs(interface, "ch0", bitrate=500_000, listen_only=True)
    assert got == {"interface": interface, "channel": "ch0", "receive_own_messages": False, "bitrate": 500_000, **extra}
    assert bus_kwargs(interface, "ch0", bitrate=500_000, listen_only=False) == {
        "interface": interface,
        "channel": "ch0",
        "receive_own_messages": False,
        "bitrate": 500_000,
    }


def test_udp_multicast_keeps_fd_on_and_has_no_listen_only_argument() -> None:
    got = bus_kwargs("udp_multicast", "239.74.163.2", port=43113, listen_only=True)
    assert got == {"interface": "udp_multicast", "channel": "239.74.163.2", "fd": True, "port": 43113}


@pytest.mark.parametrize("interface", sorted(LISTEN_ONLY_ARGS))
def test_the_installed_python_can_reads_each_argument(interface: str) -> None:
    """Each argument is a parameter of the interface's bus class, or a key its module reads from **kwargs:
    a python-can that renamed one would otherwise ignore it silently."""
    module_name, class_name = BACKENDS[interface]
    module = importlib.import_module(module_name)
    cls = getattr(module, class_name)
    params = inspect.signature(cls.__init__).parameters
    source = inspect.getsource(inspect.getmodule(cls) or module)
    for name in LISTEN_ONLY_ARGS[interface]:
        assert name in params or f'kwargs.get("{name}"' in source, f"{interface}: {name}"


def test_a_cantact_bus_is_put_in_monitor_mode() -> None:
    """python-can's CANtact bus with its own test double of the device (no hardware): monitor is set."""
    from can.interfaces.cantact import MockInterface

    MockInterface.set_monitor.reset_mock()
    bus = can.Bus(**bus_kwargs("cantact", "0", listen_only=True), _testing=True)
    try:
        MockInterface.set_monitor.assert_called_once_with(0, True)
    finally:
        bus.shutdown()


def test_notes_for_interfaces_the_gateway_cannot_set() -> None:
    socketcan = listen_only_note("socketcan", "can1")
    assert socketcan is not None and "ip link set can1 type can bitrate <bitrate> listen-only on" in socketcan
    assert "ListenOnly=yes" in socketcan
    gs_usb = listen_only_note("gs_usb", "0")
    assert gs_usb is not None and "cannot open gs_usb listen-only" in gs_usb
    assert [listen_only_note(i, "x") for i in ("pcan", "kvaser", "slcan", "virtual", "udp_multicast")] == [None] * 5


def test_listen_only_is_on_by_default_and_can_be_turned_off() -> None:
    assert CanSourceConfig(name="r1", profile="p").listen_only is True
    assert CanSourceConfig(name="r1", profile="p", listen_only=False).listen_only is False


def test_racks_on_one_bus_agree_on_listen_only(tmp_path: Path) -> None:
    cfg = make_site(
        tmp_path,
        "  - {type: can, name: r1, profile: can-example-rack, interface: virtual, channel: t}\n"
        "  - {type: can, name: r2, profile: can-example-rack, interface: virtual, channel: t, id_offset: 0x20, "
        "listen_only: false}\n",
    )
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    assert [str(p) for p in info.value.problems] == [
        f"{cfg}:7:103: listen_only of 'r2' differs from 'r1' on the same bus virtual:t: racks on one bus share "
        "its settings"
    ]
