"""Compiled points, read plans and block decoders shared by the devices of one source builder.

A site of 100 identical racks compiles its profile once, plans its reads once and keeps one decoder
per block instead of 100: start-up time and memory no longer grow with the racks' points. Everything
shared is immutable (points, blocks, decoders; a device's own plan repairs replace blocks in its own
lists), and every entry keeps the objects whose ids key it alive.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from gateway.sources.modbus.decode import BlockDecoder
from gateway.sources.modbus.plan import Block, CompiledPoints, Point, compile_points
from gateway.sources.modbus.profile import ModbusProfile


class _CompiledEntry(NamedTuple):
    profile: ModbusProfile  # kept alive: its id is the key
    compiled: CompiledPoints


class _PlanEntry(NamedTuple):
    profile: ModbusProfile  # kept alive with the points: their ids are the key
    points: list[Point]
    blocks: list[Block]


class SharedPlans:
    def __init__(self) -> None:
        self._compiled: dict[tuple[int, float | None], _CompiledEntry] = {}  # (id(profile), interval)
        self._plans: dict[tuple[int, int, bool], _PlanEntry] = {}  # (id(profile), id(points), one_per_point)
        self._decoders: dict[int, BlockDecoder] = {}

    def compiled(self, profile: ModbusProfile, interval: float | None) -> CompiledPoints:
        """`compile_points(profile, interval)`, once per profile object and interval."""
        key = (id(profile), interval)
        hit = self._compiled.get(key)
        if hit is None:
            hit = self._compiled[key] = _CompiledEntry(profile, compile_points(profile, interval))
        return hit.compiled

    def plan(
        self, profile: ModbusProfile, points: list[Point], one_per_point: bool, make: Callable[[], list[Block]]
    ) -> list[Block]:
        """The blocks `make()` plans for these points (the same list object) of this profile."""
        key = (id(profile), id(points), one_per_point)
        hit = self._plans.get(key)
        if hit is None:
            hit = self._plans[key] = _PlanEntry(profile, points, make())
        return hit.blocks

    def decoder(self, block: Block) -> BlockDecoder:
        """The block's decoder, compiled once (it keeps the block, so the block's id stays unique)."""
        decoder = self._decoders.get(id(block))
        if decoder is None:
            decoder = self._decoders[id(block)] = BlockDecoder(block)
        return decoder
