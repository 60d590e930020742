"""The report of an assessment: every rack's results as the JSON schema's records (gateway.assess.schema),
and the console summary.

A NaN (a cell figure the data does not give) becomes null. The findings are gateway.assess.findings'
over the rack's results, plus `journal_not_intact` (major) for every rack when the alarm journal's
hash chain fails verification: the alarm history beside them cannot be taken as evidence then.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

from gateway.assess import schema
from gateway.assess.alarmhistory import iso
from gateway.assess.capacity import CapacityResult
from gateway.assess.cells import CellsResult
from gateway.assess.completeness import CompletenessResult
from gateway.assess.energy import EnergyResult
from gateway.assess.findings import findings
from gateway.assess.partial import PartialResult
from gateway.assess.rackpass import RackPass
from gateway.assess.sensors import SensorsResult
from gateway.assess.series import CellId


def num(x: float | np.floating | None, digits: int = 6) -> float | None:
    """A finite number rounded, or None."""
    if x is None:
        return None
    v = float(x)
    return round(v, digits) if math.isfinite(v) else None


def span(start: int | None, end: int | None) -> schema.Span:
    return schema.Span(start=None if start is None else iso(start), end=None if end is None else iso(end),
                       start_ns=start, end_ns=end)  # fmt: skip


def rack_span(p: RackPass) -> tuple[int, int]:
    """The window a rack was assessed over: the one asked for, else its first to its last step (exclusive)."""
    period = round(p.settings.period_s * 1e9)
    start = p.window.since_ns if p.window.since_ns is not None else (p.first_ns or 0)
    end = p.window.end_ns if p.window.end_ns is not None else (p.last_ns or 0) + period
    return start, end


def _completeness(r: CompletenessResult) -> schema.Completeness:
    gaps = [schema.Gap(**span(g.start_ns, g.end_ns).model_dump(), seconds=g.seconds) for g in r.gaps]
    return schema.Completeness(coverage=num(r.coverage), expected_steps=r.expected_steps, good_steps=r.good_steps,
                               gap_count=r.gap_count, gap_seconds=r.gap_seconds,
                               comm_loss_seconds=r.comm_loss_seconds, stale_seconds=r.stale_seconds, gaps=gaps,
                               insufficient=r.insufficient)  # fmt: skip


def _partial(r: PartialResult, table: str | None) -> schema.PartialCycles:
    return schema.PartialCycles(ah=num(r.ah, 4), estimates=len(r.estimates), spread_ah=num(r.spread_ah, 4),
                                rest_points=r.rest_points, skipped=r.skipped, ocv_table=table,
                                insufficient=r.insufficient)  # fmt: skip


def _capacity(r: CapacityResult, partial: schema.PartialCycles | None = None) -> schema.Capacity:
    discharges = [schema.Discharge(**span(d.start_ns, d.end_ns).model_dump(), ah=round(d.ah, 4)) for d in r.discharges]
    return schema.Capacity(independent_ah=num(r.independent_ah, 4), independent_soh_pct=num(r.independent_soh_pct, 3),
                           nominal_ah=r.nominal_ah, bms_soh_pct=num(r.bms_soh_pct, 3),
                           bms_capacity_ah=num(r.bms_capacity_ah, 4), soh_difference_pct=num(r.soh_difference_pct, 3),
                           verdict=r.verdict, discharges=discharges,
                           incomplete_discharges=r.incomplete_discharges, insufficient=r.insufficient,
                           verdict_insufficient=r.verdict_insufficient, partial_cycles=partial)  # fmt: skip


def _ref(c: CellId) -> schema.CellRef:
    return schema.CellRef(module=c.module, cell=c.cell)


def _cells(r: CellsResult, p: RackPass) -> schema.Cells:
    eod, eoc = p.ends.last("discharge"), p.ends.last("charge")
    rows = []
    for j, c in enumerate(r.cell_ids):
        rows.append(schema.CellRow(
            module=c.module, cell=c.cell, relative_capacity=num(r.relative_capacity[j], 4),
            resistance_mohm=num(r.resistance_ohm[j] * 1000.0, 4), relative_resistance=num(r.relative_resistance[j], 4),
            end_of_discharge_v=None if eod is None else num(eod.volts[j], 4),
            end_of_charge_v=None if eoc is None else num(eoc.volts[j], 4)))  # fmt: skip
    return schema.Cells(count=len(r.cell_ids), weak=[_ref(c) for c in r.weak],
                        high_resistance=[_ref(c) for c in r.high_resistance], current_steps=r.steps,
                        discharges=r.discharges, table=rows, capacity_insufficient=r.capacity_insufficient,
                        resistance_insufficient=r.resistance_insufficient)  # fmt: skip


def _sensors(r: SensorsResult) -> schema.Sensors:
    flags = [schema.SensorFlag(family=f.family, module=f.sensor.module, cell=f.sensor.cell,
                               problem=f.problem, detail=f.detail) for f in r.flags]
    return schema.Sensors(flags=flags, blocks=r.blocks, insufficient=r.insufficient)


def _energy(r: EnergyResult, capacity_ah: float | None) -> schema.Energy:
    cycles = [schema.EnergyCycle(**span(c.start_ns, c.end_ns).model_dump(), kwh_in=round(c.kwh_in, 4),
                                 kwh_out=round(c.kwh_out, 4)) for c in r.cycles]  # fmt: skip
    efc = r.ah_out / capacity_ah if capacity_ah else None
    return schema.Energy(kwh_in=round(r.kwh_in, 4), kwh_out=round(r.kwh_out, 4), ah_in=round(r.ah_in, 4),
                         ah_out=round(r.ah_out, 4), equivalent_full_cycles=num(efc, 4),
                         round_trip_efficiency=num(r.round_trip_efficiency, 4), cycles=cycles,
                         incomplete_seconds=r.incomplete_seconds, insufficient=r.insufficient)  # fmt: skip


def rack_report(p: RackPass, alarms: schema.AlarmHistory, journal: schema.Journal) -> schema.Rack:
    """One rack's record of the report."""
    s, lim = p.settings, p.settings.limits
    done, cap, cells = p.completeness.result(), p.capacity.result(), p.cells.result()
    sens, pack, soc, energy = p.sensors.result(), p.pack.result(), p.soc.result(), p.energy.result()
    found = [schema.Finding(code=f.code, severity=f.severity, message=f.message, module=f.module,
                            cell=f.cell) for f in findings(done, cap, cells, sens, pack, soc)]  # fmt: skip
    if journal.intact is False:
        found.append(schema.Finding(code="journal_not_intact", severity="major",
                                    message=f"the alarm journal fails verification ({len(journal.problems)} "
                                    "problems shown): its history is not evidence"))  # fmt: skip
    settings = schema.Settings(period_s=s.period_s, period_source=s.period_source, nominal_ah=lim.nominal_ah,
                               nominal_source=s.nominal_source,
                               limits=schema.Limits(full_v=lim.full_v, taper_v=round(lim.taper_v, 4),
                                                    empty_v=lim.empty_v, margin_v=round(lim.margin_v, 4),
                                                    margin_source=s.margin_source, source=s.limits_source))  # fmt: skip
    return schema.Rack(
        rack=p.rack, settings=settings, window=span(*rack_span(p)), completeness=_completeness(done),
        capacity=_capacity(cap, _partial(p.partial.result(), s.ocv_table.source if s.ocv_table else None)),
        cells=_cells(cells, p), sensors=_sensors(sens),
        pack_voltage=schema.PackVoltage(bias_v=num(pack.bias_v, 4), residual_v=num(pack.residual_v, 4),
                                        samples=pack.samples, insufficient=pack.insufficient),
        soc_drift=schema.SocDrift(drift_pct_per_day=num(soc.drift_pct_per_day, 4), capacity_ah=num(soc.capacity_ah, 4),
                                  capacity_source=soc.capacity_source,
                                  segments=soc.segments, hours=round(soc.hours, 4), insufficient=soc.insufficient),
        energy=_energy(energy, cap.independent_ah or lim.nominal_ah), alarms=alarms, findings=found,
    )  # fmt: skip


