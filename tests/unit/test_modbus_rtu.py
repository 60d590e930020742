"""The RTU framer on hand-made byte strings: frames found, checked against their request, resynchronised
after garbage, a damaged answer rejected; the read-only guard; the line's timing."""

from __future__ import annotations

import pytest
from pymodbus.framer import FramerRTU
from pymodbus.pdu import ModbusPDU
from pymodbus.pdu.bit_message import WriteSingleCoilRequest
from pymodbus.pdu.register_message import ReadInputRegistersRequest, WriteSingleRegisterRequest

from gateway.sources.modbus.framing import CheckedRtuFramer, RejectedReply, WriteRefused
from gateway.sources.modbus.replies import BAD_CRC, WRONG_BYTE_COUNT, WRONG_FUNCTION, WRONG_UNIT_ID, Request
from gateway.sources.modbus.rtu import crc16, encode, scan_reply, silent_interval
from gateway.sources.modbus.transport import SerialLine

ASK = Request(unit_id=2, function_code=4, address=10, count=2)
GOOD = encode(2, bytes([4, 4, 0x01, 0x02, 0x03, 0x04]))  # unit 2, fc 4, 4 bytes: registers 0x0102, 0x0304


def test_the_crc_is_the_one_pymodbus_computes() -> None:
    for body in (b"\x01\x03\x00\x00\x00\x0a", b"\x11\x04\x02\xff\xff", bytes(range(60))):
        assert crc16(body) == FramerRTU.compute_CRC(body).to_bytes(2, "big")
    assert crc16(b"\x01\x03\x00\x00\x00\x0a") == b"\xc5\xcd"  # the well-known example frame 01 03 00 00 00 0A C5 CD


def test_a_good_frame() -> None:
    scan = scan_reply(GOOD, ASK)
    assert scan.frame is not None and scan.used == len(GOOD) and scan.skipped == 0
    assert scan.frame.unit_id == 2 and scan.frame.pdu == bytes([4, 4, 1, 2, 3, 4])


def test_garbage_before_a_frame_is_skipped() -> None:
    noise = b"\x00\xff\x13\x37\x02\x04\x99"  # includes a false start (unit 2, fc 4, 153 bytes to come)
    scan = scan_reply(noise + GOOD, ASK)
    assert scan.frame is not None and scan.skipped == len(noise) and scan.used == len(noise + GOOD)


def test_a_frame_split_across_reads_waits_for_its_end() -> None:
    for cut in range(1, len(GOOD)):
        first = scan_reply(GOOD[:cut], ASK)
        assert first.frame is None and first.bad_crc is None
        scan = scan_reply(GOOD[first.used : cut] + GOOD[cut:], ASK)
        assert scan.frame is not None and scan.frame.pdu == GOOD[1:-2]


def test_a_bad_crc_on_the_answer_is_a_bad_crc_reply() -> None:
    damaged = GOOD[:-1] + bytes([GOOD[-1] ^ 0x55])
    scan = scan_reply(damaged, ASK)
    assert scan.frame is None and scan.bad_crc is not None and scan.final
    assert scan.bad_crc.kind == BAD_CRC and scan.used == len(damaged)
    flipped = GOOD[:4] + bytes([GOOD[4] ^ 0x01]) + GOOD[5:]  # a data bit flipped on the line
    assert scan_reply(flipped, ASK).bad_crc is not None


def test_a_damaged_answer_followed_by_the_start_of_more_waits() -> None:
    damaged = GOOD[:-1] + bytes([GOOD[-1] ^ 0x55])
    scan = scan_reply(damaged + b"\x02", ASK)
    assert scan.bad_crc is not None and not scan.final and scan.used == 0
    scan = scan_reply(damaged + GOOD, ASK)  # the answer came again after all: it is taken
    assert scan.frame is not None and scan.frame.pdu == GOOD[1:-2]


def test_noise_alone_is_dropped_and_no_answer() -> None:
    scan = scan_reply(b"\x00\x00\xf0\xf0\x55", ASK)
    assert scan.frame is None and scan.bad_crc is None
    assert scan.used == scan.skipped and scan.used >= 3  # nothing that can start a reply is kept


def _framer_asking(ask: Request = ASK) -> tuple[CheckedRtuFramer, list[int]]:
    dropped: list[int] = []
    framer = CheckedRtuFramer(dropped.append)
    pdu = ReadInputRegistersRequest(address=ask.address, count=ask.count, dev_id=ask.unit_id)
    framer.trace_pdu(True, pdu)
    return framer, dropped


