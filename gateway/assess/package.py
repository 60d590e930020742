"""The evidence package of an assessment: its files, its manifest, its signature and its encryption.

A package is a directory (mode 0700, files 0600: it holds a site's measurements):

    report.json  report.html  samples.parquet  alarm-journal.jsonl  manifest.json  [manifest.sig  manifest.pub]

- `manifest.json` lists every other file of the package (`path`, `size`, `sha256`), with the package
  `format`, the `tool` and its `version`, the `created` time, the assessed `window` (the times and
  racks asked for, and the span of the samples written) and, when signed, the `signer` (`algorithm`
  `ed25519`, `key_id` as the alarm command keys name theirs: `ed25519:` and 16 hex digits of a SHA-256
  of the public key). It does not list itself, `manifest.sig` or `manifest.pub`.
- `manifest.sig` (JSON): `algorithm`, `key_id`, `manifest_sha256` and `signature`, the standard base64
  of the Ed25519 signature of the exact bytes of `manifest.json`.
- `manifest.pub`: the signer's public key, base64 (as `alarms keygen` writes it). It says which key
  the package claims; a reviewer trusts the key they received beforehand (`verify-package
  --public-key`), not this copy.

Encrypted (`encrypt_to`), the package is `DIR.tar.age`: a tar of the directory (members `DIR/<file>`)
encrypted with age to each recipient (`age1...` X25519, or an `ssh-ed25519`/`ssh-rsa` public key). The
directory is then made in a private temporary directory beside the output and removed: no plaintext
copy stays behind.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import tarfile
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.alarms.signing import KeyProblem, SigningKey, load_signing_key
from gateway.assess.samplefile import SampleStats, write_samples
from gateway.errors import ConfigError, GatewayError
from gateway.model import Batch

FORMAT = "bms-gateway evidence package 1"
REPORT_JSON, REPORT_HTML = "report.json", "report.html"
SAMPLES, JOURNAL = "samples.parquet", "alarm-journal.jsonl"
MANIFEST, SIGNATURE, PUBLIC_KEY = "manifest.json", "manifest.sig", "manifest.pub"
MANIFEST_FILES = frozenset({MANIFEST, SIGNATURE, PUBLIC_KEY})
SUFFIX = ".tar.age"
READ_BLOCK = 1 << 20


class PackageError(GatewayError):
    """A package cannot be written (an existing output, a bad recipient or key); the message names it."""


@dataclass(frozen=True, slots=True)
class Window:
    """The window an assessment covers, as asked for (None: open)."""

    since_ns: int | None = None
    until_ns: int | None = None
    racks: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Digest:
    """A file's size and SHA-256 (hex)."""

    size: int
    sha256: str


def digest_stream(read: Any) -> Digest:
    """Size and SHA-256 of what `read(n)` gives until it gives nothing (a file, a tar member)."""
    h, size = hashlib.sha256(), 0
    while block := read(READ_BLOCK):
        h.update(block)
        size += len(block)
    return Digest(size, h.hexdigest())


def digest_file(path: Path) -> Digest:
    with path.open("rb") as f:
        return digest_stream(f.read)


def iso(ns: int | None) -> str | None:
    if ns is None:
        return None
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def tool_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("bms-gateway")
    except PackageNotFoundError:
        return "dev"


def load_package_key(file: Path | None = None, credential: str | None = None) -> SigningKey | None:
    """The Ed25519 signing key (PEM, as `alarms keygen` writes it) from a file or a systemd credential
    (a name in `$CREDENTIALS_DIRECTORY`), None when neither is given. PackageError names the file, never
    the key; an HMAC secret is refused (a reviewer could not check its signature without holding it)."""
    from gateway.config.base import credential_path, warn_if_exposed

    try:
        path = credential_path(file, credential)
    except ConfigError as exc:
        raise PackageError(str(exc)) from exc
    if path is None:
        return None
    if file is not None:
        warn_if_exposed(file)  # a credential's mode is systemd's
    try:
        key = load_signing_key(path)
    except KeyProblem as exc:
        raise PackageError(str(exc)) from exc
    if key.kind != "ed25519":
        raise PackageError(f"{path}: an HMAC secret, not an Ed25519 private key (make one with `alarms keygen`)")
    return key


def write_package(
    directory: Path,
    report_json: bytes,
    report_html: bytes,
    samples: Iterable[Batch],
    journal_export: bytes,
    signing_key: SigningKey | None,
    *,
    window: Window = Window(),  # frozen: one shared default is safe
    encrypt_to: Sequence[str] = (),
    created_ns: int | None = None,
) -> Path:
    """Write the package (see the module docstring) and return its path: `directory`, or
    `directory.tar.age` when `encrypt_to` names recipients. Never overwrites: an existing non-empty
    directory or archive is a PackageError, as is an unusable key or recipient (checked first)."""
    if signing_key is not None and signing_key.kind != "ed25519":
        raise PackageError("a package is signed with an Ed25519 key, not an HMAC secret")
    if not encrypt_to:
        _claim_directory(directory)
        _fill(directory, report_json, report_html, samples, journal_export, signing_key, window, created_ns)
        return directory
    rcpts = recipients(encrypt_to)
    out = directory.with_name(directory.name + SUFFIX)
    if out.exists():
        raise PackageError(f"{out} exists (a package is never overwritten)")
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".package-") as tmp:  # mode 0700
        inner = Path(tmp) / directory.name
        inner.mkdir(mode=0o700)
        _fill(inner, report_json, report_html, samples, journal_export, signing_key, window, created_ns)
        encrypt_directory(inner, out, rcpts)
    return out


