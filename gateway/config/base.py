"""Shared pieces of the configuration models: a strict frozen base and secret resolution."""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar

import structlog
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic.config import JsonDict

from gateway.config.yamlpos import position
from gateway.errors import ConfigError, Problem
from gateway.lru import LruCache

log = structlog.get_logger("config")

NOT_OWNER_ONLY = 0o077  # a secret file with any of these bits lets group or others near it


class Strict(BaseModel):
    """Base of every configuration model: frozen, unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


def _secret_text(value: object) -> object:
    if isinstance(value, bool | int | float):
        raise ValueError(
            "a secret must be text: put it in quotes (YAML reads an unquoted number as a number; 0123 becomes 83)"
        )
    return value


SecretText = Annotated[SecretStr, BeforeValidator(_secret_text)]
"""A secret given inline: text only, never shown (`**********` in every dump)."""


def read_secret(value: SecretStr | None, file: Path | None, credential: str | None) -> SecretStr | None:
    """Resolve a secret from (in order) a file, a systemd credential, or the inline value.

    `credential` names a file in `$CREDENTIALS_DIRECTORY` (systemd `LoadCredential=`). The secret's
    text is never logged; errors name the file, never its content.
    """
    if file is not None:
        text = _read(file)
        warn_if_exposed(file)  # a credential's mode is systemd's (owner-only, or an ACL): not checked
        return SecretStr(text)
    if credential:
        directory = os.environ.get("CREDENTIALS_DIRECTORY")
        if not directory:
            raise ConfigError(f"credential {credential!r} asked for, but $CREDENTIALS_DIRECTORY is unset")
        return SecretStr(_read(Path(directory) / credential))
    return value


def credential_path(file: Path | None, credential: str | None) -> Path | None:
    """A path to a secret file (e.g. a TLS key) from a file option or a systemd credential name."""
    if file is not None:
        return file
    if credential:
        directory = os.environ.get("CREDENTIALS_DIRECTORY")
        if not directory:
            raise ConfigError(f"credential {credential!r} asked for, but $CREDENTIALS_DIRECTORY is unset")
        return Path(directory) / credential
    return None


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"cannot read secret file {path}: {exc.strerror}") from exc


def exposure(path: Path) -> str | None:
    """Why a secret file is not owner-only (`mode 0644 gives group and others access ...`), or None."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return None  # missing or unreadable: reported where it is read
    if not mode & NOT_OWNER_ONLY:
        return None
    who = [w for w, bits in (("group", 0o070), ("others", 0o007)) if mode & bits]
    return f"mode {mode:04o} gives {' and '.join(who)} access: make it owner-only (chmod 600 {path})"


# Secret file -> what was last warned of (one line per change). A config names a few secret files; the
# bound only matters across many reloads that name new ones (then an old file may be warned of again).
WARNED_FILES_MAX = 256
_warned: LruCache[Path, str] = LruCache(WARNED_FILES_MAX)


def warn_if_exposed(path: Path) -> None:
    """Log once (and again when it changes) that a secret file is open to group or others."""
    why = exposure(path)
    if why is None:
        _warned.pop(path)
    elif _warned.get(path) != why:
        _warned.put(path, why)
        log.warning("secret file is not owner-only", file=str(path), problem=why)


class SourceBase(Strict):
    """Fields every source instance has."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="Unique name of this source (device) in the site")
    rack: str | None = Field(None, description="Rack tag of its samples; defaults to the source name")
    enabled: bool = Field(True, description="Set false to keep the entry but not run it")

    @property
    def rack_tag(self) -> str:
        return self.rack or self.name


@dataclass(frozen=True, slots=True)
class GivenTwice:
    """A key given under its name and under its deprecated old name at once (a configuration error)."""

    old: str
    new: str


def _old_names_in_schema(schema: JsonDict, cls: type[BaseModel]) -> None:
    """The schema lists a model's deprecated old names too, marked deprecated (editors accept and flag them)."""
    props = schema.get("properties")
    renamed: Mapping[str, str] = getattr(cls, "RENAMED", {})
    if isinstance(props, dict):
        for old, new in renamed.items():
            new_schema = props[new]
            assert isinstance(new_schema, dict)
            kept = {k: v for k, v in new_schema.items() if k not in ("default", "title", "description")}
            props[old] = {**kept, "deprecated": True, "description": f"Deprecated old name of `{new}`"}


class ReconnectingSource(SourceBase):
    """Fields of a source that holds a connection or a bus and reopens it when it fails: one set of
    names for every source (gateway.runtime.backoff is the rule). A source type that used other
    names keeps them as deprecated old names (`RENAMED`, old → new): they load with the same meaning,
    `validate` warns of each (`renamed_keys`), and a key given under both names is an error."""

    model_config = ConfigDict(json_schema_extra=_old_names_in_schema)

    RENAMED: ClassVar[Mapping[str, str]] = {}

    reconnect_initial: float = Field(
        0.5,
        gt=0,
        description="First delay in seconds before reconnecting a failed connection or bus (Modbus: also "
        "before probing an offline device again); doubles after each failure",
    )
    reconnect_max: float = Field(
        30.0, gt=0, description="Longest delay in seconds between reconnect attempts (jittered, exponential)"
    )

    @model_validator(mode="before")
    @classmethod
    def _take_old_names(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not cls.RENAMED.keys() & data.keys():
            return data
        data = dict(data)
        for old, new in cls.RENAMED.items():
            if old in data:
                value = data.pop(old)
                data[new] = GivenTwice(old, new) if new in data else value
        return data

    @field_validator("reconnect_initial", "reconnect_max", mode="before")
    @classmethod
    def _not_twice(cls, value: Any) -> Any:
        if isinstance(value, GivenTwice):
            raise ValueError(
                f"given twice, as {value.new} and as {value.old} (its deprecated old name): keep only {value.new}"
            )
        return value


def renamed_keys(sources: Sequence[BaseModel], data: Any, file: str) -> list[Problem]:
    """A warning at its place for every deprecated old name the sources of a configuration use
    (`data`: the YAML as loaded, for positions), naming the key to use instead."""
    raw = data.get("sources") if isinstance(data, Mapping) else None
    if not isinstance(raw, Sequence):
        return []
    out: list[Problem] = []
    for i, (src, entry) in enumerate(zip(sources, raw, strict=False)):
        renamed: Mapping[str, str] = getattr(src, "RENAMED", {})
        for old, new in renamed.items():
            if isinstance(entry, Mapping) and old in entry:
                line, col = position(data, ["sources", i, old])
                message = f"sources.{i}.{old}: deprecated name: use {new} (same meaning)"
                out.append(Problem(file, line, col, message))
    return out


class SinkBase(Strict):
    """Fields every sink has."""

    enabled: bool = Field(True, description="Set false to keep the entry but not run it")
    batch_max_samples: int = Field(5000, ge=1, description="Largest number of samples in one write")
    batch_max_age: float = Field(0.2, gt=0, description="Seconds a partial batch may wait before it is written")
    backoff_initial: float = Field(0.5, gt=0, description="First retry delay in seconds after a failed write")
    backoff_max: float = Field(
        5.0, gt=0, description="Longest retry delay in seconds (jittered); also how soon a returning server is noticed"
    )
    allow_insecure_transport: bool = Field(
        False,
        description="Accept sending a password or token without TLS to a host that is not loopback "
        "(anyone on the path can read it); refused unless set",
    )
