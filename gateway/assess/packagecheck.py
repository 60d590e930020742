"""Checking an evidence package: every file against the manifest, the manifest against its signature.

Trust model. The manifest's hashes show that the files are the ones it lists; its Ed25519 signature
shows that the manifest is what the signer wrote. *Who* the signer is comes from the reviewer: a
package is **verified** only when its signature checks with a public key the reviewer holds from
before (`trusted`, `verify-package --public-key`). Without one, the signature is checked with the key
the package carries (`manifest.pub`, whose id the signed manifest names): a package that passes is
**intact** but signed by a key the reviewer has not confirmed (`untrusted`), and one without a
signature is **unsigned**: neither is reported as verified.

A package is read from a directory or from a tar (decrypted or not, see `packageopen`); either way
the checks here see the same thing, `Found`: each file's size and SHA-256, and the bytes of the
three manifest files (at most `MANIFEST_MAX` each).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Literal, NamedTuple

from gateway.alarms.signing import VerifyKey, b64decode, public_key_bytes, verify_key
from gateway.assess.package import FORMAT, MANIFEST, MANIFEST_FILES, PUBLIC_KEY, SIGNATURE, Digest
from gateway.errors import Problem

MANIFEST_MAX = 1 << 20  # bytes of manifest.json (and of .sig, .pub) read into memory
Status = Literal["verified", "untrusted", "unsigned", "failed"]


@dataclass(slots=True)
class Found:
    """What a package holds: every file's digest by its path in the package, the manifest files' bytes."""

    files: dict[str, Digest] = field(default_factory=dict)
    texts: dict[str, bytes] = field(default_factory=dict)  # manifest.json, .sig, .pub
    problems: list[Problem] = field(default_factory=list)  # found while reading (a link, a file too big)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome: `status`, every problem (each naming its file), the signer's key id, files checked."""

    status: Status
    problems: list[Problem]
    signer: str | None
    files: int

    def passed(self, accept_unauthenticated: bool = False) -> bool:
        ok: tuple[Status, ...] = ("verified", "untrusted", "unsigned") if accept_unauthenticated else ("verified",)
        return self.status in ok


class Signed(NamedTuple):
    """What the signature check found: the status it allows, and the signer's key id."""

    status: Status
    signer: str | None


def problem(path: str, text: str) -> Problem:
    return Problem(path, 0, 0, text)


def check(found: Found, trusted: Sequence[VerifyKey] = ()) -> Verdict:
    """Check what a package holds against its manifest and signature (see the module docstring)."""
    problems = list(found.problems)
    doc = _manifest(found.texts.get(MANIFEST), problems)
    if doc is None:
        return Verdict("failed", problems, None, 0)
    signed = _signature(doc, found.texts, trusted, problems)  # first: a changed manifest is named first
    listed = _listed(doc, problems)
    for path, want in listed.items():
        have = found.files.get(path)
        if have is None:
            problems.append(problem(path, "missing (the manifest lists it)"))
        elif have.size != want.size:
            problems.append(problem(path, f"changed: {have.size} bytes, the manifest says {want.size}"))
        elif have.sha256 != want.sha256:
            problems.append(problem(path, "changed: its SHA-256 is not the one in the manifest"))
    for path in sorted(set(found.files) - set(listed) - MANIFEST_FILES):
        problems.append(problem(path, "not in the manifest (a file added to the package)"))
    return Verdict("failed" if problems else signed.status, problems, signed.signer, len(listed))


def _manifest(data: bytes | None, problems: list[Problem]) -> dict[str, Any] | None:
    if data is None:
        problems.append(problem(MANIFEST, "missing: not a package, or its manifest was removed"))
        return None
    try:
        doc = json.loads(data)
    except ValueError:
        problems.append(problem(MANIFEST, "not JSON (changed or damaged)"))
        return None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("files"), list):
        problems.append(problem(MANIFEST, f"not a manifest of the format {FORMAT!r} with a list of files"))
        return None
    return doc


def _listed(doc: dict[str, Any], problems: list[Problem]) -> dict[str, Digest]:
    """The manifest's files by path; an entry that is not well formed, or a path outside the package, is a
    problem of the manifest (never read)."""
    listed: dict[str, Digest] = {}
    for i, e in enumerate(doc["files"]):
        path = e.get("path") if isinstance(e, dict) else None
        size, sha = (e.get("size"), e.get("sha256")) if isinstance(e, dict) else (None, None)
        if not isinstance(path, str) or type(size) is not int or not isinstance(sha, str):
            problems.append(problem(MANIFEST, f"files[{i}]: path, size and sha256 expected"))
        elif not safe_path(path) or path in MANIFEST_FILES or path in listed:
            problems.append(problem(MANIFEST, f"files[{i}]: {path[:200]!r} is not a path of the package"))
        else:
            listed[path] = Digest(size, sha)
    return listed


def safe_path(path: str) -> bool:
    """A relative path that stays inside the package (no `..`, no root, no empty or `.` parts)."""
    parts = path.split("/")
    return not PurePosixPath(path).is_absolute() and "\\" not in path and all(x not in ("", ".", "..") for x in parts)