def _claim_directory(directory: Path) -> None:
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise PackageError(f"{directory} exists and is not an empty directory (a package is never overwritten)")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)


def _fill(
    directory: Path,
    report_json: bytes,
    report_html: bytes,
    samples: Iterable[Batch],
    journal_export: bytes,
    key: SigningKey | None,
    window: Window,
    created_ns: int | None,
) -> None:
    _write(directory / REPORT_JSON, report_json)
    _write(directory / REPORT_HTML, report_html)
    _write(directory / JOURNAL, journal_export)
    _write(directory / SAMPLES, b"")  # owner-only before pyarrow writes it
    stats = write_samples(directory / SAMPLES, samples)
    names = sorted((REPORT_JSON, REPORT_HTML, JOURNAL, SAMPLES))
    files = [{"path": name, **_entry(directory / name)} for name in names]
    doc = manifest(files, window, stats, time.time_ns() if created_ns is None else created_ns, key)
    data = manifest_bytes(doc)
    _write(directory / MANIFEST, data)
    if key is not None:
        _write(directory / SIGNATURE, signature_file(key, data))
        _write(directory / PUBLIC_KEY, public_key_file(key))


def _entry(path: Path) -> dict[str, Any]:
    d = digest_file(path)
    return {"size": d.size, "sha256": d.sha256}


def _write(path: Path, data: bytes) -> None:
    """A new file, owner-only; an existing one is left alone and is an error."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def manifest(
    files: list[dict[str, Any]], window: Window, stats: SampleStats, created_ns: int, key: SigningKey | None
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "format": FORMAT,
        "tool": "bms-gateway",
        "version": tool_version(),
        "created": iso(created_ns),
        "created_ns": created_ns,
        "window": {
            "since": iso(window.since_ns),
            "until": iso(window.until_ns),
            "since_ns": window.since_ns,
            "until_ns": window.until_ns,
            "racks": list(window.racks),
            "samples": stats.rows,
            "first_sample": iso(stats.first_ns),
            "last_sample": iso(stats.last_ns),
            "sample_racks": sorted(stats.racks),
        },
        "files": files,
    }
    if key is not None:
        doc["signer"] = {"algorithm": "ed25519", "key_id": key.key_id}
    return doc


def manifest_bytes(doc: dict[str, Any]) -> bytes:
    return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def signature_file(key: SigningKey, manifest_data: bytes) -> bytes:
    doc = {
        "algorithm": "ed25519",
        "key_id": key.key_id,
        "manifest_sha256": hashlib.sha256(manifest_data).hexdigest(),
        "signature": base64.b64encode(key.sign_bytes(manifest_data)).decode(),
    }
    return manifest_bytes(doc)


def public_key_file(key: SigningKey) -> bytes:
    return base64.b64encode(key.public_bytes()) + b"\n"


def recipients(texts: Sequence[str]) -> list[Any]:
    """age recipients from their text (`age1...`, `ssh-ed25519 ...`) or from files of them (one a line,
    `#` comments), as `age -r` and `age -R` take them; PackageError names the one that is not."""
    import pyrage

    out: list[Any] = []
    for text in texts:
        lines = [text]
        if not text.startswith(("age1", "ssh-")) and Path(text).is_file():
            lines = [ln.strip() for ln in Path(text).read_text(encoding="utf-8").splitlines()]
            lines = [ln for ln in lines if ln and not ln.startswith("#")]
        for line in lines:
            try:
                out.append(
                    pyrage.ssh.Recipient.from_str(line)
                    if line.startswith("ssh-")
                    else pyrage.x25519.Recipient.from_str(line)
                )
            except pyrage.RecipientError as exc:
                raise PackageError(f"not an age recipient (age1... or ssh-...): {line[:80]!r} ({exc})") from exc
    if not out:
        raise PackageError("no age recipient given")
    return out


def encrypt_directory(directory: Path, out: Path, rcpts: list[Any]) -> None:
    """`out` = age(tar of `directory`, members `<name>/<file>`), written beside and renamed when complete."""
    import pyrage

    partial = out.with_name(out.name + ".partial")
    with tempfile.TemporaryFile(dir=directory.parent) as plain:
        with tarfile.open(fileobj=plain, mode="w", format=tarfile.PAX_FORMAT) as tar:
            tar.add(directory, arcname=directory.name, recursive=True, filter=_plain_member)
        plain.seek(0)
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            with os.fdopen(fd, "wb") as sealed:
                pyrage.encrypt_io(plain, sealed, rcpts)
            os.replace(partial, out)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise


def _plain_member(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """No owner names or ids of this machine in the archive."""
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info