def _feed(framer: CheckedRtuFramer, *chunks: bytes) -> ModbusPDU | None:
    """What pymodbus's transport does: append each chunk, hand the buffer in, keep what was not used."""
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        used, pdu = framer.handleFrame(buffer, 0, 0)
        buffer = buffer[used:]
        if pdu is not None:
            return pdu
    return None


def test_the_framer_decodes_a_good_answer_in_pieces() -> None:
    framer, dropped = _framer_asking()
    pdu = _feed(framer, b"\xaa\xbb", GOOD[:3], GOOD[3:6], GOOD[6:])
    assert pdu is not None and not isinstance(pdu, RejectedReply)
    assert list(pdu.registers) == [0x0102, 0x0304] and pdu.dev_id == 2
    assert sum(dropped) == 2  # the garbage before it, counted


@pytest.mark.parametrize(
    ("reply", "kind"),
    [
        (encode(3, bytes([4, 4, 1, 2, 3, 4])), WRONG_UNIT_ID),
        (encode(2, bytes([3, 4, 1, 2, 3, 4])), WRONG_FUNCTION),
        (encode(2, bytes([4, 2, 1, 2])), WRONG_BYTE_COUNT),
        (GOOD[:-2] + b"\x00\x00", BAD_CRC),
    ],
)
def test_a_reply_that_does_not_answer_is_a_rejected_reply(reply: bytes, kind: str) -> None:
    framer, _ = _framer_asking()
    pdu = _feed(framer, reply)
    assert isinstance(pdu, RejectedReply) and pdu.mismatch.kind == kind
    assert framer.request is None  # resolved: the read does not wait out its timeout


def test_an_exception_reply_is_an_answer() -> None:
    framer, _ = _framer_asking()
    pdu = _feed(framer, b"\x00", encode(2, bytes([0x84, 0x02])))
    assert pdu is not None and not isinstance(pdu, RejectedReply)
    assert pdu.isError() and pdu.exception_code == 2


def test_a_late_answer_to_the_read_before_is_not_taken_for_the_next() -> None:
    framer, dropped = _framer_asking(Request(1, 4, 10, 2))
    assert framer.expire() is None  # unit 1 did not answer in time
    framer.trace_pdu(True, ReadInputRegistersRequest(address=10, count=2, dev_id=2))
    late = encode(1, bytes([4, 4, 9, 9, 9, 9]))
    pdu = _feed(framer, late, GOOD)
    assert pdu is not None and not isinstance(pdu, RejectedReply) and pdu.dev_id == 2
    assert sum(dropped) == len(late)


def test_a_damaged_answer_is_the_outcome_when_nothing_better_came() -> None:
    framer, _ = _framer_asking()
    damaged = GOOD[:-1] + bytes([GOOD[-1] ^ 1])
    assert _feed(framer, damaged + b"\x02") is None  # one more byte might start the real answer
    rejected = framer.expire()
    assert isinstance(rejected, RejectedReply) and rejected.mismatch.kind == BAD_CRC


def test_bytes_between_reads_answer_nothing() -> None:
    framer = CheckedRtuFramer()
    assert framer.handleFrame(GOOD, 0, 0) == (len(GOOD), None)


@pytest.mark.parametrize(
    "write", [WriteSingleRegisterRequest(address=0, registers=[1], dev_id=1), WriteSingleCoilRequest(dev_id=1)]
)
def test_the_read_only_guard_holds_on_rtu(write: ModbusPDU) -> None:
    framer = CheckedRtuFramer()
    with pytest.raises(WriteRefused):
        framer.trace_pdu(True, write)
    assert framer.request is None


def test_the_silent_interval_follows_the_baud_rate() -> None:
    assert silent_interval(9600, 8, "E", 1) == pytest.approx(3.5 * 11 / 9600)  # 4.01 ms
    assert silent_interval(9600, 8, "N", 1) == pytest.approx(3.5 * 10 / 9600)
    assert silent_interval(115200) == pytest.approx(0.00175)  # the spec's floor above 19,200 baud
    assert SerialLine(9600, frame_gap=0.02).gap == 0.02
    assert SerialLine(19200, "N", 2).wire_time(100) == pytest.approx(100 * 11 / 19200)
