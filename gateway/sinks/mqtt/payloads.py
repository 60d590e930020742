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
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

from gateway.catalog import Kind, Level, level_of, lookup
from gateway.keys import distinct_keys
from gateway.lru import LruCache
from gateway.model import QUALITIES, U8, Batch, BatchKind, DeviceState, Key, Keys, Place, Sample
from gateway.sinks.columns import (
    SEPARATOR,
    SHAPES_MAX,
    PlanCache,
    Texts,
    every,
    rack_shape,
    run_texts,
    shared_texts,
    value_texts,
)
from gateway.sinks.mqtt.retained import RackState
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


def state_key(s: Key | Sample) -> str:
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
    # rack → its retained state's entries `"<key>":{"v":..,"u":..,"ql":..,"ts":..}` as JSON texts (`utf8_chars`)
    racks: dict[str, RackState] = field(default_factory=dict)
    plans: PlanCache[TelemetryPlan] = field(default_factory=PlanCache)  # per key table and levels
    shapes: Shapes = field(default_factory=lambda: LruCache(SHAPES_MAX))  # plans by rack shape and levels

    @property
    def values(self) -> dict[str, dict[str, object]]:
        """rack → state key → {"v", "u", "ql", "ts"}: the entries decoded (for tests and tools)."""
        return {rack: json.loads(("{" + rs.text() + "}").encode("latin-1")) for rack, rs in self.racks.items()}


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
        payload = b"".join((head[:-2], state.racks[rack].text().encode("latin-1"), b"}}"))
        out.append(Message(topics.rack(rack, "state"), payload, 1, True))
    return out


def _json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=str)


def utf8_chars(text: str) -> str:
    """The UTF-8 bytes of `text` as a str of one character per byte. The JSON texts of telemetry and state
    are kept in this form: they join like any str, and the joined text's `encode("latin-1")` is its UTF-8,
    a copy (a text with one character past ASCII, such as the °C of a unit, took 60 times as long to
    encode as UTF-8, most of the telemetry's encoding)."""
    return text if text.isascii() else text.encode().decode("latin-1")


_OPEN, _NEXT, _ENTRY_END = '{"ts":', ',{"ts":', "}" + SEPARATOR
_QUALITY_JSON = tuple(_json(str(q)) for q in QUALITIES)


@dataclass(frozen=True, slots=True)
class RackPlan:
    """The published points of one rack in a key table: their positions and fixed JSON."""

    rack: str
    index: npt.NDArray[np.intp]
    whole: bool  # `index` is every point of the key table, in order
    opens: Texts  # `{"ts":` for the first document, `,{"ts":` for the others
    heads: Texts  # `,"q":<quantity>,"v":`
    entry_heads: Texts  # `"<state key>":{"v":`
    state_keys: list[str]
    unique: bool  # no state key twice (a CAN window may hold several frames of one id)
    quantities: frozenset[str]  # rack-level quantities (for Home Assistant discovery)


@dataclass(frozen=True, slots=True)
class TelemetryPlan:
    """What the telemetry and state of one key table share (for the levels a sink publishes); its texts,
    and the rack plans', are JSON as `utf8_chars`."""

    racks: tuple[RackPlan, ...]  # in the order the racks first appear
    units: Texts  # per point: `,"u":<unit>,"ql":`
    places: Texts  # per point: `[,"m":<module>][,"c":<cell>]}`
    tails: dict[int, Texts]  # per quality code, made when first needed: the end of a document
    entry_tails: dict[int, Texts]  # per quality code: `,"u":<unit>,"ql":<quality>,"ts":`


Shapes = LruCache[tuple[tuple[Place, ...], frozenset[str]], TelemetryPlan]


def telemetry_plan(keys: Keys, levels: frozenset[str], shapes: Shapes | None = None) -> TelemetryPlan:
    """The plan of a key table. A table of one rack whose shape (`rack_shape`) is in `shapes` takes that
    plan's columns as they are, with its own rack name: only the rack differs (the tables of a site's racks
    of one profile keep their texts and indices once)."""
    shape = rack_shape(keys) if shapes is not None else None
    if shapes is None or shape is None:
        return _plan(keys, levels)
    got = shapes.get((shape.places, levels))
    if got is None:
        got = _plan(keys, levels)
        shapes.put((shape.places, levels), got)
    racks = tuple(replace(rp, rack=shape.rack) for rp in got.racks)
    return TelemetryPlan(racks, got.units, got.places, got.tails, got.entry_tails)


