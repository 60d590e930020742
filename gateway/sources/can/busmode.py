"""How a CAN bus is opened: python-can's arguments, listen-only where the interface can do it (pure).

A listen-only controller never drives the bus: it sends no acknowledge bit, no error frame, no frame
at all, so a gateway with a fault (or a bug) cannot disturb the BMS. The gateway only receives, so a
`can` source asks for it by default (`listen_only: true`). Each python-can interface spells it in its
own way, and some cannot do it:

- pcan, systec: `state=BusState.PASSIVE`; kvaser: `driver_mode=False` (silent); vector, slcan, nixnet:
  `listen_only=True`; cantact: `monitor=True`; seeedstudio: `operation_mode="silent"`;
- socketcan: the kernel sets it on the interface, not the socket
  (`ip link set can0 type can bitrate 500000 listen-only on`, or networkd's `ListenOnly=yes`);
- virtual and udp_multicast are software buses: nothing to acknowledge, nothing to set;
- every other interface (gs_usb, ixxat, neovi, usb2can, ...) cannot be opened listen-only through python-can.

A source with `listen_only: true` on an interface that cannot do it says so once at start
(`listen_only_note`); a sender (`can replay`) opens with `listen_only=False`.
"""

from __future__ import annotations

from typing import Any

import can

# interface -> python-can keyword arguments that open it listen-only
LISTEN_ONLY_ARGS: dict[str, dict[str, Any]] = {
    "pcan": {"state": can.BusState.PASSIVE},
    "systec": {"state": can.BusState.PASSIVE},
    "kvaser": {"driver_mode": False},  # python-can's DRIVER_MODE_SILENT
    "vector": {"listen_only": True},
    "slcan": {"listen_only": True},
    "nixnet": {"listen_only": True},
    "cantact": {"monitor": True},
    "seeedstudio": {"operation_mode": "silent"},
}
SOFTWARE_BUSES = frozenset({"virtual", "udp_multicast"})
SET_ON_THE_INTERFACE = frozenset({"socketcan"})


def bus_kwargs(
    interface: str,
    channel: str,
    *,
    bitrate: int | None = None,
    fd: bool = False,
    port: int | None = None,
    filters: list[dict[str, Any]] | None = None,
    listen_only: bool = False,
) -> dict[str, Any]:
    """The keyword arguments of `can.Bus` for this bus: receive_own_messages off, listen-only when asked
    and the interface can do it, CAN FD always on udp_multicast (else python-can drops FD frames silently)."""
    kwargs: dict[str, Any] = {"interface": interface, "channel": channel}
    if interface != "udp_multicast":
        kwargs["receive_own_messages"] = False
    if bitrate is not None:
        kwargs["bitrate"] = bitrate
    if fd or interface == "udp_multicast":
        kwargs["fd"] = True
    if port is not None:
        kwargs["port"] = port
    if filters:
        kwargs["can_filters"] = filters
    if listen_only:
        kwargs.update(LISTEN_ONLY_ARGS.get(interface, {}))
    return kwargs


def listen_only_note(interface: str, channel: str) -> str | None:
    """What a source asking for listen-only on this interface should be told at start, or None when
    the gateway sets it (or there is nothing to set)."""
    if interface in LISTEN_ONLY_ARGS or interface in SOFTWARE_BUSES:
        return None
    if interface in SET_ON_THE_INTERFACE:
        return (
            f"socketcan sets listen-only on the interface, not here: `ip link set {channel} type can bitrate "
            f"<bitrate> listen-only on` (networkd: ListenOnly=yes); without it this node acknowledges frames"
        )
    return (
        f"python-can cannot open {interface} listen-only: this node acknowledges frames on the bus "
        "(set listen_only: false to say that is intended)"
    )
