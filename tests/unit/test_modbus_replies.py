"""Replies checked against their request (pure), and the framer that applies the checks on
pymodbus's client: it answers the read in flight or says why not, and never raises."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.sources.modbus.framing import CheckedFramer, RejectedReply, WriteRefused
from gateway.sources.modbus.replies import (
    MALFORMED,
    WRONG_BYTE_COUNT,
    WRONG_FUNCTION,
    WRONG_UNIT_ID,
    Frame,
    Mismatch,
    Request,
    check_reply,
    next_frame,
)
from tests.modbus_faulty import answer, frame

INPUT = Request(1, 4, 100, 3)  # three input registers at 100 from unit 1
COILS = Request(1, 1, 0, 10)  # ten coils: 2 data bytes


@pytest.mark.parametrize(
    ("request_", "unit", "pdu", "kind"),
    [
        (INPUT, 1, answer(4, 3), None),
        (INPUT, 1, bytes([0x84, 2]), None),  # its own exception
        (COILS, 1, answer(1, 10), None),
        (INPUT, 2, answer(4, 3), WRONG_UNIT_ID),
        (INPUT, 1, struct.pack(">BHH", 6, 100, 10), WRONG_FUNCTION),  # a write-single-register echo
        (INPUT, 1, answer(3, 3), WRONG_FUNCTION),  # holding registers for an input read
        (INPUT, 1, bytes([0x83, 2]), WRONG_FUNCTION),  # another function's exception
        (INPUT, 1, bytes([0x84]), MALFORMED),  # an exception without its code
        (INPUT, 1, answer(4, 2), WRONG_BYTE_COUNT),  # fewer registers than asked
        (INPUT, 1, answer(4, 4), WRONG_BYTE_COUNT),  # more
        (INPUT, 1, bytes([4, 46]) + bytes(6), WRONG_BYTE_COUNT),  # a byte count beyond the data
        (INPUT, 1, bytes([4, 6]) + bytes(8), WRONG_BYTE_COUNT),  # data beyond the byte count
        (INPUT, 1, bytes([4]), WRONG_BYTE_COUNT),  # no byte count at all
        (COILS, 1, answer(1, 16) + b"\x00", WRONG_BYTE_COUNT),  # 3 bytes of bits for 10 coils
    ],
)
def test_check_reply(request_: Request, unit: int, pdu: bytes, kind: str | None) -> None:
    got = check_reply(request_, unit, pdu)
    assert (got.kind if got else None) == kind
    if got is not None:
        assert got.detail


def test_next_frame_waits_for_its_bytes_and_refuses_what_is_no_modbus() -> None:
    whole = frame(7, 1, answer(4, 3))
    assert next_frame(whole[:5]) is None and next_frame(whole[:-1]) is None
    assert next_frame(whole + b"\x00\x01") == Frame(len(whole), 7, 1, answer(4, 3))
    bad_protocol = next_frame(b"\xde\xad\xbe\xef" * 4)
    assert isinstance(bad_protocol, Mismatch) and bad_protocol.kind == MALFORMED
    too_long = next_frame(struct.pack(">HHHB", 7, 0, 0xFFFF, 1) + bytes(10))
    assert isinstance(too_long, Mismatch) and too_long.kind == MALFORMED


class _Read:
    """A read request as pymodbus hands it to the trace hook."""

    def __init__(self, fc: int, unit: int, address: int, count: int) -> None:
        self.function_code, self.dev_id, self.address, self.count = fc, unit, address, count


def in_flight(fc: int = 4, unit: int = 1, address: int = 100, count: int = 3) -> CheckedFramer:
    framer = CheckedFramer()
    framer.trace_pdu(True, _Read(fc, unit, address, count))  # type: ignore[arg-type]
    return framer


def test_the_framer_answers_the_read_in_flight_or_says_why_not() -> None:
    good = frame(9, 1, answer(4, 3))
    used, pdu = in_flight().handleFrame(good, 1, 9)
    assert used == len(good) and pdu is not None and not isinstance(pdu, RejectedReply)
    assert list(pdu.registers) == [500, 500, 500] and pdu.transaction_id == 9
    # another unit id: the read is answered at once, as rejected (pymodbus skipped it and timed out)
    used, pdu = in_flight().handleFrame(frame(9, 2, answer(4, 3)), 1, 9)
    assert isinstance(pdu, RejectedReply) and pdu.mismatch.kind == WRONG_UNIT_ID and pdu.dev_id == 1
    # a late answer to an earlier request is skipped; the one that follows it answers
    late = frame(8, 1, answer(4, 3))
    used, pdu = in_flight().handleFrame(late + good, 1, 9)
    assert used == len(late + good) and pdu is not None and pdu.transaction_id == 9
    # garbage: every byte of it used, one rejection
    framer = in_flight()
    used, pdu = framer.handleFrame(b"\xde\xad\xbe\xef" * 4, 1, 9)
    assert used == 16 and isinstance(pdu, RejectedReply) and pdu.mismatch.kind == MALFORMED
    # nothing in flight any more: more garbage is dropped without an answer
    assert framer.handleFrame(b"\xde\xad\xbe\xef" * 4, 1, 9) == (16, None)


def test_the_framer_refuses_to_send_anything_but_a_read() -> None:
    framer = CheckedFramer()
    for fc in (5, 6, 15, 16, 23, 43):
        with pytest.raises(WriteRefused):
            framer.trace_pdu(True, _Read(fc, 1, 0, 1))  # type: ignore[arg-type]
    assert framer.request is None


@given(st.binary(max_size=300), st.sampled_from([1, 2, 3, 4]), st.integers(1, 125))
def test_no_bytes_make_the_framer_raise(data: bytes, fc: int, count: int) -> None:
    framer = in_flight(fc, 1, 0, count)
    used, pdu = framer.handleFrame(data, 1, int.from_bytes(data[:2], "big") if len(data) > 1 else 1)
    assert 0 <= used <= len(data)
    assert pdu is None or isinstance(pdu, RejectedReply) or pdu.function_code == fc or pdu.function_code == fc | 0x80


@given(st.sampled_from([1, 2, 3, 4]), st.integers(1, 125), st.integers(0, 255), st.integers(1, 0xFFFF))
def test_every_correct_answer_is_taken(fc: int, count: int, unit: int, tid: int) -> None:
    framer = in_flight(fc, unit, 0, count)
    data = frame(tid, unit, answer(fc, count))
    used, pdu = framer.handleFrame(data, unit, tid)
    assert used == len(data) and pdu is not None and not isinstance(pdu, RejectedReply)
    assert pdu.function_code == fc and pdu.dev_id == unit
