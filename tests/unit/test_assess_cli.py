"""`bms-gateway assess`: a store written with the gateway's Outbox from a synthetic rack of known truth (and an
alarm journal beside it) → the JSON report's contract fields against the truth; the same report from an
`export` file; the schema `--schema` prints holds the report; the HTML page is self-contained and escapes
text from outside; exit codes and bad input (no event loop: the command runs in-process)."""

from __future__ import annotations

import io
import json
import re
import sqlite3
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest

from gateway.alarms.journal import Journal
from gateway.assess.schema import Report
from gateway.cli.main import main
from gateway.store.outbox import Outbox
from tests.assess_support import RACK, Synth

S = 1_000_000_000
GAP, LOSS = (8000, 8600), (10000, 10300)  # both in the first charge: every discharge stays whole


def write_store(path: Path, s: Synth, **kw: Any) -> Path:
    box = Outbox(path)
    for b in s.batches(**kw):
        b.created = int(b.ts[0])  # the row's time is the data's (as the daemon writes it)
        box.append([b])
    box.close()
    return path


def event(ts: int, rack: str, state: str, previous: str, user: str | None = None,
          reason: str | None = None) -> dict[str, Any]:  # fmt: skip
    return {"type": "event", "ts": ts, "rack": rack, "alarm_id": f"{rack}:cell_low_voltage:m1c6", "severity": "warning",
            "state": state, "previous": previous, "message": "cell low", "value": 2.9, "rule": "cell_low_voltage",
            "user": user, "reason": reason, "detail": {}}  # fmt: skip


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Synth, Path]:
    """A weak cell (85 %), a high-resistance cell (3×), pack voltage 1.2 V high, a stuck temperature sensor,
    a BMS SoH 5 points above the truth; a 600 s gap and 300 s of comm loss; an alarm raised, acknowledged
    by alice and cleared 600 s later (and one of another rack)."""
    s = Synth(weak={5: 0.85}, high_r={11: 3.0}, pack_bias_v=1.2, stuck_temp=2).run()
    s.bms_soh = s.usable_soh + 5.0
    db = write_store(tmp_path_factory.mktemp("assess") / "store.db", s, gap=GAP, comm_loss=LOSS)
    t0 = int(s.t[0])
    j = Journal(db)
    j.append([event(t0 + 1000 * S, RACK, "active_unack", "normal"),
              event(t0 + 1100 * S, RACK, "active_ack", "active_unack", "alice", "seen"),
              event(t0 + 1600 * S, RACK, "normal", "active_ack"),
              event(t0 + 1000 * S, "other", "active_unack", "normal")])  # fmt: skip
    j.close()
    return s, db


def run(*argv: str | Path) -> int:
    return main(["assess", *map(str, argv)])