def _plan(keys: Keys, levels: frozenset[str]) -> TelemetryPlan:
    """The plan of a key table. Its texts are made once per distinct key (`distinct_keys`) and shared by
    every plan (`shared_texts`); each distinct unit or quantity is written as JSON once."""
    js: dict[str, str] = {}

    def json_text(s: str) -> str:
        got = js.get(s)
        if got is None:
            got = js[s] = utf8_chars(_json(s))
        return got

    distinct, inverse = distinct_keys(keys)
    units = shared_texts(f',"u":{json_text(k.unit)},"ql":' for k in distinct)
    places = shared_texts(
        ("" if k.module is None else f',"m":{int(k.module)}') + ("}" if k.cell is None else f',"c":{int(k.cell)}}}')
        for k in distinct
    )
    published = [str(level_of(k.quantity, k.module, k.cell)) in levels for k in distinct]
    rack_of: dict[str, int] = {}  # the racks of published keys, in the order they first appear
    rack_numbers = [
        rack_of.setdefault(k.rack, len(rack_of)) if p else -1 for k, p in zip(distinct, published, strict=True)
    ]
    numbers = np.asarray(rack_numbers, dtype=np.intp)[inverse]  # each point's rack (-1: not published)
    skeys = [sys.intern(state_key(k)) for k in distinct]
    quoted = [json_text(k.quantity) for k in distinct]
    # a state key is its quantity and digits, '/' or '-' (nothing JSON escapes) after it
    heads = shared_texts(f',"q":{q},"v":' for q in quoted)
    entry_heads = shared_texts(f'{q[:-1]}{s[len(k.quantity) :]}":{{"v":' for k, q, s in zip(distinct, quoted, skeys,
                                                                                           strict=True))  # fmt: skip
    opens = shared_texts([_OPEN, _NEXT])
    racks = []
    for rack, number in rack_of.items():
        members = np.flatnonzero(numbers == number)
        mine = inverse[members]
        state_keys = [skeys[i] for i in mine.tolist()]
        racks.append(
            RackPlan(
                rack,
                members,
                len(members) == len(keys),
                opens[np.minimum(np.arange(len(members)), 1)],
                heads[mine],
                entry_heads[mine],
                state_keys,
                len(set(state_keys)) == len(state_keys),
                frozenset(distinct[i].quantity for i in np.unique(mine).tolist() if distinct[i].module is None
                          and distinct[i].cell is None),
            )
        )  # fmt: skip
    return TelemetryPlan(tuple(racks), units[inverse], places[inverse], {}, {})


def _by_quality(made: dict[int, Texts], quality: U8, make: Callable[[int], Texts]) -> Texts:
    """Per point, the text of its quality code (`make(code)`: that text for every point, kept in `made`)."""
    code = int(quality[0])
    codes = [code] if every(quality == code) else np.unique(quality).tolist()
    for c in codes:
        if c not in made:
            made[c] = make(c)
    if len(codes) == 1:
        return made[code]
    out = np.empty(len(quality), dtype=object)
    for c in codes:
        at = quality == c
        out[at] = made[c][at]
    return out


def _telemetry(seq: int, b: Batch, topics: Topics, state: MqttState, touched: list[str]) -> list[Message]:
    if b.n == 0:
        return []
    levels = topics.levels
    extra = ",".join(sorted(levels))
    plan = state.plans.get(b.keys, extra)
    if plan is None:
        plan = state.plans.put(b.keys, extra, telemetry_plan(b.keys, levels, state.shapes))
    if not plan.racks:
        return []
    vt = value_texts(b)
    finite = np.isfinite(b.values)
    if b.objects or not every(finite):
        vt = vt.copy()
        vt[~finite] = "null"
        for i, v in (b.objects or {}).items():
            vt[i] = utf8_chars(_json(clean(v)))
    tt = run_texts(b.ts)
    qjson = _QUALITY_JSON
    tails = _by_quality(plan.tails, b.quality, lambda c: shared_texts(plan.units + qjson[c] + plan.places))
    entry_tails = _by_quality(plan.entry_tails, b.quality, lambda c: shared_texts(plan.units + (qjson[c] + ',"ts":')))
    if b.device_ts is not None and np.count_nonzero(b.device_ts):
        tails = tails.copy()
        for i, d in zip(np.flatnonzero(b.device_ts).tolist(), b.device_ts[b.device_ts != 0].tolist(), strict=True):
            tails[i] = f'{tails[i][:-1]},"dts":{d}}}'
    out = []
    for rp in plan.racks:
        at = rp.index
        k = len(at)
        vals, times, ends = (vt, tt, tails) if rp.whole else (vt[at], tt[at], tails[at])
        parts = np.empty(5 * k, dtype=object)
        parts[0::5], parts[1::5], parts[2::5], parts[3::5], parts[4::5] = rp.opens, times, rp.heads, vals, ends
        head = dumps({"seq": seq, "site": topics.site, "rack": rp.rack, "source": b.source, "samples": []})
        payload = b"".join((head[:-2], "".join(parts.tolist()).encode("latin-1"), b"]}"))
        out.append(Message(topics.rack(rp.rack, "telemetry"), payload, topics.qos, False))
        parts[0::5], parts[1::5], parts[2::5] = rp.entry_heads, vals, entry_tails if rp.whole else entry_tails[at]
        parts[3::5], parts[4::5] = times, _ENTRY_END
        rack_state = state.racks.get(rp.rack)
        if rack_state is None:
            rack_state = state.racks[rp.rack] = RackState()
        rack_state.update(rp.state_keys, "".join(parts.tolist())[:-1], rp.unique)
        seen = state.quantities.setdefault(rp.rack, set())
        if rp.quantities:
            seen |= rp.quantities
        if rp.rack not in touched:
            touched.append(rp.rack)
    return out


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
