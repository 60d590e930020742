"""The MQTT sink's incoming queue keeps nothing: each message is counted, the first of a connection logged."""

from __future__ import annotations

import aiomqtt
import structlog

from gateway.sinks.config import MqttSinkConfig
from gateway.sinks.mqtt.inbound import discarding_queue, unsolicited

EVENT = "mqtt sink receives messages it never subscribed to: discarded and counted"


def message(topic: str) -> aiomqtt.Message:
    return aiomqtt.Message(topic, b"x" * 1000, 0, False, 1, None)


def test_every_message_is_counted_and_none_is_kept() -> None:
    before = unsolicited.labels("inbound-test")._value.get()
    queue = discarding_queue("inbound-test", "bms-gateway-s-inbound-test", persistent=False)(maxsize=0)
    with structlog.testing.capture_logs() as logs:
        for i in range(10_000):
            queue.put_nowait(message(f"flood/\x1b[31m{i}"))
    assert queue.qsize() == 0 and queue.empty()
    assert unsolicited.labels("inbound-test")._value.get() - before == 10_000
    warned = [e for e in logs if e["event"] == EVENT]
    assert len(warned) == 1  # the first of this connection only
    assert warned[0]["topic"] == "flood/\\x1b[31m0" and warned[0]["client_id"] == "bms-gateway-s-inbound-test"


def test_each_connection_logs_its_first_and_a_persistent_session_is_named_as_the_cause() -> None:
    with structlog.testing.capture_logs() as logs:
        for _ in range(2):  # two connections, each with its own queue
            queue = discarding_queue("inbound-test", "id", persistent=True)(maxsize=0)
            queue.put_nowait(message("a"))
            queue.put_nowait(message("b"))
    warned = [e for e in logs if e["event"] == EVENT]
    assert len(warned) == 2
    assert "clean_session: true" in warned[0]["cause"]


def test_the_sink_connects_with_a_clean_session_by_default() -> None:
    assert MqttSinkConfig(host="broker.example").clean_session is True
