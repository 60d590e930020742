"""The compiled read plan: profile points -> flat points -> the fewest block reads. Pure, no I/O.

`compile_points` expands arrays and resolves defaults (table, order, interval, address base) into
`Point`s with protocol (0-based) addresses and reports every overlap or out-of-space address with the
place in the profile. `plan_reads` groups points of one table and interval into blocks of at most
125 registers (2,000 bits), reading over gaps up to `max_gap` but never across an unreadable range.
Reads a point needs besides its own (its scale register, the device's clock) are `aux` points: planned
like the others, in every interval that needs them, but giving no sample (see `aux_reads`).
`split_block` halves a block whose read failed with an illegal-address exception; repeated, it
isolates the bad point in O(log n) reads while the rest keeps flowing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from gateway.sources.modbus.arrays import ADDRESS_SPACE, elements
from gateway.sources.modbus.clock import clock_plan
from gateway.sources.modbus.codec import ByteOrder
from gateway.sources.modbus.profile import BIT_TABLES, ModbusPoint, ModbusProfile
from gateway.sources.modbus.refs import RegKey, ScaleRef

MAX_ADDRESS = ADDRESS_SPACE - 1
Path = tuple[str | int, ...]  # where a point is in the profile YAML (for file:line:col errors)


@dataclass(frozen=True, slots=True)
class Point:
    """One decodable value at one address, with its tags and decoding recipe."""

    quantity: str
    unit: str
    table: str
    address: int  # protocol address, 0-based
    width: int  # registers (or 1 bit for coil/discrete)
    dtype: str
    order: ByteOrder
    interval: float
    module: int | None = None
    cell: int | None = None
    bit: int | None = None
    scale: float = 1.0
    offset: float = 0.0
    missing: frozenset[int] = frozenset()
    range: tuple[float, float] | None = None
    flags: tuple[tuple[int, str], ...] = ()
    states: tuple[tuple[int, str], ...] = ()
    path: Path = ()
    bits: tuple[int, int] | None = None  # a multi-bit field: first and last bit, inclusive
    scale_ref: ScaleRef | None = None  # a register holding a further scale factor
    aux: bool = False  # a register read for other points (scale factor, clock): no sample of its own

    @property
    def end(self) -> int:
        """One past the last address the point uses."""
        return self.address + self.width

    @property
    def mask(self) -> int | None:
        """The bits of its register(s) a `bit` point or a multi-bit field uses (None: all of them)."""
        if self.dtype == "bit" and self.bit is not None:
            return 1 << self.bit
        if self.bits is not None:
            return ((1 << (self.bits[1] - self.bits[0] + 1)) - 1) << self.bits[0]
        return None

    @property
    def label(self) -> str:
        tags = "".join(f" {k}{v}" for k, v in (("m", self.module), ("c", self.cell)) if v is not None)
        return f"{self.quantity}{'[' + tags.strip() + ']' if tags else ''} @{self.table}:{self.address}"


@dataclass(frozen=True, slots=True)
class Block:
    """One read request: `count` registers (or bits) of `table` from `start`, and the points in it."""

    table: str
    start: int
    count: int
    interval: float
    points: tuple[Point, ...] = field(default=())

    @property
    def end(self) -> int:
        return self.start + self.count

    @property
    def function_code(self) -> int:
        return FUNCTION_CODES[self.table]


# The only function codes the gateway ever sends: reads. There is no write path.
FUNCTION_CODES: dict[str, int] = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}
READ_FUNCTION_CODES = frozenset(FUNCTION_CODES.values())


@dataclass(frozen=True, slots=True)
class PlanProblem:
    path: Path
    message: str


class CompiledPoints(NamedTuple):
    """A profile flattened: its points, and what is wrong with the ones left out."""

    points: list[Point]
    problems: list[PlanProblem]


def _entries(profile: ModbusProfile, interval: float | None) -> Iterable[tuple[ModbusPoint, float, Path]]:
    default = interval if interval is not None else profile.interval
    for i, p in enumerate(profile.points):
        yield p, p.interval or default, ("points", i)
    for g, group in enumerate(profile.groups):
        for i, p in enumerate(group.points):
            yield p, p.interval or group.interval or default, ("groups", g, "points", i)


def compile_points(profile: ModbusProfile, interval: float | None = None) -> CompiledPoints:
    """Flatten a profile into points with 0-based addresses; `interval` overrides the profile's default."""
    points: list[Point] = []
    problems: list[PlanProblem] = []
    base = profile.address_base
    for entry, every, path in _entries(profile, interval):
        table = entry.table or profile.table
        if table in BIT_TABLES and entry.type != "bool":
            problems.append(PlanProblem(path, f"the {table} table holds single bits: use type bool"))
            continue
        if table not in BIT_TABLES and entry.type == "bool":
            problems.append(PlanProblem(path, "type bool is for coil and discrete tables; use type bit"))
            continue
        if entry.address < base:
            problems.append(PlanProblem((*path, "address"), f"address {entry.address} is below address_base {base}"))
            continue
        scale_ref = None
        if entry.scale_register is not None:
            sr = entry.scale_register
            if sr.address < base:
                problems.append(
                    PlanProblem((*path, "scale_register"), f"address {sr.address} is below address_base {base}")
                )
                continue
            scale_ref = ScaleRef(sr.table or table, sr.address - base, sr.kind)
        for el in elements(entry.array, entry.module):
            address = entry.address - base + el.offset
            if address + entry.width - 1 > MAX_ADDRESS:
                problems.append(
                    PlanProblem(
                        (*path, "address"),
                        f"{entry.quantity} element {el.index + 1} ends at address {address + entry.width - 1 + base}, "
                        f"beyond the Modbus address space (last is {MAX_ADDRESS + base})",
                    )
                )
                break
            points.append(
                Point(
                    quantity=entry.quantity,
                    unit=entry.resolved_unit(),
                    table=table,
                    address=address,
                    width=entry.width,
                    dtype=entry.type,
                    order=entry.byte_order or profile.byte_order,
                    interval=every,
                    module=el.module,
                    cell=el.cell,
                    bit=entry.bit,
                    scale=-entry.scale if entry.invert else entry.scale,
                    offset=-entry.offset if entry.invert else entry.offset,
                    missing=frozenset(entry.missing),
                    range=entry.range,
                    flags=tuple(sorted((entry.flags or {}).items())),
                    states=tuple(sorted((entry.states or {}).items())),
                    path=path,
                    bits=entry.bits,
                    scale_ref=scale_ref,
                )
            )
    problems += find_overlaps(points)
    clock = clock_plan(profile.clock, profile.table, base, profile.byte_order)
    if profile.clock is not None and profile.clock.address < base:
        problems.append(PlanProblem(("clock", "address"), f"address {profile.clock.address} is below address_base"))
        clock = None
    extra = aux_reads(points, clock.keys if clock else (), interval or profile.interval)
    problems += [PlanProblem(p.path, f"{p.label} is beyond 65535") for p in extra if p.address > MAX_ADDRESS]
    points += extra
    problems += find_unreadable(points, unreadable_ranges(profile))
    return CompiledPoints(points, problems)


