"""Key tables: what identifies each point of a batch shape (`Key`), kept once per shape (`Keys`).

A table of one rack keeps its rack and a shape shared by every rack's table of equal keys but for the
rack (`KeyRows`: a site's racks of one profile keep their keys once); a table of several racks keeps its
tuple of keys. `gateway.model` re-exports these names.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Hashable, Iterable, Iterator, Sequence
from typing import ClassVar, NamedTuple, SupportsIndex, overload

import numpy as np
import numpy.typing as npt


class Key(NamedTuple):
    """What identifies a point: the same for every batch of one shape."""

    quantity: str
    unit: str
    rack: str = ""
    module: int | None = None
    cell: int | None = None


class Place(NamedTuple):
    """A key without its rack."""

    quantity: str
    unit: str
    module: int | None = None
    cell: int | None = None


class KeyRows(Sequence[Key]):
    """The keys of a table of one rack, each made when read from the table's shape (the rest of every key,
    one object for the tables of all racks of that shape): a 100-rack site of one profile keeps a shape of
    1,010 places, not 101,000 keys. Reads like the tuple of keys it stands for."""

    __slots__ = ("rack", "shape")

    def __init__(self, shape: tuple[Place, ...], rack: str) -> None:
        self.shape = shape
        self.rack = rack

    def __len__(self) -> int:
        return len(self.shape)

    @overload
    def __getitem__(self, i: SupportsIndex) -> Key: ...
    @overload
    def __getitem__(self, i: slice) -> tuple[Key, ...]: ...
    def __getitem__(self, i: SupportsIndex | slice) -> Key | tuple[Key, ...]:
        rack = self.rack
        if isinstance(i, slice):
            return tuple(_key((q, u, rack, m, c)) for q, u, m, c in self.shape[i])
        q, u, m, c = self.shape[i]
        return _key((q, u, rack, m, c))

    def __iter__(self) -> Iterator[Key]:
        rack = self.rack
        return (_key((q, u, rack, m, c)) for q, u, m, c in self.shape)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, KeyRows):
            return self.rack == other.rack and self.shape == other.shape
        return isinstance(other, Sequence) and tuple(self) == tuple(other)

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return repr(tuple(self))


def _place_text(quantity: str, unit: str, module: int | None, cell: int | None) -> str:
    """A place in a digest: its fields between unit separators (a missing module or cell: empty)."""
    return f"{quantity}\x1f{unit}\x1f{'' if module is None else module}\x1f{'' if cell is None else cell}"


def _key(fields: tuple[str, str, str, int | None, int | None]) -> Key:
    return tuple.__new__(Key, fields)


class Keys:
    """The key table of a batch shape: one `Key` per point, interned (see `Keys.of`).

    `id` is unique in the process (consumers key their per-shape work on it, in bounded caches);
    `digest` is the same for equal content in every process (the store keeps each table once by it).
    The table of one rack keeps its keys as its rack and a shape shared with every rack's table of equal
    keys but for the rack (`KeyRows`); a table of several racks keeps the tuple of keys.
    """

    __slots__ = ("__weakref__", "digest", "id", "n", "rows")
    _next_id: ClassVar[int] = 0
    _interned: ClassVar[OrderedDict[Hashable, Keys]] = OrderedDict()
    _shapes: ClassVar[OrderedDict[tuple[Place, ...], tuple[Place, ...]]] = OrderedDict()
    INTERNED_MAX: ClassVar[int] = 4096  # shapes kept for reuse; past it the least recently used is forgotten
    # rack shapes kept to be shared (a site has a few profiles); a table whose shape is not kept has its own
    SHAPES_MAX: ClassVar[int] = 256
    # the places of every shape, one object each: the tables of a CAN rack's windows (the same blocks in
    # other rounds) and of racks of several profiles share them, so a table holds a reference a point
    _places: ClassVar[dict[Place, Place]] = {}
    PLACES_MAX: ClassVar[int] = 1 << 18  # past it the places start again (a shape keeps those it holds)
    _texts: ClassVar[dict[Place, str]] = {}  # a place's text in digests (bounded as the places are)

    def __init__(self, rows: Sequence[Key]) -> None:
        self.rows: Sequence[Key] = rows if type(rows) is KeyRows else Keys._compact(tuple(rows))
        self.n = len(rows)
        Keys._next_id += 1
        self.id = Keys._next_id
        self.digest = Keys._digest(self.rows)

    @classmethod
    def _digest(cls, rows: Sequence[Key]) -> str:
        """Equal content, equal digest, in every process. A one-rack table (always a `KeyRows`) is hashed
        as its rack and its places' texts, each text made once per place; another table as its keys'."""
        if type(rows) is KeyRows:
            texts = cls._texts
            if len(texts) > cls.PLACES_MAX:
                texts.clear()
            known = texts.get
            body = ["rack", rows.rack, *[known(p) or cls._text(p) for p in rows.shape]]
        else:
            body = ["keys", *[f"{k.rack}\x1f{_place_text(k.quantity, k.unit, k.module, k.cell)}" for k in rows]]
        return hashlib.sha256("\x1e".join(body).encode()).hexdigest()[:32]

    @classmethod
    def _text(cls, place: Place) -> str:
        text = cls._texts[place] = _place_text(*place)
        return text

    @classmethod
    def _compact(cls, rows: tuple[Key, ...]) -> Sequence[Key]:
        """The rows as their rack and shared shape when they are of one rack, else as they are."""
        if not rows:
            return rows
        rack = rows[0].rack
        for k in rows:
            if k.rack != rack:
                return rows
        new = tuple.__new__
        places = cls._places
        if len(places) > cls.PLACES_MAX:
            places.clear()
        place = places.setdefault
        return KeyRows(
            cls._shape(tuple([place(p, p) for p in [new(Place, (k[0], k[1], k[3], k[4])) for k in rows]])), rack
        )

    @classmethod
    def _shape(cls, shape: tuple[Place, ...]) -> tuple[Place, ...]:
        """The one object of equal shapes (while it is kept: bounded as the tables are)."""
        known = cls._shapes.get(shape)
        if known is None:
            known = cls._shapes[shape] = shape
            if len(cls._shapes) > cls.SHAPES_MAX:
                cls._shapes.popitem(last=False)
        else:
            cls._shapes.move_to_end(shape)
        return known

    @classmethod
    def of(cls, rows: Iterable[Sequence[object]]) -> Keys:
        """The interned table of these keys (equal content gives the same object while it is kept)."""
        if type(rows) is KeyRows:
            compact: Sequence[Key] = KeyRows(cls._shape(rows.shape), rows.rack)
        else:
            compact = cls._compact(tuple(r if type(r) is Key else Key(*r) for r in rows))  # type: ignore[arg-type]
        name: Hashable = (compact.rack, compact.shape) if type(compact) is KeyRows else compact
        table = cls._interned.get(name)
        if table is None:
            table = cls._interned[name] = Keys(compact)
            if len(cls._interned) > cls.INTERNED_MAX:
                cls._interned.popitem(last=False)
        else:
            cls._interned.move_to_end(name)
        return table

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        return f"Keys(id={self.id}, points={self.n})"


EMPTY_KEYS = Keys.of(())


def distinct_keys(keys: Keys) -> tuple[list[Key], npt.NDArray[np.intp]]:
    """The table's distinct keys in order of first appearance, and each point's number among them. A CAN
    window's table repeats its blocks' keys round after round: work per key is then done once per key and
    spread to the points by that number."""
    rows = keys.rows
    if type(rows) is not KeyRows:
        first: dict[Key, int] = {}
        inverse = [first.setdefault(k, len(first)) for k in rows]
        return list(first), np.asarray(inverse, dtype=np.intp)
    # A shape's equal places are one object (`Keys._compact`), so they are told apart by identity, in C.
    # (Were two equal places two objects, each would count as a key: more work, the same result.)
    shape = rows.shape
    ids = np.fromiter(map(id, shape), dtype=np.uint64, count=len(shape))
    _, at, numbers = np.unique(ids, return_index=True, return_inverse=True)
    order = np.argsort(at)  # the distinct places in the order they first appear
    rank = np.empty(len(order), dtype=np.intp)
    rank[order] = np.arange(len(order))
    rack = rows.rack
    distinct = [_key((p.quantity, p.unit, rack, p.module, p.cell)) for p in map(shape.__getitem__, at[order].tolist())]
    return distinct, rank[numbers.reshape(-1)]
