"""Which secret and certificate files a configuration refers to, whether this machine has them, and
whether the secret ones are owner-only.

`validate` reports a missing one as a warning (secrets are often only present on the target machine;
`validate --secrets` makes it an error, e.g. in the unit's ExecStartPre where the credentials exist).
A secret file (a key named like a secret, see gateway.config.redaction: `token_file`, `password_file`,
`key_file`, `secret_file`) that group or others may read is a warning, and an error with `--secrets`;
the gateway warns of it at run time too (gateway.config.base). Certificates and CA files are public,
and credentials are systemd's to protect. Only paths are looked at; a secret's content is never read here.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel

from gateway.config.base import exposure
from gateway.config.redaction import is_secret_key

if TYPE_CHECKING:
    from gateway.config.settings import LoadedConfig

# Fields holding a path to something the gateway reads at run time (not files it writes).
FILE_FIELDS = frozenset(
    {"token_file", "password_file", "ca_file", "cert_file", "key_file", "secret_file", "public_key_file"}
)
FILE_SUFFIX = "_file"
CREDENTIAL_SUFFIX = "_credential"


@dataclass(frozen=True, slots=True)
class SecretRef:
    key: str  # dotted position in the configuration, e.g. sinks.influx.token_file
    path: Path | None  # the file, resolved; None for a credential without $CREDENTIALS_DIRECTORY
    credential: str | None = None

    @property
    def secret_file(self) -> bool:
        """A file (not a credential) whose content is a secret (a key, not a certificate)."""
        name = self.key.rsplit(".", 1)[-1]
        return self.credential is None and name.endswith(FILE_SUFFIX) and is_secret_key(name[: -len(FILE_SUFFIX)])


def _walk(node: object, key: str) -> Iterator[tuple[str, str, object]]:
    if isinstance(node, BaseModel):
        for name in type(node).model_fields:
            value = getattr(node, name)
            yield key, name, value
            yield from _walk(value, f"{key}.{name}" if key else name)
    elif isinstance(node, Mapping):
        for k, v in node.items():
            yield from _walk(v, f"{key}.{k}")
    elif isinstance(node, list | tuple):
        for i, v in enumerate(node):
            label = getattr(v, "name", None)
            yield from _walk(v, f"{key}.{label}" if isinstance(label, str) else f"{key}[{i}]")


def secret_refs(loaded: LoadedConfig, env: Mapping[str, str] | None = None) -> list[SecretRef]:
    """Every secret or certificate file and credential the configuration names, with its resolved path."""
    env = os.environ if env is None else env
    creds = env.get("CREDENTIALS_DIRECTORY")
    out: list[SecretRef] = []
    for parent, name, value in _walk(loaded.config, ""):
        key = f"{parent}.{name}" if parent else name
        if name in FILE_FIELDS and isinstance(value, Path):
            out.append(SecretRef(key, loaded.resolve(value)))
        elif name.endswith(CREDENTIAL_SUFFIX) and isinstance(value, str) and value:
            out.append(SecretRef(key, Path(creds) / value if creds else None, value))
    return out


def missing_secrets(loaded: LoadedConfig, env: Mapping[str, str] | None = None) -> list[str]:
    """One message per referenced file that this machine does not have (or cannot read)."""
    out: list[str] = []
    for ref in secret_refs(loaded, env):
        if ref.path is None:
            out.append(
                f"{ref.key}: credential {ref.credential!r} comes from systemd at run time "
                "($CREDENTIALS_DIRECTORY is unset here, not checked)"
            )
        elif not ref.path.is_file():
            out.append(f"{ref.key}: {ref.path} does not exist on this machine")
        elif not os.access(ref.path, os.R_OK):
            out.append(f"{ref.key}: {ref.path} is not readable by this user")
    return out


def exposed_secrets(loaded: LoadedConfig, env: Mapping[str, str] | None = None) -> list[str]:
    """One message per secret file that group or others may read or write (it must be owner-only)."""
    out: list[str] = []
    for ref in secret_refs(loaded, env):
        why = exposure(ref.path) if ref.secret_file and ref.path is not None else None
        if why is not None:
            out.append(f"{ref.key}: {ref.path}: secret file not owner-only, {why}")
    return out
