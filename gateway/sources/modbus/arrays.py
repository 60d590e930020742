"""Arrays of a Modbus point with a module stride as well as a cell stride.

A rack BMS often repeats one block per module at a fixed step (module 1 at 0x1000, module 2 at
0x1100, ...), the cells inside each block at their own step. `array: {count: 24, stride: 1,
modules: {count: 16, stride: 0x100}}` is the 16 x 24 cells of such a map in one entry: `count` and
`stride` are the cells of one module, `modules` the blocks. Without `modules:` an array is the shared
single-stride array of every profile (`gateway.config.profiles.expand`), unchanged.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from gateway.config.base import Strict
from gateway.config.profiles import ArraySpec, Element, expand

ADDRESS_SPACE = 0x10000  # registers (or bits) of one Modbus table: addresses 0..65535


class ModuleBlocks(Strict):
    """`array.modules`: the module blocks an array repeats in."""

    count: int = Field(ge=1, le=10_000, description="How many module blocks")
    stride: int = Field(ge=1, description="Address step from one module's block to the next")


class ModbusArray(ArraySpec):
    """An array of a Modbus point: the shared array keys, and `modules:` for module blocks."""

    modules: ModuleBlocks | None = Field(
        None,
        description="Module blocks at a fixed address step: `count` and `stride` of the array are then the cells "
        "of one module (e.g. {count: 16, stride: 0x100} with count: 24, stride: 1)",
    )

    @model_validator(mode="after")
    def _module_blocks(self) -> ModbusArray:
        if self.modules is None:
            return self
        if self.per_module is not None:
            raise ValueError("with `modules:` the array's `count` is per module: leave out `per_module`")
        if self.level == "module":
            raise ValueError("with `modules:` the elements are cells: leave out `level: module`")
        if self.count > 1 and self.stride == 0:
            raise ValueError("cells of a module need a stride of at least 1")
        return self

    def extent(self, width: int) -> int:
        """Registers one module's cells span, from the first cell's address."""
        return (self.count - 1) * self.stride + width


def elements(spec: ArraySpec | None, module: int | None) -> list[Element]:
    """The elements of a point entry: module blocks of cells, or the shared single-stride array."""
    if not isinstance(spec, ModbusArray) or spec.modules is None:
        return expand(spec, module)
    out: list[Element] = []
    for m in range(spec.modules.count):
        for i in range(spec.count):
            index = m * spec.count + i
            cell = spec.cell_start + (i if spec.numbering == "per_module" else index)
            out.append(Element(index, m * spec.modules.stride + i * spec.stride, spec.module_start + m, cell))
    return out


def module_overlap(spec: ArraySpec | None, width: int) -> str | None:
    """Why an array's module blocks overlap (a module's cells run into the next block), or None."""
    if not isinstance(spec, ModbusArray) or spec.modules is None or spec.modules.count < 2:
        return None
    extent = spec.extent(width)
    if extent > spec.modules.stride:
        return (
            f"the cells of one module span {extent} registers ({spec.count} x stride {spec.stride}, width {width}), "
            f"more than the module stride {spec.modules.stride}: the modules' blocks overlap"
        )
    return None


def beyond_address_space(spec: ArraySpec | None, width: int) -> str | None:
    """Why an array cannot fit in one Modbus table (more elements, or a longer run of addresses, than
    its 65,536), or None. Checked on the entry before it is expanded: a mistyped count does not
    expand into millions of points first."""
    if spec is None:
        return None
    blocks = spec.modules if isinstance(spec, ModbusArray) else None
    n = spec.count * (blocks.count if blocks is not None else 1)
    span = (spec.count - 1) * spec.stride + width
    if blocks is not None:
        span += (blocks.count - 1) * blocks.stride
    if n > ADDRESS_SPACE or span > ADDRESS_SPACE:
        return (
            f"the array is {n} elements over {span} registers, more than a Modbus table holds "
            f"({ADDRESS_SPACE} addresses): check count and stride"
        )
    return None
