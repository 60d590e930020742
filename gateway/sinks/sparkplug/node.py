"""The Sparkplug B edge node (pure): what stored rows become as NBIRTH, DBIRTH, DDATA and DDEATH messages.

Topics are `spBv1.0/<group>/<kind>/<edge node>[/<device>]`. The gateway is the edge node; every rack is
a device (its id is the rack tag). A device is born (DBIRTH: every metric it has sent so far, with its
name, alias, datatype and latest value) before its first DDATA, again when a metric new to it appears
or a metric's datatype changes, after every NBIRTH and after a DDEATH (a device going offline). DDATA
carries each stored sample by alias with its own timestamp. `seq` runs 0..255 over the node's messages
from NBIRTH (0) on, wrapping; NDEATH has none. A metric's quality is the property `Quality` (Int32:
500 stale, 0 bad) when it is not good. Alarms are metrics of their rack's device, the gateway's own of
the node (gateway.sinks.sparkplug.alarms): a gateway alarm new to the node is a rebirth (NBIRTH and
every DBIRTH), as the specification asks for a new node metric. A device after its DDEATH sends
nothing until its next sample: its alarm changes meanwhile are kept for that DBIRTH.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from gateway.alarms.gatewayalarm import GATEWAY
from gateway.model import QUALITIES, Batch, BatchKind, DeviceState, Key, Keys, Quality, Value
from gateway.sinks.columns import PlanCache
from gateway.sinks.mqtt.payloads import Message, state_key
from gateway.sinks.sparkplug import alarms
from gateway.sinks.sparkplug.payload import BOOLEAN, DOUBLE, INT64, STRING, Metric, datatype_of, encode_payload
from gateway.sinks.sparkplug.properties import NodeInfo, device_properties, node_properties
from gateway.store.outbox import Row

NAMESPACE = "spBv1.0"
BD_SEQ = "bdSeq"
REBIRTH = "Node Control/Rebirth"
REBIRTH_ALIAS = 0  # device metrics are numbered from 1 on

# Sparkplug's quality codes (192 good is left out: a metric without the property is good).
STALE_CODE = 500
BAD_CODE = 0
QUALITY_CODES: dict[Quality, int | None] = {
    Quality.GOOD: None,
    Quality.STALE: STALE_CODE,
    Quality.COMM_LOSS: STALE_CODE,  # the last value known, or none: the device stopped answering
    Quality.BAD: BAD_CODE,
    Quality.OUT_OF_RANGE: BAD_CODE,
    Quality.MISSING: BAD_CODE,
}
_CODE_OF = tuple(QUALITY_CODES[q] for q in QUALITIES)  # by the quality byte of a batch


def device_id(rack: str) -> str:
    """The Sparkplug device id of a rack tag (one topic level: `+`, `#`, `/` and blanks become `_`);
    samples without a rack belong to the device `gateway`."""
    if not rack:
        return "gateway"
    return "".join("_" if c in "+#/" or c.isspace() else c for c in rack)


def metric_name(key: Key) -> str:
    """A gateway key as a Sparkplug metric name: `soc`, `module_voltage/2`, `cell_voltage/2/7`
    (the MQTT sink's state key; `/` makes folders in most host applications)."""
    return state_key(key)


@dataclass(frozen=True, slots=True)
class Topics:
    group: str
    node: str

    def node_topic(self, kind: str) -> str:
        return f"{NAMESPACE}/{self.group}/{kind}/{self.node}"

    def device_topic(self, kind: str, device: str) -> str:
        return f"{NAMESPACE}/{self.group}/{kind}/{self.node}/{device}"


@dataclass(slots=True)
class Definition:
    """A metric as its device was born with it, and the latest value sent (for the next birth)."""

    name: str
    alias: int
    datatype: int
    last: Metric

    def born(self) -> Metric:
        """The metric as a birth declares it: name, alias, datatype and the latest value."""
        m = self.last
        return Metric(self.datatype, m.value, m.timestamp, self.alias, self.name, m.quality)


@dataclass(slots=True)
class Device:
    metrics: dict[str, Definition] = field(default_factory=dict)
    born: bool = False
    dead: bool = False  # after its DDEATH, until its next DBIRTH


class Point(NamedTuple):
    """A sample of a device on its way: its metric name, the metric without alias or name, and the value
    its metric is born with when it is new (None: with this sample, which then is not sent as data)."""

    name: str
    metric: Metric
    before: Metric | None = None


@dataclass(frozen=True, slots=True)
class DeviceGroup:
    """The points of one key table that belong to one device: their indices and metric names."""

    device: str
    indices: tuple[int, ...]
    names: tuple[str, ...]


def device_groups(keys: Keys) -> list[DeviceGroup]:
    groups: dict[str, tuple[list[int], list[str]]] = {}
    for i, key in enumerate(keys.rows):
        idx, names = groups.setdefault(device_id(key.rack), ([], []))
        idx.append(i)
        names.append(metric_name(key))
    return [DeviceGroup(d, tuple(i), tuple(n)) for d, (i, n) in groups.items()]


class EdgeNode:
    """The node's state: bdSeq, seq, aliases, the devices and what each was born with."""

    def __init__(self, group: str, node: str, qos: int = 1, info: NodeInfo | None = None) -> None:
        self.topics = Topics(group, node)
        self.qos = qos
        self.info = info or NodeInfo()
        self.bd_seq = 0
        self.seq = 0
        self.devices: dict[str, Device] = {}
        self.node_metrics: dict[str, Definition] = {}  # the node's metrics that change (gateway alarms)
        self.by_source: dict[str, set[str]] = {}  # source → the devices its samples went to (for DDEATH)
        self._next_alias = REBIRTH_ALIAS + 1
        self._plans: PlanCache[list[DeviceGroup]] = PlanCache()

    def next_seq(self) -> int:
        seq = self.seq
        self.seq = (seq + 1) % 256
        return seq

    def ndeath(self) -> bytes:
        """The NDEATH payload (the MQTT will): the bdSeq of the connection, no seq."""
        return encode_payload([Metric(INT64, self.bd_seq, name=BD_SEQ)], None, None)

    def births(self, now_ms: int) -> list[Message]:
        """NBIRTH (seq 0) and a DBIRTH for every device alive: after a connect and on a rebirth request."""
        self.seq = 0
        node = [
            Metric(INT64, self.bd_seq, now_ms, name=BD_SEQ),
            Metric(BOOLEAN, False, now_ms, REBIRTH_ALIAS, REBIRTH),
            *node_properties(self.info, now_ms),
            *(d.born() for d in self.node_metrics.values()),
        ]
        out = [self._message(self.topics.node_topic("NBIRTH"), node, now_ms)]
        for name, dev in self.devices.items():
            if dev.born and dev.metrics:
                out.append(self._dbirth(name, dev, now_ms))
        return out

    def render(self, rows: Sequence[Row], now_ms: int) -> list[Message]:
        """The messages of stored rows, in order (births where a device needs one)."""
        out: list[Message] = []
        for row in rows:
            b = row.batch
            if b.n:
                out += self.samples(b, now_ms)
            elif b.kind == BatchKind.ALARM:
                out += self.alarm_messages(b, now_ms)
            if b.status is not None and b.status.state == DeviceState.OFFLINE:
                out += self.deaths(b.source, now_ms)
        return out

    def _device(self, device: str, now_ms: int) -> Device:
        dev = self.devices.get(device)
        if dev is None:
            dev = self.devices[device] = Device()
            for name, value in device_properties(self.info.devices.get(device)).items():
                dev.metrics[name] = Definition(name, self._alias(), STRING, Metric(STRING, value, now_ms))
        return dev

    def samples(self, b: Batch, now_ms: int) -> list[Message]:
        plan = self._plans.get(b.keys, "") or self._plans.put(b.keys, "", device_groups(b.keys))
        ts_ms = (b.ts // 1_000_000).tolist()
        values = b.values.tolist()
        qualities = b.quality.tolist()
        objects = b.objects or {}
        out: list[Message] = []
        for group in plan:
            self.by_source.setdefault(b.source, set()).add(group.device)
            dev = self._device(group.device, now_ms)
            known = dev.metrics
            points: list[Point] = []
            for i, name in zip(group.indices, group.names, strict=True):
                v: Value = objects[i] if i in objects else values[i]
                if v != v:  # NaN: no value
                    v = None
                d = known.get(name)
                dt = datatype_of(v, DOUBLE if d is None else d.datatype)
                points.append(Point(name, Metric(dt, v, ts_ms[i], None, None, _CODE_OF[qualities[i]])))
            out += self._device_messages(group.device, dev, points, now_ms)
        return out

    def alarm_messages(self, b: Batch, now_ms: int) -> list[Message]:
        """The alarm changes of an ALARM batch: DDATA of the rack's device, NDATA for the gateway's own."""
        out: list[Message] = []
        for run in alarms.grouped(alarms.changes(b, self._alarm_state)):
            points = [Point(p.name, p.metric, p.before) for ch in run for p in alarms.points(ch)]
            if run[0].rack == GATEWAY:
                out += self._node_messages(points, now_ms)
                continue
            device = device_id(run[0].rack)
            dev = self._device(device, now_ms)
            if not dev.dead:
                out += self._device_messages(device, dev, points, now_ms)
                continue
            self._define(dev.metrics, [Point(p.name, p.metric) for p in points])  # no data from a dead device:
            for p in points:  # its next DBIRTH has them
                dev.metrics[p.name].last = p.metric
        return out

    def _alarm_state(self, rack: str, alarm_id: str) -> Value:
        """The state the node last sent of an alarm (None: not one of its metrics)."""
        if rack == GATEWAY:
            metrics = self.node_metrics
        else:
            dev = self.devices.get(device_id(rack))
            metrics = {} if dev is None else dev.metrics
        d = metrics.get(alarms.state_name(alarm_id))
        return None if d is None else d.last.value

    def _define(self, metrics: dict[str, Definition], points: list[Point]) -> set[int]:
        """Define the metrics new to `metrics` (each born with its `before`, else its first point); the
        indices of the points they are born with (not sent again as data)."""
        born_with: set[int] = set()
        for k, p in enumerate(points):
            if p.name not in metrics:
                m = p.metric if p.before is None else p.before
                metrics[p.name] = Definition(p.name, self._alias(), m.datatype, m)
                if p.before is None:
                    born_with.add(k)
        return born_with

    def _device_messages(self, device: str, dev: Device, points: list[Point], now_ms: int) -> list[Message]:
        """DBIRTH when the device needs one (a metric new to it is born with its first sample or the value
        before it), then DDATA."""
        before = len(dev.metrics)
        born_with = self._define(dev.metrics, points)
        # Born with the values sent before this row (and the first sample of each new metric).
        out = [self._dbirth(device, dev, now_ms)] if not dev.born or len(dev.metrics) > before else []
        data: list[Metric] = []
        for k, (name, m, _b) in enumerate(points):
            if k in born_with:
                continue
            d = dev.metrics[name]
            if d.datatype != m.datatype:  # a value of another type: the data before it first, then a rebirth
                out += self._ddata(device, data, now_ms)
                d.datatype, d.last, data = m.datatype, m, []
                out.append(self._dbirth(device, dev, now_ms))
                continue
            d.last = m
            data.append(Metric(m.datatype, m.value, m.timestamp, d.alias, None, m.quality))
        return out + self._ddata(device, data, now_ms)

    def _node_messages(self, points: list[Point], now_ms: int) -> list[Message]:
        """A metric new to the node is a rebirth (NBIRTH and every DBIRTH), then NDATA."""
        before = len(self.node_metrics)
        born_with = self._define(self.node_metrics, points)
        out = self.births(now_ms) if len(self.node_metrics) > before else []
        data: list[Metric] = []
        for k, (name, m, _b) in enumerate(points):
            if k not in born_with:
                d = self.node_metrics[name]
                d.last = m
                data.append(Metric(d.datatype, m.value, m.timestamp, d.alias, None, m.quality))
        if data:
            out.append(self._message(self.topics.node_topic("NDATA"), data, now_ms))
        return out

    def deaths(self, source: str, now_ms: int) -> list[Message]:
        """DDEATH for each live device of a source that went offline (reborn with its next sample)."""
        out: list[Message] = []
        for name in sorted(self.by_source.get(source, ())):
            dev = self.devices.get(name)
            if dev is not None and dev.born:
                dev.born, dev.dead = False, True
                out.append(self._message(self.topics.device_topic("DDEATH", name), [], now_ms))
        return out

    def _ddata(self, device: str, data: list[Metric], now_ms: int) -> list[Message]:
        return [self._message(self.topics.device_topic("DDATA", device), data, now_ms)] if data else []

    def _dbirth(self, device: str, dev: Device, now_ms: int) -> Message:
        dev.born, dev.dead = True, False
        metrics = [d.born() for d in dev.metrics.values()]
        return self._message(self.topics.device_topic("DBIRTH", device), metrics, now_ms)

    def _message(self, topic: str, metrics: list[Metric], now_ms: int) -> Message:
        return Message(topic, encode_payload(metrics, now_ms, self.next_seq()), self.qos, False)

    def _alias(self) -> int:
        alias = self._next_alias
        self._next_alias += 1
        return alias
