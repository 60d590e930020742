"""What the edge node accepts from the broker: an NCMD `Node Control/Rebirth = true`, and nothing else.

Every message a host sends is bounded before it is read: at most `commands_per_minute` are looked at
(a token bucket), a payload over `command_max_bytes` is not parsed, and a payload that is not a
Sparkplug payload, a DCMD, or an NCMD with any other metric is ignored. A command changes no state but
the birth sequence (a rebirth: NBIRTH and every DBIRTH again). Each message is counted in
`bms_gateway_sparkplug_commands_total{sink,result}`; the first of each result in a connection is logged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import aiomqtt
from prometheus_client import Counter

from gateway.metrics import REGISTRY
from gateway.sinks.sparkplug.node import REBIRTH, REBIRTH_ALIAS
from gateway.sinks.sparkplug.payload import read_commands

commands = Counter(
    "bms_gateway_sparkplug_commands",
    "Messages a Sparkplug sink received, by result (rebirth, ignored, too_large, rate_limited, malformed)",
    ["sink", "result"],
    registry=REGISTRY,
)
births = Counter(
    "bms_gateway_sparkplug_births",
    "Birth messages a Sparkplug sink had acknowledged (kind NBIRTH or DBIRTH)",
    ["sink", "kind"],
    registry=REGISTRY,
)

REBIRTH_RESULT = "rebirth"


@dataclass(frozen=True, slots=True)
class Verdict:
    result: str  # rebirth, ignored, too_large, rate_limited, malformed
    detail: str = ""

    @property
    def rebirth(self) -> bool:
        return self.result == REBIRTH_RESULT


class CommandGate:
    """Judges each inbound message (pure but for the clock it is given)."""

    def __init__(self, ncmd_topic: str, max_bytes: int, per_minute: int) -> None:
        self.ncmd_topic = ncmd_topic
        self.max_bytes = max_bytes
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0  # tokens a second
        self.tokens = self.capacity
        self.at: float | None = None

    def _take(self, now: float) -> bool:
        if self.at is not None:
            self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True

    def judge(self, topic: str, payload: bytes, now: float) -> Verdict:
        if not self._take(now):
            return Verdict("rate_limited")
        if topic != self.ncmd_topic:
            return Verdict("ignored", "not an NCMD of this node")
        if len(payload) > self.max_bytes:
            return Verdict("too_large", f"{len(payload)} bytes, over {self.max_bytes}")
        try:
            metrics = read_commands(payload)
        except ValueError as exc:
            return Verdict("malformed", str(exc))
        for m in metrics:
            if (m.name == REBIRTH or (m.name is None and m.alias == REBIRTH_ALIAS)) and m.boolean:
                return Verdict(REBIRTH_RESULT)
        names = ", ".join(str(m.name if m.name is not None else m.alias) for m in metrics[:5])
        return Verdict("ignored", f"no {REBIRTH} = true among the metrics ({names or 'none'})")


def payload_bytes(message: aiomqtt.Message) -> bytes:
    p = message.payload
    if isinstance(p, bytes | bytearray):
        return bytes(p)
    return b"" if p is None else str(p).encode()


def handing_queue(handle: Callable[[aiomqtt.Message], None]) -> type[asyncio.Queue[aiomqtt.Message]]:
    """A queue class for aiomqtt's `queue_type` that hands each message to `handle` at once and keeps none."""

    class HandingQueue(asyncio.Queue[aiomqtt.Message]):
        def put_nowait(self, item: aiomqtt.Message) -> None:
            handle(item)

    return HandingQueue