def _signature(
    doc: dict[str, Any], texts: dict[str, bytes], trusted: Sequence[VerifyKey], problems: list[Problem]
) -> Signed:
    signer = doc.get("signer")
    named = signer.get("key_id") if isinstance(signer, dict) else None
    if signer is None:
        if SIGNATURE in texts or PUBLIC_KEY in texts:
            _signer_lost(texts, problems)
        if trusted:
            problems.append(problem(MANIFEST, "not signed, but a public key to check it with was given"))
        return Signed("unsigned", None)
    if not isinstance(named, str) or signer.get("algorithm") != "ed25519":
        problems.append(problem(MANIFEST, "signer: algorithm ed25519 and key_id expected"))
        return Signed("failed", None)
    carried = _carried_key(texts.get(PUBLIC_KEY), problems)
    sig = _sig_file(texts.get(SIGNATURE), problems)
    manifest_data = texts[MANIFEST]
    keys = list(trusted) or ([carried] if carried is not None else [])
    good = None if sig is None else next((k for k in keys if k.verify(manifest_data, sig.signature)), None)
    changed = sig is not None and sig.manifest_sha256 != hashlib.sha256(manifest_data).hexdigest()
    # One culprit named: a changed manifest, else a manifest.pub that is not the key named, else the signature.
    pub_wrong = carried is not None and carried.key_id != named
    if sig is not None and good is None and keys and (changed or trusted or not pub_wrong):
        _unverified(manifest_data, sig, carried, trusted, problems)
    elif carried is not None and pub_wrong:
        problems.append(problem(PUBLIC_KEY, f"holds key {carried.key_id}, but the manifest names {named}"))
    if sig is None or good is None:
        return Signed("failed", named)
    if changed or sig.key_id != good.key_id:
        problems.append(problem(SIGNATURE, "its manifest_sha256 or key_id was changed"))
    if good.key_id != named:
        problems.append(problem(MANIFEST, f"names signer {named}, but {good.key_id} signed it"))
    return Signed("verified" if trusted else "untrusted", good.key_id)


def _signer_lost(texts: dict[str, bytes], problems: list[Problem]) -> None:
    """The manifest names no signer, yet signature files are there: the manifest changed since it was
    signed (the signature file holds another SHA-256), or the files were added to an unsigned package."""
    sig = _sig_file(texts.get(SIGNATURE), [])
    if sig is not None and sig.manifest_sha256 != hashlib.sha256(texts[MANIFEST]).hexdigest():
        problems.append(problem(MANIFEST, f"changed after signing: it names no signer, and {SIGNATURE} holds "
                                "the SHA-256 of another manifest"))  # fmt: skip
        return
    for extra in (SIGNATURE, PUBLIC_KEY):
        if extra in texts:
            problems.append(problem(extra, "present, but the manifest names no signer (an added file)"))


def _unverified(
    data: bytes, sig: _Sig, carried: VerifyKey | None, trusted: Sequence[VerifyKey], problems: list[Problem]
) -> None:
    """Say why no key checks the signature: the manifest changed, the signature changed, or another key."""
    if trusted and carried is not None and carried.verify(data, sig.signature):
        given = ", ".join(k.key_id for k in trusted)
        problems.append(problem(SIGNATURE, f"signed by {carried.key_id}, an unknown key (not {given})"))
    elif sig.manifest_sha256 != hashlib.sha256(data).hexdigest():
        problems.append(problem(MANIFEST, "changed after signing: its SHA-256 is not the one signed"))
    else:
        problems.append(problem(SIGNATURE, "the signature does not verify (changed, or made with another key)"))


def _carried_key(data: bytes | None, problems: list[Problem]) -> VerifyKey | None:
    """The public key the package carries (manifest.pub), exactly as written, or None (a problem said why)."""
    if data is None:
        problems.append(problem(PUBLIC_KEY, "missing (the manifest is signed)"))
        return None
    try:
        raw = public_key_bytes(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        problems.append(problem(PUBLIC_KEY, "not an Ed25519 public key (base64)"))
        return None
    key = verify_key("ed25519", raw)
    if data != base64.b64encode(raw) + b"\n":
        problems.append(problem(PUBLIC_KEY, "changed: not the one line of base64 a package is written with"))
    return key


@dataclass(frozen=True, slots=True)
class _Sig:
    key_id: object
    manifest_sha256: object
    signature: bytes


def _sig_file(data: bytes | None, problems: list[Problem]) -> _Sig | None:
    if data is None:
        problems.append(problem(SIGNATURE, "missing (the manifest names a signer)"))
        return None
    try:
        doc = json.loads(data)
        sig = b64decode(doc["signature"])
        if len(sig) != 64 or doc["algorithm"] != "ed25519":
            raise ValueError("not an Ed25519 signature")
        return _Sig(doc.get("key_id"), doc.get("manifest_sha256"), sig)
    except (ValueError, KeyError, TypeError, AttributeError):
        problems.append(problem(SIGNATURE, "not a signature file (JSON with a base64 Ed25519 signature)"))
        return None


def trusted_key(text: str) -> VerifyKey:
    """A reviewer's public key from its text (base64 or PEM, as `alarms keygen` writes the .pub); ValueError."""
    return verify_key("ed25519", public_key_bytes(text))
