"""The HTML report of `bms-gateway assess --html`: one self-contained page (inline CSS and SVG, no script,
no font or image from elsewhere), from the JSON report and the plot traces of the same pass.

Per rack: the figures with their method's limits spelled out where the data is insufficient, the
findings, the plots (pack voltage and current; the cell voltage spread; every cell's voltage at the
end of each discharge and charge; capacity per full discharge; the completeness timeline), the
per-cell table, sensors and the alarm history. Every text from outside (rack names, messages, users,
reasons) is escaped.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

import numpy as np

from gateway.assess import schema, svg
from gateway.assess.rackpass import RackPass
from gateway.assess.report import rack_span

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:960px}
h1{font-size:22px}h2{font-size:18px;border-bottom:1px solid #ccc;margin-top:36px}h3{font-size:15px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}
th{background:#f4f4f4}td.n{text-align:right;font-variant-numeric:tabular-nums}
.major{color:#b00020;font-weight:600}.minor{color:#b35900}.warning{color:#666}.why{fill:#b35900}
.na{color:#b35900}svg.chart{display:block;margin:10px 0;background:#fff}
svg text{font:11px sans-serif;fill:#333}svg .title{font-weight:600;font-size:12px}
svg .grid{stroke:#e6e6e6}svg .plot{fill:#fcfcfc;stroke:#bbb}
"""


def _v(x: float | str | None, spec: str = ".3f", unit: str = "", why: str | None = None) -> str:
    if x is None:
        return f'<span class="na">insufficient data{": " + escape(why) if why else ""}</span>'
    return escape(f"{x:{spec}}{unit}")


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], numeric: frozenset[int] = frozenset()) -> str:
    th = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f'<td class="n">{c}</td>' if j in numeric else f"<td>{c}</td>"
                                    for j, c in enumerate(r)) + "</tr>" for r in rows)  # fmt: skip
    return f"<table><tr>{th}</tr>{body}</table>"


def _partial(pc: schema.PartialCycles | None) -> str:
    if pc is None:
        return _v(None, "", "", "not assessed")
    if pc.ah is None:
        return _v(None, "", "", pc.insufficient)
    return _v(pc.ah, ".2f", " Ah") + escape(f" ({pc.estimates} pairs of rests, spread {pc.spread_ah or 0:.2f} Ah)")


def _figures(r: schema.Rack) -> str:
    c, e, p, s, done = r.capacity, r.energy, r.pack_voltage, r.soc_drift, r.completeness
    rows = [
        ("coverage", _v(r.completeness.coverage, ".4f", "", r.completeness.insufficient)),
        ("gaps / comm loss / stale", escape(f"{done.gap_count} gaps, {done.gap_seconds:g} s; "
                                            f"{done.comm_loss_seconds:g} s; {done.stale_seconds:g} s")),
        ("usable capacity (independent)", _v(c.independent_ah, ".2f", " Ah", c.insufficient)),
        ("SoH independent / BMS", f"{_v(c.independent_soh_pct, '.1f', ' %', c.verdict_insufficient)} / "
                                  f"{_v(c.bms_soh_pct, '.1f', ' %', 'the BMS reported none')}"),
        ("verdict", _v(c.verdict, "", "", c.verdict_insufficient)),
        ("capacity from partial cycles (OCV)", _partial(c.partial_cycles)),
        ("BMS full capacity", _v(c.bms_capacity_ah, ".1f", " Ah", "not reported")),
        ("pack voltage − Σ cells", f"{_v(p.bias_v, '+.3f', ' V', p.insufficient)} (residual "
                                   f"{_v(p.residual_v, '.3f', ' V', p.insufficient)})"),
        ("BMS SoC drift", _v(s.drift_pct_per_day, "+.2f", " points/day", s.insufficient)),
        ("throughput in / out", escape(f"{e.kwh_in:.2f} / {e.kwh_out:.2f} kWh ({e.ah_in:.1f} / {e.ah_out:.1f} Ah)")),
        ("equivalent full cycles", _v(e.equivalent_full_cycles, ".2f", "", "no capacity known")),
        ("round-trip efficiency", _v(e.round_trip_efficiency, ".3f", "", e.insufficient)),
    ]  # fmt: skip
    lim = r.settings.limits
    rows.append(("settings", escape(f"period {r.settings.period_s:g} s ({r.settings.period_source}); nominal "
                                    f"{r.settings.nominal_ah} Ah ({r.settings.nominal_source or 'none known'}); "
                                    f"full {lim.full_v:g} V, empty {lim.empty_v:g} V ({lim.source}); margin "
                                    f"{lim.margin_v:g} V ({lim.margin_source or 'not stated'})")))  # fmt: skip
    return _table(["figure", "value"], rows)


def _findings(r: schema.Rack) -> str:
    if not r.findings:
        return "<p>No findings.</p>"
    rows = [(f'<span class="{escape(f.severity)}">{escape(f.severity)}</span>', escape(f.code),
             escape("" if f.module is None else str(f.module)), escape("" if f.cell is None else str(f.cell)),
             escape(f.message)) for f in r.findings]  # fmt: skip
    return _table(["severity", "code", "module", "cell", "message"], rows)


