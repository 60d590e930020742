"""MQTT 3.1.1 spoken by hand, for tests that flood a client: a fake broker that pushes PUBLISH packets at
whoever connects, a raw publisher, and a CONNECT that reads the broker's session-present flag."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
import time
from pathlib import Path

from tests.servers import free_port


def _length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _text(s: str) -> bytes:
    raw = s.encode()
    return struct.pack(">H", len(raw)) + raw


def connect_packet(client_id: str, clean: bool = True, keepalive: int = 60) -> bytes:
    body = _text("MQTT") + bytes([4, 0x02 if clean else 0x00]) + struct.pack(">H", keepalive) + _text(client_id)
    return b"\x10" + _length(len(body)) + body


def publish_packet(topic: str, payload: bytes, qos: int = 0, packet_id: int = 1) -> bytes:
    body = _text(topic) + (struct.pack(">H", packet_id) if qos else b"") + payload
    return bytes([0x30 | (qos << 1)]) + _length(len(body)) + body


def subscribe_packet(topic: str, qos: int = 1, packet_id: int = 1) -> bytes:
    body = struct.pack(">H", packet_id) + _text(topic) + bytes([qos])
    return b"\x82" + _length(len(body)) + body


def _read_packet(sock: socket.socket) -> tuple[int, bytes]:
    first = _recv_exactly(sock, 1)[0]
    n, shift = 0, 0
    while True:
        byte = _recv_exactly(sock, 1)[0]
        n |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    return first, _recv_exactly(sock, n)


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("the broker closed the connection")
        data += chunk
    return data


def session_present(port: int, client_id: str, clean: bool = False) -> bool:
    """CONNECT with this client id; the CONNACK's session-present flag (then a clean DISCONNECT)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(connect_packet(client_id, clean=clean))
        first, body = _read_packet(sock)
        assert first >> 4 == 2 and body[1] == 0, f"CONNACK refused: {body!r}"
        sock.sendall(b"\xe0\x00")
        return bool(body[0] & 1)


def subscribe_and_leave(port: int, client_id: str, topic: str = "#") -> None:
    """A client with a persistent session (clean session false) subscribes `topic` and disconnects:
    the broker keeps the subscription under `client_id`."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(connect_packet(client_id, clean=False))
        first, _ = _read_packet(sock)
        assert first >> 4 == 2
        sock.sendall(subscribe_packet(topic, qos=1))
        first, _ = _read_packet(sock)
        assert first >> 4 == 9, "no SUBACK"
        sock.sendall(b"\xe0\x00")


class Publisher:
    """Publishes `payload_size`-byte messages to `topic` on a broker, `rate` per second or as fast as it takes
    them, from a thread (QoS 1 when asked: its PUBACKs are read and dropped by a second thread)."""

    def __init__(
        self, port: int, topic: str = "flood/x", payload_size: int = 4096, qos: int = 0, rate: float | None = None
    ) -> None:
        self.port, self.topic, self.qos, self.rate = port, topic, qos, rate
        self.payload = bytes(range(256)) * (payload_size // 256)
        self.sent = 0
        self._stop = threading.Event()
        self._running = threading.Event()  # cleared by pause(), set by resume()
        self._running.set()
        self._threads: list[threading.Thread] = []
        self._sock: socket.socket | None = None

    def start(self) -> Publisher:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        sock.sendall(connect_packet("flood-publisher", clean=True, keepalive=0))
        first, _ = _read_packet(sock)
        assert first >> 4 == 2
        self._sock = sock
        self._threads = [threading.Thread(target=self._send, daemon=True)]
        if self.qos:
            self._threads.append(threading.Thread(target=self._drain, daemon=True))
        for t in self._threads:
            t.start()
        return self

    def pause(self) -> None:
        """Stop publishing (after the chunk under way) until `resume()`."""
        self._running.clear()

    def resume(self) -> None:
        """Publish again, at the rate from now on (no burst for the time paused)."""
        self._running.set()

    def _send(self) -> None:
        assert self._sock is not None
        pid = 0
        started, base = time.monotonic(), 0
        with contextlib.suppress(OSError):
            while not self._stop.is_set():
                if not self._running.is_set():
                    while not self._running.wait(0.05):
                        if self._stop.is_set():
                            return
                    started, base = time.monotonic(), self.sent
                chunk = []
                for _ in range(32):
                    pid = pid % 65535 + 1
                    chunk.append(publish_packet(self.topic, self.payload, self.qos, pid))
                self._sock.sendall(b"".join(chunk))
                self.sent += 32
                if self.rate is not None:  # pace: the next chunk when the rate allows it
                    self._stop.wait(max(0.0, started + (self.sent - base) / self.rate - time.monotonic()))

    def _drain(self) -> None:
        assert self._sock is not None
        with contextlib.suppress(OSError):
            while not self._stop.is_set() and self._sock.recv(65536):
                pass

    def stop(self) -> None:
        self._stop.set()
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
        for t in self._threads:
            t.join(10)


class FloodingBroker:
    """Just enough of an MQTT 3.1.1 broker for a publishing client (CONNACK, PUBACK, SUBACK, UNSUBACK,
    PINGRESP), which after each CONNACK pushes QoS 0 PUBLISH packets nobody subscribed to at the client,
    as fast as the connection takes them. Runs its own event loop in a thread."""

    def __init__(self, payload_size: int = 16384, topic: str = "flood/x") -> None:
        self.port = free_port()
        self.flood = publish_packet(topic, b"x" * payload_size) * 16
        self.connects = 0
        self.flood_bytes = 0
        self.published: dict[str, int] = {}  # topic -> PUBLISH packets the client sent
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self) -> FloodingBroker:
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(asyncio.start_server(self._handle, "127.0.0.1", self.port), self._loop)
        self._server = fut.result(30)
        return self

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for t in list(self._tasks):
                t.cancel()
            await asyncio.sleep(0)

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)

    def delivered(self, prefix: str) -> int:
        return sum(n for topic, n in list(self.published.items()) if topic.startswith(prefix))

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        flood: asyncio.Task[None] | None = None
        try:
            while True:
                first = (await reader.readexactly(1))[0]
                n, shift = 0, 0
                while True:
                    byte = (await reader.readexactly(1))[0]
                    n |= (byte & 0x7F) << shift
                    shift += 7
                    if not byte & 0x80:
                        break
                body = await reader.readexactly(n)
                kind = first >> 4
                if kind == 1:  # CONNECT
                    writer.write(b"\x20\x02\x00\x00")
                    self.connects += 1
                    flood = asyncio.ensure_future(self._flood(writer))
                elif kind == 3:  # PUBLISH
                    (tl,) = struct.unpack(">H", body[:2])
                    topic = body[2 : 2 + tl].decode()
                    self.published[topic] = self.published.get(topic, 0) + 1
                    if (first >> 1) & 3:
                        writer.write(b"\x40\x02" + body[2 + tl : 4 + tl])
                elif kind == 8:  # SUBSCRIBE: every filter granted QoS 0
                    writer.write(b"\x90\x03" + body[:2] + b"\x00")
                elif kind == 10:  # UNSUBSCRIBE
                    writer.write(b"\xb0\x02" + body[:2])
                elif kind == 12:  # PINGREQ
                    writer.write(b"\xd0\x00")
                elif kind == 14:  # DISCONNECT
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            if flood is not None:
                flood.cancel()
            writer.close()
            self._tasks.discard(task)

    async def _flood(self, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while not writer.is_closing():
                writer.write(self.flood)
                await writer.drain()
                self.flood_bytes += len(self.flood)


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")
