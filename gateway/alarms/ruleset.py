"""The effective rule set of a site: built-in defaults, rule files, site rules, then overrides.

Every problem names its place (`file:line:col`), and `bms-gateway validate` and start-up both run
`check_alarms`, so a typo in a rule never reaches a running daemon.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, TypeAdapter, ValidationError

from gateway.alarms.config import AlarmsConfig, RuleSpec
from gateway.config.base import Strict
from gateway.config.profiles import error_message
from gateway.config.yamlpos import load_yaml, position, to_plain
from gateway.errors import ConfigError, Problem

if TYPE_CHECKING:
    from gateway.config.settings import LoadedConfig

RULE: TypeAdapter[RuleSpec] = TypeAdapter(RuleSpec)


class RuleFile(Strict):
    """A rule file: `rules:` and a free description."""

    description: str = Field("", description="What the rule set is for")
    rules: list[RuleSpec] = Field(default_factory=list, description="The rules")


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[RuleSpec, ...]
    origin: dict[str, str]  # rule id -> where it was defined (file:line)


def defaults_path(name: str) -> Path:
    return Path(str(resources.files("gateway") / "data" / "alarms" / f"{name}.yaml"))


def load_rule_file(path: Path) -> tuple[list[RuleSpec], dict[str, str]]:
    data = load_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(Problem(str(path), 1, 1, "a rule file must be a mapping with a `rules:` list"))
    try:
        parsed = RuleFile.model_validate(to_plain(data))
    except ValidationError as exc:
        raise ConfigError(rule_problems(exc, data, str(path))) from exc
    origin: dict[str, str] = {}
    problems: list[Problem] = []
    for i, rule in enumerate(parsed.rules):
        line, col = position(data, ["rules", i, "id"])
        if rule.id in origin:
            problems.append(
                Problem(str(path), line, col, f"duplicate rule id {rule.id!r} (first at {origin[rule.id]})")
            )
        origin[rule.id] = f"{path}:{line}"
    if problems:
        raise ConfigError(problems)
    return list(parsed.rules), origin


def build_ruleset(loaded: LoadedConfig, data: Any = None) -> RuleSet:
    """The site's rules in order; raises ConfigError with every problem found."""
    cfg: AlarmsConfig = loaded.config.alarms
    cfg_file = str(loaded.path)
    problems: list[Problem] = []
    rules: dict[str, RuleSpec] = {}
    origin: dict[str, str] = {}

    def add_file(path: Path, where: list[int | str]) -> None:
        if not path.exists():
            line, col = position(data, where) if data is not None else (0, 0)
            problems.append(Problem(cfg_file, line, col, f"rule file not found: {path}"))
            return
        try:
            file_rules, file_origin = load_rule_file(path)
        except ConfigError as exc:
            problems.extend(exc.problems)
            return
        for r in file_rules:
            rules[r.id] = r
        origin.update(file_origin)

    if cfg.defaults:
        add_file(defaults_path(cfg.defaults), ["alarms", "defaults"])
    for i, rel in enumerate(cfg.rules_files):
        add_file(loaded.resolve(rel), ["alarms", "rules_files", i])
    for i, r in enumerate(cfg.rules):
        line, _ = position(data, ["alarms", "rules", i]) if data is not None else (0, 0)
        rules[r.id] = r
        origin[r.id] = f"{cfg_file}:{line}"
    for rid, changes in cfg.overrides.items():
        where: list[int | str] = ["alarms", "overrides", rid]
        line, col = position(data, where) if data is not None else (0, 0)
        base = rules.get(rid)
        if base is None:
            near = difflib.get_close_matches(rid, list(rules), n=3)
            hint = f"did you mean {' or '.join(near)}?" if near else "`bms-gateway alarms rules` lists them"
            problems.append(Problem(cfg_file, line, col, f"override of unknown rule {rid!r}: {hint}"))
            continue
        merged = {**base.model_dump(exclude_unset=True), **changes, "id": rid, "kind": base.kind}
        try:
            rules[rid] = RULE.validate_python(merged)
        except ValidationError as exc:
            for p in rule_problems(exc, _subtree(data, where), cfg_file):
                sep = "." if p.message[:1] not in (":", "") else ""
                msg = f"alarms.overrides.{rid}{sep}{p.message}"
                problems.append(Problem(cfg_file, p.line if p.line > 1 else line, p.col if p.line > 1 else col, msg))
            continue
        origin[rid] = f"{origin.get(rid, '?')} (overridden at {cfg_file}:{line})"
    problems.extend(_rack_problems(loaded, rules, data))
    if problems:
        raise ConfigError(problems)
    return RuleSet(tuple(rules.values()), origin)


KIND_TAGS = frozenset(
    {"threshold", "limit", "rate", "spread", "disagreement", "state", "bms_bits", "comm_loss", "stale", "quality"}
)


def rule_problems(exc: ValidationError, data: Any, name: str) -> list[Problem]:
    """Validation errors of rules as `file:line:col: path: message`, the `kind` union tag left out."""
    out = []
    for err in exc.errors(include_url=False):
        loc = [p for p in err["loc"] if isinstance(p, int | str)]
        # The tag follows the list index (or starts the path when one rule is validated alone).
        loc = [p for i, p in enumerate(loc) if not (p in KIND_TAGS and (i == 0 or isinstance(loc[i - 1], int)))]
        line, col = position(data, loc) if data is not None else (0, 0)
        where = ".".join(str(p) for p in loc)
        out.append(Problem(name, line, col, f"{where}: {error_message(err)}" if where else error_message(err)))
    return out


def _subtree(data: Any, where: list[int | str]) -> Any:
    node = data
    for part in where:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return None
    return node


def _rack_problems(loaded: LoadedConfig, rules: dict[str, RuleSpec], data: Any) -> list[Problem]:
    known = {s.rack_tag for s in loaded.config.sources if hasattr(s, "rack_tag")}
    out: list[Problem] = []
    for i, r in enumerate(loaded.config.alarms.rules):
        for rack in r.racks or []:
            if known and rack not in known:
                line, col = position(data, ["alarms", "rules", i, "racks"]) if data is not None else (0, 0)
                out.append(Problem(str(loaded.path), line, col, f"rule {r.id!r}: no source has rack {rack!r}"))
    del rules
    return out


def _command_problems(loaded: LoadedConfig, data: Any) -> list[Problem]:
    cmds = loaded.config.alarms.commands
    if not cmds.enabled:
        return []
    mqtt = [n for n, s in loaded.config.sinks.items() if s.type == "mqtt"]
    line, col = position(data, ["alarms", "commands"]) if data is not None else (0, 0)
    if cmds.mqtt_sink is None and len(mqtt) != 1:
        what = "no MQTT sink is configured" if not mqtt else f"several MQTT sinks ({', '.join(mqtt)})"
        return [Problem(str(loaded.path), line, col, f"alarms.commands: {what}: set `mqtt_sink` to one")]
    if cmds.mqtt_sink is not None and cmds.mqtt_sink not in mqtt:
        return [
            Problem(
                str(loaded.path), line, col, f"alarms.commands.mqtt_sink {cmds.mqtt_sink!r} is no MQTT sink: {mqtt}"
            )
        ]
    return []


def check_alarms(loaded: LoadedConfig, data: Any) -> list[Problem]:
    if not loaded.config.alarms.enabled:
        return []
    problems = _command_problems(loaded, data)
    try:
        build_ruleset(loaded, data)
    except ConfigError as exc:
        problems.extend(exc.problems)
    return problems
