"""Reading a python-can bus without blocking the event loop, in batches, with a bounded buffer.

Buses with a file descriptor (socketcan, udp_multicast) are watched by the event loop itself
(`loop.add_reader`): no thread. Buses without one (virtual, pcan, kvaser, ...) get one thread that
blocks in `bus.recv(timeout)` and wakes the loop once per burst, not once per frame.

Frames are handed on as `Frame` tuples (what the source reads of a `can.Message`): cheap to make,
and left alone by the garbage collector, which matters with a deep buffer.

The buffer is bounded: when the pipeline cannot keep up, frames beyond `max_buffer` are dropped and
counted (`dropped`), never silently. A receive error is kept in `error` and ends the next `batch()`.
"""

from __future__ import annotations

import asyncio
import math
import re
import socket
import struct
import threading
import time
from collections import deque
from typing import Any, NamedTuple

import can
import msgpack  # type: ignore[import-untyped]

from gateway.sources.can.busmode import bus_kwargs

# python-can's `pack_message` of a classic data frame (no channel): a msgpack map in this key order.
# Groups: the arbitration id's encoding, is_extended_id, dlc, data (its length byte is the dlc's).
_PACKED = re.compile(
    rb"\x8b\xa9timestamp\xcb.{8}"
    rb"\xaearbitration_id([\x00-\x7f]|\xcc.|\xcd..|\xce....)"
    rb"\xaeis_extended_id([\xc2\xc3])\xafis_remote_frame\xc2\xaeis_error_frame\xc2\xa7channel\xc0"
    rb"\xa3dlc([\x00-\x08])\xa4data\xc4\3(.{0,8})"
    rb"\xa5is_fd\xc2\xaebitrate_switch\xc2\xb5error_state_indicator\xc2",
    re.DOTALL,
)
_packed = _PACKED.fullmatch
FILTER_CACHE_MAX = 4096  # frame ids whose software-filter verdict is remembered (udp_multicast)
_PACKED_KEYS = 11  # keys of python-can's udp_multicast datagram (`pack_message`)


class Frame(NamedTuple):
    """A received CAN frame: the fields of a `can.Message` the gateway reads, as a plain tuple."""

    arbitration_id: int
    is_extended_id: bool
    is_error_frame: bool
    is_remote_frame: bool
    data: bytes
    dlc: int
    is_fd: bool
    timestamp: float


_new = tuple.__new__


def from_message(msg: can.Message) -> Frame:
    return _new(
        Frame,
        (
            msg.arbitration_id,
            msg.is_extended_id,
            msg.is_error_frame,
            msg.is_remote_frame,
            bytes(msg.data),
            msg.dlc,
            msg.is_fd,
            msg.timestamp,
        ),
    )


