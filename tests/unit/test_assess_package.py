"""The assessment's evidence package: written, signed, encrypted, and checked by `verify-package`.

A package verifies; a one-byte change to any of its files (the manifest and its signature files
included) fails naming that file; a removed or added file fails; a signature by another key fails;
an encrypted package opens only with the reviewer's identity; an archive with a member outside the
package, a link or more bytes than allowed is refused naming the member.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pyrage
import pytest

from gateway.alarms.journal import Journal
from gateway.alarms.signing import generate, write_private
from gateway.assess.package import (
    JOURNAL,
    MANIFEST,
    PUBLIC_KEY,
    REPORT_HTML,
    REPORT_JSON,
    SAMPLES,
    SIGNATURE,
    PackageError,
    Window,
    load_package_key,
    write_package,
)
from gateway.assess.packagecheck import check, trusted_key
from gateway.assess.packageopen import read_directory
from gateway.cli.alarms import journal_lines
from gateway.cli.main import main
from gateway.model import Batch, Keys, Sample

T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z
S = 1_000_000_000
ALL_FILES = (REPORT_JSON, REPORT_HTML, SAMPLES, JOURNAL, MANIFEST, SIGNATURE, PUBLIC_KEY)


def _batches(n: int = 30) -> list[Batch]:
    keys = Keys.of([("cell_voltage", "V", "rack-01", m, c) for m in (1, 2) for c in (1, 2, 3)] +
                   [("rack_current", "A", "rack-01", None, None)])  # fmt: skip
    out = []
    for i in range(n):
        values = np.array([3.30 + 0.001 * j for j in range(6)] + [-50.0 + i], dtype=np.float64)
        quality = np.zeros(7, dtype=np.uint8)
        if i == 3:
            values[6], quality[6] = np.nan, 4  # comm_loss, no value
        out.append(Batch("sim", keys, np.full(7, T0 + i * S, dtype=np.int64), values, quality))
    out.append(Batch.of_samples("sim", [Sample(T0 + n * S, "contactor", "closed", "", "good", "rack-01", None, None,
                                               T0 + n * S - 5)]))  # fmt: skip
    return out


def _key(tmp: Path, name: str = "site.key") -> tuple[Path, Path]:
    new = generate("ed25519")
    path = tmp / name
    write_private(path, new.private)
    pub = tmp / (name + ".pub")
    pub.write_text(f"{new.public}\n")
    return path, pub


def _package(tmp: Path, signed: bool = True, **kw: object) -> tuple[Path, Path | None]:
    key_path, pub = _key(tmp) if signed else (None, None)
    key = load_package_key(key_path) if key_path else None
    report = json.dumps({"racks": [{"rack": "rack-01", "findings": []}]}).encode()
    journal = b'{"seq":1,"hash":"ab","type":"start","ts":1}\n'
    out = write_package(tmp / "evidence", report, b"<html><body>report</body></html>", _batches(), journal, key,
                        window=Window(T0, T0 + 60 * S, ("rack-01",)), **kw)  # type: ignore[arg-type]  # fmt: skip
    return out, pub


def _verify(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str]:
    code = main(["verify-package", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out + out.err


def _flip(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_signed_package_verifies_with_the_signers_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pkg, pub = _package(tmp_path)
    assert sorted(p.name for p in pkg.iterdir()) == sorted(ALL_FILES)
    assert all(p.stat().st_mode & 0o077 == 0 for p in [pkg, *pkg.iterdir()])  # a site's measurements: owner-only
    code, out = _verify(capsys, pkg, "--public-key", pub)
    assert code == 0, out
    assert "VERIFIED: 4 files match the manifest, signed by ed25519:" in out
    doc = json.loads((pkg / MANIFEST).read_text())
    assert doc["window"]["since"] == "2026-01-01T00:00:00.000Z" and doc["window"]["samples"] == 30 * 7 + 1
    assert [f["path"] for f in doc["files"]] == sorted([REPORT_JSON, REPORT_HTML, SAMPLES, JOURNAL])
    assert doc["signer"]["key_id"] in out


def test_the_samples_file_holds_every_point_as_written(tmp_path: Path) -> None:
    pkg, _ = _package(tmp_path, signed=False)
    table = pq.read_table(pkg / SAMPLES)
    for i, name in ((0, "ts"), (9, "device_ts")):  # as integers (pyarrow gives datetimes only to microseconds)
        table = table.set_column(i, name, table[name].cast("int64"))
    rows = table.to_pylist()
    want = [s for b in _batches() for s in b.samples()]
    assert len(rows) == len(want)
    for r, s in zip(rows, want, strict=True):
        value = r["text"] if r["text"] is not None else r["value"]
        assert (r["ts"], r["rack"], r["quantity"], r["unit"], r["module"], r["cell"], value, r["quality"],
                r["device_ts"]) == (s.ts, s.rack, s.quantity, s.unit, s.module, s.cell, s.value, s.quality,
                                    s.device_ts)  # fmt: skip
    assert rows[3 * 7 + 6]["quality"] == "comm_loss" and rows[3 * 7 + 6]["value"] is None


@pytest.mark.parametrize("name", ALL_FILES)
def test_a_one_byte_change_to_any_file_fails_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    pkg, pub = _package(tmp_path)
    assert pub is not None
    trusted = trusted_key(pub.read_text())
    size = (pkg / name).stat().st_size
    # The command at the first, a middle and the last byte; the checks alone at every byte of the small
    # manifest files (fast), at those three of the others.
    every = range(size) if name in (MANIFEST, SIGNATURE, PUBLIC_KEY) else ()
    for at in sorted({0, size // 2, size - 1, *every}):
        _flip(pkg / name, at)
        for keys in ([trusted], []):
            verdict = check(read_directory(pkg), keys)
            assert verdict.status == "failed", (at, verdict)
            named = [p.file for p in verdict.problems]
            # A change to the manifest may also make a file's listed hash wrong: the manifest is named first.
            assert named[0] == name and (name == MANIFEST or set(named) == {name}), (at, keys, verdict.problems)
        if at in (0, size // 2, size - 1):
            for trust in (["--public-key", pub], []):
                code, out = _verify(capsys, pkg, *trust)
                assert code == 1 and f"FAIL: {name}: " in out, (at, out)
                assert "VERIFIED:" not in out.replace("NOT VERIFIED", "")
        _flip(pkg / name, at)
    assert _verify(capsys, pkg, "--public-key", pub)[0] == 0


@pytest.mark.parametrize("name", ALL_FILES)
def test_a_removed_file_fails_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str) -> None:
    pkg, pub = _package(tmp_path)
    (pkg / name).unlink()
    code, out = _verify(capsys, pkg, "--public-key", pub)
    assert code == 1 and f"FAIL: {name}: " in out and "missing" in out, out


@pytest.mark.parametrize("extra", ["notes.txt", "more/data.csv"])
def test_an_added_file_fails_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: str) -> None:
    pkg, pub = _package(tmp_path)
    (pkg / extra).parent.mkdir(exist_ok=True)
    (pkg / extra).write_text("x")
    code, out = _verify(capsys, pkg, "--public-key", pub)
    assert code == 1 and f"FAIL: {extra}: not in the manifest" in out, out


def test_a_symbolic_link_in_the_directory_fails_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pkg, pub = _package(tmp_path)
    (pkg / REPORT_JSON).rename(tmp_path / "elsewhere.json")
    (pkg / REPORT_JSON).symlink_to(tmp_path / "elsewhere.json")
    code, out = _verify(capsys, pkg, "--public-key", pub)
    assert code == 1 and f"FAIL: {REPORT_JSON}: a symbolic link" in out, out


def test_a_signature_by_another_key_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pkg, pub = _package(tmp_path)
    _, other_pub = _key(tmp_path, "other.key")
    code, out = _verify(capsys, pkg, "--public-key", other_pub)
    assert code == 1 and f"FAIL: {SIGNATURE}: signed by ed25519:" in out and "an unknown key" in out, out
    # The whole signature made again, consistently, by a key the reviewer does not hold: still not verified.
    pkg2 = tmp_path / "again"
    pkg2.mkdir()
    forger, _ = _key(pkg2.parent, "forger.key")
    doc = json.loads((pkg / MANIFEST).read_text())
    key = load_package_key(forger)
    assert key is not None
    from gateway.assess.package import manifest_bytes, public_key_file, signature_file

    doc["signer"]["key_id"] = key.key_id
    data = manifest_bytes(doc)
    (pkg / MANIFEST).write_bytes(data)
    (pkg / SIGNATURE).write_bytes(signature_file(key, data))
    (pkg / PUBLIC_KEY).write_bytes(public_key_file(key))
    code, out = _verify(capsys, pkg, "--public-key", pub)
    assert code == 1 and f"FAIL: {SIGNATURE}: signed by {key.key_id}, an unknown key" in out, out
    code, out = _verify(capsys, pkg)  # no key given: intact, but signed by a key nobody confirmed
    assert code == 1 and f"NOT VERIFIED: 4 files match the manifest and its signature checks with the key the " \
                         f"package carries, {key.key_id}" in out, out  # fmt: skip
    code, out = _verify(capsys, pkg, "--integrity-only")
    assert code == 0 and "INTACT (integrity only)" in out and "VERIFIED:" not in out, out


def test_an_unsigned_package_is_intact_not_verified(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pkg, _ = _package(tmp_path, signed=False)
    assert not (pkg / SIGNATURE).exists() and "signer" not in json.loads((pkg / MANIFEST).read_text())
    code, out = _verify(capsys, pkg)
    assert code == 1 and "NOT VERIFIED: 4 files match the manifest, which is unsigned" in out, out
    assert _verify(capsys, pkg, "--integrity-only")[0] == 0
    _, pub = _key(tmp_path)
    code, out = _verify(capsys, pkg, "--public-key", pub)
    assert code == 1 and f"FAIL: {MANIFEST}: not signed" in out, out
    _flip(pkg / REPORT_HTML, 3)
    code, out = _verify(capsys, pkg, "--integrity-only")
    assert code == 1 and f"FAIL: {REPORT_HTML}: changed" in out, out


def _identity(tmp: Path, name: str) -> tuple[Path, str]:
    ident = pyrage.x25519.Identity.generate()
    path = tmp / name
    path.write_text(f"# created: for a test\n# public key: {ident.to_public()}\n{ident}\n")
    return path, str(ident.to_public())


def test_an_encrypted_package_opens_only_with_the_reviewers_identity(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reviewer, recipient = _identity(tmp_path, "reviewer.txt")
    stranger, _ = _identity(tmp_path, "stranger.txt")
    before = set(tmp_path.iterdir())
    sealed, pub = _package(tmp_path, encrypt_to=[recipient])
    assert sealed == tmp_path / "evidence.tar.age"
    assert set(tmp_path.iterdir()) - before == {sealed, *tmp_path.glob("site.key*")}  # no plaintext left behind
    assert b"rack-01" not in sealed.read_bytes()
    code, out = _verify(capsys, sealed, "--identity", reviewer, "--public-key", pub)
    assert code == 0 and "VERIFIED: 4 files" in out, out
    code, out = _verify(capsys, sealed, "--identity", stranger, "--public-key", pub)
    assert code == 1 and "cannot decrypt with the identity given" in out, out
    code, out = _verify(capsys, sealed, "--public-key", pub)
    assert code == 2 and "give the reviewer's identity with --identity" in out, out
    _flip(sealed, sealed.stat().st_size // 2)
    code, out = _verify(capsys, sealed, "--identity", reviewer, "--public-key", pub)
    assert code == 1 and "cannot decrypt" in out, out


def test_an_encrypted_package_with_a_changed_file_fails_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reviewer, recipient = _identity(tmp_path, "reviewer.txt")
    pkg, pub = _package(tmp_path)
    _flip(pkg / JOURNAL, 5)
    sealed = tmp_path / "changed.tar.age"
    _seal(sealed, _tar_of(pkg, "evidence"), recipient)
    code, out = _verify(capsys, sealed, "--identity", reviewer, "--public-key", pub)
    assert code == 1 and f"FAIL: {JOURNAL}: changed" in out, out


def _tar_of(pkg: Path, top: str, extra: list[tuple[tarfile.TarInfo, bytes | None]] = ()) -> bytes:  # type: ignore[assignment]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(pkg, arcname=top)
        for info, data in extra:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _seal(out: Path, data: bytes, recipient: str) -> None:
    out.write_bytes(pyrage.encrypt(data, [pyrage.x25519.Recipient.from_str(recipient)]))


def _member(
    name: str, data: bytes = b"x", kind: bytes = tarfile.REGTYPE, link: str = ""
) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, data if kind == tarfile.REGTYPE else None


@pytest.mark.parametrize(
    ("member", "why"),
    [
        (_member("../evil"), "a path outside the package"),
        (_member("evidence/../../evil"), "a path outside the package"),
        (_member("/etc/evil"), "a path outside the package"),
        (_member("other/evil"), "outside the package's directory evidence"),
        (_member("evidence/link", kind=tarfile.SYMTYPE, link="/etc/passwd"), "a symbolic link to '/etc/passwd'"),
        (_member("evidence/hard", kind=tarfile.LNKTYPE, link="evidence/report.json"), "a hard link"),
    ],
)
def test_an_archive_with_a_member_outside_or_a_link_is_refused_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], member: tuple[tarfile.TarInfo, bytes | None], why: str
) -> None:
    reviewer, recipient = _identity(tmp_path, "reviewer.txt")
    pkg, pub = _package(tmp_path)
    data = _tar_of(pkg, "evidence", [member])
    plain = tmp_path / "evidence.tar"
    plain.write_bytes(data)
    _seal(tmp_path / "evidence.tar.age", data, recipient)
    for path, ident in ((plain, []), (tmp_path / "evidence.tar.age", ["--identity", reviewer])):
        code, out = _verify(capsys, path, *ident, "--public-key", pub)
        assert code == 1, out
        assert f"FAIL: {member[0].name}: {why}" in out and "refused" in out, out


def test_an_archive_over_the_size_limit_is_refused_naming_the_member(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pkg, pub = _package(tmp_path)
    (tmp_path / "evidence.tar").write_bytes(_tar_of(pkg, "evidence", [_member("evidence/big", b"\0" * 200_000)]))
    limit = sum(p.stat().st_size for p in pkg.iterdir()) + 1000
    code, out = _verify(capsys, tmp_path / "evidence.tar", "--public-key", pub, "--max-bytes", limit)
    assert code == 1 and "FAIL: evidence/big: the package is over" in out, out
    plain = tmp_path / "plain.tar"
    plain.write_bytes(_tar_of(pkg, "evidence"))
    assert _verify(capsys, plain, "--public-key", pub, "--max-bytes", limit)[0] == 0


def test_a_package_is_never_written_over(tmp_path: Path) -> None:
    pkg, _ = _package(tmp_path, signed=False)
    with pytest.raises(PackageError, match="not an empty directory"):
        _package(tmp_path, signed=False)
    with pytest.raises(PackageError, match="not an age recipient"):
        write_package(tmp_path / "x", b"", b"", [], b"", None, encrypt_to=["age1notakey"])
    assert pkg.exists() and not (tmp_path / "x").exists() and not (tmp_path / "x.tar.age").exists()


def test_the_signing_key_comes_from_a_file_or_a_credential_and_is_ed25519(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_path, _ = _key(tmp_path)
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "package-key").write_bytes(key_path.read_bytes())
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    from_file, from_cred = load_package_key(key_path), load_package_key(credential="package-key")
    assert from_file is not None and from_cred is not None and from_file.key_id == from_cred.key_id
    assert load_package_key() is None
    hmac = generate("hmac")
    write_private(tmp_path / "hmac.key", hmac.private)
    with pytest.raises(PackageError, match="an HMAC secret") as exc:
        load_package_key(tmp_path / "hmac.key")
    assert hmac.private.strip().decode() not in str(exc.value)


def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _verify(capsys, tmp_path / "nothing")[0] == 2
    (tmp_path / "bad.pub").write_text("not a key\n")
    pkg, _ = _package(tmp_path, signed=False)
    assert _verify(capsys, pkg, "--public-key", tmp_path / "bad.pub")[0] == 2


def test_the_journal_export_in_a_package_is_what_alarms_export_prints(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "journal.db"
    j = Journal(store)
    j.append([{"type": "start", "ts": T0}, {"type": "event", "ts": T0 + S, "rack": "rack-01", "alarm_id": "a",
                                             "severity": "high", "previous": "normal", "state": "active"}])  # fmt: skip
    j.close()
    assert main(["alarms", "export", "--store", str(store)]) == 0
    printed = capsys.readouterr().out
    j = Journal(store, readonly=True)
    exported = "".join(journal_lines(j)).encode()
    j.close()
    assert exported == printed.encode() and exported.count(b"\n") == 2
