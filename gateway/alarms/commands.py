"""Operator commands over MQTT: acknowledge, shelve and unshelve alarms, signed by the operator (pure parts).

Enabled only by `alarms.commands.enabled`; the listener (`commandlistener`) takes them from
`<prefix>/<site>/+/alarms/command` and answers on `.../alarms/command/result`. Commands change the
gateway's alarm state only: nothing is ever written to a BMS.

    {"action": "ack", "alarm_id": "rack-01:cell_over_voltage:m2c5", "user": "alice", "reason": "seen",
     "id": "42", "site": "s1", "rack": "rack-01", "ts": 1764082800, "nonce": "q0T6…", "sig": "…"}
    {"action": "shelve", "alarm_ids": ["rack-01:door"], "user": "bob", "reason": "maintenance", "duration": 3600, …}

A command is read in steps, each refusing with a reason: `decode` (size, nesting, JSON, no NaN),
`parse_command` (fields and their lengths), `Verifier.identify` (signature, time, nonce) and
`authorize` (`"*"`, every alarm of the rack, only for a signed command of a user with `all_alarms`).
"""

from __future__ import annotations

import math
import re
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from gateway.alarms.commandauth import Identity, Verifier
from gateway.alarms.commandconfig import USER_NAME, CommandsConfig
from gateway.alarms.commandlimits import Denied, InvalidCommand, decode
from gateway.config.base import credential_path, read_secret
from gateway.sinks.config import MqttConnection, MqttSinkConfig
from gateway.textsafe import shorten

ACTIONS = ("ack", "shelve", "unshelve")
FIELDS = frozenset({"action", "alarm_id", "alarm_ids", "user", "reason", "duration", "id", "site", "rack", "ts",
                    "nonce", "sig"})  # fmt: skip
MAX_IDS = 100  # alarm ids in one command
MAX_ID_CHARS = 256  # characters of one alarm id
MAX_REQUEST_ID = 64  # characters of the request `id`
MAX_ECHO = 20  # alarm ids and errors echoed in a reply; the rest are counted
MAX_ERROR = 300  # characters of one error in a reply or journal entry
_USER = re.compile(USER_NAME)


@dataclass(frozen=True, slots=True)
class Command:
    action: str
    rack: str
    alarm_ids: tuple[str, ...]  # ("*",) means every alarm in view of the rack
    user: str
    reason: str | None
    duration: float | None
    request_id: str | None
    identity: Identity | None = None  # who sent it, as checked (None: not checked, e.g. a test or the CLI)


def read_command(rack: str, payload: bytes, cfg: CommandsConfig, verifier: Verifier) -> Command:
    """Every check of one command message, in order; raise InvalidCommand or Denied saying why not."""
    doc = decode(payload, cfg.max_payload, cfg.max_depth)
    cmd = command_of(rack, doc, cfg)
    identity = verifier.identify(doc, rack, cmd.user)
    authorize(cmd, identity, cfg)
    return replace(cmd, identity=identity)


def parse_command(rack: str, payload: bytes, cfg: CommandsConfig) -> Command:
    """The fields of one command message, bounded and checked (who sent it is not checked here)."""
    return command_of(rack, decode(payload, cfg.max_payload, cfg.max_depth), cfg)


def command_of(rack: str, doc: dict[str, Any], cfg: CommandsConfig) -> Command:
    unknown = sorted(k for k in doc if k not in FIELDS)
    if unknown:
        raise InvalidCommand(f"unknown field(s) {shorten(str(unknown[:5]), 200)}: expected {sorted(FIELDS)}")
    action = doc.get("action")
    if action not in ACTIONS:
        raise InvalidCommand(f"action must be one of {list(ACTIONS)}, got {shorten(repr(action), 40)}")
    user = doc.get("user")
    if not isinstance(user, str) or not user.strip():
        raise InvalidCommand("user is required (who acknowledges or shelves)")
    user = user.strip()
    if not _USER.match(user):
        raise InvalidCommand("user must be 1 to 64 letters, digits, '_', '.', '@' or '-'")
    reason = doc.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise InvalidCommand("reason must be text")
    if reason is not None and len(reason) > cfg.max_text:
        raise InvalidCommand(f"reason of {len(reason)} characters is over the limit of {cfg.max_text}", "too_long")
    if action == "shelve" and not (reason or "").strip():
        raise InvalidCommand("shelving needs a reason")
    ids = _ids(doc, rack)
    duration = _duration(doc, action, cfg)
    rid = doc.get("id")
    if rid is not None and (not isinstance(rid, str | int) or isinstance(rid, bool) or len(str(rid)) > MAX_REQUEST_ID):
        raise InvalidCommand(f"id must be text or an integer of at most {MAX_REQUEST_ID} characters")
    return Command(action, rack, ids, user, reason, duration, None if rid is None else str(rid))


