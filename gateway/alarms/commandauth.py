"""Who sent a command: its signature checked against the user's key, its time, its nonce (never seen before).

A signed command carries `user`, `site`, `rack`, `ts` (Unix seconds, an integer), `nonce` (16 to 128
characters of letters, digits, `-` and `_`) and `sig` over the rest (see `signing`). It is refused
when it is unsigned (unless `require_signature: false`), signed by no key of that user, for another
site or rack, outside `clock_window` of the gateway's clock, or a replay: a nonce is remembered
(bounded in number and time: a nonce older than the window would be refused as stale anyway). The
checks that cost nothing come first; a nonce is only remembered once its signature holds, so nobody
without a key can fill the memory of nonces.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from gateway.alarms.commandconfig import CommandsConfig, CommandUser
from gateway.alarms.commandlimits import Denied, InvalidCommand
from gateway.alarms.signing import SIG_FIELD, KeyProblem, VerifyKey, b64decode, canonical_bytes, public_key_bytes
from gateway.alarms.signing import verify_key as make_key
from gateway.config.base import read_secret
from gateway.errors import ConfigError

log = structlog.get_logger("alarms.commands")

NONCE = re.compile(r"^[A-Za-z0-9_-]{16,128}$")
MAX_NONCES = 20_000  # remembered at once; more recent signed commands than that are refused as busy
MAX_SIG_CHARS = 200


@dataclass(frozen=True, slots=True)
class Identity:
    """The sender as checked: `verified` when the signature, time and nonce hold (then `key_id` names the key)."""

    user: str
    verified: bool
    key_id: str | None = None
    nonce: str | None = None
    signed_ts: int | None = None


@dataclass(frozen=True, slots=True)
class Keyring:
    """Each user's key, as loaded at start; a user whose key could not be loaded has a problem instead."""

    keys: dict[str, VerifyKey]
    problems: dict[str, str]


def load_keyring(cfg: CommandsConfig, resolve: Callable[[Path], Path] = lambda p: p) -> Keyring:
    """Read every user's key (files relative to gateway.yaml, secrets by the usual file or credential rules).

    A key that cannot be read is one error line; that user's commands are then refused naming it."""
    keys: dict[str, VerifyKey] = {}
    problems: dict[str, str] = {}
    for user, spec in cfg.users.items():
        try:
            keys[user] = _load(spec, resolve)
        except (KeyProblem, ConfigError, ValueError, OSError) as exc:
            problems[user] = f"the key of user {user!r} cannot be used: {exc}"
            log.error("alarm commands: a user's key cannot be used", user=user, error=str(exc))
    return Keyring(keys, problems)


def _load(spec: CommandUser, resolve: Callable[[Path], Path]) -> VerifyKey:
    if spec.public_key is not None:
        return make_key("ed25519", public_key_bytes(spec.public_key), spec.key_id)
    if spec.public_key_file is not None:
        path = resolve(spec.public_key_file)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise KeyProblem(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from exc
        try:
            return make_key("ed25519", public_key_bytes(text), spec.key_id)
        except ValueError as exc:
            raise KeyProblem(f"{path}: {exc}") from exc
    file = resolve(spec.secret_file) if spec.secret_file is not None else None
    secret = read_secret(None, file, spec.secret_credential)
    if secret is None:  # the model requires one source
        raise KeyProblem("no key given")
    return make_key("hmac", secret.get_secret_value().encode(), spec.key_id)


class NonceCache:
    """Nonces of accepted signed commands, each kept `keep` seconds (monotonic), at most `limit` at once."""

    def __init__(self, keep: float, limit: int = MAX_NONCES, clock: Callable[[], float] = time.monotonic) -> None:
        self.keep, self.limit, self.clock = keep, limit, clock
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()  # in order of expiry (same `keep`)

    def __contains__(self, key: tuple[str, str]) -> bool:
        self._expire()
        return key in self._seen

    def add(self, key: tuple[str, str]) -> bool:
        """Remember a nonce; False when the cache is full of nonces still in their window."""
        self._expire()
        if len(self._seen) >= self.limit:
            return False
        self._seen[key] = self.clock() + self.keep
        return True

    def _expire(self) -> None:
        now = self.clock()
        while self._seen:
            key, until = next(iter(self._seen.items()))
            if until > now:
                return
            del self._seen[key]

    def __len__(self) -> int:
        self._expire()
        return len(self._seen)


class Verifier:
    """Checks a command's sender (pure apart from the clocks it is given)."""

    def __init__(
        self, cfg: CommandsConfig, keyring: Keyring, site: str, wall: Callable[[], float] = time.time,
        nonces: NonceCache | None = None,
    ) -> None:  # fmt: skip
        self.cfg, self.keyring, self.site, self.wall = cfg, keyring, site, wall
        self.nonces = nonces if nonces is not None else NonceCache(2 * cfg.clock_window)

    def identify(self, doc: dict[str, Any], rack: str, user: str) -> Identity:
        """The sender of a well-formed command; Denied says why it may not be taken."""
        allowed = self.cfg.allowed_users
        if allowed is not None and user not in allowed:
            raise Denied(f"user {user!r} may not command alarms", "unknown_user")
        if SIG_FIELD not in doc:
            if self.cfg.require_signature:
                raise Denied("the command is not signed (`bms-gateway alarms send` signs it)", "unsigned")
            return Identity(user, verified=False)
        return self._signed(doc, rack, user)

    def _signed(self, doc: dict[str, Any], rack: str, user: str) -> Identity:
        key = self.keyring.keys.get(user)
        if key is None:
            problem = self.keyring.problems.get(user)
            raise Denied(problem or f"user {user!r} has no key at this gateway", "unknown_user")
        ts, nonce, sig = doc.get("ts"), doc.get("nonce"), doc.get(SIG_FIELD)
        if not isinstance(ts, int) or isinstance(ts, bool):
            raise InvalidCommand("a signed command needs `ts`, its time in Unix seconds (an integer)")
        if not isinstance(nonce, str) or not NONCE.match(nonce):
            raise InvalidCommand("a signed command needs `nonce`: 16 to 128 letters, digits, - or _")
        if not isinstance(sig, str) or len(sig) > MAX_SIG_CHARS:
            raise InvalidCommand("`sig` is the base64 of the signature")
        if doc.get("site") != self.site or doc.get("rack") != rack:
            raise Denied(f"signed for another site or rack (this is site {self.site!r}, rack {rack!r})", "wrong_target")
        skew = ts - self.wall()
        if abs(skew) > self.cfg.clock_window:
            raise Denied(f"stale: its time is {skew:+.0f} s from the gateway's (window {self.cfg.clock_window:g} s)",
                         "stale")  # fmt: skip
        if (user, nonce) in self.nonces:
            raise Denied("replayed: this nonce was already used", "replayed")
        try:
            raw = b64decode(sig)
        except ValueError:
            raise InvalidCommand("`sig` is the base64 of the signature") from None
        if not key.verify(canonical_bytes(doc), raw):
            raise Denied(f"bad signature: not signed by the key of user {user!r} ({key.key_id})", "bad_signature")
        if not self.nonces.add((user, nonce)):
            raise Denied("busy: too many recent commands to remember their nonces; send it again later", "busy")
        return Identity(user, verified=True, key_id=key.key_id, nonce=nonce, signed_ts=ts)
