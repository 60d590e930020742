"""The Sparkplug B encoder against an independent decoder (Google's protobuf with the schema declared in
tests.support.sparkplug), and the bounded reader of what a host sends."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.sinks.sparkplug.payload import (
    BOOLEAN,
    DOUBLE,
    INT64,
    STRING,
    Metric,
    datatype_of,
    encode_payload,
    read_commands,
)
from tests.support.sparkplug import Payload, decode, quality_of, value_of

doubles = st.floats(allow_nan=False)
values = st.one_of(
    st.tuples(st.just(DOUBLE), doubles),
    st.tuples(st.just(BOOLEAN), st.booleans()),
    st.tuples(st.just(INT64), st.integers(min_value=0, max_value=2**63 - 1)),
    st.tuples(st.just(STRING), st.text(max_size=40)),
    st.tuples(st.sampled_from([DOUBLE, STRING, BOOLEAN]), st.none()),
)
metrics = st.builds(
    lambda tv, ts, alias, name, quality: Metric(tv[0], tv[1], ts, alias, name, quality),
    values,
    st.none() | st.integers(min_value=0, max_value=2**62),
    st.none() | st.integers(min_value=0, max_value=2**63),
    st.none() | st.text(min_size=1, max_size=30),
    st.none() | st.sampled_from([0, 500]),
)


@given(st.lists(metrics, max_size=12), st.none() | st.integers(0, 2**62), st.none() | st.integers(0, 255))
def test_every_payload_decodes_with_protobuf_to_what_was_encoded(
    ms: list[Metric], timestamp: int | None, seq: int | None
) -> None:
    p = decode(encode_payload(ms, timestamp, seq))
    assert p.HasField("timestamp") == (timestamp is not None) and p.HasField("seq") == (seq is not None)
    if timestamp is not None:
        assert p.timestamp == timestamp
    if seq is not None:
        assert p.seq == seq
    assert len(p.metrics) == len(ms)
    for sent, got in zip(ms, p.metrics, strict=True):
        assert got.datatype == sent.datatype
        assert (got.name if got.HasField("name") else None) == sent.name
        assert (got.alias if got.HasField("alias") else None) == sent.alias
        assert (got.timestamp if got.HasField("timestamp") else None) == sent.timestamp
        assert quality_of(got) == (192 if sent.quality is None else sent.quality)
        assert value_of(got) == sent.value


def test_the_value_fields_by_datatype() -> None:
    ms = [Metric(DOUBLE, -0.5, 1, 1), Metric(DOUBLE, math.nan, 1, 2), Metric(BOOLEAN, False, 1, 3),
          Metric(INT64, -3, 1, 4), Metric(STRING, "closed", 1, 5), Metric(DOUBLE, math.inf, 1, 6)]  # fmt: skip
    p = decode(encode_payload(ms, 10, 0))
    kinds = [m.WhichOneof("value") for m in p.metrics]
    assert kinds == ["double_value", None, "boolean_value", "long_value", "string_value", "double_value"]
    assert p.metrics[1].is_null and p.metrics[3].long_value == 2**64 - 3  # Int64 as two's complement
    assert p.metrics[5].double_value == math.inf


def test_gateway_values_map_to_datatypes() -> None:
    assert [datatype_of(v) for v in (1.5, True, 7, "open")] == [DOUBLE, BOOLEAN, INT64, STRING]
    assert datatype_of(None, STRING) == STRING and datatype_of(None) == DOUBLE


def _ncmd(*metrics: dict[str, object]) -> bytes:
    p = Payload(timestamp=1, seq=0)
    for m in metrics:
        p.metrics.add(**m)
    return bytes(p.SerializeToString())


def test_read_commands_of_an_ncmd_encoded_by_protobuf() -> None:
    data = _ncmd({"name": "Node Control/Rebirth", "datatype": BOOLEAN, "boolean_value": True},
                 {"alias": 0, "datatype": BOOLEAN, "boolean_value": False},
                 {"name": "Other", "datatype": DOUBLE, "double_value": 2.5, "timestamp": 5})  # fmt: skip
    cmds = read_commands(data)
    assert [(c.name, c.alias, c.boolean) for c in cmds] == [
        ("Node Control/Rebirth", None, True),
        (None, 0, False),
        ("Other", None, None),
    ]


@pytest.mark.parametrize("junk", [b"\x12\x05\x0a", b"\xff" * 11, b"\x0f", b"\x12\x02\x0a\xff", b"\x00"])
def test_malformed_commands_raise_value_error(junk: bytes) -> None:
    with pytest.raises(ValueError):
        read_commands(junk)


@given(st.binary(max_size=300))
def test_no_input_crashes_the_command_reader(data: bytes) -> None:
    try:
        read_commands(data)
    except ValueError:
        pass
