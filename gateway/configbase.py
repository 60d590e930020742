"""Shared pieces of the configuration models: a strict frozen base and secret resolution."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from gateway.errors import ConfigError


class Strict(BaseModel):
    """Base of every configuration model: frozen, unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


def read_secret(value: SecretStr | None, file: Path | None, credential: str | None) -> SecretStr | None:
    """Resolve a secret from (in order) a file, a systemd credential, or the inline value.

    `credential` names a file in `$CREDENTIALS_DIRECTORY` (systemd `LoadCredential=`). The secret's
    text is never logged; errors name the file, never its content.
    """
    if file is not None:
        return SecretStr(_read(file))
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


class SourceBase(Strict):
    """Fields every source instance has."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="Unique name of this source (device) in the site")
    rack: str | None = Field(None, description="Rack tag of its samples; defaults to the source name")
    enabled: bool = Field(True, description="Set false to keep the entry but not run it")

    @property
    def rack_tag(self) -> str:
        return self.rack or self.name


class SinkBase(Strict):
    """Fields every sink has."""

    enabled: bool = Field(True, description="Set false to keep the entry but not run it")
    batch_max_samples: int = Field(5000, ge=1, description="Largest number of samples in one write")
    batch_max_age: float = Field(0.2, gt=0, description="Seconds a partial batch may wait before it is written")
    backoff_initial: float = Field(0.5, gt=0, description="First retry delay in seconds after a failed write")
    backoff_max: float = Field(
        5.0, gt=0, description="Longest retry delay in seconds (jittered); also how soon a returning server is noticed"
    )
