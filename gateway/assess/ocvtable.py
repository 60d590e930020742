"""An OCV table of the cells' chemistry: open-circuit voltage against SoC, read from CSV or YAML.

File formats (rows of `soc_pct, voltage`: SoC in %, voltage in V per cell):
- **CSV** (any name but `.yaml`/`.yml`): one `soc_pct,voltage` row a line; blank lines, lines starting
  with `#` and a header line `soc_pct,voltage` are skipped.
- **YAML** (`.yaml`/`.yml`): a list of rows, each `[soc_pct, voltage]` or `{soc_pct: .., voltage: ..}`.

Validated: at least two rows, SoC within 0..100 and strictly increasing, voltage strictly increasing
(a monotonic curve, so that a voltage gives one SoC). Every error names the file and line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from gateway.config.yamlpos import load_yaml_text
from gateway.errors import ConfigError
from gateway.model import F64


class OcvTableError(ValueError):
    """A bad OCV table; the message names file:line."""


@dataclass(frozen=True, slots=True)
class OcvTable:
    soc_pct: F64
    voltage: F64
    source: str  # where it came from (the file)

    def soc_of(self, v: float) -> float:
        """SoC (%) at a relaxed cell voltage (outside the table: its end)."""
        return float(np.interp(v, self.voltage, self.soc_pct))

    def rows(self) -> list[tuple[float, float]]:
        return list(zip(self.soc_pct.tolist(), self.voltage.tolist(), strict=True))


def ocv_table(rows: Sequence[tuple[float, float, int]], where: str) -> OcvTable:
    """The table of (soc_pct, voltage, line) rows, validated (see the module docstring)."""
    if len(rows) < 2:
        raise OcvTableError(f"{where}: an OCV table needs at least two rows (soc_pct, voltage)")
    for k, (soc, v, line) in enumerate(rows):
        if not (np.isfinite(soc) and np.isfinite(v)) or not 0.0 <= soc <= 100.0 or v <= 0:
            raise OcvTableError(f"{where}:{line}: soc_pct must be within 0..100 and voltage positive "
                                f"(got {soc:g}, {v:g})")  # fmt: skip
        if k and (soc <= rows[k - 1][0] or v <= rows[k - 1][1]):
            raise OcvTableError(f"{where}:{line}: not monotonic: soc_pct and voltage must both increase "
                                f"(row {soc:g}, {v:g} after {rows[k - 1][0]:g}, {rows[k - 1][1]:g})")  # fmt: skip
    return OcvTable(np.asarray([r[0] for r in rows], dtype=np.float64),
                    np.asarray([r[1] for r in rows], dtype=np.float64), where)  # fmt: skip


def _number(text: object, where: str) -> float:
    try:
        if isinstance(text, bool):
            raise ValueError
        return float(str(text).strip())
    except ValueError:
        raise OcvTableError(f"{where}: not a number: {text!r}") from None


def _csv_rows(text: str, path: str) -> list[tuple[float, float, int]]:
    rows: list[tuple[float, float, int]] = []
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = [p.strip() for p in line.split(",")]
        if not rows and parts[:2] == ["soc_pct", "voltage"]:
            continue
        if len(parts) != 2:
            raise OcvTableError(f"{path}:{n}: expected 'soc_pct,voltage', got {line!r}")
        rows.append((_number(parts[0], f"{path}:{n}"), _number(parts[1], f"{path}:{n}"), n))
    return rows


def _yaml_rows(text: str, path: str) -> list[tuple[float, float, int]]:
    try:
        root = load_yaml_text(text, path)
    except ConfigError as e:
        raise OcvTableError(str(e)) from None
    if not isinstance(root, CommentedSeq):
        raise OcvTableError(f"{path}:1: expected a list of rows [soc_pct, voltage]")
    rows: list[tuple[float, float, int]] = []
    for k, node in enumerate(root):
        n = root.lc.item(k)[0] + 1
        where = f"{path}:{n}"
        if isinstance(node, CommentedSeq) and len(node) == 2:
            soc, v = node[0], node[1]
        elif isinstance(node, CommentedMap) and set(node) == {"soc_pct", "voltage"}:
            soc, v = node["soc_pct"], node["voltage"]
        else:
            raise OcvTableError(f"{where}: expected a row [soc_pct, voltage] or {{soc_pct: .., voltage: ..}}")
        rows.append((_number(soc, where), _number(v, where), n))
    return rows


def load_ocv_table(path: Path) -> OcvTable:
    """The OCV table in a CSV or YAML file (see the module docstring); OcvTableError names file:line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise OcvTableError(f"{path}: cannot read the OCV table: {e}") from None
    name = str(path)
    rows = _yaml_rows(text, name) if path.suffix.lower() in (".yaml", ".yml") else _csv_rows(text, name)
    return ocv_table(rows, name)
