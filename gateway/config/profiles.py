"""Device profiles: one YAML per device type under a profiles directory, named by file stem.

A profile says what a device's points are and which catalog quantity each maps to; a source
instance names a profile and adds what differs per rack. The pydantic model of each protocol's
profiles is named in the composition root (`gateway.app.PROFILE_KINDS`) under the value of the
profile's `protocol:` key.

Arrays of cells expand from one entry (`ArraySpec`): a count, a stride, and how the index maps to
module and cell numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError, model_validator

from gateway import app, catalog
from gateway.config.base import Strict
from gateway.config.redaction import REDACTED, secret_location
from gateway.config.yamlpos import load_yaml, position, to_plain
from gateway.errors import ConfigError, Problem


class ArraySpec(Strict):
    """Expand one point entry into `count` points (cells, sensors, modules)."""

    count: int = Field(ge=1, le=100_000, description="How many elements the entry expands to")
    stride: int = Field(1, ge=0, description="Address (register, mux index) step between elements")
    per_module: int | None = Field(
        None, ge=1, description="Elements per module; sets the `module` tag to index // per_module"
    )
    module_start: int = Field(1, description="Number of the first module")
    cell_start: int = Field(1, description="Number of the first cell (or sensor)")
    numbering: str = Field(
        "per_module",
        pattern="^(per_module|rack)$",
        description="`per_module`: cell numbers restart in each module; `rack`: they run on",
    )
    level: str = Field(
        "cell",
        pattern="^(cell|module)$",
        description="`cell`: elements are cells (module and cell tags); `module`: elements are modules",
    )


@dataclass(frozen=True, slots=True)
class Element:
    index: int  # 0-based position in the array
    offset: int  # index * stride
    module: int | None
    cell: int | None


def expand(spec: ArraySpec | None, module: int | None = None) -> list[Element]:
    """The elements of an array entry (a single element with the given module when no spec)."""
    if spec is None:
        return [Element(0, 0, module, None)]
    out: list[Element] = []
    for i in range(spec.count):
        if spec.level == "module":
            out.append(Element(i, i * spec.stride, spec.module_start + i, None))
            continue
        mod: int | None = module
        cell = spec.cell_start + i
        if spec.per_module:
            mod = spec.module_start + i // spec.per_module
            if spec.numbering == "per_module":
                cell = spec.cell_start + i % spec.per_module
        out.append(Element(i, i * spec.stride, mod, cell))
    return out


class PointBase(Strict):
    """Fields every protocol's point shares: what it maps to and how to tag it."""

    quantity: str = Field(
        description="Catalog quantity (e.g. cell_voltage), or raw.<name>, alarm.<name>, warning.<name>"
    )
    unit: str | None = Field(None, description="Unit for raw.<name> points; catalog points use the catalog unit")
    module: int | None = Field(None, description="Module tag for a single (non-array) point")
    array: ArraySpec | None = Field(None, description="Expand this entry into an array of cells or modules")

    @model_validator(mode="after")
    def _maps_somewhere(self) -> PointBase:
        if not catalog.is_valid(self.quantity):
            raise ValueError(
                f"quantity {self.quantity!r} maps nowhere: expected a catalog name "
                f"(see `bms-gateway catalog`) or raw.<name>, alarm.<name>, warning.<name>"
            )
        return self

    def resolved_unit(self) -> str:
        q = catalog.CATALOG.get(self.quantity)
        return q.unit if q is not None else (self.unit or "")


def load_profile(path: Path) -> BaseModel:
    """Load and validate one profile file; errors name file, line and column."""
    data = load_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError(Problem(str(path), 1, 1, "a profile must be a mapping with a `protocol:` key"))
    protocol = data.get("protocol")
    model = app.profile_kind(str(protocol))
    if model is None:
        line, col = position(data, ["protocol"])
        raise ConfigError(
            Problem(str(path), line, col, f"unknown protocol {protocol!r}: expected one of {sorted(app.PROFILE_KINDS)}")
        )
    try:
        return model.model_validate(to_plain(data), context={"path": path})
    except ValidationError as exc:
        raise ConfigError(problems_from(exc, data, str(path))) from exc


def problems_from(exc: ValidationError, data: Any, name: str) -> list[Problem]:
    """Turn pydantic's errors into `file:line:col: message` problems."""
    out = []
    for err in exc.errors(include_url=False):
        loc = [p for p in err["loc"] if isinstance(p, int | str)]
        line, col = position(data, loc)
        where = ".".join(str(p) for p in _clean_loc(loc, data))
        msg = error_message(err)
        out.append(Problem(name, line, col, f"{where}: {msg}" if where else msg))
    return out


def _clean_loc(loc: list[int | str], data: Any) -> list[int | str]:
    """Drop union tags pydantic inserts, keeping the path as the user wrote it."""
    out: list[int | str] = []
    node = data
    last = len(loc) - 1
    for i, part in enumerate(loc):
        if isinstance(node, dict) and part in node:
            out.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            out.append(part)
            node = node[part]
        elif node is None or not isinstance(node, dict | list):
            out.append(part)
        elif isinstance(node, dict) and i == last and isinstance(part, str):
            out.append(part)  # the missing or extra key itself (after any union tags pydantic inserted)
    return out


def error_message(err: Any) -> str:
    """One pydantic error as a sentence for a user (what is wrong, and the value given)."""
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        return "unknown key (check the spelling; `bms-gateway schema` lists the keys)"
    if kind == "missing":
        return "required key is missing"
    msg = str(err.get("msg", "invalid"))
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    inp = err.get("input")
    if secret_location(err.get("loc", ())):
        msg += f" (got {REDACTED}: a secret)"
    elif kind not in ("union_tag_invalid",) and isinstance(inp, str | int | float | bool):
        msg += f" (got {inp!r})"
    return msg
