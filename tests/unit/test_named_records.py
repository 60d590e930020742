"""Records are named types (NamedTuple or slotted dataclasses), not positional tuples: no module of
gateway/ names a fixed-length tuple type, and the records that were such tuples have fields."""

from __future__ import annotations

import ast
from pathlib import Path

from gateway.ops.livestate import PointKey
from gateway.sinks.clock import LinePoint
from gateway.sinks.delivery import Item
from gateway.sinks.influx.sink import Chunk
from gateway.sources.can.profilemap import CoveredSignal, MuxArray
from gateway.sources.modbus.image import TruthKey
from gateway.sources.modbus.plan import CompiledPoints

ROOT = Path(__file__).resolve().parents[2] / "gateway"


def fixed_tuple_aliases(tree: ast.Module) -> list[str]:
    """Module-level `Name = tuple[a, b, ...]` with a fixed number of items (`tuple[x, ...]` is a
    sequence, not a record, and may stay)."""
    found = []
    for node in tree.body:
        target, value = None, None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign):
            target, value = node.target, node.value
        if not (isinstance(target, ast.Name) and isinstance(value, ast.Subscript)):
            continue
        if not (isinstance(value.value, ast.Name) and value.value.id in ("tuple", "Tuple")):
            continue
        items = value.slice.elts if isinstance(value.slice, ast.Tuple) else [value.slice]
        if not any(isinstance(e, ast.Constant) and e.value is Ellipsis for e in items):
            found.append(f"{target.id} (line {node.lineno})")
    return found


def test_the_walk_finds_a_positional_record() -> None:
    tree = ast.parse("Key = tuple[str, int]\nPath = tuple[str | int, ...]\nx: int = 1\n")
    assert fixed_tuple_aliases(tree) == ["Key (line 1)"]


def test_gateway_names_no_positional_tuple_type() -> None:
    offenders = []
    for path in sorted(ROOT.rglob("*.py")):
        for alias in fixed_tuple_aliases(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            offenders.append(f"{path.relative_to(ROOT.parent)}: {alias}")
    assert not offenders, "positional tuple types (make them NamedTuples or slotted dataclasses):\n" + "\n".join(
        offenders
    )


def test_the_former_tuples_have_named_fields() -> None:
    assert PointKey("r1", "soc", None, None).quantity == "soc"
    assert Item(7, "m x=1 1").seq == 7 and Chunk(7, "m x=1 1\n").text.endswith("\n")
    assert LinePoint("m,t=a", "x=1", 5, None).ts == 5
    assert TruthKey("cell_voltage", 1, 2).cell == 2
    assert CompiledPoints([], []).problems == []
    mux = MuxArray(2, 0, {0: (1, 1)})
    assert CoveredSignal("Cell_V", None, None, mux).mux is mux and mux.mux_step == 2
