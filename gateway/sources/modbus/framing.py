"""The poller's Modbus TCP framer on pymodbus's client: every reply checked against its request.

pymodbus's socket framer skips a reply with another unit id (the request then times out), takes
any function code it can decode as the answer (a function-6 PDU answering a function-4 read gave
its value as a register), and raises inside the transport's `data_received` when a PDU does not
decode (asyncio logs a traceback and drops the connection, on every poll). This framer replaces it
on each client (`client.ctx.framer`): it never raises, and a reply that does not answer the request
(`replies.check_reply`) resolves the request at once as a `RejectedReply` saying why.

It also holds the read-only guard: its `trace_pdu` (pymodbus's hook on every PDU) refuses to let any
function code but the four reads leave the process, and remembers the read a reply must answer.
"""

from __future__ import annotations

from pymodbus.framer import FramerSocket
from pymodbus.pdu import DecodePDU, ModbusPDU

from gateway.sources.modbus.plan import READ_FUNCTION_CODES
from gateway.sources.modbus.replies import MALFORMED, Mismatch, Request, check_reply, next_frame


class WriteRefused(AssertionError):
    """A non-read function code was about to be sent: a bug, never allowed toward a BMS."""


class RejectedReply(ModbusPDU):
    """The outcome of a request whose reply did not answer it (never decoded from the wire)."""

    function_code = 0

    def __init__(self, request: Request, transaction_id: int, mismatch: Mismatch) -> None:
        # the request's own ids: pymodbus hands it to the waiting request as its response
        super().__init__(dev_id=request.unit_id, transaction_id=transaction_id)
        self.mismatch = mismatch


class CheckedFramer(FramerSocket):
    """Modbus TCP frames of one client connection, checked against the read in flight."""

    def __init__(self) -> None:
        super().__init__(DecodePDU(False))
        self.request: Request | None = None  # the read in flight (one at a time per connection)

    def trace_pdu(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        """pymodbus's hook on every PDU sent or received."""
        if sending:
            if pdu.function_code not in READ_FUNCTION_CODES:
                raise WriteRefused(f"refusing to send Modbus function code {pdu.function_code}: the gateway only reads")
            self.request = Request(pdu.dev_id, pdu.function_code, pdu.address, pdu.count)
        return pdu

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
            mismatch = check_reply(request, frame.unit_id, frame.pdu)
            pdu = self.decoder.decode(frame.pdu) if mismatch is None else None
            if pdu is None:
                mismatch = mismatch or Mismatch(MALFORMED, f"undecodable: {frame.pdu[:16].hex(' ')}")
                return used, self._rejected(request, mismatch, exp_tid)
            pdu.dev_id, pdu.transaction_id = frame.unit_id, frame.transaction_id
            self.request = None
            return used, pdu
        return used, None

    def _rejected(self, request: Request, mismatch: Mismatch, tid: int) -> RejectedReply:
        self.request = None
        return RejectedReply(request, tid, mismatch)
