"""Every configuration key `bms-gateway schema` knows is documented in the manual's pages under docs/.

The JSON Schemas of gateway.yaml, of Modbus and CAN profiles and of alarm rule files (what `schema`,
`modbus schema` and `alarms schema` print) are walked from their roots, through `$ref`/`$defs`,
`anyOf`/`oneOf`/`allOf`, `items`, `additionalProperties` and `patternProperties`. Every property
name at every level (site, sources of each type, sinks, store, alarms with their rules and commands,
http, logging, runtime, profile points) must appear in a docs page: in backticks (`key`, or a dotted
`section.key`), or as `key:` in a YAML example. A failure lists each missing key with the dotted
paths where the schema has it. A key the schema marks deprecated, and an old name a key is still
taken under (pydantic `AliasChoices`), must be documented on a line that says it is deprecated.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, get_args

from pydantic import AliasChoices, BaseModel

from gateway.alarms.ruleset import RuleFile
from gateway.config.settings import GatewayConfig
from gateway.sources.can.config import CanProfile
from gateway.sources.modbus.profile import ModbusProfile
from tests.support.manual import DOCS

Schema = dict[str, Any]

# Each schema the command line prints, by what it describes (the prefix of a key's dotted path below).
ROOTS: dict[str, type[BaseModel]] = {
    "gateway.yaml": GatewayConfig,
    "modbus profile": ModbusProfile,
    "can profile": CanProfile,
    "alarm rule file": RuleFile,
}


def resolve(node: Schema, root: Schema) -> Schema:
    """The node a `$ref` points to (`#/$defs/Name`), or the node itself."""
    while "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), ref
        target: Any = root
        for part in ref[2:].split("/"):
            target = target[part]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def properties(node: Schema, root: Schema, path: str, seen: frozenset[str] = frozenset()) -> Iterator[
    tuple[str, str, Schema]
]:
    """(key, dotted path, property schema) of every property under `node`, at every depth."""
    ref = node.get("$ref")
    if ref is not None:
        if ref in seen:  # a recursive model: its keys were listed on the way in
            return
        seen = seen | {ref}
    node = resolve(node, root)
    for key, sub in node.get("properties", {}).items():
        where = f"{path}.{key}" if path else key
        yield key, where, resolve(sub, root)
        yield from properties(sub, root, where, seen)
    for combinator in ("anyOf", "oneOf", "allOf"):
        variants = node.get(combinator, [])
        models = [v for v in variants if "properties" in resolve(v, root)]
        for sub in variants:
            # a union of models names the one a key belongs to (sources[]<CanSourceConfig>); `X | None` needs not
            label = f"<{resolve(sub, root).get('title', '')}>" if len(models) > 1 else ""
            yield from properties(sub, root, f"{path}{label}", seen)
    items = node.get("items")
    if isinstance(items, dict):
        yield from properties(items, root, f"{path}[]", seen)
    for sub in node.get("prefixItems", []):
        yield from properties(sub, root, f"{path}[]", seen)
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        yield from properties(extra, root, f"{path}.<name>", seen)
    for sub in node.get("patternProperties", {}).values():
        yield from properties(sub, root, f"{path}.<name>", seen)


def every_property() -> Iterator[tuple[str, str, Schema]]:
    """(key, "what: dotted.path", schema) of every property of every schema in ROOTS."""
    for what, model in ROOTS.items():
        root = model.model_json_schema()
        for key, where, sub in properties(root, root, ""):
            yield key, f"{what}: {where}", sub


def schema_keys() -> dict[str, list[str]]:
    """Every key → the dotted paths where it occurs."""
    out: dict[str, list[str]] = {}
    for key, where, _sub in every_property():
        out.setdefault(key, []).append(where)
    return out


def models_in(annotation: Any) -> Iterator[type[BaseModel]]:
    """The models an annotation holds (`X`, `X | None`, `list[X]`, `dict[str, X]`, `Annotated[A | B, ...]`)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for arg in get_args(annotation):
        yield from models_in(arg)


