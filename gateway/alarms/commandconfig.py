"""Configuration of the MQTT alarm commands: the topic, who may command with which key, and the bounds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, StringConstraints, field_validator, model_validator

from gateway.config.base import Strict

USER_NAME = r"^[A-Za-z0-9_.@-]{1,64}$"
UserName = Annotated[str, StringConstraints(pattern=USER_NAME)]


class CommandUser(Strict):
    """An operator who may command alarms, and the one key that signs their commands."""

    public_key: str | None = Field(
        None, description="Ed25519 public key, base64 (as `bms-gateway alarms keygen` prints it) or PEM"
    )
    public_key_file: Path | None = Field(None, description="File holding the Ed25519 public key (base64 or PEM)")
    secret_file: Path | None = Field(None, description="File holding an HMAC-SHA256 secret shared with the operator")
    secret_credential: str | None = Field(None, description="systemd credential name holding the HMAC secret")
    key_id: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_.:@-]{1,64}$", description="Name of the key in the journal (default: fingerprint)"
    )
    all_alarms: bool = Field(
        False, description='May acknowledge or shelve every alarm of a rack at once (alarm_id "*"), signed only'
    )

    @field_validator("public_key")
    @classmethod
    def _public_key(cls, v: str | None) -> str | None:
        if v is not None:
            from gateway.alarms.signing import public_key_bytes

            public_key_bytes(v)  # ValueError says what is wrong
        return v

    @model_validator(mode="after")
    def _one_key(self) -> CommandUser:
        given = [k for k in ("public_key", "public_key_file", "secret_file", "secret_credential") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(
                "a user needs exactly one key: public_key or public_key_file (Ed25519), "
                f"secret_file or secret_credential (HMAC); got {given or 'none'}"
            )
        return self


class CommandsConfig(Strict):
    """Acknowledge and shelve alarms through MQTT (off unless enabled)."""

    enabled: bool = Field(False, description="Listen for commands on the MQTT command topic")
    mqtt_sink: str | None = Field(
        None, description="Name of the MQTT sink whose broker, TLS and credentials to use (default: the only one)"
    )
    topic: str | None = Field(None, description="Command topic filter (default <prefix>/<site>/+/alarms/command)")
    require_signature: bool = Field(
        True, description="Refuse commands not signed by a key in `users` (false: unsigned commands are accepted)"
    )
    users: dict[UserName, CommandUser] = Field(
        default_factory=dict, description="Operators and their keys (Ed25519 public key or HMAC secret)"
    )
    allowed_users: list[str] | None = Field(
        None, description="Only these user names may command (default: every user with a key, or anyone unsigned)"
    )
    clock_window: float = Field(
        120.0, gt=0, le=3600, description="Seconds a signed command's `ts` may differ from the gateway's clock"
    )
    max_shelve: float = Field(8 * 3600.0, gt=0, description="Longest shelve in seconds")
    default_shelve: float = Field(3600.0, gt=0, description="Shelve duration when the command gives none")
    max_payload: int = Field(
        16384, ge=1024, le=1048576, description="Largest command in bytes (checked before it is parsed)"
    )
    max_depth: int = Field(4, ge=2, le=32, description="Deepest nesting of arrays and objects in a command")
    max_text: int = Field(500, ge=16, le=10000, description="Longest `reason` in characters")
    rate: float = Field(1.0, gt=0, description="Commands per second per rack (token bucket refill)")
    burst: int = Field(20, ge=1, le=10000, description="Commands a rack may send at once (token bucket size)")
    queue_size: int = Field(64, ge=1, le=10000, description="Commands waiting for the engine; more are dropped")

    @field_validator("topic")
    @classmethod
    def _one_rack_level(cls, v: str | None) -> str | None:
        if v is not None and (v.split("/").count("+") != 1 or "#" in v):
            raise ValueError("the command topic needs exactly one `+` level (the rack) and no `#`")
        return v