def aux_reads(points: Sequence[Point], clock: Sequence[RegKey], default_interval: float) -> list[Point]:
    """The `aux` reads these points need: each scale register in the interval of the points it scales,
    the clock's registers in every interval (each cycle of the device reads its clock)."""
    need: dict[tuple[str, int, float], tuple[str, Path]] = {}
    for p in points:
        if p.scale_ref is not None:
            ref = p.scale_ref
            need.setdefault((ref.table, ref.address, p.interval), ("scale_register", (*p.path, "scale_register")))
    intervals = sorted({p.interval for p in points if not p.aux}) or [default_interval]
    for every in intervals:
        for key in clock:
            need.setdefault((key.table, key.address, every), ("clock", ("clock",)))
    return [
        Point(name, "", table, address, 1, "uint16", "ABCD", every, path=path, aux=True)
        for (table, address, every), (name, path) in need.items()
    ]


def unreadable_ranges(profile: ModbusProfile) -> dict[str, list[tuple[int, int]]]:
    """Unreadable ranges by table, as 0-based [start, end] inclusive."""
    out: dict[str, list[tuple[int, int]]] = {}
    base = profile.address_base
    for r in profile.unreadable:
        out.setdefault(r.table, []).append((r.start - base, r.end - base))
    return out


def find_overlaps(points: Sequence[Point]) -> list[PlanProblem]:
    """Points that share an address. `bit` points and multi-bit fields of the same register(s) may
    share it when their bits do not."""
    problems: list[PlanProblem] = []
    by_table: dict[str, list[Point]] = {}
    for p in points:
        by_table.setdefault(p.table, []).append(p)
    for pts in by_table.values():
        pts.sort(key=lambda p: (p.address, p.end))
        last: Point | None = None
        used = 0  # bits of last's register(s) taken by the bit points and fields sharing it
        for p in pts:
            if last is not None and p.address < last.end:
                mask = p.mask
                shared = mask is not None and last.mask is not None and (p.address, p.end) == (last.address, last.end)
                if shared and mask is not None and not mask & used:
                    used |= mask
                    continue
                problems.append(PlanProblem(p.path, f"{p.label} overlaps {last.label}"))
            if last is None or p.end > last.end:
                last, used = p, p.mask or 0
    return problems


