"""The MQTT and Sparkplug sinks' one way to connect an aiomqtt client (a refusal told apart from an
outage) and to end a write (every message acknowledged).

A write of several QoS 1 messages waits for a PUBACK each. A broker that keeps Nagle's algorithm on
its sockets (Mosquitto's default, `set_tcp_nodelay false`) holds each PUBACK after the first until the
one before it is acknowledged, and Linux delays that acknowledgement by up to 40 ms when it has
nothing to send: a write of two messages would take 40 ms. So the sinks' sockets ack at once
(`TCP_QUICKACK`, set again after every PUBACK: the kernel leaves quick-ack mode by itself) and send at
once (`TCP_NODELAY`, `SOCKET_OPTIONS`).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Sequence

import aiomqtt

from gateway.errors import SinkError
from gateway.sinks.base import SinkAuthError
from gateway.sinks.mqtt.payloads import Message

SOCKET_OPTIONS = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]  # aiomqtt.Client(socket_options=...)
_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)  # Linux only


def ack_at_once(client: aiomqtt.Client) -> None:
    """Have the kernel acknowledge what the broker sent at once (see the module), where it can."""
    paho = getattr(client, "_client", None)
    sock = paho.socket() if paho is not None else None
    if _QUICKACK is not None and isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)


async def connect_client(client: aiomqtt.Client, where: str) -> contextlib.AsyncExitStack:
    """The client connected, in a stack that disconnects it. A refused user name or password is a
    SinkAuthError (the sink's auth alarm), any other failure a SinkError (retried)."""
    stack = contextlib.AsyncExitStack()
    try:
        await stack.enter_async_context(client)
    except aiomqtt.MqttCodeError as exc:
        await stack.aclose()
        if exc.rc in (4, 5, 134, 135):  # bad user name or password / not authorised
            raise SinkAuthError(f"broker refused the connection: {exc}") from None
        raise SinkError(f"cannot connect to {where}: {exc}") from None
    except (aiomqtt.MqttError, OSError, ssl.SSLError) as exc:
        await stack.aclose()
        raise SinkError(f"cannot connect to {where}: {exc}") from None
    return stack


async def publish_acked(client: aiomqtt.Client | None, msgs: Sequence[Message], timeout: float) -> None:
    """Publish in order; return when every QoS 1/2 message was acknowledged (PUBACK).

    `timeout` holds for every 100 messages: a large catch-up batch on a slow link still fits. Every
    publish is awaited to its end (no orphaned failures); the first error fails the batch."""
    if client is None:
        raise SinkError("not connected")

    async def publish(m: Message) -> None:
        await client.publish(m.topic, m.payload, qos=m.qos, retain=m.retain)
        if m.qos:
            ack_at_once(client)  # the broker's next PUBACK may be waiting for this one's acknowledgement

    try:
        async with asyncio.timeout(timeout * max(1.0, len(msgs) / 100)):
            results = await asyncio.gather(*(publish(m) for m in msgs), return_exceptions=True)
    except TimeoutError:
        raise SinkError("publish failed: no acknowledgement in time") from None
    for r in results:
        if isinstance(r, aiomqtt.MqttError | OSError):
            raise SinkError(f"publish failed: {r or type(r).__name__}")
        if isinstance(r, BaseException):
            raise r
