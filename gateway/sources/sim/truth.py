"""What the simulated rack really is: every parameter the assessment should find, as a JSON document.

`parameters(feed)` states the rack at start: each cell's true capacity, resistance and SoC, the true
usable capacity and SoH, the injected weak and high-resistance cells, the faults with their cells
and times, the rack voltage bias and the BMS's errors. Events (faults that began, capacity-test
phases, sensors that froze) come from the feed as they happen; `document` joins both, and
`write_document` puts it beside the samples' truth file as `<stem>.model.json`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from gateway.sources.sim.feed import RackFeed

FORMAT = "bms-gateway-simulated-rack-truth"


def model_path(truth_file: Path) -> Path:
    """Where the model's parameters and events go, beside the samples' truth file."""
    return truth_file.with_name(f"{truth_file.stem}.model.json")


def parameters(feed: RackFeed) -> dict[str, object]:
    """The rack's parameters at start (JSON-ready)."""
    cfg, m = feed.cfg, feed.model
    p, cm, lim = m.params, cfg.cells, m.params.limits()
    cpm = p.cells_per_module
    cells = [
        {"module": i // cpm + 1, "cell": i % cpm + 1, "capacity_ah": c, "resistance_ohm": r, "initial_soc": s}
        for i, (c, r, s) in enumerate(zip(m.start.capacity.tolist(), m.start.resistance.tolist(),
                                          m.start.soc.tolist(), strict=True))
    ]  # fmt: skip
    usable = m.usable_capacity()
    return {
        "source": cfg.name,
        "rack": cfg.rack_tag,
        "start_ns": feed.start_ns,
        "clock": cfg.clock,
        "interval_s": cfg.interval,
        "speed": cfg.speed,
        "modules": p.modules,
        "cells_per_module": cpm,
        "sensors_per_module": p.sensors_per_module,
        "seed": p.seed,
        "nominal_capacity_ah": p.capacity_ah,
        "cells": cells,
        "rack_capacity_ah": float(m.start.capacity.min()),
        "usable_capacity_ah": usable,
        "nominal_usable_capacity_ah": m.nominal_usable_ah,
        "true_soh_pct": m.true_soh(),
        "soh_setting_pct": cm.soh,
        "fade_per_cycle": cm.fade_per_cycle,
        "weak_cells": [w.model_dump() for w in cm.weak],
        "high_resistance_cells": [h.model_dump() for h in cm.high_resistance],
        "current_profile": p.profile,
        "test": {
            "current_a": lim.current,
            "taper_current_a": lim.taper_current,
            "charge_voltage": lim.charge_voltage,
            "cutoff_voltage": lim.cutoff_voltage,
            "rest_s": p.test.rest,
            "partial_cycles": p.test.partial_cycles,
            "partial_low_soc": p.test.partial_low,
            "partial_high_soc": p.test.partial_high,
        },
        "pack_voltage_bias_v": p.pack_voltage_bias,
        "bms": {
            **cfg.bms.model_dump(),
            "soc_basis_ah": m.bms.basis_ah,
            "initial_soc": m.bms.initial_soc,
            "soh_reported_pct": m.bms.soh(m.true_soh()),
        },
        "faults": [f.model_dump() for f in cfg.faults],
    }


def document(params: dict[str, object], events: list[dict[str, object]]) -> dict[str, object]:
    return {"format": FORMAT, "version": 1, "parameters": params, "events": events}


def write_document(path: Path, params: dict[str, object], events: list[dict[str, object]]) -> None:
    """Write the document whole (a temporary file renamed over the old one: never half a document)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(document(params, events), indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)
