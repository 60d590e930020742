"""Operator keys and command signatures: what is signed, how, and how keys are made, stored and named.

The signed bytes of a command are its canonical JSON without the `sig` field: keys sorted, no
spaces, UTF-8, non-ASCII characters as themselves (Python's `json.dumps(doc, sort_keys=True,
separators=(",", ":"), ensure_ascii=False)`; for objects of text and integers this is also RFC 8785).
`sig` is the standard base64 of the signature: Ed25519 (64 bytes), or HMAC-SHA256 (32 bytes) with a
secret both sides hold. A key id names the key in the journal without revealing it: `ed25519:` or
`hmac:` and 16 hex digits of a SHA-256 of the public key (or of the secret, with a fixed label).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

# cryptography (about 7 MB resident, its Rust binding and OpenSSL) is imported where an Ed25519 key is
# used, not with this module: a gateway that takes no signed commands never loads it.
if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

KeyKind = Literal["ed25519", "hmac"]
SIG_FIELD = "sig"
MIN_SECRET = 16  # characters of an HMAC secret; `alarms keygen --hmac` makes 43
_HMAC_ID_LABEL = b"bms-gateway command key\n"
_PEM_PRIVATE = b"-----BEGIN PRIVATE KEY-----"


class KeyProblem(ValueError):
    """A key that cannot be read or used; the message names the file, never the key."""


def canonical_bytes(doc: dict[str, Any]) -> bytes:
    """The bytes a command's signature covers: its canonical JSON without `sig`."""
    body = {k: v for k, v in doc.items() if k != SIG_FIELD}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def ed25519_key_id(raw_public: bytes) -> str:
    return "ed25519:" + hashlib.sha256(raw_public).hexdigest()[:16]


def hmac_key_id(secret: bytes) -> str:
    return "hmac:" + hashlib.sha256(_HMAC_ID_LABEL + secret).hexdigest()[:16]


def b64decode(text: str) -> bytes:
    """Standard or URL-safe base64, padding optional; ValueError when it is not base64."""
    t = text.strip().replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(t + "=" * (-len(t) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not base64") from exc


def public_key_bytes(text: str) -> bytes:
    """The raw 32 bytes of an Ed25519 public key given as base64 (what `alarms keygen` prints) or PEM."""
    if "-----BEGIN" in text:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        try:
            key = serialization.load_pem_public_key(text.encode())
        except ValueError as exc:
            raise ValueError("not a PEM public key") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError(f"a PEM {type(key).__name__}, not an Ed25519 public key")
        return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    raw = b64decode(text)
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 public key is 32 bytes, this base64 holds {len(raw)}")
    return raw


@dataclass(frozen=True, slots=True)
class VerifyKey:
    """A key that checks signatures: an Ed25519 public key, or an HMAC secret."""

    kind: KeyKind
    material: bytes  # raw public key, or the secret
    key_id: str

    def verify(self, data: bytes, sig: bytes) -> bool:
        if self.kind == "hmac":
            return hmac.compare_digest(hmac.new(self.material, data, hashlib.sha256).digest(), sig)
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        try:
            Ed25519PublicKey.from_public_bytes(self.material).verify(sig, data)
        except InvalidSignature:
            return False
        return True


def verify_key(kind: KeyKind, material: bytes, key_id: str | None = None) -> VerifyKey:
    if kind == "hmac" and len(material) < MIN_SECRET:
        raise KeyProblem(f"an HMAC secret needs at least {MIN_SECRET} characters (`alarms keygen --hmac` makes one)")
    default = hmac_key_id(material) if kind == "hmac" else ed25519_key_id(material)
    return VerifyKey(kind, material, key_id or default)


@dataclass(frozen=True, slots=True)
class SigningKey:
    """An operator's signing key, read from the file `alarms keygen` wrote."""

    kind: KeyKind
    material: bytes  # PEM of the private key, or the secret
    key_id: str

    def sign(self, doc: dict[str, Any]) -> dict[str, Any]:
        """`doc` with its `sig`."""
        return {**doc, SIG_FIELD: base64.b64encode(self.sign_bytes(canonical_bytes(doc))).decode()}

    def sign_bytes(self, data: bytes) -> bytes:
        """The signature of exactly these bytes (a command's canonical JSON, a file)."""
        if self.kind == "hmac":
            return hmac.new(self.material, data, hashlib.sha256).digest()
        return _private(self.material).sign(data)

    def public_bytes(self) -> bytes:
        """The raw 32-byte Ed25519 public key (KeyProblem for an HMAC secret, which has none)."""
        if self.kind == "hmac":
            raise KeyProblem("an HMAC secret has no public key: use an Ed25519 key (`alarms keygen`)")
        from cryptography.hazmat.primitives import serialization

        key = _private(self.material).public_key()
        return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _private(pem: bytes) -> Ed25519PrivateKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyProblem(f"a {type(key).__name__}, not an Ed25519 private key")
    return key


def load_signing_key(path: Path) -> SigningKey:
    """An Ed25519 private key (PEM) or an HMAC secret (text) from a file; KeyProblem names the file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyProblem(f"cannot read key file {path}: {exc.strerror}") from exc
    if data.lstrip().startswith(_PEM_PRIVATE):
        try:
            key = _private(data)
        except (ValueError, TypeError) as exc:
            raise KeyProblem(f"{path}: not a readable Ed25519 private key") from exc
        from cryptography.hazmat.primitives import serialization

        raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return SigningKey("ed25519", data, ed25519_key_id(raw))
    secret = data.strip()
    if len(secret) < MIN_SECRET:
        raise KeyProblem(f"{path}: neither an Ed25519 private key (PEM) nor an HMAC secret of {MIN_SECRET}+ characters")
    return SigningKey("hmac", secret, hmac_key_id(secret))


@dataclass(frozen=True, slots=True)
class NewKey:
    """What `alarms keygen` made: the private file's content and what the gateway is told."""

    kind: KeyKind
    private: bytes  # goes to the operator's key file (mode 0600)
    public: str | None  # base64 Ed25519 public key for gateway.yaml; None for HMAC (the gateway holds the secret)
    key_id: str


def generate(kind: KeyKind) -> NewKey:
    if kind == "hmac":
        secret = secrets.token_urlsafe(32).encode()
        return NewKey("hmac", secret + b"\n", None, hmac_key_id(secret))
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return NewKey("ed25519", pem, base64.b64encode(raw).decode(), ed25519_key_id(raw))


def write_private(path: Path, data: bytes, *, force: bool = False) -> None:
    """Write a key file readable by its owner only (0600); an existing file is kept unless `force`."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    fd = os.open(path, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)  # also when `force` rewrites a file that had wider rights
        os.write(fd, data)
    finally:
        os.close(fd)