def _ids(doc: dict[str, Any], rack: str) -> tuple[str, ...]:
    raw = doc.get("alarm_ids", doc.get("alarm_id"))
    ids = [raw] if isinstance(raw, str) else raw
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and i for i in ids):
        raise InvalidCommand("alarm_id (text) or alarm_ids (a list of text) is required; '*' means all of the rack")
    if len(ids) > MAX_IDS or any(len(i) > MAX_ID_CHARS for i in ids):
        raise InvalidCommand(f"at most {MAX_IDS} alarm ids of at most {MAX_ID_CHARS} characters each", "too_long")
    if ids == ["*"]:
        return ("*",)
    foreign = [i for i in ids if not i.startswith(f"{rack}:")]
    if foreign:
        raise InvalidCommand(
            f"alarm ids {shorten(str(foreign[:5]), 200)} are not of rack {shorten(repr(rack), 80)} "
            "(the command topic names the rack)"
        )
    return tuple(ids)


def _duration(doc: dict[str, Any], action: str, cfg: CommandsConfig) -> float | None:
    duration = doc.get("duration")
    if action != "shelve":
        return None
    if duration is None:
        duration = cfg.default_shelve
    if not isinstance(duration, int | float) or isinstance(duration, bool) or not math.isfinite(duration):
        raise InvalidCommand("duration must be a number of seconds above 0")
    if duration <= 0:
        raise InvalidCommand("duration must be a number of seconds above 0")
    if duration > cfg.max_shelve:
        raise InvalidCommand(f"duration {duration:g} s exceeds the longest shelve ({cfg.max_shelve:g} s)")
    return float(duration)


def authorize(cmd: Command, identity: Identity, cfg: CommandsConfig) -> None:
    """`"*"` (every alarm of the rack) only for a signed command of a user with `all_alarms: true`."""
    if cmd.alarm_ids != ("*",):
        return
    user = cfg.users.get(identity.user)
    if not identity.verified or user is None or not user.all_alarms:
        raise Denied(
            f"alarm_id '*' (every alarm of the rack) needs a signed command of a user with all_alarms: true; "
            f"user {identity.user!r} may name alarm ids only",
            "not_permitted",
        )


def bounded_reply(reply: dict[str, Any]) -> dict[str, Any]:
    """A reply with its echoed fields bounded: at most MAX_ECHO ids and errors (the rest counted), each shortened."""
    out = dict(reply)
    for key in ("alarm_ids", "errors"):
        items = out.get(key)
        if isinstance(items, list):
            out[key] = [shorten(str(i), MAX_ERROR) for i in items[:MAX_ECHO]]
            if len(items) > MAX_ECHO:
                out[f"{key}_more"] = len(items) - MAX_ECHO
    for key in ("user", "id", "key_id"):
        if isinstance(out.get(key), str):
            out[key] = shorten(out[key], MAX_REQUEST_ID)
    return out


def rack_from_topic(topic: str, pattern: str) -> str | None:
    """The rack a command topic names: the level where the filter has `+`."""
    parts, pat = topic.split("/"), pattern.split("/")
    if len(parts) != len(pat):
        return None
    for got, want in zip(parts, pat, strict=True):
        if want not in ("+", got):
            return None
    plus = [p for p, w in zip(parts, pat, strict=True) if w == "+"]
    return plus[0] if len(plus) == 1 else None


def command_sink(sinks: Mapping[str, object], name: str | None) -> MqttSinkConfig:
    """The MQTT sink whose connection the commands use: the one named, or the only one (checked at load)."""
    mqtt = {n: s for n, s in sinks.items() if isinstance(s, MqttSinkConfig)}
    if name is None:
        (name,) = mqtt
    return mqtt[name]


M = TypeVar("M", bound=MqttConnection)


def resolved(mq: M, resolve: Callable[[Path], Path]) -> M:
    """The sink's settings with its files relative to gateway.yaml made absolute (as the sink reads them)."""
    files = {k: resolve(v) for k in ("ca_file", "cert_file", "key_file", "password_file")
             if isinstance(v := getattr(mq, k), Path)}  # fmt: skip
    return mq.model_copy(update=files)


def tls_context(mq: MqttConnection) -> ssl.SSLContext | None:
    """TLS for the broker with verification on (a CA file, else the system store), client cert optional."""
    if not mq.tls:
        return None
    ctx = ssl.create_default_context(cafile=str(mq.ca_file) if mq.ca_file else None)
    key = credential_path(mq.key_file, mq.key_credential)
    if mq.cert_file is not None:
        ctx.load_cert_chain(str(mq.cert_file), str(key) if key else None)
    return ctx


def client_args(mq: MqttConnection, identifier: str) -> dict[str, Any]:
    """Keyword arguments of aiomqtt.Client from a sink's connection settings (the secret stays in memory)."""
    password = read_secret(mq.password, mq.password_file, mq.password_credential)
    return {
        "hostname": mq.host,
        "port": mq.port,
        "username": mq.username,
        "password": password.get_secret_value() if password is not None else None,
        "identifier": identifier,
        "clean_session": False,
        "keepalive": mq.keepalive,
        "tls_context": tls_context(mq),
    }
