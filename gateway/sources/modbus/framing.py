"""The poller's framers on pymodbus's client: every reply checked against its request.

pymodbus's socket framer skips a reply with another unit id (the request then times out), takes
any function code it can decode as the answer (a function-6 PDU answering a function-4 read gave
its value as a register), and raises inside the transport's `data_received` when a PDU does not
decode (asyncio logs a traceback and drops the connection, on every poll). This framer replaces it
on each client (`client.ctx.framer`): it never raises, and a reply that does not answer the request
(`replies.check_reply`) resolves the request at once as a `RejectedReply` saying why.

It also holds the read-only guard: its `trace_pdu` (pymodbus's hook on every PDU) refuses to let any
function code but the four reads leave the process, and remembers the read a reply must answer.

`CheckedRtuFramer` does the same for RTU frames (a serial port, or RTU over TCP) on pymodbus's RTU
framer: `rtu.scan_reply` finds the answer among what came (skipping noise and late answers, which
are counted through `on_discard`), a damaged answer is a `bad_crc` reply, and the checks and the
guard are the ones above.
"""

from __future__ import annotations

from collections.abc import Callable

from pymodbus.framer import FramerRTU, FramerSocket
from pymodbus.pdu import DecodePDU, ModbusPDU

from gateway.sources.modbus.plan import READ_FUNCTION_CODES
from gateway.sources.modbus.replies import MALFORMED, Frame, Mismatch, Request, check_reply, next_frame
from gateway.sources.modbus.rtu import scan_reply


class WriteRefused(AssertionError):
    """A non-read function code was about to be sent: a bug, never allowed toward a BMS."""


class RejectedReply(ModbusPDU):
    """The outcome of a request whose reply did not answer it (never decoded from the wire)."""

    function_code = 0

    def __init__(self, request: Request, transaction_id: int, mismatch: Mismatch) -> None:
        # the request's own ids: pymodbus hands it to the waiting request as its response
        super().__init__(dev_id=request.unit_id, transaction_id=transaction_id)
        self.mismatch = mismatch


class _Guard:
    """The read-only guard and the read in flight, shared by the framers."""

    decoder: DecodePDU
    request: Request | None

    def trace_pdu(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        """pymodbus's hook on every PDU sent or received."""
        if sending:
            if pdu.function_code not in READ_FUNCTION_CODES:
                raise WriteRefused(f"refusing to send Modbus function code {pdu.function_code}: the gateway only reads")
            self.request = Request(pdu.dev_id, pdu.function_code, pdu.address, pdu.count)
        return pdu

    def expire(self) -> ModbusPDU | None:
        """The read in flight got no answer in time: the outcome to give instead of a timeout (None)."""
        self.request = None
        return None

    def _answer(self, request: Request, frame: Frame, tid: int) -> ModbusPDU:
        """The response of a frame that came for the request: decoded, or a `RejectedReply`."""
        mismatch = check_reply(request, frame.unit_id, frame.pdu)
        pdu = self.decoder.decode(frame.pdu) if mismatch is None else None
        if pdu is None:
            mismatch = mismatch or Mismatch(MALFORMED, f"undecodable: {frame.pdu[:16].hex(' ')}")
            return self._rejected(request, mismatch, tid)
        pdu.dev_id, pdu.transaction_id = frame.unit_id, frame.transaction_id
        self.request = None
        return pdu

    def _rejected(self, request: Request, mismatch: Mismatch, tid: int) -> RejectedReply:
        self.request = None
        return RejectedReply(request, tid, mismatch)


class CheckedFramer(_Guard, FramerSocket):
    """Modbus TCP frames of one client connection (also over TLS), checked against the read in flight."""

    def __init__(self) -> None:
        super().__init__(DecodePDU(False))
        self.request = None  # the read in flight (one at a time per connection)

    def handleFrame(self, data: bytes, exp_devid: int, exp_tid: int) -> tuple[int, ModbusPDU | None]:
        """(bytes used, the response of the read in flight or None). Never raises: pymodbus calls it
        from the transport's `data_received`."""
        request = self.request
        if request is None:
            return len(data), None  # nothing asked: whatever came answers nothing
        used = 0
        while used < len(data):
            frame = next_frame(data[used:])
            if frame is None:
                return used, None  # wait for the rest
            if isinstance(frame, Mismatch):
                return len(data), self._rejected(request, frame, exp_tid)  # not Modbus: drop what came
            used += frame.size
            if exp_tid and frame.transaction_id and frame.transaction_id != exp_tid:
                continue  # a late answer to an earlier request
            return used, self._answer(request, frame, exp_tid)
        return used, None


class CheckedRtuFramer(_Guard, FramerRTU):
    """Modbus RTU frames of one serial line or RTU-over-TCP connection, checked against the read in flight."""

    def __init__(self, on_discard: Callable[[int], None] | None = None) -> None:
        """`on_discard(n)`: n bytes came that answered nothing (noise, late answers, bytes between reads)."""
        super().__init__(DecodePDU(False))
        self.request = None
        self.late: Request | None = None  # the read before, when it timed out: its answer may still come
        self.damaged: Mismatch | None = None  # the read in flight's answer came with a bad CRC
        self.on_discard = on_discard

    def trace_pdu(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        if sending:
            self.damaged = None
        return super().trace_pdu(sending, pdu)

    def expire(self) -> ModbusPDU | None:
        """A damaged answer is the outcome of a read that got no good one; the read is remembered so
        that its answer, if it still comes, is not taken for the next read's."""
        request, damaged = self.request, self.damaged
        self.late, self.request, self.damaged = request, None, None
        if request is not None and damaged is not None:
            return RejectedReply(request, 0, damaged)
        return None

    def handleFrame(self, data: bytes, exp_devid: int, exp_tid: int) -> tuple[int, ModbusPDU | None]:
        """(bytes used, the response of the read in flight or None). Never raises."""
        request = self.request
        if request is None:
            self._discard(len(data))
            return len(data), None
        scan = scan_reply(data, request, self.late)
        self._discard(scan.skipped)
        if scan.frame is not None:
            self.late = None
            return scan.used, self._answer(request, scan.frame, 0)
        if scan.bad_crc is not None:
            if scan.final:
                return scan.used, self._rejected(request, scan.bad_crc, 0)
            self.damaged = scan.bad_crc
        return scan.used, None

    def _discard(self, n: int) -> None:
        if n and self.on_discard is not None:
            self.on_discard(n)
