"""Per-rack settings of an assessment: nominal capacity, cell voltage limits and sample period, each with
where it came from (said in the report).

Order, first found wins:
- **nominal capacity**: `--nominal-ah`; the configuration's `assess.racks.<rack>.nominal_capacity_ah`,
  `assess.nominal_capacity_ah`; the rack's profile (`nominal_capacity_ah`); a simulated source's
  `capacity_ah`; else none (no SoH, no verdict, no equivalent full cycles).
- **cell voltage limits** (full, taper, empty): `--full-v` / `--empty-v`; the configuration's
  `assess.full_voltage` / `taper_voltage` / `cutoff_voltage` when any is set; a simulated source's
  capacity test (`charge_voltage`, `cutoff_voltage`); the alarm rules `cell_high_voltage` (high) and
  `cell_low_voltage` (low) of the configuration; else the defaults of `--chemistry` (`CHEMISTRY`).
  The taper level is 0.05 V below full unless given.
- **margin** (gateway.assess.cycles: a cell this close to a limit is at it): `--margin-v`; else, for
  limits that are hard ones (options, a capacity test's, the alarm rules'), 5 mV per second of the
  sample period, between 0.01 and 0.1 V; none for the chemistry defaults (they lie inside the limits).
- **sample period**: `--period`; `assess.racks.<rack>.period`, `assess.period`; the source's
  interval (a simulated source on the simulated clock: interval × speed); the Modbus profile's
  interval; else inferred from the data (gateway.assess.rackpass.infer_period), else 1 s.
- **OCV table** (capacity from partial cycles, gateway.assess.partial): `--ocv-table`; the
  configuration's `assess.ocv_table`; else none (that figure is insufficient).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from gateway.assess.cycles import Limits
from gateway.assess.ocvtable import OcvTable
from gateway.assess.rackpass import RackSettings

CHEMISTRY: dict[str, Limits] = {
    "lfp": Limits(full_v=3.45, taper_v=3.40, empty_v=2.95),
    "nmc": Limits(full_v=4.15, taper_v=4.10, empty_v=3.00),
}
TAPER_BELOW_V = 0.05


@dataclass(frozen=True, slots=True)
class Hints:
    """What a configuration says about one rack (each None when it says nothing)."""

    nominal_ah: float | None = None
    nominal_source: str | None = None
    full_v: float | None = None
    empty_v: float | None = None
    limits_source: str | None = None
    period_s: float | None = None
    period_source: str | None = None
    taper_v: float | None = None


@dataclass(frozen=True, slots=True)
class Options:
    """What the command line says (None: not given)."""

    nominal_ah: float | None = None
    full_v: float | None = None
    empty_v: float | None = None
    period_s: float | None = None
    chemistry: str = "lfp"
    margin_v: float | None = None
    ocv_table: OcvTable | None = None  # `--ocv-table`, else the configuration's assess.ocv_table (loaded)


def _rule_limits(loaded: Any) -> tuple[float | None, float | None]:
    """(cell_high_voltage's high, cell_low_voltage's low) of the configuration's alarm rules."""
    from gateway.alarms.ruleset import build_ruleset

    if not loaded.config.alarms.enabled:
        return None, None
    rules = {r.id: r for r in build_ruleset(loaded).rules if r.enabled}
    high = getattr(rules.get("cell_high_voltage"), "high", None)
    low = getattr(rules.get("cell_low_voltage"), "low", None)
    return high, low


def hints_from_config(loaded: Any) -> dict[str, Hints]:
    """Per rack tag, what the loaded configuration says (see the module docstring)."""
    high, low = _rule_limits(loaded)
    rules = "alarm rules cell_high_voltage/cell_low_voltage" if high is not None and low is not None else None
    out: dict[str, Hints] = {}
    for src in loaded.enabled_sources:
        rack = getattr(src, "rack_tag", None)
        if rack is None:
            continue
        if src.type == "simulated":
            test = src.capacity_test
            period = src.interval * (src.speed if src.clock == "simulated" else 1.0)
            where = f"simulated source {src.name}"
            out[rack] = Hints(src.capacity_ah, f"{where}: capacity_ah", test.charge_voltage, test.cutoff_voltage,
                              f"{where}: capacity_test charge_voltage/cutoff_voltage", period,
                              f"{where}: interval")  # fmt: skip
            continue
        profile = loaded.profiles.get(getattr(src, "profile", None) or "")
        nominal = getattr(profile, "nominal_capacity_ah", None)
        interval = getattr(src, "interval", None) or getattr(profile, "interval", None)
        out[rack] = Hints(nominal, f"profile {src.profile}: nominal_capacity_ah" if nominal else None,
                          high if rules else None, low if rules else None, rules,
                          interval, f"source {src.name}: interval" if interval else None)  # fmt: skip
    return _with_assess_section(loaded.config.assess, out)


