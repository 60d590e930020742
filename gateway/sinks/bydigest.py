"""Caches of work prepared per layout content (`ByDigest`) and per segment content (`BySegment`)."""

from __future__ import annotations

from typing import Generic, TypeVar

from gateway.model import Layout

V = TypeVar("V")


class ByDigest(Generic[V]):
    """Work prepared per layout content: equal layouts made anew (a source's and the store's for the
    same shape, or one the store rebuilt) share it. Bounded by the samples of the layouts held; the
    least recently used go first."""

    def __init__(self, max_keys: int = 400_000) -> None:
        self.max_keys = max_keys
        self._items: dict[str, tuple[int, V]] = {}
        self._keys = 0

    def __len__(self) -> int:
        return len(self._items)

    def get(self, layout: Layout) -> V | None:
        hit = self._items.pop(layout.digest, None)
        if hit is None:
            return None
        self._items[layout.digest] = hit  # the most recently used last
        return hit[1]

    def put(self, layout: Layout, value: V) -> V:
        old = self._items.pop(layout.digest, None)
        if old is not None:
            self._keys -= old[0]
        n = len(layout.keys)
        while self._items and self._keys + n > self.max_keys:
            self._keys -= self._items.pop(next(iter(self._items)))[0]
        self._items[layout.digest] = (n, value)
        self._keys += n
        return value


K = TypeVar("K")


class BySegment(Generic[K, V]):
    """Work prepared per segment content: layouts that differ in some segments (a Modbus device whose
    block failed in one cycle) share the others'. Bounded by the samples of the segments held; the
    least recently used go first."""

    def __init__(self, max_keys: int = 400_000) -> None:
        self.max_keys = max_keys
        self._items: dict[K, tuple[int, V]] = {}
        self._keys = 0

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: K) -> bool:
        return key in self._items

    def get(self, key: K) -> V | None:
        hit = self._items.pop(key, None)
        if hit is None:
            return None
        self._items[key] = hit  # the most recently used last
        return hit[1]

    def put(self, key: K, value: V, size: int) -> V:
        old = self._items.pop(key, None)
        if old is not None:
            self._keys -= old[0]
        while self._items and self._keys + size > self.max_keys:
            self._keys -= self._items.pop(next(iter(self._items)))[0]
        self._items[key] = (size, value)
        self._keys += size
        return value
