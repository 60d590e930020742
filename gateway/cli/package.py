"""`bms-gateway verify-package PATH`: check an assessment's evidence package, and the package options of `assess`.

    bms-gateway verify-package evidence/ --public-key site.key.pub
    bms-gateway verify-package evidence.tar.age --identity reviewer.txt --public-key site.key.pub

PATH is a package directory, its tar, or its age-encrypted tar (`--identity`, the reviewer's age
identity). Exit 0 verified; 1 not verified (every problem printed, naming its file or archive
member); 2 a usage error (no such path, an unreadable key or identity). Trust model: see
gateway/assess/packagecheck.py; in short, *verified* needs the signer's public key given with
`--public-key`, and `--integrity-only` accepts a package that is intact but unsigned or signed by a
key not given.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.textsafe import printable

if TYPE_CHECKING:
    from gateway.assess.package import Window
    from gateway.assess.packagecheck import Verdict
    from gateway.model import Batch


def cmd_verify_package(args: argparse.Namespace) -> int:
    from gateway.assess.packagecheck import check, trusted_key
    from gateway.assess.packageopen import Refused, identities, is_encrypted, read_archive, read_directory

    path: Path = args.package
    try:
        trusted = [trusted_key(_read_key(f)) for f in args.public_key]
        idents = identities(args.identity) if not path.is_dir() else []
    except (ValueError, Refused) as exc:
        print(f"error: {printable(exc)}", file=sys.stderr)
        return 2
    if not path.exists():
        print(f"error: no package at {printable(path)}", file=sys.stderr)
        return 2
    if not path.is_dir() and not idents and is_encrypted(path):
        print(f"error: {printable(path)} is encrypted (age): give the reviewer's identity with --identity FILE",
              file=sys.stderr)  # fmt: skip
        return 2
    try:
        found = read_directory(path, args.max_bytes) if path.is_dir() else read_archive(path, idents, args.max_bytes)
    except Refused as exc:
        print(f"FAIL: {printable(exc)}")
        print(f"{printable(path)}: FAILED: the archive is refused", file=sys.stderr)
        return 1
    verdict = check(found, trusted)
    for p in verdict.problems:
        print(f"FAIL: {p}")
    print(_summary(path, verdict, args.integrity_only))
    return 0 if verdict.passed(args.integrity_only) else 1


def _read_key(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read the public key {path}: {getattr(exc, 'strerror', None) or exc}") from exc


def _summary(path: Path, v: Verdict, integrity_only: bool) -> str:
    where = printable(path)
    if v.status == "verified":
        return f"{where}: VERIFIED: {v.files} files match the manifest, signed by {v.signer} (the key given)"
    label = "INTACT (integrity only)" if integrity_only else "NOT VERIFIED"
    if v.status == "untrusted":
        return (f"{where}: {label}: {v.files} files match the manifest and its signature checks with the key the "
                f"package carries, {v.signer}, which is not a key you gave: confirm that id with the signer "
                "out of band, then check with --public-key")  # fmt: skip
    if v.status == "unsigned":
        return (f"{where}: {label}: {v.files} files match the manifest, which is unsigned (the hashes show the "
                "files are the ones listed, not who wrote them)")  # fmt: skip
    return f"{where}: FAILED: {len(v.problems)} problem(s)"


def add_package_options(p: argparse.ArgumentParser) -> None:
    """The options of `assess` that make an evidence package (see `write_from_args`)."""
    g = p.add_argument_group("evidence package")
    g.add_argument("--package", type=Path, metavar="DIR", help="write the evidence package to DIR (new or empty)")
    g.add_argument("--sign-key", type=Path, metavar="FILE", help="sign its manifest with this Ed25519 key (PEM, "
                   "from `alarms keygen`; owner-only)")  # fmt: skip
    g.add_argument("--sign-credential", metavar="NAME", help="... or with the key in this systemd credential")
    g.add_argument("--encrypt-to", action="append", default=[], metavar="RECIPIENT",
                   help="encrypt the package to this age recipient (age1..., ssh-ed25519 ..., or a file of them; "
                   "repeatable): writes DIR.tar.age and no plaintext copy")  # fmt: skip


def write_from_args(
    args: argparse.Namespace,
    report_json: bytes,
    report_html: bytes,
    samples: Iterable[Batch],
    journal_export: bytes,
    window: Window,
) -> Path:
    """Write the package `add_package_options` asked for; PackageError (print it, exit 2) when it cannot."""
    from gateway.assess.package import load_package_key, write_package

    key = load_package_key(args.sign_key, args.sign_credential)
    return write_package(args.package, report_json, report_html, samples, journal_export, key,
                         window=window, encrypt_to=args.encrypt_to)  # fmt: skip


def register(sub: Any) -> None:
    p = sub.add_parser("verify-package", help="check an evidence package (directory, .tar or .tar.age): "
                       "every file's SHA-256 against the manifest, and the manifest's signature")  # fmt: skip
    p.add_argument("package", type=Path, help="the package directory, DIR.tar or DIR.tar.age")
    p.add_argument("--public-key", type=Path, action="append", default=[], metavar="FILE",
                   help="the signer's Ed25519 public key (base64 or PEM, e.g. KEY.pub from `alarms keygen`), "
                   "received beforehand; repeatable. Without it a package is at best intact, not verified")  # fmt: skip
    p.add_argument("--identity", type=Path, action="append", default=[], metavar="FILE",
                   help="the reviewer's age identity (age-keygen) or OpenSSH key, to open DIR.tar.age")  # fmt: skip
    p.add_argument("--integrity-only", action="store_true",
                   help="exit 0 for a package that is intact but unsigned or signed by a key not given")  # fmt: skip
    p.add_argument("--max-bytes", type=int, default=16 << 30, metavar="N",
                   help="refuse a package whose files add up to more than N bytes (16 GiB)")  # fmt: skip
    p.set_defaults(func=cmd_verify_package)
