"""The host's time synchronisation state, read from the kernel with `adjtimex` (read only: modes = 0).

NTP daemons (chrony, ntpd, systemd-timesyncd) tell the kernel whether the clock is synchronised and
how far it may be off; `adjtimex(2)` reads that back without privileges:

- the return value is the clock state; `TIME_ERROR` (5) means the clock is not synchronised;
- `status` has the bit `STA_UNSYNC` (0x40) while no daemon keeps it synchronised;
- `esterror` and `maxerror` are the estimated and the maximum error, in microseconds.

`parse` turns those fields into a `HostClock` (pure); `read_host_clock` calls the C library. Where
adjtimex is not there (not Linux) or is refused (a seccomp filter), the state is `unknown`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from dataclasses import dataclass

TIME_ERROR = 5  # clock state: not synchronised
STA_UNSYNC = 0x0040  # status bit: the clock is not synchronised
US = 1e-6


class _Timeval(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


class Timex(ctypes.Structure):
    """`struct timex` of <sys/timex.h> (Linux, glibc and musl)."""

    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time", _Timeval),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("_reserved", ctypes.c_int * 11),
    ]


@dataclass(frozen=True, slots=True)
class HostClock:
    """The host's time sync state as the kernel reports it."""

    known: bool  # False: adjtimex could not be read (then the other fields mean nothing)
    synchronized: bool = False
    state: int = -1  # adjtimex's return value (0 TIME_OK ... 5 TIME_ERROR)
    status: int = 0  # the STA_* bits
    est_error_s: float = 0.0  # estimated error
    max_error_s: float = 0.0  # maximum error
    reason: str = ""  # why it is unknown

    def as_dict(self) -> dict[str, object]:
        if not self.known:
            return {"synchronized": None, "state": "unknown", "reason": self.reason}
        return {
            "synchronized": self.synchronized,
            "state": "synchronized" if self.synchronized else "unsynchronized",
            "est_error_s": self.est_error_s,
            "max_error_s": self.max_error_s,
            "status": f"0x{self.status:04x}",
        }


UNKNOWN = HostClock(False, reason="not read yet")


def parse(state: int, status: int, esterror_us: int, maxerror_us: int) -> HostClock:
    """The sync state from adjtimex's return value and fields (errors in microseconds)."""
    synchronized = state != TIME_ERROR and not status & STA_UNSYNC
    return HostClock(True, synchronized, state, status, esterror_us * US, maxerror_us * US)


def read_host_clock() -> HostClock:
    """The host's sync state now (never raises: `known` is False when adjtimex cannot be read)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        adjtimex = libc.adjtimex
    except (OSError, AttributeError) as exc:
        return HostClock(False, reason=f"adjtimex is not available: {exc}")
    tx = Timex()  # modes = 0: read only
    state = int(adjtimex(ctypes.byref(tx)))
    if state < 0:
        errno = ctypes.get_errno()
        return HostClock(False, reason=f"adjtimex failed: errno {errno}")
    return parse(state, int(tx.status), int(tx.esterror), int(tx.maxerror))
