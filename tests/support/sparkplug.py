"""A Sparkplug B host's view for the tests: payloads decoded with Google's protobuf runtime (not the gateway's
encoder) against the Sparkplug B schema declared here field by field, and a subscriber that keeps what
it decodes.

The schema is that of Eclipse Tahu's sparkplug_b.proto (proto2, package org.eclipse.tahu.protobuf):
the Payload with its Metric, PropertySet and PropertyValue messages and the fields a host reads.
Every decoded message is checked for unknown fields, so a field the gateway sent under a wrong
number fails the test instead of being skipped."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.unknown_fields import UnknownFieldSet

from tests.delivery_support import Collector

F = descriptor_pb2.FieldDescriptorProto
OPT, REP = F.LABEL_OPTIONAL, F.LABEL_REPEATED
PKG = "org.eclipse.tahu.protobuf"

# (message, [(field name, number, label, type, message type name or "", oneof index or None)])
SCHEMA: dict[str, list[tuple[str, int, int, int, str, int | None]]] = {
    "Payload": [
        ("timestamp", 1, OPT, F.TYPE_UINT64, "", None),
        ("metrics", 2, REP, F.TYPE_MESSAGE, "Payload.Metric", None),
        ("seq", 3, OPT, F.TYPE_UINT64, "", None),
        ("uuid", 4, OPT, F.TYPE_STRING, "", None),
        ("body", 5, OPT, F.TYPE_BYTES, "", None),
    ],
    "Payload.PropertyValue": [
        ("type", 1, OPT, F.TYPE_UINT32, "", None),
        ("is_null", 2, OPT, F.TYPE_BOOL, "", None),
        ("int_value", 3, OPT, F.TYPE_UINT32, "", 0),
        ("long_value", 4, OPT, F.TYPE_UINT64, "", 0),
        ("float_value", 5, OPT, F.TYPE_FLOAT, "", 0),
        ("double_value", 6, OPT, F.TYPE_DOUBLE, "", 0),
        ("boolean_value", 7, OPT, F.TYPE_BOOL, "", 0),
        ("string_value", 8, OPT, F.TYPE_STRING, "", 0),
    ],
    "Payload.PropertySet": [
        ("keys", 1, REP, F.TYPE_STRING, "", None),
        ("values", 2, REP, F.TYPE_MESSAGE, "Payload.PropertyValue", None),
    ],
    "Payload.Metric": [
        ("name", 1, OPT, F.TYPE_STRING, "", None),
        ("alias", 2, OPT, F.TYPE_UINT64, "", None),
        ("timestamp", 3, OPT, F.TYPE_UINT64, "", None),
        ("datatype", 4, OPT, F.TYPE_UINT32, "", None),
        ("is_historical", 5, OPT, F.TYPE_BOOL, "", None),
        ("is_transient", 6, OPT, F.TYPE_BOOL, "", None),
        ("is_null", 7, OPT, F.TYPE_BOOL, "", None),
        ("properties", 9, OPT, F.TYPE_MESSAGE, "Payload.PropertySet", None),
        ("int_value", 10, OPT, F.TYPE_UINT32, "", 0),
        ("long_value", 11, OPT, F.TYPE_UINT64, "", 0),
        ("float_value", 12, OPT, F.TYPE_FLOAT, "", 0),
        ("double_value", 13, OPT, F.TYPE_DOUBLE, "", 0),
        ("boolean_value", 14, OPT, F.TYPE_BOOL, "", 0),
        ("string_value", 15, OPT, F.TYPE_STRING, "", 0),
        ("bytes_value", 16, OPT, F.TYPE_BYTES, "", 0),
    ],
}
ONEOFS = {"Payload.PropertyValue", "Payload.Metric"}  # each has one oneof `value`

# Sparkplug B datatypes
INT32, INT64, DOUBLE, BOOLEAN, STRING = 3, 4, 10, 11, 12


def _file() -> descriptor_pb2.FileDescriptorProto:
    fdp = descriptor_pb2.FileDescriptorProto(name="sparkplug_b_test.proto", package=PKG, syntax="proto2")
    payload = fdp.message_type.add(name="Payload")
    nested = {"Payload": payload}
    for name in ("PropertyValue", "PropertySet", "Metric"):
        nested[f"Payload.{name}"] = payload.nested_type.add(name=name)
    for msg_name, fields in SCHEMA.items():
        msg = nested[msg_name]
        if msg_name in ONEOFS:
            msg.oneof_decl.add(name="value")
        for fname, number, label, ftype, type_name, oneof in fields:
            f = msg.field.add(name=fname, number=number, label=label, type=ftype)
            if type_name:
                f.type_name = f".{PKG}.{type_name}"
            if oneof is not None:
                f.oneof_index = oneof
    return fdp


_pool = descriptor_pool.DescriptorPool()
_pool.Add(_file())
Payload: Any = message_factory.GetMessageClass(_pool.FindMessageTypeByName(f"{PKG}.Payload"))


def _no_unknown(msg: Any, where: str) -> None:
    unknown = UnknownFieldSet(msg)
    assert len(unknown) == 0, f"{where}: fields the schema does not know: {[u.field_number for u in unknown]}"


def decode(data: bytes) -> Any:
    """A Payload decoded by protobuf; no field may be unknown to the schema."""
    p = Payload()
    p.ParseFromString(data)
    _no_unknown(p, "Payload")
    for m in p.metrics:
        _no_unknown(m, f"Metric {m.name or m.alias}")
        if m.HasField("properties"):
            _no_unknown(m.properties, "PropertySet")
            for v in m.properties.values:
                _no_unknown(v, "PropertyValue")
    return p


def value_of(m: Any) -> object:
    """A metric's value as Python sees it (None when is_null)."""
    if m.is_null:
        return None
    kind = m.WhichOneof("value")
    return None if kind is None else getattr(m, kind)


