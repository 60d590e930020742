"""SunSpec: model layout with repeating groups and scale factors, mapping to the catalog."""

from __future__ import annotations

import asyncio

from gateway.sources.modbus import sunspec
from gateway.sources.modbus.cycle import Cycle, keys_of
from gateway.sources.modbus.decode import BlockDecoder
from gateway.sources.modbus.image import Image, fill
from gateway.sources.modbus.plan import plan_reads


def test_the_five_models_load_and_have_the_published_lengths() -> None:
    for model_id in sunspec.MODELS:
        assert sunspec.model_definition(model_id)["points"][0]["name"] == "ID"
    assert sunspec.group_size(sunspec.model_definition(1)) == 68  # ID, L and 66 registers


def test_chain_layout_cells_and_scale_factors() -> None:
    models = sunspec.build_chain(40000, modules=3, cells=8)
    assert [m.model_id for m in models] == [1, 802, 805, 805, 805]
    assert models[0].address == 40002 and models[1].address == 40002 + 68
    points = sunspec.points_from_models(models, 1.0)
    cells = [p for p in points if p.quantity == "cell_voltage"]
    assert len(cells) == 24
    assert [(p.module, p.cell) for p in cells[:2]] == [(1, 1), (1, 2)]
    assert (cells[-1].module, cells[-1].cell) == (3, 8)
    # scaled in every cycle by their scale-factor register (read in the same cycle), not once at discovery
    words = {m.address + i: w for m in models for i, w in enumerate(m.words)}
    ref = cells[0].scale_ref
    assert ref is not None and ref.kind == "exponent" and cells[0].scale == 1.0
    assert words[ref.address] == (-3) & 0xFFFF  # CellV_SF of the first 805
    by = {p.quantity: p for p in points if p.module is None and not p.aux}
    v_sf = by["rack_voltage"].scale_ref
    assert (
        v_sf is not None and words[v_sf.address] == (-1) & 0xFFFF and by["rack_voltage"].missing == frozenset({0xFFFF})
    )
    aux = {(p.address, p.interval) for p in points if p.aux}
    assert (ref.address, 1.0) in aux and (v_sf.address, 1.0) in aux  # the plan reads them
    assert by["rack_current"].dtype == "int16"
    assert by["manufacturer"].dtype == "string" and by["manufacturer"].width == 16
    assert "connected" in dict(by["bms_state"].states).values()
    flags = dict(by["alarm_word"].flags)
    assert flags[1] == "alarm.over_temp" and flags[2] == "warning.over_temp"
    assert by["alarm_word"].dtype == "uint32"
    # every mapped point lies inside its model
    for p in points:
        assert any(m.address <= p.address and p.end <= m.address + len(m.words) for m in models)


def test_discovery_walks_the_chain_from_the_second_base() -> None:
    models = sunspec.build_chain(0, modules=2, cells=4)
    image = Image()
    for address, words in sunspec.chain_words(0, models):
        image.write("holding", address, words)
    reads: list[tuple[int, int]] = []

    async def read(address: int, count: int) -> list[int] | None:
        reads.append((address, count))
        assert count <= 125
        return None if address >= 40000 else image.read("holding", address, count)

    found = asyncio.run(sunspec.discover(read, [40000, 0, 50000]))
    assert found is not None
    assert [m.model_id for m in found] == [1, 802, 805, 805]
    assert [m.words for m in found] == [m.words for m in models]
    assert reads[0] == (40000, 2) and reads[1] == (0, 2)


def test_no_marker_is_none() -> None:
    async def read(address: int, count: int) -> list[int] | None:
        return [0] * count

    assert asyncio.run(sunspec.discover(read, [40000, 0])) is None


def test_values_round_trip_through_the_mapped_points() -> None:
    models = sunspec.build_chain(40000, modules=1, cells=4)
    points = sunspec.points_from_models(models, 1.0)
    image = Image()
    for address, words in sunspec.chain_words(40000, models):
        image.write("holding", address, words)
    truth = {("cell_voltage", 1, 3): 3.301, ("soc", None, None): 55.5, ("rack_current", None, None): -42.3}
    fill(image, points, truth, 1)
    cycle = Cycle()  # one cycle: a scale-factor register may be in another block than its points
    for b in plan_reads(points):
        cycle.decoded(BlockDecoder(b), image.read(b.table, b.start, b.count), 1)
    got = {
        (s.quantity, s.module, s.cell): s.value
        for s in cycle.batch("r", keys_of(cycle.decoders, "r"), None, 0).samples()
    }
    assert got[("cell_voltage", 1, 3)] == 3.301
    assert got[("soc", None, None)] == 55.5
    assert got[("rack_current", None, None)] == -42.3
    assert got[("manufacturer", None, None)] == "bms-gateway"


def instance(model_id: int, counts: dict[str, int], repeats: int, address: int = 100) -> sunspec.ModelInstance:
    defn = sunspec.model_definition(model_id)
    top = sum(int(p.get("size", 1)) for p in defn["points"])
    group = defn["groups"][0]
    length = top - 2 + repeats * sunspec.group_size(group)
    words = [0] * (length + 2)
    words[0], words[1] = model_id, length
    offset = 0
    for p in defn["points"]:
        if p["name"] in counts:
            words[offset] = counts[p["name"]]
        offset += int(p.get("size", 1))
    return sunspec.ModelInstance(model_id, address, tuple(words))


def test_804_modules_repeat_by_nmod() -> None:
    m = instance(804, {"NMod": 3}, 3)
    points = sunspec.points_from_models([m], 1.0)
    maxes = [p for p in points if p.quantity == "module_cell_voltage_max"]
    assert [p.module for p in maxes] == [1, 2, 3]
    group = sunspec.group_size(sunspec.model_definition(804)["groups"][0])
    assert maxes[1].address - maxes[0].address == group
    assert {p.quantity for p in points if p.module is None and not p.aux} == {
        "raw.string_soc",
        "raw.string_voltage",
        "raw.string_current",
    }


def test_803_strings_repeat_by_nstr() -> None:
    m = instance(803, {"NStr": 2}, 2)
    points = sunspec.points_from_models([m], 1.0)
    socs = [p for p in points if p.quantity == "raw.string_soc"]
    assert [p.module for p in socs] == [1, 2]
    assert [p.quantity for p in points if p.module is None and not p.aux] == [
        "cell_temperature_max",
        "cell_temperature_min",
        "cell_temperature_mean",
    ]


def test_a_count_larger_than_the_model_is_cut_to_its_length() -> None:
    m = instance(804, {"NMod": 50}, 2)  # claims 50 modules, holds 2
    points = sunspec.points_from_models([m], 1.0)
    assert all(p.end <= m.address + len(m.words) for p in points)
    assert {p.module for p in points if p.quantity == "module_cell_voltage_max"} == {1, 2}