def _with_assess_section(cfg: Any, hints: dict[str, Hints]) -> dict[str, Hints]:
    """The hints with what the configuration's `assess:` section sets put first."""
    voltages = {"full_voltage", "taper_voltage", "cutoff_voltage"} & cfg.model_fields_set
    racks = set(hints) | set(cfg.racks)
    out: dict[str, Hints] = {}
    for rack in racks:
        h = hints.get(rack) or Hints()
        own = cfg.racks.get(rack)
        if own is not None and own.nominal_capacity_ah:
            where = f"assess.racks.{rack}.nominal_capacity_ah"
            h = replace(h, nominal_ah=own.nominal_capacity_ah, nominal_source=where)
        elif cfg.nominal_capacity_ah:
            h = replace(h, nominal_ah=cfg.nominal_capacity_ah, nominal_source="assess.nominal_capacity_ah")
        if own is not None and own.period:
            h = replace(h, period_s=own.period, period_source=f"assess.racks.{rack}.period")
        elif cfg.period:
            h = replace(h, period_s=cfg.period, period_source="assess.period")
        if voltages:
            h = replace(h, full_v=cfg.full_voltage, taper_v=cfg.taper_voltage, empty_v=cfg.cutoff_voltage,
                        limits_source="assess.full_voltage/taper_voltage/cutoff_voltage")  # fmt: skip
        out[rack] = h
    return out


def margin_for(period_s: float) -> float:
    """The margin of hard limits for a record of this sample period (see the module docstring)."""
    return min(0.1, max(0.01, 0.005 * period_s))


def rack_settings(opts: Options, hints: Hints | None, inferred_s: float | None) -> RackSettings:
    """The settings of one rack from the options, the configuration's hints and the inferred period."""
    h = hints or Hints()
    nominal: float | None
    nominal_source: str | None
    base = CHEMISTRY[opts.chemistry]
    if opts.nominal_ah is not None:
        nominal, nominal_source = opts.nominal_ah, "option --nominal-ah"
    else:
        nominal, nominal_source = h.nominal_ah, h.nominal_source
    full, taper, empty, source = base.full_v, base.taper_v, base.empty_v, f"defaults for {opts.chemistry}"
    hard = False
    if h.full_v is not None and h.empty_v is not None and h.limits_source:
        full, empty, source, hard = h.full_v, h.empty_v, h.limits_source, True
        taper = h.taper_v if h.taper_v is not None else full - TAPER_BELOW_V
    if opts.full_v is not None or opts.empty_v is not None:
        if opts.full_v is not None:
            full, taper = opts.full_v, opts.full_v - TAPER_BELOW_V
        empty = opts.empty_v if opts.empty_v is not None else empty
        source, hard = f"options --full-v/--empty-v (else {source})", True
    if opts.period_s is not None:
        period, period_source = opts.period_s, "option --period"
    elif h.period_s is not None:
        period, period_source = h.period_s, h.period_source or "configuration"
    elif inferred_s is not None:
        period, period_source = inferred_s, "inferred from the data (median time between rack_current samples)"
    else:
        period, period_source = 1.0, "default (no rack_current samples to infer it from)"
    margin, margin_source = _margin(opts.margin_v, period, hard)
    limits = replace(base, full_v=full, taper_v=min(taper, full), empty_v=empty, nominal_ah=nominal,
                     max_gap_s=max(base.max_gap_s, 5 * period), margin_v=margin)  # fmt: skip
    return RackSettings(period, period_source, limits, source, nominal_source, margin_source, opts.ocv_table)


def _margin(given: float | None, period_s: float, hard: bool) -> tuple[float, str]:
    """The margin and where it came from (see the module docstring)."""
    if given is not None:
        return given, "option --margin-v"
    if hard:
        return margin_for(period_s), f"5 mV per second of the {period_s:g} s period (hard limits)"
    return 0.0, "none (the chemistry defaults lie inside the limits)"
