"""SunSpec: find the model chain of a device and map models 1, 802, 803, 804, 805 to catalog points.

The chain starts with the marker "SunS" at a base address (40000, 0 or 50000, protocol addresses
in holding registers) and is a list of models, each `ID, L, <L registers>`, ending with ID 0xFFFF.
Model definitions are the SunSpec Alliance's JSON files (in `gateway/data/sunspec`). Repeating
groups take their count from a point of the model (NStr, NMod) or fill the rest of the model's
length (cells of model 805). A point with a scale-factor register (`*_SF`) is scaled by it in every
cycle, read in the same cycle (`refs.ScaleRef`, kind `exponent`: the one scale-factor rule of every
profile; a "not implemented" 0x8000 makes the point `bad`, never a value scaled by 1). Models 1 and
802-805 carry no timestamp (802's `WarrDt` is a warranty date): a SunSpec device has a `device_ts`
only from a profile's `clock:`. Everything here is pure except `discover`, which reads through a callback.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from gateway import catalog
from gateway.sources.modbus.plan import Point, aux_reads
from gateway.sources.modbus.refs import ScaleRef, scale_factor

MARKER = (0x5375, 0x6E53)  # "SunS"
END = 0xFFFF
MODELS = (1, 802, 803, 804, 805)

TYPES = {
    "uint16": ("uint16", frozenset({0xFFFF})),
    "int16": ("int16", frozenset({0x8000})),
    "uint32": ("uint32", frozenset({0xFFFFFFFF})),
    "int32": ("int32", frozenset({0x80000000})),
    "enum16": ("uint16", frozenset({0xFFFF})),
    "bitfield16": ("uint16", frozenset({0xFFFF})),
    "bitfield32": ("uint32", frozenset({0xFFFFFFFF})),
    "acc32": ("uint32", frozenset()),
    "acc64": ("uint64", frozenset()),
    "count": ("uint16", frozenset()),
    "string": ("string", frozenset()),
}

# Model point -> catalog quantity. Group points are named by their own (group) names.
# 804's and 803's string-level values go to raw.string_* (802 carries the rack values).
MAPPING: dict[int, dict[str, str]] = {
    1: {"Mn": "manufacturer", "Md": "model", "SN": "serial_number", "Vr": "firmware_version"},
    802: {
        "SoC": "soc",
        "SoH": "soh",
        "V": "rack_voltage",
        "A": "rack_current",
        "W": "rack_power",
        "CellVMax": "cell_voltage_max",
        "CellVMin": "cell_voltage_min",
        "CellVAvg": "cell_voltage_mean",
        "AChaMax": "charge_current_limit",
        "ADisChaMax": "discharge_current_limit",
        "NCyc": "cycle_count",
        "AHRtg": "capacity_full",
        "State": "bms_state",
        "Evt1": "alarm_word",
    },
    803: {
        "ModTmpMax": "cell_temperature_max",
        "ModTmpMin": "cell_temperature_min",
        "ModTmpAvg": "cell_temperature_mean",
        "StrSoC": "raw.string_soc",
        "StrA": "raw.string_current",
        "StrCellVMax": "raw.string_cell_voltage_max",
        "StrCellVMin": "raw.string_cell_voltage_min",
    },
    804: {
        "SoC": "raw.string_soc",
        "V": "raw.string_voltage",
        "A": "raw.string_current",
        "ModCellVMax": "module_cell_voltage_max",
        "ModCellVMin": "module_cell_voltage_min",
        "ModCellTmpAvg": "module_temperature",
        "ModSoC": "raw.module_soc",
    },
    805: {"V": "module_voltage", "CellV": "cell_voltage", "CellTmp": "cell_temperature"},
}


# Bounded by construction too: only the model files shipped in the package load (a missing one raises,
# and an exception is not cached).
@lru_cache(maxsize=64)
def model_definition(model_id: int) -> dict[str, Any]:
    text = (resources.files("gateway") / "data" / "sunspec" / f"model_{model_id}.json").read_text("utf-8")
    group: dict[str, Any] = json.loads(text)["group"]
    return group


@dataclass(frozen=True, slots=True)
class Field:
    """One point of a model instance at its address, with its repetition index (0-based) if any."""

    name: str
    definition: dict[str, Any]
    address: int
    index: int | None  # repetition of the innermost group
    sf: int | None  # a fixed scale factor exponent, when the model gives one
    sf_address: int | None = None  # the address of its scale-factor register, when it has one


@dataclass(frozen=True, slots=True)
class ModelInstance:
    model_id: int
    address: int  # of the ID register
    words: tuple[int, ...]  # ID, L and the body


def group_size(group: dict[str, Any]) -> int:
    return sum(int(p.get("size", 1)) for p in group["points"]) + sum(
        group_size(g) * max(1, int(g["count"]) if isinstance(g.get("count"), int) else 1)
        for g in group.get("groups", [])
    )


def layout(model: ModelInstance) -> list[Field]:
    """Every point of a model instance with its address and scale factor."""
    defn = model_definition(model.model_id)
    words = model.words
    fields: list[Field] = []

    def walk(group: dict[str, Any], offset: int, index: int | None, sfs: dict[str, int]) -> int:
        own: dict[str, int] = dict(sfs)  # scale-factor register name -> its address
        placed: list[tuple[dict[str, Any], int]] = []
        for p in group["points"]:
            size = int(p.get("size", 1))
            if p["type"] == "sunssf":
                own[p["name"]] = model.address + offset
            placed.append((p, offset))
            offset += size
        counts: dict[str, int] = {}
        for p, at in placed:
            if p["type"] in ("uint16", "count") and at < len(words):
                counts[p["name"]] = words[at]
            sf = p.get("sf")
            fixed = int(sf) if sf is not None and not isinstance(sf, str) else None
            register = own.get(sf) if isinstance(sf, str) else None
            fields.append(Field(p["name"], p, model.address + at, index, fixed, register))
        for sub in group.get("groups", []):
            size = group_size(sub)
            count = sub.get("count", 1)
            if isinstance(count, str):
                n = counts.get(count, 0)
            elif int(count) == 0:
                n = max(0, (len(words) - offset) // size) if size else 0
            else:
                n = int(count)
            if size:
                n = min(n, max(0, (len(words) - offset) // size))  # a device's count cannot outgrow its model
            for i in range(n):
                offset = walk(sub, offset, i, own)
        return offset

    walk(defn, 0, None, {})
    end = model.address + len(words)  # a count larger than the model is cut to its length
    return [f for f in fields if f.address + int(f.definition.get("size", 1)) <= end]


def flag_name(symbol: str) -> str | None:
    s = symbol.lower().replace(" ", "_")
    if s.startswith("reserved"):
        return None
    if s.endswith("_warning"):
        return f"warning.{s.removesuffix('_warning')}"
    return f"alarm.{s.removesuffix('_alarm')}"


def points_from_models(models: Sequence[ModelInstance], interval: float) -> list[Point]:
    """Catalog points of a discovered chain (unknown models and unmapped points are left out)."""
    points: list[Point] = []
    module_no = 0
    for m in models:
        mapping = MAPPING.get(m.model_id)
        if mapping is None:
            continue
        fields = layout(m)
        if m.model_id == 805:
            module_no += 1
            idx = next((f for f in fields if f.name == "ModIdx"), None)
            module: int | None = module_no
            if idx is not None:
                raw = m.words[idx.address - m.address]
                module = raw if 0 < raw < 0xFFFF else module_no
        for f in fields:
            quantity = mapping.get(f.name)
            if quantity is None or f.definition["type"] not in TYPES:
                continue
            dtype, missing = TYPES[f.definition["type"]]
            symbols = f.definition.get("symbols", [])
            flags: tuple[tuple[int, str], ...] = ()
            states: tuple[tuple[int, str], ...] = ()
            if f.definition["type"].startswith("bitfield"):
                flags = tuple((int(s["value"]), n) for s in symbols if (n := flag_name(str(s["name"]))))
            elif f.definition["type"] == "enum16":
                states = tuple((int(s["value"]), str(s["name"]).lower()) for s in symbols)
            tag_module, tag_cell = _tags(m.model_id, f, module if m.model_id == 805 else None)
            q = catalog.lookup(quantity)
            points.append(
                Point(
                    quantity=quantity,
                    unit=q.unit if q is not None and not quantity.startswith("raw.") else "",
                    table="holding",
                    address=f.address,
                    width=int(f.definition.get("size", 1)),
                    dtype=dtype,
                    order="ABCD",
                    interval=interval,
                    module=tag_module,
                    cell=tag_cell,
                    scale=(scale_factor(f.sf & 0xFFFF, "exponent") or 1.0) if f.sf else 1.0,
                    missing=missing,
                    flags=flags,
                    states=states,
                    path=("sunspec", m.model_id, f.name),
                    scale_ref=ScaleRef("holding", f.sf_address, "exponent") if f.sf_address is not None else None,
                )
            )
    return points + aux_reads(points, (), interval)


def _tags(model_id: int, f: Field, module: int | None) -> tuple[int | None, int | None]:
    if model_id == 805:
        return module, (f.index + 1 if f.index is not None else None)
    if f.index is not None:  # 803 strings, 804 modules
        return f.index + 1, None
    return None, None


Read = Callable[[int, int], Awaitable[list[int] | None]]


async def discover(read: Read, bases: Sequence[int], max_models: int = 64) -> list[ModelInstance] | None:
    """The model chain of a device: None when no base holds the SunSpec marker."""
    for base in bases:
        marker = await read(base, 2)
        if marker is None or tuple(marker) != MARKER:
            continue
        models: list[ModelInstance] = []
        addr = base + 2
        for _ in range(max_models):
            head = await read(addr, 2)
            if head is None or head[0] == END or head[0] == 0:
                break
            length = head[1]
            body: list[int] = []
            at = addr + 2
            while len(body) < length:
                chunk = await read(at, min(125, length - len(body)))
                if chunk is None:
                    return models or None
                body += chunk
                at += len(chunk)
            models.append(ModelInstance(head[0], addr, (head[0], length, *body)))
            addr += 2 + length
        return models
    return None


# Scale factors the simulator writes (exponents of ten).
SIM_SCALE = {"V_SF": -1, "CellV_SF": -3, "A_SF": -1, "SoC_SF": -1, "SoH_SF": -1, "Tmp_SF": -1, "ModTmp_SF": -1}
SIM_SCALE |= {"AMax_SF": -1, "DoD_SF": -1}


def build_chain(base: int, modules: int, cells: int) -> list[ModelInstance]:
    """A SunSpec chain for a simulated battery: models 1, 802 and one 805 per module (no values yet)."""
    models: list[ModelInstance] = []
    addr = base + 2
    for model_id, module in [(1, 0), (802, 0), *[(805, m + 1) for m in range(modules)]]:
        defn = model_definition(model_id)
        top = sum(int(p.get("size", 1)) for p in defn["points"])
        length = top - 2 + sum(cells * group_size(g) for g in defn.get("groups", []))
        words = [0] * (length + 2)
        words[0], words[1] = model_id, length
        offset = 0
        for p in defn["points"]:
            name = p["name"]
            if p["type"] == "sunssf":
                words[offset] = SIM_SCALE.get(name, 0) & 0xFFFF
            elif name == "ModIdx":
                words[offset] = module
            elif name == "StrIdx":
                words[offset] = 1
            elif name == "NCell":
                words[offset] = cells
            offset += int(p.get("size", 1))
        models.append(ModelInstance(model_id, addr, tuple(words)))
        addr += 2 + length
    return models


def chain_words(base: int, models: Sequence[ModelInstance]) -> list[tuple[int, list[int]]]:
    """(address, words) runs that make the chain readable: marker, every model, end marker."""
    runs = [(base, list(MARKER))]
    runs += [(m.address, list(m.words)) for m in models]
    end = models[-1].address + len(models[-1].words) if models else base + 2
    runs.append((end, [END, 0]))
    return runs
