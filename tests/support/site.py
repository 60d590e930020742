"""The one site builder of the tests: a `gateway.yaml` of simulated racks with a store, for tests that
run a whole gateway (a `bms-gateway run` subprocess or a Runtime)."""

from __future__ import annotations

from pathlib import Path

# What a simulated rack of the tests is unless a test says otherwise: small, and fast in simulated time.
SIM_RACK: dict[str, object] = {"modules": 2, "cells_per_module": 4, "sensors_per_module": 2, "speed": 30}
# Overrides for a rack of 2 modules x 8 cells that otherwise keeps the simulator's own defaults (seeded
# 1, 2, ... by `write_config` unless "seed" is None too).
PLAIN_RACK: dict[str, object] = {"cells_per_module": 8, "sensors_per_module": None, "speed": None}


def rack_lines(name: str, tmp: Path, interval: float = 0.05, seed: int | None = 1, **extra: object) -> list[str]:
    """The YAML lines of one simulated rack (a list item under `sources:`); its truth file is
    tmp/truth-<name>.jsonl. `extra` adds keys or overrides the defaults; a key set to None is left out."""
    fields: dict[str, object] = {
        "interval": interval,
        **SIM_RACK,
        "seed": seed,
        "truth_file": tmp / f"truth-{name}.jsonl",
        **extra,
    }
    lines = ["  - type: simulated", f"    name: {name}"]
    lines += [f"    {k}: {v}" for k, v in fields.items() if v is not None]
    return lines


def write_config(
    tmp: Path,
    racks: list[str],
    *,
    http_port: int | None = None,
    interval: float = 0.05,
    extra: str = "",
    name: str = "gateway.yaml",
    grace: float = 5.0,
    rack: dict[str, object] | None = None,
    http_options: str = "",
    db: Path | None = None,
    store: dict[str, object] | None = None,
) -> Path:
    """Write tmp/<name>: the simulated `racks` (seeds 1, 2, ...; `rack` overrides their keys as in
    `rack_lines`), the store at `db` (tmp/store.db by default; `store` adds keys to it), the grace
    period, the HTTP server on `http_port` (off without one; `http_options` adds keys to it, e.g.
    ", max_connections: 8"), then the YAML text `extra` as it is."""
    lines = ["site: {name: t}", "sources:"]
    for i, rack_name in enumerate(racks):
        lines += rack_lines(rack_name, tmp, interval, **{"seed": i + 1, **(rack or {})})  # type: ignore[arg-type]
    lines += ["store:", f"  path: {db or tmp / 'store.db'}", *(f"  {k}: {v}" for k, v in (store or {}).items())]
    lines.append(f"runtime: {{grace_period: {grace}}}")
    if http_port is None:
        lines.append("http: {enabled: false}")
    else:
        lines.append(f"http: {{port: {http_port}{http_options}}}")  # the host is the default: loopback
    p = tmp / name
    p.write_text("\n".join(lines) + "\n" + extra)
    return p