def quality_of(m: Any) -> int:
    """The metric's Sparkplug quality: its `Quality` property, 192 (good) without one."""
    if m.HasField("properties"):
        for k, v in zip(m.properties.keys, m.properties.values, strict=True):
            if k == "Quality":
                return int(v.int_value)
    return 192


@dataclass(frozen=True)
class Seen:
    """A decoded Sparkplug message: topic parts and payload."""

    kind: str  # NBIRTH, DBIRTH, ...
    node: str
    device: str | None
    payload: Any


@dataclass
class Host:
    """What a host application knows from the messages seen: aliases of each device from its births."""

    seen: list[Seen] = field(default_factory=list)
    aliases: dict[tuple[str, int], str] = field(default_factory=dict)  # (device, alias) → metric name

    def take(self, topic: str, data: bytes) -> Seen:
        parts = topic.split("/")
        assert parts[0] == "spBv1.0" and len(parts) in (4, 5), topic
        s = Seen(parts[2], parts[3], parts[4] if len(parts) == 5 else None, decode(data))
        if s.kind == "DBIRTH":
            assert s.device is not None
            for m in s.payload.metrics:
                assert m.name and m.HasField("alias") and m.datatype, f"DBIRTH metric without name/alias/type: {m}"
                self.aliases[(s.device, m.alias)] = m.name
        if s.kind == "NBIRTH":  # the node's metrics that NDATA sends by alias (under the device "")
            for m in s.payload.metrics:
                assert m.name and m.datatype, f"NBIRTH metric without name/type: {m}"
                if m.HasField("alias"):
                    self.aliases[("", m.alias)] = m.name
        self.seen.append(s)
        return s

    def series(self, device: str | None, prefix: str) -> list[tuple[str, str, object, int]]:
        """(message kind, metric name, value, timestamp ms) of the metrics named `prefix`... of a device
        (None: of the node) in the births and data received, in order."""
        births, data = ("NBIRTH", "NDATA") if device is None else ("DBIRTH", "DDATA")
        out = []
        for s in self.seen:
            if s.device == device and s.kind in (births, data):
                for m in s.payload.metrics:
                    name = m.name or self.aliases[(device or "", m.alias)]
                    if name.startswith(prefix):
                        out.append((s.kind, name, value_of(m), int(m.timestamp)))
        return out

    def born(self, kind: str, device: str | None = None) -> dict[str, object]:
        """Metric name → value of the last birth of that kind (NBIRTH, or a device's DBIRTH)."""
        last = [s for s in self.seen if s.kind == kind and s.device == device][-1]
        return {m.name: value_of(m) for m in last.payload.metrics}

    def values(self) -> dict[tuple[str, str, int], tuple[object, int]]:
        """(device, metric name, timestamp ms) → (value, quality) of everything received in DBIRTH and DDATA
        (DDATA's aliases resolved through the DBIRTH before it)."""
        out: dict[tuple[str, str, int], tuple[object, int]] = {}
        for s in self.seen:
            if s.kind in ("DBIRTH", "DDATA") and s.device is not None:
                for m in s.payload.metrics:
                    name = m.name or self.aliases[(s.device, m.alias)]
                    out[(s.device, name, int(m.timestamp))] = (value_of(m), quality_of(m))
        return out

    def samples(self) -> set[tuple[str, str, int]]:
        """Every (device, metric name, timestamp ms) a host received in DBIRTH and DDATA."""
        return set(self.values())

    def of(self, kind: str) -> list[Seen]:
        return [s for s in self.seen if s.kind == kind]


def bd_seq(seen: Seen) -> int:
    """The bdSeq metric of an NBIRTH or NDEATH."""
    (m,) = [m for m in seen.payload.metrics if m.name == "bdSeq"]
    assert m.datatype == INT64
    return int(m.long_value)


def expected_name(quantity: str, module: int | None, cell: int | None) -> str:
    """The metric name the manual gives a gateway key: quantity[/module][/cell] (`-` for no module)."""
    if module is None and cell is None:
        return quantity
    return f"{quantity}/{'-' if module is None else module}" + ("" if cell is None else f"/{cell}")


NODE_MESSAGES = frozenset({"NBIRTH", "NDATA", "NDEATH", "DBIRTH", "DDATA", "DDEATH"})


def host_of(collector: Collector) -> Host:
    """A host that read every message the collector kept, in order."""
    host = Host()
    for topic, payload, _retained in list(collector.messages):
        parts = topic.split("/")
        if parts[0] == "spBv1.0" and len(parts) > 3 and parts[2] in NODE_MESSAGES:  # not the commands
            host.take(topic, payload)
    return host
