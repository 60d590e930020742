"""Publishing a list of messages on an aiomqtt client and waiting for every acknowledgement: the MQTT
and Sparkplug sinks' one way to end a write."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import aiomqtt

from gateway.errors import SinkError
from gateway.sinks.mqtt.payloads import Message


async def publish_acked(client: aiomqtt.Client | None, msgs: Sequence[Message], timeout: float) -> None:
    """Publish in order; return when every QoS 1/2 message was acknowledged (PUBACK).

    `timeout` holds for every 100 messages: a large catch-up batch on a slow link still fits. Every
    publish is awaited to its end (no orphaned failures); the first error fails the batch."""
    if client is None:
        raise SinkError("not connected")
    try:
        async with asyncio.timeout(timeout * max(1.0, len(msgs) / 100)):
            results = await asyncio.gather(
                *(client.publish(m.topic, m.payload, qos=m.qos, retain=m.retain) for m in msgs),
                return_exceptions=True,
            )
    except TimeoutError:
        raise SinkError("publish failed: no acknowledgement in time") from None
    for r in results:
        if isinstance(r, aiomqtt.MqttError | OSError):
            raise SinkError(f"publish failed: {r or type(r).__name__}")
        if isinstance(r, BaseException):
            raise r
