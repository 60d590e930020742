"""The defaults the manual (README.md, docs/) documents are the configuration models' defaults (it cannot drift).

Every `| key | default | meaning |` table of the manual is matched to the model that has all its keys;
each documented default (a value in backticks, `required`, `unset` or `none`) must be the model's.
Sentences that give a default (`store.commit_interval` ... "(default 20 ms") are checked too.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from gateway.alarms.config import CommandsConfig, RuleBase
from gateway.config.base import SinkBase, SourceBase
from gateway.config.profiles import ArraySpec
from gateway.config.settings import GatewayConfig, LoggingConfig, RuntimeConfig, SiteConfig, StoreConfig
from gateway.ops.clockconfig import ClockConfig
from gateway.ops.config import HttpConfig
from gateway.sinks.config import InfluxSinkConfig, MqttSinkConfig, ReportByException
from gateway.sinks.sparkplug.config import SparkplugSinkConfig
from gateway.sources.can.config import CanDeviceTime, CanSourceConfig
from gateway.sources.modbus.config import ModbusSourceConfig
from gateway.sources.modbus.profile import ModbusPoint, ModbusProfile
from gateway.sources.sim.config import FaultSpec, SimulatedSourceConfig
from tests.support.manual import manual_pages, manual_text

# In this order: a table belongs to the first model that has every key of the table.
MODELS: list[type[BaseModel]] = [
    SiteConfig,
    StoreConfig,
    LoggingConfig,
    RuntimeConfig,
    SourceBase,
    SinkBase,
    SimulatedSourceConfig,
    FaultSpec,
    ModbusSourceConfig,
    ModbusProfile,
    ModbusPoint,
    ArraySpec,
    CanSourceConfig,
    CanDeviceTime,
    InfluxSinkConfig,
    MqttSinkConfig,
    SparkplugSinkConfig,
    ReportByException,
    ClockConfig,
    RuleBase,
    CommandsConfig,
    HttpConfig,
    GatewayConfig,  # tables of dotted keys (`alarms.journal.path`)
]
# The fields every alarm rule has: a union by `kind`, documented once for all kinds (no one model).
NOT_ONE_MODEL = [["id", "kind", "severity", "on_delay", "off_delay", "latch", "racks", "message", "enabled"]]
REQUIRED = object()
UNKNOWN = object()  # prose ("the profile's", "system CAs"): not checked


def tables(text: str) -> list[list[tuple[int, list[str], str]]]:
    """Every key/default table: its rows as (line number, keys, default cell)."""
    out: list[list[tuple[int, list[str], str]]] = []
    current: list[tuple[int, list[str], str]] | None = None
    for n, line in enumerate(text.splitlines(), 1):
        if re.match(r"^\| key \| default \|", line, re.IGNORECASE):
            current = []
            out.append(current)
        elif current is not None and line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if not set(cells[0]) <= set("-: "):
                current.append((n, re.findall(r"`([A-Za-z_][\w.]*)`", cells[0]), cells[1]))
        else:
            current = None
    return out


def documented(cell: str, count: int) -> list[object]:
    """The default of each of `count` keys, from a default cell (`a`, `b` / required, `502` / ...)."""
    parts = [p.strip() for p in re.split(r",\s+(?![^(]*\))", cell)] if count > 1 else [cell.strip()]
    if len(parts) != count:
        parts = [cell.strip()] * count
    out: list[object] = []
    for part in parts:
        if part.strip("()").lower() == "required":
            out.append(REQUIRED)
        elif part.lower() in ("unset", "none") or part.lower().startswith("unset ("):
            out.append(None)
        elif (m := re.match(r"^`([^`]*)`", part)) and "<" not in m.group(1):  # not a template (`<site>`)
            out.append(literal(m.group(1)))
        else:
            out.append(UNKNOWN)
    return out


def literal(text: str) -> object:
    if text == '""':
        return ""
    if text in ("true", "false", "True", "False"):
        return text.lower() == "true"
    for parse in (float, lambda t: float(int(t, 0))):
        try:
            return parse(text)
        except ValueError:
            pass
    return text


def field_of(model: type[BaseModel], key: str) -> FieldInfo | None:
    parts = key.split(".")
    for i, part in enumerate(parts):
        info = model.model_fields.get(part)
        if info is None:
            return None
        if i == len(parts) - 1:
            return info
        sub = info.annotation
        if not (isinstance(sub, type) and issubclass(sub, BaseModel)):
            return None
        model = sub
    return None


def model_default(info: FieldInfo) -> object:
    if info.is_required():
        return REQUIRED
    value: Any = info.get_default(call_default_factory=True)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, list | tuple) and not value:
        return "[]"
    return str(getattr(value, "value", value))


def same(doc: object, model: object) -> bool:
    if doc is UNKNOWN:
        return True
    if isinstance(doc, str) and isinstance(model, list):
        return doc.strip("[]").replace(" ", "") == ",".join(map(str, model))
    if isinstance(doc, str) and isinstance(model, float):
        return False
    if isinstance(doc, float) and isinstance(model, str):
        try:
            return float(model) == doc
        except ValueError:
            return False
    return doc == model or (isinstance(doc, str) and str(doc) == str(model))


def test_every_documented_default_is_the_models() -> None:
    checked = 0
    wrong: list[str] = []
    unmatched: list[str] = []
    for page, rows in [(p, rows) for p in manual_pages() for rows in tables(p.read_text(encoding="utf-8"))]:
        keys = [k for _n, ks, _d in rows for k in ks]
        model = next((m for m in MODELS if all(field_of(m, k) is not None for k in keys)), None)
        if model is None:
            if keys not in NOT_ONE_MODEL:
                unmatched.append(f"{page.name}:{rows[0][0] if rows else 0}")
            continue
        for n, ks, cell in rows:
            for key, doc in zip(ks, documented(cell, len(ks)), strict=True):
                info = field_of(model, key)
                assert info is not None
                want = model_default(info)
                if isinstance(info.get_default(call_default_factory=True), list | tuple) and want != "[]":
                    want = [str(v) for v in info.get_default(call_default_factory=True)]
                if not same(doc, want):
                    wrong.append(f"{page.name}:{n}: {model.__name__}.{key}: documented {cell!r}, model {want!r}")
                checked += 1
    assert wrong == []
    assert checked > 100
    assert unmatched == []  # every key/default table is a model's


# "`store.commit_interval` ... (default 20 ms" and the like, anywhere in the manual.
SENTENCE_DEFAULT = re.compile(r"`(\w+)\.(\w+)`[^()`]{0,40}\(default ([0-9.,]+) ?(ms|s)?\b")


def test_defaults_given_in_sentences_are_the_models() -> None:
    found = SENTENCE_DEFAULT.findall(manual_text())
    assert ("store", "commit_interval") in {(a, b) for a, b, _v, _u in found}
    for section, key, value, unit in found:
        info = field_of(GatewayConfig, f"{section}.{key}")
        assert info is not None, f"{section}.{key} is no configuration key"
        seconds = float(value.replace(",", "")) / (1000 if unit == "ms" else 1)
        assert seconds == info.get_default(call_default_factory=True), f"{section}.{key}: manual says {value} {unit}"