def _plots(r: schema.Rack, p: RackPass) -> str:
    tr = p.traces
    t, width = tr.times(), tr.width_ns or 1
    out = [svg.time_chart("Pack voltage", "V", t, [svg.Series("pack", *tr.series("pack_v"))], width),
           svg.time_chart("Rack current (positive charges)", "A", t,
                          [svg.Series("current", *tr.series("current"), svg.COLORS[1])], width),
           svg.time_chart("Cell voltage spread (highest − lowest cell)", "V", t,
                          [svg.Series("spread", *tr.series("spread"), svg.COLORS[2])], width)]  # fmt: skip
    n = r.cells.count
    for kind, color in (("discharge", svg.COLORS[1]), ("charge", svg.COLORS[0])):
        events = list(p.ends.discharges if kind == "discharge" else p.ends.charges)
        lines = [(e.volts, color, 0.25 + 0.75 * (k + 1) / len(events)) for k, e in enumerate(events)]
        out.append(svg.cell_chart(f"Cell voltages at the end of each {kind} (the latest darkest; x: cell in rack "
                                  "order)", lines, n, f"no {kind} reached the "
                                  f"{'cutoff' if kind == 'discharge' else 'upper limit'} in the window"))  # fmt: skip
    caps = r.capacity.discharges
    out.append(svg.bar_chart("Capacity per full discharge", "Ah", [d.start[5:16] if d.start else "" for d in caps],
                             [d.ah for d in caps], r.capacity.nominal_ah, "nominal",
                             r.capacity.insufficient or "no full discharge"))  # fmt: skip
    state = tr.record()
    state["other"] = np.maximum(0.0, state["present"] - state["good"] - state["comm_loss"] - state["stale"])
    out.append(svg.timeline("Completeness (per time bucket: good, comm loss, stale, other; white: gap)", t, width,
                            state, rack_span(p)))  # fmt: skip
    return "".join(out)


def _cells(r: schema.Rack) -> str:
    c = r.cells
    flagged = {(x.module, x.cell): "weak" for x in c.weak} | {(x.module, x.cell): "high resistance"
                                                              for x in c.high_resistance}  # fmt: skip
    rows = [(escape(str(x.module)), escape(str(x.cell)), _v(x.relative_capacity, ".3f", "", "-"),
             _v(x.resistance_mohm, ".3f", "", "-"), _v(x.relative_resistance, ".2f", "", "-"),
             _v(x.end_of_discharge_v, ".3f", "", "-"), _v(x.end_of_charge_v, ".3f", "", "-"),
             escape(flagged.get((x.module, x.cell), ""))) for x in c.table]  # fmt: skip
    notes = "".join(f"<p class=na>{escape(w)}</p>" for w in (c.capacity_insufficient, c.resistance_insufficient) if w)
    return (f"<details><summary>Per cell ({c.count} cells; {c.discharges} discharges, {c.current_steps} current "
            f"steps)</summary>{notes}" + _table(["module", "cell", "rel. capacity", "R (mΩ)", "rel. R",
                                                 "end of discharge (V)", "end of charge (V)", "flag"], rows,
                                                frozenset({2, 3, 4, 5, 6})) + "</details>")  # fmt: skip


def _sensors_alarms(r: schema.Rack) -> str:
    s, a = r.sensors, r.alarms
    sens = "".join(f"<li>{escape(f.family)} m{escape(str(f.module))} c{escape(str(f.cell))}: {escape(f.problem)} "
                   f"({escape(f.detail)})</li>" for f in s.flags) or "<li>none flagged</li>"  # fmt: skip
    if s.insufficient:
        sens = f"<li class=na>insufficient data: {escape(s.insufficient)}</li>"
    if a.insufficient:
        alarms = f"<p class=na>{escape(a.insufficient)}</p>"
    else:
        counts = ", ".join(f"{escape(k)} {v}" for k, v in a.raised.items()) or "none"
        time = ", ".join(f"{escape(k)} {v:g} s" for k, v in a.seconds_in_alarm.items()) or "none"
        acts = [(escape(x.time), escape(x.user), escape(x.alarm_id), escape(f"{x.previous} → {x.state}"),
                 escape(x.reason or "")) for x in a.operator_actions]  # fmt: skip
        alarms = (f"<p>Raised: {counts}. Time in alarm: {time}. In view at the end: {a.in_view_at_end}.</p>"
                  + (_table(["time", "user", "alarm", "transition", "reason"], acts) if acts else ""))  # fmt: skip
    return f"<h3>Sensors</h3><ul>{sens}</ul><h3>Alarm history</h3>{alarms}"


def page(report: schema.Report, passes: dict[str, RackPass]) -> str:
    """The whole page."""
    j = report.journal
    journal = escape(j.insufficient) if j.insufficient else escape(
        f"{j.entries} entries, hash chain {'intact' if j.intact else 'NOT intact'}, head {j.head_seq} "
        f"{j.head_hash}") + "".join(f"<br>{escape(x)}" for x in j.problems)  # fmt: skip
    w = report.window
    parts = [f"<h1>Battery assessment</h1><p>Input {escape(report.input.kind)} {escape(report.input.path)}; window "
             f"{escape(w.start or 'open')} to {escape(w.end or 'open')}; generated {escape(report.generated)} by "
             f"bms-gateway {escape(report.gateway_version)}.</p><p>Alarm journal: {journal}</p>"]  # fmt: skip
    if report.input.skipped_lines or report.input.damaged_rows:
        parts.append(f"<p class=na>Skipped: {report.input.skipped_lines} input lines, "
                     f"{len(report.input.damaged_rows)} damaged store rows.</p>")  # fmt: skip
    for r in report.racks:
        ws = r.window
        parts.append(f"<section><h2>Rack {escape(r.rack)}</h2><p>{escape(ws.start or '')} to {escape(ws.end or '')}"
                     f"</p>{_figures(r)}<h3>Findings</h3>{_findings(r)}<h3>Plots</h3>{_plots(r, passes[r.rack])}"
                     f"{_cells(r)}{_sensors_alarms(r)}</section>")  # fmt: skip
    if not report.racks:
        parts.append("<p class=na>No rack has samples in the window.</p>")
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>bms-gateway assessment</title>'
            f"<style>{CSS}</style></head><body>{''.join(parts)}</body></html>\n")  # fmt: skip
