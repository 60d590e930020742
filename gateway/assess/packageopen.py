"""Reading an evidence package for checking: a directory, a tar, or an age-encrypted tar, bounded.

Nothing is extracted: each file is hashed where it lies (a directory's file, or a tar member read in
place), and only the three manifest files are held in memory. An archive is refused, naming the
member, when a member is not a regular file or a directory (a symbolic or hard link, a device, a
sparse file), when its path leaves the package's one top directory (`..`, an absolute path, a second
top directory), when there are more than `MAX_MEMBERS`, or when the sizes add up to more than
`max_bytes`. A directory is read the same way: a link in it, or a file that is not regular, is a
problem naming it.
"""

from __future__ import annotations

import os
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from gateway.assess.package import MANIFEST_FILES, digest_file, digest_stream
from gateway.assess.packagecheck import MANIFEST_MAX, Found, problem, safe_path

MAX_MEMBERS = 256
MAX_BYTES = 16 << 30  # default bound of a package's total size (16 GiB)
AGE_MAGIC = (b"age-encryption.org/v1\n", b"-----BEGIN AGE ENCRYPTED FILE-----")


class Refused(Exception):
    """An archive (or identity) that is not opened; the message names the member or the file."""


def read_directory(directory: Path, max_bytes: int = MAX_BYTES) -> Found:
    """The files under `directory` (paths relative to it, `/`-separated)."""
    found = Found()
    total = 0
    todo = [(directory, "")]
    while todo:
        folder, prefix = todo.pop()
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
        for e in entries:
            rel = prefix + e.name
            if len(found.files) + len(todo) > MAX_MEMBERS:
                found.problems.append(problem(rel, f"more than {MAX_MEMBERS} files: not read further"))
                return found
            if e.is_symlink():
                found.problems.append(problem(rel, "a symbolic link (refused: a package holds regular files)"))
            elif e.is_dir(follow_symlinks=False):
                todo.append((Path(e.path), rel + "/"))
            elif not e.is_file(follow_symlinks=False):
                found.problems.append(problem(rel, "not a regular file (refused)"))
            else:
                total += e.stat(follow_symlinks=False).st_size
                if total > max_bytes:
                    found.problems.append(problem(rel, f"the package is over {max_bytes} bytes: not read further"))
                    return found
                _take(found, rel, Path(e.path))
    return found


def _take(found: Found, rel: str, path: Path) -> None:
    if rel in MANIFEST_FILES:
        with path.open("rb") as f:
            data = f.read(MANIFEST_MAX + 1)
        _text(found, rel, data)
    else:
        found.files[rel] = digest_file(path)


def _text(found: Found, rel: str, data: bytes) -> None:
    if len(data) > MANIFEST_MAX:
        found.problems.append(problem(rel, f"over {MANIFEST_MAX} bytes (refused)"))
    else:
        found.texts[rel] = data


def read_tar(fileobj: IO[bytes], max_bytes: int = MAX_BYTES) -> Found:
    """The files of a package's tar (members `<top>/<file>`); Refused names a member that is not allowed."""
    found = Found()
    top: str | None = None
    total = 0
    with tarfile.open(fileobj=fileobj, mode="r:") as tar:
        for count, m in enumerate(iter(tar.next, None), 1):
            name = m.name
            if count > MAX_MEMBERS:
                raise Refused(f"{name}: more than {MAX_MEMBERS} members (refused)")
            if not safe_path(name.rstrip("/") if m.isdir() else name):
                raise Refused(f"{name}: a path outside the package (refused)")
            head, _, rel = name.partition("/")
            top = head if top is None else top
            if head != top:
                raise Refused(f"{name}: outside the package's directory {top} (refused)")
            if m.isdir():
                continue
            if not rel:
                raise Refused(f"{name}: a file outside the package's directory (refused)")
            if not m.isreg() or m.type == tarfile.GNUTYPE_SPARSE or m.sparse is not None:
                raise Refused(f"{name}: {_kind(m)}, not a regular file (refused)")
            total += m.size
            if total > max_bytes:
                raise Refused(f"{name}: the package is over {max_bytes} bytes (refused)")
            f = tar.extractfile(m)
            assert f is not None  # a regular member
            if rel in MANIFEST_FILES:
                _text(found, rel, f.read(MANIFEST_MAX + 1))
            else:
                found.files[rel] = digest_stream(f.read)
    return found


def _kind(m: tarfile.TarInfo) -> str:
    if m.issym():
        return f"a symbolic link to {m.linkname[:200]!r}"
    if m.islnk():
        return f"a hard link to {m.linkname[:200]!r}"
    return "a device or fifo" if m.isdev() else f"a member of type {m.type!r}"


def is_encrypted(path: Path) -> bool:
    with path.open("rb") as f:
        head = f.read(64)
    return any(head.startswith(magic) for magic in AGE_MAGIC)


def identities(paths: Sequence[Path]) -> list[Any]:
    """age identities from files: `AGE-SECRET-KEY-1...` lines (as `age-keygen` writes them, `#` comments)
    or an OpenSSH private key; Refused names the file, never the key."""
    import pyrage

    out: list[Any] = []
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise Refused(f"{path}: cannot read the identity ({exc.strerror})") from exc
        try:
            if data.lstrip().startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----"):
                out.append(pyrage.ssh.Identity.from_buffer(data))
                continue
            lines = [ln.strip() for ln in data.decode("utf-8").splitlines()]
            keys = [ln for ln in lines if ln and not ln.startswith("#")]
            out.extend(pyrage.x25519.Identity.from_str(k) for k in keys)
        except (pyrage.IdentityError, UnicodeDecodeError, ValueError) as exc:
            raise Refused(f"{path}: not an age identity (AGE-SECRET-KEY-1... lines, or an OpenSSH key)") from exc
        if not keys:
            raise Refused(f"{path}: holds no identity")
    return out


def read_archive(path: Path, idents: Sequence[Any] = (), max_bytes: int = MAX_BYTES) -> Found:
    """The files of a package archive: `DIR.tar`, or `DIR.tar.age` decrypted with `idents` into a private
    temporary file (age authenticates every chunk: a changed byte fails the decryption)."""
    import pyrage

    size = path.stat().st_size
    if size > max_bytes + (max_bytes >> 6) + (1 << 20):  # the tar's headers and age's overhead beside the files
        raise Refused(f"{path}: {size} bytes, over the limit of {max_bytes} (refused)")
    if not is_encrypted(path):
        with path.open("rb") as f:
            return _read_tar(path, f, max_bytes)
    if not idents:
        raise Refused(f"{path}: encrypted (age): give the reviewer's identity with --identity FILE")
    with path.open("rb") as sealed, tempfile.TemporaryFile() as plain:
        try:
            pyrage.decrypt_io(sealed, plain, list(idents))
        except pyrage.DecryptError as exc:
            raise Refused(f"{path}: cannot decrypt with the identity given ({exc})") from exc
        except OSError as exc:  # a chunk that fails age's authentication, past the header
            raise Refused(f"{path}: cannot decrypt: {exc} (the archive was changed or damaged)") from exc
        plain.seek(0)
        return _read_tar(path, plain, max_bytes)


def _read_tar(path: Path, fileobj: IO[bytes], max_bytes: int) -> Found:
    try:
        return read_tar(fileobj, max_bytes)
    except (tarfile.TarError, EOFError) as exc:
        raise Refused(f"{path}: not a readable tar ({exc})") from exc