def report(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return doc


SUMMARY: list[str] = []  # the console summary of the run below


@pytest.fixture(scope="module")
def from_store(site: tuple[Synth, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("out") / "report.json"
    with redirect_stdout(io.StringIO()) as printed:
        assert run("--store", site[1], "--nominal-ah", "100", "--json", out) == 0
    SUMMARY[:] = printed.getvalue().splitlines()
    return report(out)


def test_the_contract_fields_against_the_truth(site: tuple[Synth, Path], from_store: dict[str, Any]) -> None:
    s, _ = site
    [r] = from_store["racks"]
    assert r["rack"] == RACK
    n = len(s.t)
    assert r["completeness"]["coverage"] == pytest.approx((n - 600 - 300) / n, abs=0.005)
    assert [g["seconds"] for g in r["completeness"]["gaps"]] == [600.0]
    assert r["completeness"]["comm_loss_seconds"] == 300.0
    cap = r["capacity"]
    assert cap["independent_ah"] == pytest.approx(s.discharged_ah[0], rel=0.03)
    assert cap["independent_soh_pct"] == pytest.approx(s.usable_soh, abs=3.0)
    assert cap["bms_soh_pct"] == pytest.approx(s.bms_soh, abs=0.01)
    assert cap["verdict"] == "soh_overstated" and len(cap["discharges"]) == 2
    assert r["pack_voltage"]["bias_v"] == pytest.approx(1.2, abs=0.3)
    # The synthetic BMS's SoC is its cells' mean SoC: with the weak cell it runs about 1 % fast against a count
    # at the nominal 100 Ah, which the SoC drift figure shows as a drift (see docs/assessment.md, its limits).
    found = {(f["code"], f["module"], f["cell"]) for f in r["findings"]} - {("soc_drift", None, None)}
    assert found == {("soh_overstated", None, None), ("weak_cell", 1, 6), ("high_resistance_cell", 2, 4),
                     ("stuck_sensor", 1, 3), ("pack_voltage_bias", None, None)}  # fmt: skip
    assert all(set(f) == {"code", "severity", "message", "module", "cell"} for f in r["findings"])
    assert r["settings"]["period_s"] == 1.0 and r["settings"]["nominal_source"] == "option --nominal-ah"
    assert r["settings"]["limits"]["source"] == "defaults for lfp"
    rows = {(c["module"], c["cell"]): c for c in r["cells"]["table"]}
    assert len(rows) == 16 and rows[(1, 6)]["relative_capacity"] == pytest.approx(0.85, abs=0.03)
    assert rows[(2, 4)]["relative_resistance"] == pytest.approx(3.0, rel=0.1)
    assert rows[(1, 6)]["end_of_discharge_v"] == pytest.approx(2.95, abs=0.01)  # the weak cell reaches cutoff
    efc = sum(s.discharged_ah) / cap["independent_ah"]  # two full discharges of the measured capacity
    assert r["energy"]["kwh_out"] > 0 and r["energy"]["equivalent_full_cycles"] == pytest.approx(efc, rel=0.01)


def test_alarm_history_and_the_journal_check(site: tuple[Synth, Path], from_store: dict[str, Any]) -> None:
    [r] = from_store["racks"]
    a = r["alarms"]
    assert a["insufficient"] is None
    assert a["raised"] == {"warning": 1} and a["seconds_in_alarm"] == {"warning": 600.0}
    assert a["in_view_at_end"] == 0
    assert [(x["user"], x["state"], x["reason"]) for x in a["operator_actions"]] == [("alice", "active_ack", "seen")]
    j = Journal(site[1], readonly=True)
    head = j.hash
    j.close()
    assert from_store["journal"] == {"path": str(site[1]), "entries": 4, "intact": True, "problems": [],
                                     "head_seq": 4, "head_hash": head, "insufficient": None}  # fmt: skip


def test_an_edited_journal_is_a_major_finding(site: tuple[Synth, Path], tmp_path: Path) -> None:
    s, _ = site
    db = write_store(tmp_path / "s.db", Synth().run(cycles=1), per_batch=600)
    j = Journal(db)
    j.append([event(int(s.t[0]) + 10 * S, RACK, "active_unack", "normal")])
    j.close()
    con = sqlite3.connect(db)
    con.execute("UPDATE alarm_journal SET body = replace(body, 'cell low', 'all fine') WHERE seq = 1")
    con.commit()
    con.close()
    assert run("--store", db, "--json", tmp_path / "r.json") == 0
    doc = report(tmp_path / "r.json")
    assert doc["journal"]["intact"] is False and "edited" in doc["journal"]["problems"][0]
    assert [f["severity"] for f in doc["racks"][0]["findings"] if f["code"] == "journal_not_intact"] == ["major"]


def small(**kw: Any) -> Synth:
    """A small rack (6 cells, 4 sensors) cycled at 1.5 C: a full cycle in about 1.5 h."""
    return Synth(modules=1, cells_per_module=6, sensors=4, amps=150.0, **kw).run(cycles=1, rest_s=300)


def test_an_export_file_gives_the_same_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    s = small(weak={2: 0.85})
    db = write_store(tmp_path / "s.db", s, gap=(3000, 3100), comm_loss=(3500, 3550))  # in the charge
    j = Journal(db)
    j.append([event(int(s.t[0]) + 100 * S, RACK, "active_unack", "normal")])
    j.close()
    assert run("--store", db, "--json", tmp_path / "store.json") == 0
    capsys.readouterr()
    assert main(["export", "--store", str(db)]) == 0
    lines = capsys.readouterr().out.splitlines()
    lines.insert(3, "{not json")
    lines.insert(7, '{"ts": "yesterday", "quantity": "soc", "unit": "%"}')
    export = tmp_path / "window.jsonl"
    export.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert run("--input", export, "--journal", db, "--json", tmp_path / "r.json") == 0
    err = capsys.readouterr().err
    assert f"{export}:4: not JSON" in err and f"{export}:8: ts (integer ns)" in err
    doc, from_store = report(tmp_path / "r.json"), report(tmp_path / "store.json")
    assert doc["racks"] == from_store["racks"]
    assert doc["journal"] == from_store["journal"] and doc["journal"]["entries"] == 1
    assert [f["code"] for f in doc["racks"][0]["findings"]] == ["weak_cell"]
    assert doc["racks"][0]["completeness"]["gap_count"] == 1
    assert doc["input"]["kind"] == "export" and doc["input"]["skipped_lines"] == 2
    assert doc["input"]["errors"][0].startswith(f"{export}:4: not JSON")


def required_missing(schema: dict[str, Any], node: dict[str, Any], doc: Any, where: str = "") -> list[str]:
    """A small check of a document against a JSON Schema: every required key present, at every depth
    (through $ref, anyOf, items and additionalProperties)."""
    while "$ref" in node:
        node = schema["$defs"][node["$ref"].rsplit("/", 1)[1]]
    out: list[str] = []
    for variant in node.get("anyOf", []):
        if doc is not None and variant.get("type") != "null":
            out += required_missing(schema, variant, doc, where)
    if isinstance(doc, dict):
        out += [f"{where}.{k}" for k in node.get("required", []) if k not in doc]
        for k, sub in node.get("properties", {}).items():
            if k in doc:
                out += required_missing(schema, sub, doc[k], f"{where}.{k}")
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            for k, v in doc.items():
                out += required_missing(schema, extra, v, f"{where}.{k}")
    if isinstance(doc, list) and isinstance(node.get("items"), dict):
        for i, v in enumerate(doc):
            out += required_missing(schema, node["items"], v, f"{where}[{i}]")
    return out


def test_the_schema_holds_the_report(from_store: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert run("--schema") == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["title"].startswith("bms-gateway assessment report")
    assert required_missing(schema, schema, from_store) == []
    rack = schema["$defs"]["Rack"]
    contract = {"rack", "completeness", "capacity", "pack_voltage", "findings"}
    assert contract <= set(rack["required"])
    assert {"coverage"} <= set(schema["$defs"]["Completeness"]["required"])
    assert {"independent_ah", "bms_soh_pct", "independent_soh_pct"} <= set(schema["$defs"]["Capacity"]["required"])
    assert {"bias_v"} <= set(schema["$defs"]["PackVoltage"]["required"])
    assert {"code", "severity", "message"} <= set(schema["$defs"]["Finding"]["required"])
    assert required_missing(schema, schema, {**from_store, "racks": [{"rack": "x"}]}) != []  # the check checks
    Report.model_validate(from_store)


def test_insufficient_data_is_null_with_a_reason(tmp_path: Path) -> None:
    s = Synth().run(cycles=1)
    box = Outbox(tmp_path / "s.db")
    box.append([b for b in s.batches() if b.ts[0] < s.t[1500]])  # rest and part of a discharge: no cutoff
    box.close()
    assert run("--store", tmp_path / "s.db", "--json", tmp_path / "r.json") == 0
    [r] = report(tmp_path / "r.json")["racks"]
    cap = r["capacity"]
    assert cap["independent_ah"] is None and cap["independent_soh_pct"] is None and cap["insufficient"]
    assert cap["verdict"] is None and cap["verdict_insufficient"]
    assert r["settings"]["nominal_ah"] is None and r["energy"]["equivalent_full_cycles"] is None
    assert r["cells"]["capacity_insufficient"] and r["soc_drift"]["insufficient"]
    assert r["alarms"]["insufficient"] and report(tmp_path / "r.json")["journal"]["insufficient"]
    assert r["completeness"]["coverage"] == 1.0 and r["findings"] == []


def test_settings_from_the_configuration(tmp_path: Path) -> None:
    """A simulated source names the rack's nominal capacity, limits and period; the store comes from the config."""
    s = Synth().run(cycles=1)
    db = write_store(tmp_path / "var" / "s.db", s)
    cfg = tmp_path / "gateway.yaml"
    cfg.write_text(f"site: {{name: t}}\nstore: {{path: {db}}}\nsources:\n"
                   f"  - {{type: simulated, name: {RACK}, capacity_ah: 100, interval: 1,\n"
                   "     capacity_test: {charge_voltage: 3.5, cutoff_voltage: 2.95}}\n", encoding="utf-8")  # fmt: skip
    assert run("-c", cfg, "--json", tmp_path / "r.json") == 0
    [r] = report(tmp_path / "r.json")["racks"]
    st = r["settings"]
    assert st["nominal_ah"] == 100.0 and "capacity_ah" in st["nominal_source"]
    lim = st["limits"]
    assert (lim["full_v"], lim["empty_v"]) == (3.5, 2.95) and "capacity_test" in lim["source"]
    assert st["period_source"].startswith(f"simulated source {RACK}")
    assert r["capacity"]["independent_ah"] == pytest.approx(s.discharged_ah[0], rel=0.03)
    assert run("-c", cfg, "--full-v", "3.45", "--json", tmp_path / "r.json") == 0
    assert report(tmp_path / "r.json")["racks"][0]["settings"]["limits"]["source"].startswith("options")


def test_exit_codes_and_bad_input(site: tuple[Synth, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, db = site
    assert run("--store", tmp_path / "missing.db") == 2
    assert run("-c", tmp_path / "missing.yaml") == 2
    assert run("--store", db, "--since", "2023-11-15T02:00", "--until", "2023-11-15T01:00") == 2
    with pytest.raises(SystemExit) as exc:
        run("--store", db, "--nominal-ah", "-5")
    assert exc.value.code == 2
    capsys.readouterr()
    assert run("--store", db, "--rack", "nope") == 1
    assert "no sample of rack nope" in capsys.readouterr().err
    junk = tmp_path / "junk.jsonl"
    junk.write_bytes(b"\xff\xfe garbage\n[1, 2]\n" + b'{"kind": "alarm"}\n' * 30)
    assert run("--input", junk, "--json", tmp_path / "r.json") == 1
    err = capsys.readouterr().err
    assert f"{junk}:1: not JSON" in err and f"{junk}:2: not an object" in err and "32 input lines" in err
    assert report(tmp_path / "r.json")["input"]["skipped_lines"] == 32


def test_console_summary(from_store: dict[str, Any]) -> None:
    out = SUMMARY
    assert re.fullmatch(rf"{RACK}: coverage 0\.9\d\d, capacity \d+\.\d Ah \(SoH \d+\.\d %\) vs BMS SoH \d+\.\d % "
                        r"\(soh_overstated\); findings: 2 major, 4 minor", out[0])  # fmt: skip
    assert out[1].startswith("alarm journal: 4 entries, hash chain intact, head ")


def test_the_html_page_is_self_contained_and_escapes_rack_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = write_store(tmp_path / "s.db", small())
    capsys.readouterr()
    assert main(["export", "--store", str(db)]) == 0
    evil = '<img src="https://example.com/x">&"'
    lines = [json.dumps({**json.loads(x), "rack": evil}) for x in capsys.readouterr().out.splitlines()]
    (tmp_path / "e.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert run("--input", tmp_path / "e.jsonl", "--html", tmp_path / "r.html", "--json", tmp_path / "r.json") == 0
    html = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert evil not in html and "&lt;img src=&quot;https://example.com/x&quot;&gt;&amp;&quot;" in html
    assert re.findall(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", html) == []
    assert "<script" not in html and "@import" not in html and "url(" not in html
    assert html.count("<svg") == 7 and "insufficient data" not in html.split("<h3>Plots")[1].split("<details")[0]
    assert len(html) < 300_000


def test_the_evidence_package_holds_the_reports_samples_and_journal(tmp_path: Path) -> None:
    s = small()
    db = write_store(tmp_path / "s.db", s)
    j = Journal(db)
    j.append([event(int(s.t[0]) + 100 * S, RACK, "active_unack", "normal"),
              event(int(s.t[0]) + 100 * S, "other", "active_unack", "normal")])  # fmt: skip
    j.close()
    pkg = tmp_path / "evidence"
    assert run("--store", db, "--json", tmp_path / "r.json", "--html", tmp_path / "r.html", "--package", pkg) == 0
    assert (pkg / "report.json").read_bytes() == (tmp_path / "r.json").read_bytes()
    assert (pkg / "report.html").read_bytes() == (tmp_path / "r.html").read_bytes()
    manifest = json.loads((pkg / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["window"]["racks"] == [RACK]
    assert manifest["window"]["samples"] == len(s.t) * len(s.keys())  # every sample of the window, once
    journal = [json.loads(x) for x in (pkg / "alarm-journal.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [(e["seq"], e["rack"]) for e in journal] == [(1, RACK)]
    assert main(["verify-package", str(pkg), "--integrity-only"]) == 0
    (pkg / "report.json").write_bytes((pkg / "report.json").read_bytes().replace(b'"r1"', b'"r2"', 1))
    assert main(["verify-package", str(pkg), "--integrity-only"]) == 1
