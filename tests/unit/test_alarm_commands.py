"""MQTT command parsing (pure), the connection builder (TLS on by default, secrets from files), robustness."""

from __future__ import annotations

import json
import ssl
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.alarms.commandauth import Keyring, Verifier
from gateway.alarms.commandlimits import Denied
from gateway.alarms.commands import InvalidCommand, client_args, parse_command, rack_from_topic
from gateway.alarms.config import CommandsConfig
from gateway.alarms.ruleset import defaults_path, load_rule_file
from gateway.model import Batch, DeviceState, DeviceStatus, Sample
from gateway.sinks.config import MqttSinkConfig
from tests.alarms_support import engine, rule

CFG = CommandsConfig(enabled=True)


def parse(doc: Any, cfg: CommandsConfig = CFG, rack: str = "rack-01") -> Any:
    return parse_command(rack, json.dumps(doc).encode(), cfg)


def test_ack_and_shelve_commands() -> None:
    c = parse({"action": "ack", "alarm_id": "rack-01:cov:m1c5", "user": "alice", "reason": "seen", "id": 7})
    assert (c.action, c.alarm_ids, c.user, c.reason, c.request_id, c.duration) == (
        "ack", ("rack-01:cov:m1c5",), "alice", "seen", "7", None,
    )  # fmt: skip
    s = parse({"action": "shelve", "alarm_ids": ["rack-01:a", "rack-01:b"], "user": "bob", "reason": "maint"})
    assert s.duration == 3600.0 and s.alarm_ids == ("rack-01:a", "rack-01:b")
    assert parse({"action": "ack", "alarm_id": "*", "user": "a"}).alarm_ids == ("*",)


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        ({"action": "reset", "alarm_id": "rack-01:a", "user": "u"}, "action must be one of"),
        ({"action": "ack", "alarm_id": "rack-01:a"}, "user is required"),
        ({"action": "ack", "alarm_id": "rack-01:a", "user": "  "}, "user is required"),
        ({"action": "ack", "user": "u"}, "alarm_id (text) or alarm_ids"),
        ({"action": "ack", "alarm_ids": [], "user": "u"}, "alarm_id (text) or alarm_ids"),
        ({"action": "ack", "alarm_id": "rack-02:a", "user": "u"}, "not of rack 'rack-01'"),
        ({"action": "shelve", "alarm_id": "rack-01:a", "user": "u"}, "shelving needs a reason"),
        ({"action": "shelve", "alarm_id": "rack-01:a", "user": "u", "reason": "r", "duration": 0}, "above 0"),
        ({"action": "shelve", "alarm_id": "rack-01:a", "user": "u", "reason": "r", "duration": 1e9}, "exceeds"),
        ({"action": "ack", "alarm_id": "rack-01:a", "user": "u", "reason": 5}, "reason must be text"),
        ([1, 2], "a command is a JSON object"),
    ],
)
def test_invalid_commands_say_why(payload: Any, error: str) -> None:
    with pytest.raises(InvalidCommand, match=error.replace("(", r"\(").replace(")", r"\)")):
        parse(payload)


def test_not_json_and_unknown_users() -> None:
    with pytest.raises(InvalidCommand, match="not JSON"):
        parse_command("rack-01", b"\xff{", CFG)
    cfg = CommandsConfig(allowed_users=["alice"], require_signature=False)
    doc = {"action": "ack", "alarm_id": "rack-01:a", "user": "mallory"}
    with pytest.raises(Denied, match="mallory") as exc:
        Verifier(cfg, Keyring({}, {}), "s1").identify(doc, "rack-01", "mallory")
    assert exc.value.code == "unknown_user"


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b'{"action": "shelve", "alarm_id": "rack-01:a", "user": "u", "reason": "r", "duration": NaN}', "non_finite"),
        (
            b'{"action": "shelve", "alarm_id": "rack-01:a", "user": "u", "reason": "r", "duration": Infinity}',
            "non_finite",
        ),
        (b'{"action": "shelve", "alarm_id": "rack-01:a", "user": "u", "reason": "r", "duration": 1e999}', "invalid"),
        (b"[" * 400_000 + b"]" * 400_000, "too_large"),
        (b"[" * 5000 + b"]" * 5000, "too_deep"),
        (b'{"action": "ack", "alarm_ids": [[[["rack-01:a"]]]], "user": "u"}', "too_deep"),
        (json.dumps({"action": "ack", "alarm_id": "rack-01:a", "user": "u", "reason": "x" * 501}).encode(), "too_long"),
        (json.dumps({"action": "ack", "alarm_id": "rack-01:a", "user": "u" * 65}).encode(), "invalid"),
        (json.dumps({"action": "ack", "alarm_id": "rack-01:" + "a" * 300, "user": "u"}).encode(), "too_long"),
        (
            json.dumps({"action": "ack", "alarm_ids": [f"rack-01:{i}" for i in range(101)], "user": "u"}).encode(),
            "too_long",
        ),
        (json.dumps({"action": "ack", "alarm_id": "rack-01:a", "user": "u", "id": "i" * 65}).encode(), "invalid"),
        (json.dumps({"action": "ack", "alarm_id": "rack-01:a", "user": "u", "extra": 1}).encode(), "invalid"),
        (json.dumps({"action": "ack", "alarm_id": "rack-01:a", "user": "a\nb"}).encode(), "invalid"),
        (b"\x00\xff" * 100, "not_json"),
        (b"17", "not_object"),
    ],
)
def test_bounds_refuse_before_any_work(payload: bytes, code: str) -> None:
    # Issue 13 (3): NaN raised a ValueError in the engine, a 400 kB nested array a RecursionError.
    with pytest.raises(InvalidCommand) as exc:
        parse_command("rack-01", payload, CFG)
    assert exc.value.code == code, exc.value
    assert len(str(exc.value)) < 400  # the error never echoes the payload in full