def find_unreadable(points: Sequence[Point], unreadable: dict[str, list[tuple[int, int]]]) -> list[PlanProblem]:
    out = []
    for p in points:
        for lo, hi in unreadable.get(p.table, []):
            if p.address <= hi and lo < p.end:
                out.append(PlanProblem(p.path, f"{p.label} lies in an unreadable range"))
    return out


def plan_reads(
    points: Sequence[Point],
    *,
    max_registers: int = 125,
    max_bits: int = 2000,
    max_gap: int = 16,
    unreadable: dict[str, list[tuple[int, int]]] | None = None,
    one_per_point: bool = False,
) -> list[Block]:
    """Group points into the fewest reads: same table and interval, within the size and gap limits."""
    groups: dict[tuple[float, str], list[Point]] = {}
    for p in points:
        groups.setdefault((p.interval, p.table), []).append(p)
    blocks: list[Block] = []
    for (interval, table), pts in sorted(groups.items()):
        limit = max_bits if table in BIT_TABLES else max_registers
        holes = sorted((unreadable or {}).get(table, []))
        pts = sorted(pts, key=lambda p: (p.address, p.end))
        current: list[Point] = []
        start = end = 0
        for p in pts:
            if current and (
                one_per_point
                or max(end, p.end) - start > limit
                or p.address - end > max_gap
                or _crosses(holes, end, p.address)
            ):
                blocks.append(Block(table, start, end - start, interval, tuple(current)))
                current = []
            if not current:
                start, end = p.address, p.end
            current.append(p)
            end = max(end, p.end)
        if current:
            blocks.append(Block(table, start, end - start, interval, tuple(current)))
    return blocks


def _crosses(holes: list[tuple[int, int]], lo: int, hi: int) -> bool:
    """Whether the gap [lo, hi) between two points touches an unreadable range."""
    return any(a < hi and lo <= b for a, b in holes)


def block_of(points: Sequence[Point], interval: float) -> Block:
    start = min(p.address for p in points)
    end = max(p.end for p in points)
    return Block(points[0].table, start, end - start, interval, tuple(points))


def split_block(block: Block) -> list[Block]:
    """Halve a failed block by its points (each half shrinks to its own points); a single point stays."""
    if len(block.points) <= 1:
        return [block]
    mid = len(block.points) // 2
    return [block_of(block.points[:mid], block.interval), block_of(block.points[mid:], block.interval)]
