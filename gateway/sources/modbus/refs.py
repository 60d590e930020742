"""Scale factors read from another register: the profile key, the compiled reference, and the one rule.

A vendor map (and SunSpec, with its `*_SF` registers) can say "this value is raw x 10^sf, sf in
register N". `scale_factor` is the only place that turns such a register into a factor: an
`exponent` register is a signed power of ten (SunSpec's `sunssf`: -10..10, 0x8000 "not
implemented"), a `multiplier` register an unsigned factor (0 and 0xFFFF are "not available"). A raw
value that gives no factor is never a factor of 1: the points that need it get quality `bad`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

from pydantic import Field

from gateway.config.base import Strict

ScaleKind = Literal["exponent", "multiplier"]
NOT_IMPLEMENTED_EXPONENT = 0x8000  # SunSpec sunssf "not implemented"
MAX_EXPONENT = 10  # SunSpec: scale factors range over -10..10
NO_MULTIPLIER = frozenset({0, 0xFFFF})


class RegKey(NamedTuple):
    """One register of a device: its table and protocol (0-based) address."""

    table: str
    address: int


class ScaleRegister(Strict):
    """`scale_register:` of a point: the register that holds its scale factor."""

    address: int = Field(ge=0, description="Address of the scale-factor register (see address_base)")
    table: Literal["holding", "input"] | None = Field(None, description="Table of the register (default: the point's)")
    kind: ScaleKind = Field(
        "exponent",
        description="`exponent`: a signed power of ten as SunSpec's sunssf (value = raw x 10^sf; -10..10, 0x8000 is "
        "not implemented); `multiplier`: an unsigned factor (value = raw x factor; 0 and 0xFFFF are not available)",
    )


@dataclass(frozen=True, slots=True)
class ScaleRef:
    """A point's scale-factor register, resolved: table, protocol address, kind."""

    table: str
    address: int
    kind: ScaleKind = "exponent"

    @property
    def key(self) -> RegKey:
        return RegKey(self.table, self.address)

    @property
    def label(self) -> str:
        return f"{self.table}:{self.address}"


def scale_factor(raw: int | None, kind: ScaleKind) -> float | None:
    """The factor a scale register's raw value means; None when it gives none (absent, not implemented,
    out of range)."""
    if raw is None:
        return None
    raw &= 0xFFFF
    if kind == "multiplier":
        return None if raw in NO_MULTIPLIER else float(raw)
    if raw == NOT_IMPLEMENTED_EXPONENT:
        return None
    exponent = raw - 0x10000 if raw & 0x8000 else raw
    if abs(exponent) > MAX_EXPONENT:
        return None
    return 10.0**exponent
