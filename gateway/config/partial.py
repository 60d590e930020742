"""A configuration with errors reduced to what is valid, so the later stages still run on the rest.

Loading goes YAML → model → profiles → checks (DBC files, read plans, cross-references). When the
model has errors, the stages after it run on the configuration without the parts that have them, so
one `bms-gateway validate` shows every problem. Parts with an error are set aside, never guessed at:

- a source or sink entry: an `Unchecked` placeholder takes its place, so list positions
  (`sources.3`) and names (a rule's `racks:`, `alarms.commands.mqtt_sink`) still hold and no
  problem follows from its absence; every check skips it (it is no source or sink type);
- a key of `site:`: its default;
- any other section: its defaults, `alarms` turned off (its rules are checked once it is valid);
- an unknown top-level key: left out.

The model is validated again on the rest, so environment overrides still apply. A reduced
configuration only feeds the checks: a configuration with a problem never runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

ATTEMPTS = 3  # validations of the rest (an environment override can keep a section invalid)

Loc = Sequence[int | str]


M = TypeVar("M", bound=BaseModel)  # the configuration's model (it has `sources` and `sinks`)


@dataclass(frozen=True, slots=True)
class Unchecked:
    """A source or sink entry with errors, kept in its place for the checks (which skip it)."""

    name: str
    rack_tag: str
    type: str
    profile: str | None = None
    enabled: bool = False

    @classmethod
    def of(cls, raw: object, name: str = "", typed: bool = False) -> Unchecked:
        """A placeholder for the entry `raw` of the file; `typed` keeps its `type:` (a sink's, which a
        cross-reference may count: a source's would only invite a check to take it for its type)."""
        entry = raw if isinstance(raw, dict) else {}
        own = entry.get("name")
        name = own if isinstance(own, str) and own else name
        rack = entry.get("rack")
        profile = entry.get("profile")
        return cls(
            name,
            rack if isinstance(rack, str) and rack else name,
            str(entry.get("type") or "") if typed else "",
            profile if isinstance(profile, str) and profile else None,
        )


@dataclass
class SetAside:
    """What has errors, in the file's terms (source indices, sink names, sections, site keys)."""

    sources: set[int] = field(default_factory=set)
    sinks: set[str] = field(default_factory=set)
    sections: set[str] = field(default_factory=set)
    site_keys: set[str] = field(default_factory=set)
    _kept: list[int] | None = None  # file index of each source given to the last validation

    def add(self, loc: Loc, known: set[str]) -> bool:
        """Set aside the part an error is in; False when it is in no part (an error of the whole)."""
        if not loc:
            return False
        head, rest = loc[0], loc[1:]
        if head == "sources" and rest and isinstance(rest[0], int):
            self.sources.add(rest[0] if self._kept is None else self._kept[rest[0]])
        elif head == "sinks" and rest and isinstance(rest[0], str):
            self.sinks.add(rest[0])
        elif head == "site" and rest and isinstance(rest[0], str):
            self.site_keys.add(rest[0])
        else:
            self.sections.add(str(head) if head in known else f"?{head}")
        return True

    def apply(self, plain: dict[str, Any]) -> dict[str, Any]:
        """The file's data without what is set aside."""
        out = {k: v for k, v in plain.items() if k not in self.sections and f"?{k}" not in self.sections}
        if "alarms" in self.sections:
            out["alarms"] = {"enabled": False}
        if isinstance(out.get("site"), dict):
            out["site"] = {k: v for k, v in out["site"].items() if k not in self.site_keys}
        if isinstance(out.get("sources"), list):
            self._kept = [i for i in range(len(out["sources"])) if i not in self.sources]
            out["sources"] = [out["sources"][i] for i in self._kept]
        if isinstance(out.get("sinks"), dict):
            out["sinks"] = {k: v for k, v in out["sinks"].items() if k not in self.sinks}
        return out

    def restore_places(self, config: M, plain: dict[str, Any]) -> M:
        """The reduced configuration with an `Unchecked` placeholder for every entry set aside."""
        model: Any = config
        raw_sources = plain.get("sources") if "sources" not in self.sections else None
        raw_sinks = plain.get("sinks") if "sinks" not in self.sections else None
        update: dict[str, Any] = {}
        if isinstance(raw_sources, list) and self.sources:
            valid = iter(model.sources)
            update["sources"] = [
                Unchecked.of(raw) if i in self.sources else next(valid) for i, raw in enumerate(raw_sources)
            ]
        if isinstance(raw_sinks, dict) and self.sinks:
            update["sinks"] = {
                str(n): Unchecked.of(raw, str(n), typed=True) if n in self.sinks else model.sinks[n]
                for n, raw in raw_sinks.items()
            }
        return config.model_copy(update=update) if update else config


def reduced(
    plain: dict[str, Any], error: ValidationError, build: Callable[[dict[str, Any]], M], known: set[str]
) -> M | None:
    """The configuration without the parts the errors are in (None when an error is of the whole, or
    the rest stays invalid)."""
    aside = SetAside()
    for _ in range(ATTEMPTS):
        for err in error.errors(include_url=False):
            if not aside.add([p for p in err["loc"] if isinstance(p, int | str)], known):
                return None
        try:
            config = build(aside.apply(plain))
        except ValidationError as again:
            error = again
            continue
        return aside.restore_places(config, plain)
    return None


def set_aside(config: M, indices: set[int]) -> M:
    """The configuration with the sources at `indices` replaced by placeholders (their profile failed)."""
    if not indices:
        return config
    model: Any = config
    sources = [Unchecked.of(_as_raw(s)) if i in indices else s for i, s in enumerate(model.sources)]
    return config.model_copy(update={"sources": sources})


def _as_raw(source: Any) -> dict[str, Any]:
    return {"name": source.name, "rack": getattr(source, "rack_tag", source.name), "type": source.type,
            "profile": getattr(source, "profile", None)}  # fmt: skip
