"""python-can `udp_multicast` pinned to loopback.

UdpMulticastBus (python-can 4.6) binds to the port on every interface, joins its group on
INADDR_ANY (the kernel picks the default-route interface) and sends out of the default-route
interface: bench traffic would leave the machine on eth0. `pin_to_loopback(bus)` re-points the
bus's socket: multicast out of 127.0.0.1, membership on 127.0.0.1 only. `loopback_socket()` is the
same for the sender, which writes pre-packed datagrams without a Bus.
"""

from __future__ import annotations

import socket
import struct
import time
from typing import Any

import can

GROUP = "239.74.163.2"  # python-can's default IPv4 group; a port per run keeps runs apart
LOOPBACK = "127.0.0.1"


def _pin(sock: socket.socket, group: str, *, joined_any: bool) -> None:
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(LOOPBACK))
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
    if joined_any:
        any_req = socket.inet_aton(group) + struct.pack("@I", socket.INADDR_ANY)
        try:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_DROP_MEMBERSHIP, any_req)
        except OSError:
            pass
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, socket.inet_aton(group) + socket.inet_aton(LOOPBACK))


def pin_to_loopback(bus: can.BusABC, group: str = GROUP) -> can.BusABC:
    """Make an IPv4 UdpMulticastBus send and receive on 127.0.0.1 only."""
    sock = bus._multicast._socket
    _pin(sock, group, joined_any=True)
    return bus


def loopback_bus(port: int, group: str = GROUP, fd: bool = False) -> can.BusABC:
    bus = can.Bus(interface="udp_multicast", channel=group, port=port, fd=fd)
    return pin_to_loopback(bus, group)


def loopback_socket(group: str = GROUP, rcvbuf: int | None = None) -> socket.socket:
    """A UDP socket that sends to the group on loopback."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(LOOPBACK))
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    return sock


async def drain_rate(reader: Any, port: int, datagrams: list[bytes], count: int, chunk: int = 2_000) -> float:
    """Frames per CPU second of a started `BusReader`: chunks of datagrams are sent to it first (not
    timed), then drained (timed with the process's CPU clock). Lost datagrams are printed."""
    tx = loopback_socket(GROUP)
    got = i = 0
    cpu = 0.0
    try:
        while got < count:
            for _ in range(chunk):
                tx.sendto(datagrams[i % len(datagrams)], (GROUP, port))
                i += 1
            t0 = time.process_time()
            n = 0
            while n < chunk:
                frames = await reader.batch(0.0, chunk - n, 0.5)
                if not frames:
                    break
                n += len(frames)
            cpu += time.process_time() - t0
            if n < chunk:
                print(f"  udp: {chunk - n} of {chunk} frames lost (dropped {reader.dropped})")
            got += n
    finally:
        tx.close()
    return got / cpu
