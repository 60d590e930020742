"""What the MQTT sink's client receives: it subscribes to nothing, so nothing it receives is kept.

A broker may still send the sink PUBLISH packets: a session left under its client id with a
subscription (another client connected with that id, clean session false, and subscribed `#`), or a
broker that pushes messages nobody asked for. aiomqtt puts every incoming message in a queue that
only a reader of `client.messages` empties; unread, that queue took the gateway from 69 MB to over
1 GB in seconds. The sink's client gets `discarding_queue` instead: it keeps no message, counts each
one in `bms_gateway_mqtt_unsolicited_messages_total{sink}`, and logs the first of each connection.
"""

from __future__ import annotations

import asyncio

import aiomqtt
import structlog
from prometheus_client import Counter

from gateway.metrics import REGISTRY
from gateway.textsafe import printable

log = structlog.get_logger("sink.mqtt")

unsolicited = Counter(
    "bms_gateway_mqtt_unsolicited_messages",
    "Messages a broker sent to an MQTT sink that subscribes to nothing (discarded)",
    ["sink"],
    registry=REGISTRY,
)

TOPIC_SHOWN = 200  # characters of the first unsolicited topic in the log line


def discarding_queue(sink: str, client_id: str, persistent: bool) -> type[asyncio.Queue[aiomqtt.Message]]:
    """A queue class for aiomqtt's `queue_type`: every message put is counted and dropped, never stored."""
    counter = unsolicited.labels(sink)
    if persistent:
        cause = (
            "a subscription kept in the persistent session of this client id (clean_session: false); "
            "set clean_session: true to drop it"
        )
    else:
        cause = "the broker sends messages to a client that subscribed to nothing"

    class DiscardingQueue(asyncio.Queue[aiomqtt.Message]):
        _seen = False

        def put_nowait(self, item: aiomqtt.Message) -> None:
            counter.inc()
            if not self._seen:  # one line per connection (each connection has its own queue)
                self._seen = True
                log.warning(
                    "mqtt sink receives messages it never subscribed to: discarded and counted",
                    sink=sink,
                    client_id=client_id,
                    topic=printable(item.topic.value, TOPIC_SHOWN),
                    cause=cause,
                )

    return DiscardingQueue
