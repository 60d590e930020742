"""No bytes on a serial line crash the RTU framer, and whatever noise comes before it, the answer is found:
property tests of `rtu.scan_reply` and the checking framer over arbitrary bytes in arbitrary pieces."""

from __future__ import annotations

from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st
from pymodbus.pdu.register_message import ReadInputRegistersResponse

from gateway.sources.modbus.framing import CheckedRtuFramer, RejectedReply
from gateway.sources.modbus.replies import Request
from gateway.sources.modbus.rtu import encode, scan_reply
from tests.unit.test_modbus_rtu import ASK, GOOD, _framer_asking

# Bytes shaped like RTU frames more often than uniform bytes would be: unit 2, read function codes and
# exceptions, small byte counts.
LINE_BYTES = st.lists(
    st.one_of(st.sampled_from([0x00, 0x02, 0x04, 0x84, 0x03, 0xFF]), st.integers(0, 255)), max_size=300
).map(bytes)
REQUESTS = st.builds(Request, st.integers(0, 255), st.sampled_from([1, 2, 3, 4]), st.integers(0, 65535),
                     st.integers(1, 125))  # fmt: skip


def pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in pairwise(points)]


@settings(max_examples=300, deadline=None)
@given(LINE_BYTES, REQUESTS, st.one_of(st.none(), REQUESTS))
def test_scan_never_raises_and_uses_what_it_has(data: bytes, request: Request, late: Request | None) -> None:
    scan = scan_reply(data, request, late)
    assert 0 <= scan.skipped <= scan.used <= len(data)
    if scan.frame is not None:
        assert scan.frame.unit_id == data[scan.used - scan.frame.size]


@settings(max_examples=300, deadline=None)
@given(LINE_BYTES, st.lists(st.integers(0, 400), max_size=6))
def test_the_framer_never_raises_on_any_bytes_in_any_pieces(data: bytes, cuts: list[int]) -> None:
    framer, _dropped = _framer_asking()
    buffer = b""
    for chunk in pieces(data, cuts):
        buffer += chunk
        used, pdu = framer.handleFrame(buffer, 0, 0)
        assert 0 <= used <= len(buffer)
        buffer = buffer[used:]
        if pdu is not None:
            assert isinstance(pdu, ReadInputRegistersResponse | RejectedReply)
            break
    assert len(buffer) <= 260  # what is kept waiting is at most one frame's length


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 255), max_size=40).map(bytes), st.lists(st.integers(0, 400), max_size=4))
def test_the_answer_after_noise_is_found_or_the_noise_is_a_rejected_answer(noise: bytes, cuts: list[int]) -> None:
    """Noise before the answer: the answer comes out, unless the noise itself holds a frame that claims
    to answer (then it is checked, and refused or taken as such: never a crash, never a hang)."""
    framer, _dropped = _framer_asking()
    buffer, got = b"", None
    for chunk in pieces(noise + GOOD, cuts):
        buffer += chunk
        used, got = framer.handleFrame(buffer, 0, 0)
        buffer = buffer[used:]
        if got is not None:
            break
    assert got is not None
    if isinstance(got, ReadInputRegistersResponse) and noise == b"":
        assert got.registers == [0x0102, 0x0304]


def test_the_framer_answers_nothing_it_was_not_asked() -> None:
    framer = CheckedRtuFramer()
    used, pdu = framer.handleFrame(GOOD + encode(ASK.unit_id, b"\x04\x02\x00\x01"), 0, 0)
    assert pdu is None and used == len(GOOD) + 7  # no read in flight: everything is dropped
