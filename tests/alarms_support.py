"""Helpers for the alarm tests: rule specs from dicts, scripted sample series, event extraction."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from gateway.alarms.engine import AlarmEngine
from gateway.alarms.ruleset import RULE
from gateway.model import Batch, BatchKind, Quality, Sample

S = 1_000_000_000  # ns per second
RACK = "rack-01"


def rule(**fields: Any) -> Any:
    fields.setdefault("id", "r")
    return RULE.validate_python(fields)


def engine(*rules: Any, racks: Sequence[str] = (RACK,), condition_interval: float = 0) -> AlarmEngine:
    return AlarmEngine(rules, {r: r for r in racks}, condition_interval=int(condition_interval * S))


def sample(
    t: float,
    quantity: str,
    value: Any,
    *,
    rack: str = RACK,
    module: int | None = None,
    cell: int | None = None,
    quality: str = Quality.GOOD,
    unit: str = "",
) -> Sample:
    return Sample(int(t * S), quantity, value, unit, quality, rack, module, cell)


def batch(*samples: Sample, device: str = RACK) -> Batch:
    return Batch.of_samples(device, list(samples), device=device, created=samples[0].ts if samples else 0)


def events(batches: Iterable[Batch]) -> list[dict[str, Any]]:
    return [r for b in batches if b.kind == BatchKind.ALARM for r in b.records if r["type"] == "event"]


def states(batches: Iterable[Batch]) -> list[tuple[str, str]]:
    return [(e["previous"], e["state"]) for e in events(batches)]


def run_series(eng: AlarmEngine, quantity: str, series: Sequence[tuple[float, Any]], **tags: Any) -> list[Any]:
    """Feed (t seconds, value) pairs one batch each; return per step the state transitions it made."""
    out: list[Any] = []
    for t, v in series:
        out.append(states(eng.process([batch(sample(t, quantity, v, **tags))])))
    return out


def transitions(eng: AlarmEngine, quantity: str, series: Sequence[tuple[float, Any]], **tags: Any) -> list[str]:
    """The new states, in order, over a series: the compact form of a rule table."""
    return [new for step in run_series(eng, quantity, series, **tags) for (_, new) in step]


# -- MQTT: a subscriber that records what arrives, and a command publisher ----------------------------------


class Subscriber:
    """Subscribes to a topic filter on a real broker in a task; keeps (topic, payload as JSON or text, retained)."""

    def __init__(self, port: int, topic: str, client_id: str = "alarm-test") -> None:
        self.port, self.topic, self.client_id = port, topic, client_id
        self.messages: list[tuple[str, Any, bool]] = []
        self._task: Any = None
        self._ready: Any = None

    async def __aenter__(self) -> Subscriber:
        import asyncio

        self._ready = asyncio.Event()
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self._ready.wait(), 30)
        return self

    async def _run(self) -> None:
        import asyncio
        import json

        import aiomqtt

        while True:  # a persistent session: reconnects after a broker restart without losing QoS 1 messages
            try:
                async with aiomqtt.Client(
                    "127.0.0.1", self.port, identifier=self.client_id, clean_session=False
                ) as client:
                    await client.subscribe(self.topic, qos=1)
                    self._ready.set()
                    async for msg in client.messages:
                        payload = msg.payload
                        raw = bytes(payload) if isinstance(payload, bytes | bytearray) else str(payload).encode()
                        try:
                            doc: Any = json.loads(raw)
                        except ValueError:
                            doc = raw.decode(errors="replace")
                        self.messages.append((str(msg.topic), doc, bool(msg.retain)))
            except aiomqtt.MqttError:
                await asyncio.sleep(0.2)

    async def __aexit__(self, *exc: object) -> None:
        import asyncio
        import contextlib

        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    def payloads(self, topic: str) -> list[Any]:
        return [p for t, p, _ in self.messages if t == topic]

    def events(self, topic: str, alarm_id: str) -> list[str]:
        return [p["state"] for p in self.payloads(topic) if isinstance(p, dict) and p.get("alarm_id") == alarm_id]


async def publish(port: int, topic: str, doc: dict[str, Any], attempts: int = 150) -> None:
    """Publish one JSON message with QoS 1 (retrying the connection while a broker restarts)."""
    import asyncio
    import json

    import aiomqtt

    for attempt in range(attempts):
        try:
            async with aiomqtt.Client("127.0.0.1", port, identifier="alarm-test-operator") as client:
                await client.publish(topic, json.dumps(doc), qos=1)
            return
        except aiomqtt.MqttError:
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(0.2)


# -- signed commands: an operator's key and a command signed with it ------------------------------------------


def operator_key(directory: Any, name: str = "alice", kind: str = "ed25519") -> Operator:
    """An operator's key file as `alarms keygen` writes it, loaded for signing (`.public` is the base64 key)."""
    from gateway.alarms.signing import generate, load_signing_key, write_private

    new = generate(kind)  # type: ignore[arg-type]
    path = directory / f"{name}.key"
    write_private(path, new.private)
    return Operator(load_signing_key(path), new.public, path)


class Operator:
    def __init__(self, key: Any, public: str | None, path: Any) -> None:
        self.key, self.public, self.path, self.key_id = key, public, path, key.key_id

    def sign(self, user: str, site: str, rack: str, ts: int | None = None, **fields: Any) -> dict[str, Any]:
        """A command of `user` for `rack`, signed now (or at `ts`) with a fresh nonce."""
        import secrets
        import time

        doc = {"user": user, "site": site, "rack": rack, "ts": int(time.time()) if ts is None else ts,
               "nonce": secrets.token_urlsafe(18), **fields}  # fmt: skip
        signed: dict[str, Any] = self.key.sign(doc)
        return signed