class BusReader:
    def __init__(self, bus: can.BusABC, max_buffer: int = 200_000, *, fast_udp: bool = True) -> None:
        self.bus = bus
        self.fast_udp = fast_udp  # drain udp_multicast sockets directly (False: through bus.recv)
        self.max_buffer = max_buffer
        self.buffer: deque[Frame] = deque()
        self.dropped = 0  # frames lost to a full buffer, ever (written by the receiving side only)
        self.reported_dropped = 0  # of those, already counted in the metrics (consumer side)
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event = asyncio.Event()
        self._fd = -1
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()
        self._wake_pending = False
        self._udp: socket.socket | None = None
        self._filter_cache: dict[int, bool] = {}  # id << 1 | extended -> passes the bus's software filters

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        try:
            self._fd = self.bus.fileno()
        except (NotImplementedError, AttributeError):
            self._fd = -1
        if self._fd >= 0:
            udp = _udp_socket(self.bus) if self.fast_udp else None
            if udp is not None:
                self._udp = udp
                self._loop.add_reader(self._fd, self._on_udp_readable)
            else:
                self._loop.add_reader(self._fd, self._on_readable)
        else:
            self._thread = threading.Thread(target=self._rx_thread, name=f"can-rx:{self.bus.channel_info}", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._fd >= 0 and self._loop is not None:
            self._loop.remove_reader(self._fd)
            self._fd = -1
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None

    # -- producers ------------------------------------------------------------------------------

    def _put(self, msg: can.Message) -> None:
        if len(self.buffer) >= self.max_buffer:
            self.dropped += 1
        else:
            self.buffer.append(from_message(msg))

    def _on_readable(self) -> None:
        try:
            for _ in range(10_000):  # drain what the kernel holds, without starving the loop
                msg = self.bus.recv(0)
                if msg is None:
                    break
                self._put(msg)
        except Exception as exc:  # a bus error: the source reopens the bus
            self._fail(exc)
        self._event.set()

    def _on_udp_readable(self) -> None:
        """udp_multicast without python-can's per-frame select and layers: what `bus.recv(0)` does, inlined.

        Same frames, validation (a frame `can.Message(check=True)` would refuse fails the bus the same
        way), software filters and FD handling as python-can 4.6. A datagram exactly as python-can packs
        a valid classic frame is read by one pattern match (`frame_of`); any other goes through
        msgpack and `can.Message` as python-can takes it. The frames' `timestamp` is the time this
        drain began (the gateway stamps samples when it decodes them; the kernel's per-datagram time
        would cost a `recvmsg` per frame).
        """
        sock = self._udp
        assert sock is not None
        bus: Any = self.bus
        bufsize = bus._multicast.max_buffer
        recv = sock.recv
        filtered = bool(bus._filters)
        passes = self._filter_cache
        no_fd = bus._can_protocol is not can.CanProtocol.CAN_FD
        buffer = self.buffer
        append = buffer.append
        max_buffer = self.max_buffer
        dontwait = socket.MSG_DONTWAIT
        timestamp = time.time()
        try:
            for _ in range(10_000):  # drain what the kernel holds, without starving the loop
                try:
                    raw = recv(bufsize, dontwait)
                except (BlockingIOError, InterruptedError):
                    break
                frame = frame_of(raw, timestamp)
                if no_fd and frame[6]:
                    continue
                if filtered:
                    aid = frame[0]
                    fkey = aid << 1 | 1 if frame[1] else aid << 1
                    ok = passes.get(fkey)
                    if ok is None:
                        ok = bool(bus._matches_filters(frame))
                        if len(passes) < FILTER_CACHE_MAX:
                            passes[fkey] = ok
                    if not ok:
                        continue
                if len(buffer) >= max_buffer:
                    self.dropped += 1
                else:
                    append(frame)
        except Exception as exc:  # a bus error: the source reopens the bus
            self._fail(exc)
        self._event.set()

    def _rx_thread(self) -> None:
        loop = self._loop
        assert loop is not None
        while not self._stopped.is_set():
            try:
                msg = self.bus.recv(0.2)
            except Exception as exc:
                loop.call_soon_threadsafe(self._fail, exc)
                return
            if msg is None:
                continue
            self._put(msg)
            if not self._wake_pending:
                self._wake_pending = True
                try:
                    loop.call_soon_threadsafe(self._wake)
                except RuntimeError:  # the loop is closed: we are shutting down
                    return

    def _wake(self) -> None:
        self._wake_pending = False
        self._event.set()

    def _fail(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
        if self._fd >= 0 and self._loop is not None:
            self._loop.remove_reader(self._fd)
            self._fd = -1
        self._event.set()

    # -- consumer -------------------------------------------------------------------------------

    async def batch(self, window: float, max_frames: int, timeout: float) -> list[Frame]:
        """Frames of one window: waits up to `timeout` for the first, then `window` for more.

        Returns [] on timeout; raises the bus error once the buffer is empty.
        """
        loop = asyncio.get_running_loop()
        if not self.buffer and self.error is None:
            self._event.clear()
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
                # arrives as the event is set, and the source would then outlive the shutdown.
                async with asyncio.timeout(timeout):
                    await self._event.wait()
            except TimeoutError:
                return []
        if not self.buffer and self.error is not None:
            raise self.error
        deadline = loop.time() + window
        while len(self.buffer) < max_frames and self.error is None:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            self._event.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._event.wait()
            except TimeoutError:
                break
        n = min(max_frames, len(self.buffer))
        pop = self.buffer.popleft
        return [pop() for _ in range(n)]


def _plain_frame(d: dict[str, Any], timestamp: float) -> Frame | None:
    """The common valid classic frame of a datagram python-can packed, or None (take the general path).

    Accepts exactly what `can.Message(check=True, **d)` accepts for such a frame, and gives the same fields.
    """
    if len(d) != _PACKED_KEYS:
        return None
    try:
        aid, ext, data, dlc = d["arbitration_id"], d["is_extended_id"], d["data"], d["dlc"]
        plain = (
            d["is_remote_frame"] is False
            and d["is_error_frame"] is False
            and d["is_fd"] is False
            and d["bitrate_switch"] is False
            and d["error_state_indicator"] is False
            and "channel" in d
            and "timestamp" in d
        )
    except KeyError:
        return None
    if not (
        plain
        and type(aid) is int
        and type(data) is bytes
        and type(dlc) is int
        and dlc == len(data) <= 8
        and (0 <= aid < 0x800 if ext is False else ext is True and 0 <= aid < 0x20000000)
        and 0.0 <= timestamp < math.inf
    ):
        return None
    return _new(Frame, (aid, ext, False, False, data, dlc, False, timestamp))


def frame_of(raw: bytes, timestamp: float) -> Frame:
    """The frame of one udp_multicast datagram as python-can unpacks and checks it (`CanOperationError`
    when it refuses it); the datagram python-can packs for a valid classic frame by one pattern match."""
    m = _packed(raw)
    if m is not None:
        enc, ext_b, dlc_b, data = m.groups()
        aid = enc[0] if enc[0] < 0x80 else int.from_bytes(enc[1:], "big")
        ext = ext_b == b"\xc3"
        if aid < (0x20000000 if ext else 0x800) and len(data) == dlc_b[0]:
            return _new(Frame, (aid, ext, False, False, data, len(data), False, timestamp))
    d = _unpack(raw)
    return (_plain_frame(d, timestamp) if type(d) is dict else None) or _other_frame(d, timestamp)


def _unpack(raw: bytes) -> Any:
    try:
        return msgpack.unpackb(raw, raw=False)
    except Exception as exc:
        raise can.CanOperationError("could not unpack received message") from exc


def _other_frame(d: Any, timestamp: float) -> Frame:
    """Any other datagram, the way python-can unpacks and checks it (`unpack_message(..., check=True)`)."""
    try:
        d["timestamp"] = timestamp
        msg = can.Message(check=True, **d)
    except Exception as exc:
        raise can.CanOperationError("could not unpack received message") from exc
    return from_message(msg)


def _udp_socket(bus: Any) -> socket.socket | None:
    """The socket of a python-can udp_multicast bus we can drain directly, or None (use `bus.recv`)."""
    try:
        from can.interfaces.udp_multicast import UdpMulticastBus
    except ImportError:  # pragma: no cover - msgpack missing
        return None
    if type(bus) is not UdpMulticastBus:
        return None
    mc = getattr(bus, "_multicast", None)
    sock = getattr(mc, "_socket", None)
    if not isinstance(sock, socket.socket):
        return None
    if not hasattr(bus, "_matches_filters") or not hasattr(bus, "_can_protocol"):
        return None
    return sock


def pin_udp_multicast_to_loopback(bus: Any) -> None:
    """Keep a python-can udp_multicast bus on the loopback interface, sending and receiving.

    python-can joins the group on the default-route interface and sends there: frames of a test or
    a replay would leave the machine. This moves both the send interface and the membership to lo.
    """
    mc = bus._multicast
    sock: socket.socket = mc._socket
    if mc.ip_version == 4:
        group = socket.inet_aton(mc.group)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton("127.0.0.1"))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        try:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_DROP_MEMBERSHIP, group + struct.pack("@I", socket.INADDR_ANY))
        except OSError:
            pass  # not joined on a default interface (no default route): nothing to leave
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, group + socket.inet_aton("127.0.0.1"))
    else:
        lo = socket.if_nametoindex("lo")
        group = socket.inet_pton(socket.AF_INET6, mc.group)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, struct.pack("@I", lo))
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 1)
        try:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_LEAVE_GROUP, group + struct.pack("@I", 0))
        except OSError:
            pass
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, group + struct.pack("@I", lo))


def open_bus(
    interface: str,
    channel: str,
    *,
    bitrate: int | None = None,
    fd: bool = False,
    port: int | None = None,
    loopback_only: bool = True,
    filters: list[dict[str, Any]] | None = None,
    listen_only: bool = False,
) -> can.BusABC:
    """A python-can bus (arguments from `gateway.sources.can.busmode.bus_kwargs`: listen-only when asked and the
    interface can do it); udp_multicast pinned to loopback by default."""
    bus = can.Bus(
        **bus_kwargs(interface, channel, bitrate=bitrate, fd=fd, port=port, filters=filters, listen_only=listen_only)
    )
    if interface == "udp_multicast":
        try:
            # a bigger receive buffer rides out bursts while the loop commits (capped by net.core.rmem_max)
            udp: Any = bus  # python-can's UdpMulticastBus keeps its socket in _multicast
            udp._multicast._socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
            if loopback_only:
                pin_udp_multicast_to_loopback(bus)
        except OSError:
            bus.shutdown()
            raise
    return bus