def test_rack_from_topic() -> None:
    assert rack_from_topic("bms/s1/rack-07/alarms/command", "bms/s1/+/alarms/command") == "rack-07"
    assert rack_from_topic("bms/s1/rack-07/alarms/command/result", "bms/s1/+/alarms/command") is None
    assert rack_from_topic("bms/s2/rack-07/alarms/command", "bms/s1/+/alarms/command") is None


def test_client_args_tls_on_by_default_and_password_from_file(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    mq = MqttSinkConfig(host="broker", username="gw", password_file=secret)
    args = client_args(mq, "bms-gateway-s1-alarms")
    assert args["password"] == "s3cret" and args["identifier"] == "bms-gateway-s1-alarms"
    ctx = args["tls_context"]
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert args["port"] == 8883 and args["clean_session"] is False
    assert client_args(MqttSinkConfig(host="b", tls=False, port=1883), "x")["tls_context"] is None
    assert "s3cret" not in repr(mq)


# -- robustness: no input crashes the engine ----------------------------------------------------------

values = st.one_of(st.none(), st.booleans(), st.integers(-(10**6), 10**6), st.floats(allow_nan=True),
                   st.text(max_size=8))  # fmt: skip
quantities = st.sampled_from(["cell_voltage", "cell_temperature", "rack_voltage", "rack_current", "soc",
                              "charge_current_limit", "contactor_positive", "interlock_estop", "alarm.x",
                              "warning.y", "raw.z", "capacity_full"])  # fmt: skip
samples = st.builds(
    Sample,
    ts=st.integers(0, 10**12),
    quantity=quantities,
    value=values,
    unit=st.just(""),
    quality=st.sampled_from(["good", "bad", "stale", "comm_loss", "out_of_range", "missing"]),
    rack=st.sampled_from(["rack-01", "rack-02"]),
    module=st.one_of(st.none(), st.integers(1, 3)),
    cell=st.one_of(st.none(), st.integers(1, 3)),
    device_ts=st.one_of(st.none(), st.integers(1, 2**62)),  # int64 ns, as a batch's column holds it
)


DEFAULT_RULES = load_rule_file(defaults_path("lithium-ion"))[0]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(samples, max_size=12), max_size=6), st.lists(st.booleans(), max_size=6))
def test_no_input_crashes_the_engine(groups: list[list[Sample]], offline: list[bool]) -> None:
    coulomb = rule(id="soc", kind="disagreement", quantity="soc", versus="coulomb_soc", capacity_ah=10, tolerance=1)
    eng = engine(*DEFAULT_RULES, coulomb, racks=("rack-01", "rack-02"))
    for i, group in enumerate(groups):
        status = None
        if i < len(offline):
            status = DeviceStatus("rack-01", DeviceState.OFFLINE if offline[i] else DeviceState.ONLINE, "x", i)
        out = eng.process([Batch.of_samples("rack-01", group, device="rack-01", status=status)])
        out += eng.tick(i * 10**9)
        for b in out:
            json.dumps(b.records, allow_nan=True)  # every record is JSON-serialisable
            assert b.records[-1]["type"] == "active"
    for inst in list(eng.instances.values()):
        assert inst.alarm.alarm_id in eng.by_id