def _fmt(x: float | None, spec: str, unit: str = "") -> str:
    return "n/a" if x is None else f"{x:{spec}}{unit}"


def summary_lines(report: schema.Report) -> list[str]:
    """The console summary: one line per rack, then the journal's check."""
    lines = []
    for r in report.racks:
        c = r.capacity
        counts = Counter(f.severity for f in r.findings)
        by = ", ".join(f"{counts[s]} {s}" for s in ("major", "minor", "warning") if counts[s]) or "none"
        verdict = f" ({c.verdict})" if c.verdict else ""
        pc = c.partial_cycles
        partial = f", partial cycles {_fmt(pc.ah, '.1f', ' Ah')} ({pc.estimates} pairs)" if pc and pc.ocv_table else ""
        lines.append(f"{r.rack}: coverage {_fmt(r.completeness.coverage, '.3f')}, capacity "
                     f"{_fmt(c.independent_ah, '.1f', ' Ah')} (SoH {_fmt(c.independent_soh_pct, '.1f', ' %')})"
                     f"{partial} vs BMS SoH {_fmt(c.bms_soh_pct, '.1f', ' %')}{verdict}; findings: {by}")  # fmt: skip
    j = report.journal
    if j.insufficient:
        lines.append(f"alarm journal: {j.insufficient}")
    else:
        state = "intact" if j.intact else f"NOT intact ({len(j.problems)} problems shown)"
        lines.append(f"alarm journal: {j.entries} entries, hash chain {state}, head {(j.head_hash or '')[:16]}")
    return lines
