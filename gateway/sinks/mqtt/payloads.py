"""MQTT topics and payloads (pure): what one batch of outbox rows becomes on the broker.

<prefix>/<site>/<rack>/telemetry       JSON per rack per stored batch        QoS cfg, not retained
<prefix>/<site>/<rack>/state           latest value of every quantity       retained
<prefix>/<site>/<rack>/availability    online | offline                     retained
<prefix>/<site>/<rack>/alarms/events   one JSON alarm event per message     QoS 1, not retained
<prefix>/<site>/<rack>/alarms/active   JSON list of the active alarms       retained
<prefix>/<site>/gateway/status         online | offline (Last Will)         retained
<prefix>/<site>/gateway/info           the gateway's info record            retained
<prefix>/<site>/gateway/heartbeat      the gateway's latest heartbeat       retained
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from gateway.catalog import Kind, Level, level_of, lookup
from gateway.model import Batch, BatchKind, DeviceState, LayoutKey, Quality, Sample
from gateway.sinks.floatrepr import float_repr, float_reprs_cache
from gateway.sinks.layoutcheck import fitted_segments
from gateway.sinks.mqtt.telemetryplan import Pieces, plan_for
from gateway.store.outbox import Row


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    payload: bytes
    qos: int
    retain: bool


def dumps(doc: object) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=str).encode()


def clean(value: object) -> object:
    """JSON has no NaN or infinity: such a value is sent as null (its quality says why), also inside
    lists and mappings (alarm records), so no record can make a payload impossible to send."""
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    return value


def sample_doc(s: Sample) -> dict[str, object]:
    doc: dict[str, object] = {"ts": s.ts, "q": s.quantity, "v": clean(s.value), "u": s.unit, "ql": s.quality}
    if s.module is not None:
        doc["m"] = s.module
    if s.cell is not None:
        doc["c"] = s.cell
    if s.device_ts is not None:
        doc["dts"] = s.device_ts
    return doc


def state_key(s: Sample) -> str:
    """Key of a quantity in the state document: `soc`, `module_voltage/2`, `cell_voltage/2/7`."""
    key = s.quantity
    if s.module is not None:
        key += f"/{s.module}"
    if s.cell is not None:
        key += f"/{s.cell}" if s.module is not None else f"/-/{s.cell}"
    return key


ALL_LEVELS = frozenset({"rack", "module", "cell"})


@dataclass
class Topics:
    prefix: str
    site: str
    qos: int = 1
    levels: frozenset[str] = ALL_LEVELS  # quantity levels published in telemetry and state

    def rack(self, rack: str, leaf: str) -> str:
        return f"{self.prefix}/{self.site}/{rack or 'unknown'}/{leaf}"

    @property
    def gateway_status(self) -> str:
        return f"{self.prefix}/{self.site}/gateway/status"

    @property
    def gateway_info(self) -> str:
        return f"{self.prefix}/{self.site}/gateway/info"

    @property
    def gateway_heartbeat(self) -> str:
        return f"{self.prefix}/{self.site}/gateway/heartbeat"


@dataclass
class MqttState:
    """What the sink remembers between writes: the latest values and the latest active alarms per rack."""

    active: dict[str, bytes] = field(default_factory=dict)  # rack → retained alarms/active payload
    info: bytes | None = None  # the latest gateway/info payload (re-published on every connect)
    quantities: dict[str, set[str]] = field(default_factory=dict)  # rack → rack-level quantities seen
    # rack → state key → `"<key>":{"v":..,"u":..,"ql":..,"ts":..}`: the retained state's entries as JSON
    encoded: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def values(self) -> dict[str, dict[str, object]]:
        """rack → state key → {"v", "u", "ql", "ts"}: the entries decoded (for tests and tools)."""
        return {rack: json.loads("{" + ",".join(enc.values()) + "}") for rack, enc in self.encoded.items()}


def render_rows(rows: Sequence[Row], topics: Topics, state: MqttState, retain_state: bool = True) -> list[Message]:
    """Messages for the rows, in order; updates `state` (latest values, active alarms)."""
    touched: list[str] = []
    out = [m for row in rows for m in render_row(row, topics, state, touched)]
    if retain_state:
        out += state_messages(touched, topics, state)
    return out


def render_row(row: Row, topics: Topics, state: MqttState, touched: list[str]) -> list[Message]:
    """Messages for one row; updates `state` and adds the racks whose state changed to `touched`."""
    b = row.batch
    if b.kind == BatchKind.SAMPLES:
        out = _telemetry(row.seq, b, topics, state, touched)
    elif b.kind == BatchKind.ALARM:
        out = _alarms(b, topics, state)
    else:
        out = [_gateway_record(r, topics, state) for r in b.records]
    if b.status is not None and b.status.state != DeviceState.STARTING:
        online = "offline" if b.status.state == DeviceState.OFFLINE else "online"
        out.append(Message(topics.rack(b.status.device, "availability"), online.encode(), 1, True))
    return out


def state_messages(touched: Sequence[str], topics: Topics, state: MqttState) -> list[Message]:
    """The retained state of each touched rack: the latest entry of every quantity."""
    out = []
    for rack in touched:
        head = dumps({"site": topics.site, "rack": rack, "values": {}})
        payload = b"".join((head[:-2], ",".join(state.encoded[rack].values()).encode(), b"}}"))
        out.append(Message(topics.rack(rack, "state"), payload, 1, True))
    return out


# Per (quantity, unit, quality, module, cell): the fixed JSON of a telemetry sample and of its state
# entry around its time and value, its state key and its level; bounded (starts over past its size).
_PIECES_MAX = 262_144
_pieces: dict[tuple[object, ...], Pieces] = {}
_INF = float("inf")
_NINF = float("-inf")


def good_piece(key: LayoutKey) -> Pieces:
    """The pieces of a `good` sample with this layout key (quantity, unit, rack, module, cell)."""
    quantity, unit, rack, module, cell = key
    pk = (quantity, unit, Quality.GOOD, module, cell)
    p = _pieces.get(pk)
    return _piece(pk, Sample(0, quantity, None, unit, Quality.GOOD, rack, module, cell)) if p is None else p


def _piece(key: tuple[object, ...], s: Sample) -> Pieces:
    head = f',"q":{_json(s.quantity)},"v":'
    unit_quality = f',"u":{_json(s.unit)},"ql":{_json(s.quality)}'
    tail = unit_quality
    if s.module is not None:
        tail += f',"m":{_json(s.module)}'
    if s.cell is not None:
        tail += f',"c":{_json(s.cell)}'
    skey = state_key(s)
    level = str(level_of(s.quantity, s.module, s.cell))
    if len(_pieces) >= _PIECES_MAX:
        _pieces.clear()
    p = _pieces[key] = (head, tail + "}", skey, level, f'{_json(skey)}:{{"v":', unit_quality + ',"ts":')
    return p


def _json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=str)


def _telemetry(seq: int, b: Batch, topics: Topics, state: MqttState, touched: list[str]) -> list[Message]:
    docs: dict[str, list[str]] = {}  # rack → telemetry documents (single or comma-joined), in order
    segments = fitted_segments(b) if b.layout is not None else None
    if segments is None:
        _sample_docs(b.samples, topics, state, docs)
    else:
        levels = None if topics.levels is ALL_LEVELS else topics.levels
        plan = plan_for(b.layout, levels, good_piece)  # type: ignore[arg-type]  # fitted: has a layout
        for seg, parts in zip(segments, plan.segments, strict=True):
            if seg.reprs is None:
                _sample_docs(b.samples[seg.start : seg.stop], topics, state, docs)
                continue
            ts = int.__repr__(seg.ts)
            for part in parts:
                text, entries = part.render(seg.reprs, ts)
                rack = part.rack
                rack_docs = docs.get(rack)
                if rack_docs is None:
                    rack_docs = docs[rack] = []
                    state.quantities.setdefault(rack, set())
                rack_docs.append(text)
                encoded = state.encoded.get(rack)
                if encoded is None:
                    encoded = state.encoded[rack] = {}
                encoded.update(zip(part.keys, entries, strict=True))
                if part.quantities:
                    state.quantities[rack] |= part.quantities
    out = []
    for rack, texts in docs.items():
        head = dumps({"seq": seq, "site": topics.site, "rack": rack, "source": b.source, "samples": []})
        payload = b"".join((head[:-2], ",".join(texts).encode(), b"]}"))
        out.append(Message(topics.rack(rack, "telemetry"), payload, topics.qos, False))
        if rack not in touched:
            touched.append(rack)
    return out


def _sample_docs(samples: Iterable[Sample], topics: Topics, state: MqttState, docs: dict[str, list[str]]) -> None:
    """Telemetry documents and state entries sample by sample (any sample, any batch)."""
    levels = topics.levels
    every = levels is ALL_LEVELS
    pieces = _pieces
    cached_repr = float_reprs_cache.get
    encoded_of = state.encoded
    rack = None
    rack_docs: list[str] = []
    encoded: dict[str, str] = {}
    seen: set[str] = set()
    for s in samples:
        ts, quantity, v, unit, quality, s_rack, module, cell, dts = s
        key = (quantity, unit, quality, module, cell)
        p = pieces.get(key)
        if p is None:
            p = _piece(key, s)
        if not every and p[3] not in levels:
            continue
        t = type(v)
        if t is float:
            vj = cached_repr(v)  # type: ignore[arg-type]  # type(v) is float
            if vj is None:
                vj = "null" if v != v or v == _INF or v == _NINF else float_repr(v)  # type: ignore[arg-type]
        elif t is int:
            vj = int.__repr__(v)
        elif v is None:
            vj = "null"
        elif t is bool:
            vj = "true" if v else "false"
        else:
            vj = _json(clean(v))
        if type(ts) is int:
            tsj = int.__repr__(ts)
            doc = f'{{"ts":{tsj}{p[0]}{vj}{p[1]}' if dts is None else _json(sample_doc(s))
        else:
            tsj = _json(ts)
            doc = _json(sample_doc(s))
        if s_rack != rack:
            rack = s_rack
            got = docs.get(rack)
            if got is None:
                got = docs[rack] = []
            rack_docs = got
            encoded = encoded_of.setdefault(rack, {})
            seen = state.quantities.setdefault(rack, set())
        rack_docs.append(doc)
        encoded[p[2]] = f"{p[4]}{vj}{p[5]}{tsj}}}"
        if module is None and cell is None:
            seen.add(quantity)


def _gateway_record(rec: dict[str, object], topics: Topics, state: MqttState) -> Message:
    """A status record of the gateway (see gateway.runtime.gatewayinfo): a heartbeat, or its info."""
    payload = dumps(clean({"site": topics.site, **rec}))
    if rec.get("type") == "heartbeat":
        return Message(topics.gateway_heartbeat, payload, 1, True)
    state.info = payload
    return Message(topics.gateway_info, payload, 1, True)


def _alarms(b: Batch, topics: Topics, state: MqttState) -> list[Message]:
    out = []
    for rec in b.records:
        rack = str(rec.get("rack") or b.device or "gateway")
        doc = {"site": topics.site, **{k: clean(v) for k, v in rec.items()}}
        if rec.get("type") == "active":
            payload = dumps(doc)
            state.active[rack] = payload
            out.append(Message(topics.rack(rack, "alarms/active"), payload, 1, True))
        else:
            out.append(Message(topics.rack(rack, "alarms/events"), dumps(doc), 1, False))
    return out


# -- Home Assistant MQTT discovery ----------------------------------------------------------------

_DEVICE_CLASS = {"V": "voltage", "A": "current", "W": "power", "°C": "temperature", "Wh": "energy", "%": None}


def discovery(topics: Topics, ha_prefix: str, rack: str, quantities: Sequence[str]) -> list[Message]:
    """Retained discovery configs for the rack-level numeric quantities of a rack (sensors)."""
    out = []
    device = {
        "identifiers": [f"bms-gateway-{topics.site}-{rack}"],
        "name": f"{topics.site} {rack}",
        "manufacturer": "bms-gateway",
        "model": "battery rack",
    }
    for name in sorted(quantities):
        q = lookup(name)
        if q is None or q.level != Level.RACK or q.kind not in (Kind.NUMBER, Kind.BOOL):
            continue
        object_id = f"{topics.site}_{rack}_{name}".replace(".", "_").replace("-", "_")
        cfg: dict[str, object] = {
            "name": name.replace("_", " "),
            "unique_id": f"bms_gateway_{object_id}",
            "object_id": object_id,
            "state_topic": topics.rack(rack, "state"),
            "value_template": "{{ value_json['values'][" + json.dumps(name) + "]['v'] }}",
            "availability": [{"topic": topics.gateway_status}, {"topic": topics.rack(rack, "availability")}],
            "availability_mode": "all",
            "device": device,
        }
        if q.unit:
            cfg["unit_of_measurement"] = q.unit
        dc = _DEVICE_CLASS.get(q.unit)
        if name in ("soc", "soh"):
            dc = "battery"
        if dc:
            cfg["device_class"] = dc
        if q.kind == Kind.NUMBER:
            cfg["state_class"] = "total_increasing" if dc == "energy" else "measurement"
        out.append(Message(f"{ha_prefix}/sensor/{object_id}/config", dumps(cfg), 1, True))
    return out
