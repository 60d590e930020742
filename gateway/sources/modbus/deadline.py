"""The timeout of a link's reads: one timer for the link, not one per request.

A link has one read in flight at a time. Each read hands its reply's future and deadline in (`arm`);
the timer wakes at the deadline it was set for, ends the read in flight with None when that read's
own deadline has passed, and otherwise sets itself again for that deadline. A reply comes in well
under a millisecond where the timeout is seconds, so the timer wakes about once per timeout instead of
being scheduled and cancelled for every request (a timer handle, two heap operations and a cancel:
about a tenth of a read's Python steps).
"""

from __future__ import annotations

import asyncio
from typing import Any


class ReadDeadline:
    """The deadline of the read in flight on one link, and the link's one timer."""

    __slots__ = ("deadline", "future", "handle", "loop")

    def __init__(self) -> None:
        self.future: asyncio.Future[Any] | None = None
        self.deadline = 0.0  # loop time
        self.handle: asyncio.TimerHandle | None = None
        self.loop: asyncio.AbstractEventLoop | None = None  # the loop the timer is set in

    def arm(self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], deadline: float) -> None:
        """The read of `future` ends with None at `deadline` (loop time) unless it has ended."""
        self.future, self.deadline = future, deadline
        handle = self.handle
        # none set, set for later than this read's end, or in another loop (a link used again after a stop)
        if handle is None or handle.when() > deadline or loop is not self.loop:
            if handle is not None:
                handle.cancel()
            self.handle, self.loop = loop.call_at(deadline, self._wake, loop), loop

    def disarm(self) -> None:
        """The read ended (the timer stays set: it finds nothing to end, or the next read)."""
        self.future = None

    def cancel(self) -> None:
        """The link closed: no timer left behind."""
        self.future = None
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None

    def _wake(self, loop: asyncio.AbstractEventLoop) -> None:
        self.handle = None
        future = self.future
        if future is None or future.done():
            return
        if loop.time() >= self.deadline:
            self.future = None
            future.set_result(None)  # no pymodbus reply is None: the read's timeout
        else:
            self.handle = loop.call_at(self.deadline, self._wake, loop)