def old_names(model: type[BaseModel], path: str, seen: frozenset[type[BaseModel]]) -> Iterator[tuple[str, str]]:
    """(old name, where) of every key still taken under an older name (`AliasChoices`), at every depth."""
    for name, info in model.model_fields.items():
        where = f"{path}.{name}" if path else name
        alias = info.validation_alias
        for choice in alias.choices if isinstance(alias, AliasChoices) else []:
            if isinstance(choice, str) and choice != (info.alias or name):
                yield choice, f"{where} (old name)"
        for sub in models_in(info.annotation):
            if sub not in seen:
                yield from old_names(sub, where, seen | {sub})


def deprecated_keys() -> dict[str, list[str]]:
    """Keys the schema marks deprecated, and the old names a key is still taken under."""
    out: dict[str, list[str]] = {}
    for key, where, sub in every_property():
        if sub.get("deprecated"):
            out.setdefault(key, []).append(where)
    for what, model in ROOTS.items():
        for key, where in old_names(model, "", frozenset({model})):
            out.setdefault(key, []).append(f"{what}: {where}")
    return out


def docs_text() -> str:
    return "\n".join(page.read_text(encoding="utf-8") for page in sorted(DOCS.glob("*.md")))


def is_documented(key: str, text: str, spans: set[str]) -> bool:
    """`key` in backticks (alone, as the last part of a dotted path, or as `key: value`), or `key:` in YAML."""
    if key in spans or any(s.endswith(f".{key}") or s.startswith(f"{key}:") for s in spans):
        return True
    return re.search(rf"(?:^|[\s{{,\-])[\"']?{re.escape(key)}[\"']?:(?:\s|$)", text, re.MULTILINE) is not None


def test_the_schema_walk_reaches_every_section() -> None:
    keys = schema_keys()
    paths = {p for ps in keys.values() for p in ps}
    # top level, a nested model, a list of a union by type, a mapping of sinks, a rule, a command user
    for expected in (
        "site",
        "store.max_bytes",
        "alarms.journal.path",
        "sources[]<ModbusSourceConfig>.unit_id",
        "sources[]<CanSourceConfig>.id_offset",
        "sources[]<SimulatedSourceConfig>.faults[].kind",
        "sinks.<name><InfluxSinkConfig>.bucket",
        "sinks.<name><MqttSinkConfig>.prefix",
        "alarms.rules[]<ThresholdRule>.deadband",
        "alarms.commands.users.<name>.public_key",
        "http.max_connections",
        "logging.library_level",
        "runtime.grace_period",
    ):
        assert f"gateway.yaml: {expected}" in paths, sorted(paths)
    for expected in (
        "modbus profile: points[].byte_order",
        "modbus profile: groups[].points[].address",
        "modbus profile: unreadable[].end",
        "can profile: points[].array.per_module",
        "alarm rule file: rules[]<DisagreementRule>.versus",
    ):
        assert expected in paths, sorted(paths)
    assert len(keys) > 180
    # Nothing the walk could miss: every property of every model the schemas define was reached.
    defined = {
        key
        for model in ROOTS.values()
        for node in [model.model_json_schema(), *model.model_json_schema().get("$defs", {}).values()]
        for key in node.get("properties", {})
    }
    assert sorted(defined - set(keys)) == []


def test_every_config_key_is_documented() -> None:
    text = docs_text()
    spans = set(re.findall(r"`([^`\n]+)`", text))
    missing = {key: paths for key, paths in schema_keys().items() if not is_documented(key, text, spans)}
    assert missing == {}, "keys `bms-gateway schema` knows that no docs page documents:\n" + "\n".join(
        f"  {key}: {', '.join(paths)}" for key, paths in sorted(missing.items())
    )


def test_deprecated_keys_are_documented_as_deprecated() -> None:
    lines = docs_text().splitlines()
    undocumented = {
        key: paths
        for key, paths in deprecated_keys().items()
        if not any(f"`{key}`" in line and "deprecated" in line.lower() for line in lines)
    }
    assert undocumented == {}, "deprecated keys not documented as deprecated:\n" + "\n".join(
        f"  {key}: {', '.join(paths)}" for key, paths in sorted(undocumented.items())
    )
