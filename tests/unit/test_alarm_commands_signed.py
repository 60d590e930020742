"""Signed commands (pure): who sent a command is checked by its key, its time and its nonce; `*` needs a
permitted signer; keys are made owner-only and named by a fingerprint."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest

from gateway.alarms.commandauth import Keyring, NonceCache, Verifier, load_keyring
from gateway.alarms.commandconfig import CommandsConfig, CommandUser
from gateway.alarms.commandlimits import Denied, InvalidCommand
from gateway.alarms.commands import Command, read_command
from gateway.alarms.signing import canonical_bytes, generate, load_signing_key, write_private

NOW = 1_764_082_800


class Clock:
    def __init__(self) -> None:
        self.t = float(NOW)

    def __call__(self) -> float:
        return self.t


def key_file(tmp_path: Path, name: str, kind: str = "ed25519") -> tuple[Path, Any]:
    new = generate(kind)  # type: ignore[arg-type]
    path = tmp_path / name
    write_private(path, new.private)
    return path, new


def setup(tmp_path: Path, **cfg: Any) -> tuple[Verifier, Any, Any, Clock]:
    alice_path, alice = key_file(tmp_path, "alice.key")
    bob_path, _ = key_file(tmp_path, "bob.secret", "hmac")
    users = {"alice": CommandUser(public_key=alice.public, all_alarms=True), "bob": CommandUser(secret_file=bob_path)}
    config = CommandsConfig(enabled=True, users=users, **cfg)
    clock = Clock()
    nonces = NonceCache(2 * config.clock_window, clock=clock)
    verifier = Verifier(config, load_keyring(config), "s1", wall=clock, nonces=nonces)
    return verifier, load_signing_key(alice_path), load_signing_key(bob_path), clock


def signed(key: Any, user: str = "alice", nonce: str = "n" * 16, **fields: Any) -> bytes:
    doc = {"action": "ack", "alarm_id": "rack-01:x", "user": user, "reason": "seen", "site": "s1", "rack": "rack-01",
           "ts": NOW, "nonce": nonce, **fields}  # fmt: skip
    return json.dumps(key.sign(doc)).encode()


def read(verifier: Verifier, payload: bytes) -> Command:
    return read_command("rack-01", payload, verifier.cfg, verifier)


def test_a_signed_command_names_its_verified_user_and_key(tmp_path: Path) -> None:
    verifier, alice, bob, _ = setup(tmp_path)
    cmd = read(verifier, signed(alice))
    assert cmd.identity is not None and cmd.identity.verified and cmd.identity.user == "alice"
    assert cmd.identity.key_id == alice.key_id and alice.key_id.startswith("ed25519:")
    hm = read(verifier, signed(bob, user="bob", nonce="b" * 20))
    assert hm.identity is not None and hm.identity.key_id == bob.key_id and bob.key_id.startswith("hmac:")


@pytest.mark.parametrize(
    ("forge", "code"),
    [
        ("unsigned", "unsigned"),
        ("other_users_key", "bad_signature"),
        ("edited_after_signing", "bad_signature"),
        ("expired", "stale"),
        ("from_the_future", "stale"),
        ("other_rack", "wrong_target"),
        ("other_site", "wrong_target"),
        ("unknown_user", "unknown_user"),
    ],
)
def test_forged_commands_are_denied(tmp_path: Path, forge: str, code: str) -> None:
    # Issue 13 (1): an anonymous client acknowledged as "alice" by writing her name in the payload.
    verifier, alice, bob, _ = setup(tmp_path)
    good = json.loads(signed(alice))
    doc: dict[str, Any] = {
        "unsigned": {k: v for k, v in good.items() if k != "sig"},
        "other_users_key": bob.sign({k: v for k, v in good.items() if k != "sig"}),
        "edited_after_signing": {**good, "reason": "nothing to see"},
        "expired": json.loads(signed(alice, ts=NOW - 121)),
        "from_the_future": json.loads(signed(alice, ts=NOW + 121)),
        "other_rack": json.loads(signed(alice, rack="rack-02")),
        "other_site": json.loads(signed(alice, site="s2")),
        "unknown_user": json.loads(signed(alice, user="mallory")),
    }[forge]
    with pytest.raises(Denied) as exc:
        read(verifier, json.dumps(doc).encode())
    assert exc.value.code == code and exc.value.result == "denied"


def test_a_replay_is_denied_and_nonces_are_bounded(tmp_path: Path) -> None:
    verifier, alice, _, clock = setup(tmp_path)
    payload = signed(alice)
    read(verifier, payload)
    with pytest.raises(Denied, match="replayed"):
        read(verifier, payload)
    clock.t += 241  # the nonce is forgotten once its command would be stale anyway
    with pytest.raises(Denied, match="stale"):
        read(verifier, payload)
    assert len(verifier.nonces) == 0

    small = NonceCache(240, limit=2, clock=clock)
    assert small.add(("a", "1")) and small.add(("a", "2")) and not small.add(("a", "3"))
    clock.t += 241
    assert small.add(("a", "3")) and len(small) == 1


def test_a_forged_nonce_is_not_remembered(tmp_path: Path) -> None:
    verifier, alice, _, _ = setup(tmp_path)
    forged = {**json.loads(signed(alice)), "reason": "edited"}
    with pytest.raises(Denied, match="bad signature"):
        read(verifier, json.dumps(forged).encode())
    assert read(verifier, signed(alice)).identity is not None  # the genuine command with that nonce still goes


def test_signed_fields_are_checked(tmp_path: Path) -> None:
    verifier, alice, _, _ = setup(tmp_path)
    for fields, error in [({"ts": 1.5e9}, "ts"), ({"nonce": "short"}, "nonce"), ({"nonce": "bad nonce!" * 3}, "nonce")]:
        with pytest.raises(InvalidCommand, match=error):
            read(verifier, signed(alice, **fields))
    bad_sig = {**json.loads(signed(alice)), "sig": "%%%"}
    with pytest.raises(InvalidCommand, match="base64"):
        read(verifier, json.dumps(bad_sig).encode())


def test_every_alarm_of_a_rack_needs_a_signed_permitted_user(tmp_path: Path) -> None:
    verifier, alice, bob, _ = setup(tmp_path)
    cmd = read(verifier, signed(alice, alarm_id="*"))
    assert cmd.alarm_ids == ("*",)
    with pytest.raises(Denied, match="all_alarms") as exc:
        read(verifier, signed(bob, user="bob", alarm_id="*"))
    assert exc.value.code == "not_permitted"
    open_cfg = CommandsConfig(require_signature=False)
    unsigned = json.dumps({"action": "ack", "alarm_id": "*", "user": "alice"}).encode()
    with pytest.raises(Denied, match="signed command"):
        read_command("rack-01", unsigned, open_cfg, Verifier(open_cfg, Keyring({}, {}), "s1"))


def test_unsigned_commands_only_when_the_site_says_so(tmp_path: Path) -> None:
    open_cfg = CommandsConfig(require_signature=False)
    unsigned = json.dumps({"action": "ack", "alarm_id": "rack-01:x", "user": "alice"}).encode()
    cmd = read_command("rack-01", unsigned, open_cfg, Verifier(open_cfg, Keyring({}, {}), "s1"))
    assert cmd.identity is not None and not cmd.identity.verified and cmd.identity.key_id is None
    assert CommandsConfig().require_signature is True


def test_canonical_bytes_leave_out_the_signature_and_sort_keys() -> None:
    assert canonical_bytes({"b": 1, "a": "é", "sig": "x"}) == '{"a":"é","b":1}'.encode()


def test_keys_are_written_owner_only_and_never_overwritten(tmp_path: Path) -> None:
    path, new = key_file(tmp_path, "k")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(FileExistsError):
        write_private(path, b"other")
    assert load_signing_key(path).key_id == new.key_id


def test_a_key_that_cannot_be_read_denies_only_its_user(tmp_path: Path) -> None:
    _, alice = key_file(tmp_path, "alice.key")
    (tmp_path / "short").write_text("tooshort\n")
    users = {
        "alice": CommandUser(public_key=alice.public),
        "carol": CommandUser(secret_file=tmp_path / "absent"),
        "dave": CommandUser(secret_file=tmp_path / "short"),
    }
    ring = load_keyring(CommandsConfig(users=users))
    assert set(ring.keys) == {"alice"}
    assert "cannot read secret file" in ring.problems["carol"] and "at least 16" in ring.problems["dave"]


def test_a_user_has_exactly_one_valid_key() -> None:
    with pytest.raises(ValueError, match="exactly one key"):
        CommandUser()
    with pytest.raises(ValueError, match="exactly one key"):
        CommandUser(public_key_file=Path("a"), secret_credential="b")
    with pytest.raises(ValueError, match="32 bytes"):
        CommandUser(public_key="AAAA")
    with pytest.raises(ValueError, match="user"):
        CommandsConfig(users={"bad name": CommandUser(secret_credential="x")})
