"""The hash-chained journal: append, restore view, and `alarms verify` against edits, removals, reorders."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from gateway.alarms.journal import Journal
from gateway.cli.main import main

S = 1_000_000_000


def _event(k: int, state: str = "active_unack", aid: str = "rack-01:cov") -> dict[str, object]:
    return {"type": "event", "ts": k * S, "rack": "rack-01", "alarm_id": aid, "severity": "critical",
            "state": state, "previous": "normal", "message": f"m{k}", "value": 3.7, "rule": "cov", "user": None,
            "reason": None, "detail": {"key": ["cov", "rack-01", None, None, ""], "since": k * S}}  # fmt: skip


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "store.db"
    j = Journal(path)
    j.append([{"type": "start", "ts": 0}])
    j.append([_event(k, aid=f"rack-01:a{k % 3}") for k in range(1, 10)])
    j.close()
    return path


def _verify(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["alarms", "verify", "--store", str(path)])
    out = capsys.readouterr()
    return code, out.out + out.err


def test_chain_survives_reopen_and_verifies(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    j = Journal(store)
    assert j.seq == 10
    j.append([_event(20, "rtn_unack", "rack-01:a1")])
    latest = {e["alarm_id"]: e["state"] for e in j.latest_events()}
    assert latest == {"rack-01:a0": "active_unack", "rack-01:a1": "rtn_unack", "rack-01:a2": "active_unack"}
    j.close()
    code, text = _verify(store, capsys)
    assert code == 0 and "11 entries, hash chain intact" in text


def _sql(path: Path, *statements: str) -> None:
    db = sqlite3.connect(path)
    for s in statements:
        db.execute(s)
    db.commit()
    db.close()


def test_an_edited_body_is_named(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = sqlite3.connect(store)
    body = json.loads(db.execute("SELECT body FROM alarm_journal WHERE seq = 4").fetchone()[0])
    db.close()
    body["severity"] = "minor"
    _sql(
        store,
        f"UPDATE alarm_journal SET body = '{json.dumps(body, sort_keys=True, separators=(',', ':'))}' WHERE seq = 4",
    )
    code, text = _verify(store, capsys)
    assert code == 1
    assert "FAIL: entry 4: content does not match its hash (edited)" in text
    assert "entry 5" not in text  # only the edited entry is named


def test_an_edited_column_is_named(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _sql(store, "UPDATE alarm_journal SET ts = ts + 1000 WHERE seq = 6")
    code, text = _verify(store, capsys)
    assert code == 1 and "entry 6: columns differ from its hashed content (edited)" in text


def test_a_removed_entry_is_named(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _sql(store, "DELETE FROM alarm_journal WHERE seq = 5")
    code, text = _verify(store, capsys)
    assert code == 1
    assert "entry 5 removed (the sequence jumps from 4 to 6)" in text


def test_reordered_entries_are_found(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _sql(
        store,
        "UPDATE alarm_journal SET seq = -3 WHERE seq = 3",
        "UPDATE alarm_journal SET seq = 3 WHERE seq = 7",
        "UPDATE alarm_journal SET seq = 7 WHERE seq = -3",
    )
    code, text = _verify(store, capsys)
    assert code == 1
    assert "entry 3: does not link to the entry before it" in text
    assert "entry 7: content does not match its hash" in text


def test_a_rehashed_forgery_still_breaks_the_next_link(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from gateway.alarms.journal import canonical, chain_hash

    db = sqlite3.connect(store)
    prev, body = db.execute("SELECT prev, body FROM alarm_journal WHERE seq = 4").fetchone()
    db.close()
    forged = json.loads(body) | {"user": "mallory"}
    new_body = canonical(forged)
    _sql(store, f"UPDATE alarm_journal SET body = '{new_body}', hash = '{chain_hash(4, prev, new_body)}' WHERE seq = 4")
    code, text = _verify(store, capsys)
    assert code == 1 and "entry 5: does not link to the entry before it" in text


def test_a_truncated_tail_is_found(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _sql(store, "DELETE FROM alarm_journal WHERE seq >= 9")
    code, text = _verify(store, capsys)
    assert code == 1 and "entries after 8 removed: the head names entry 10 (truncated)" in text


def test_export_jsonl_and_csv(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["alarms", "export", "--store", str(store), "--since", "3", "--until", "5"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["seq"] for x in lines] == [4, 5, 6] and all(len(x["hash"]) == 64 for x in lines)
    assert main(["alarms", "export", "--store", str(store), "--format", "csv"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0].startswith("seq,time,ts,type,rack,alarm_id") and len(rows) == 10  # header + 9 events


def test_list_and_history(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["alarms", "list", "--store", str(store)]) == 0
    out = capsys.readouterr().out
    assert out.count("active_unack") == 3 and "rack-01:a2" in out
    assert main(["alarms", "history", "--store", str(store), "--alarm", "rack-01:a1"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3


def test_missing_store_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["alarms", "verify", "--store", str(tmp_path / "nope.db")])
    assert info.value.code == 2


def test_evaluate_runs_rules_over_stored_samples(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from gateway.model import Batch, Sample
    from gateway.store.outbox import Outbox

    store = tmp_path / "data.db"
    ob = Outbox(store)
    volts = [3.3, 3.5, 3.7, 3.7, 3.5, 3.3]
    ob.append([Batch.of_samples("rack-01", [Sample(k * S, "cell_voltage", v, "V", "good", "rack-01", 1, 2)],
                                device="rack-01", created=k * S) for k, v in enumerate(volts)])  # fmt: skip
    ob.close()
    cfg = tmp_path / "gateway.yaml"
    cfg.write_text(f"""\
site: {{name: s1}}
sources: [{{type: simulated, name: rack-01}}]
store: {{path: {tmp_path / "other.db"}}}
alarms:
  defaults: null
  rules: [{{id: cov, kind: threshold, quantity: cell_voltage, high: 3.6, deadband: 0.2, severity: critical}}]
""")  # fmt: skip
    assert main(["alarms", "evaluate", "-c", str(cfg), "--store", str(store), "--json"]) == 0
    out = capsys.readouterr()
    got = [(e["alarm_id"], e["state"], e["ts"]) for e in map(json.loads, out.out.splitlines())]
    assert got == [("rack-01:cov:m1c2", "active_unack", 2 * S), ("rack-01:cov:m1c2", "rtn_unack", 5 * S)]
    assert "2 transitions" in out.err
    assert not (tmp_path / "other.db").exists()  # nothing written: the store named on the command line is read


@pytest.mark.parametrize(
    "edit",
    [
        "UPDATE alarm_journal SET body = 'not json {' WHERE seq = 4",  # unreadable
        "UPDATE alarm_journal SET body = '[1, 2]' WHERE seq = 4",  # JSON, not an object
        "UPDATE alarm_journal SET body = json_remove(body, '$.severity', '$.message') WHERE seq = 4",  # fields gone
        "UPDATE alarm_journal SET body = replace(body, '\"m3\"', '\"all fine\"') WHERE seq = 4",  # a quiet edit
    ],
)
def test_history_prints_a_tampered_journal_and_names_the_entry(
    store: Path, capsys: pytest.CaptureFixture[str], edit: str
) -> None:
    _sql(store, edit)
    code = main(["alarms", "history", "--store", str(store)])
    out = capsys.readouterr()
    lines = out.out.splitlines()
    assert code == 1
    assert len(lines) == 10  # every entry printed, the tampered one too
    marked = [line for line in lines if "TAMPERED" in line]
    assert len(marked) == 1 and marked[0].split()[0] == "4"
    assert "entry 4: content does not match its hash (edited)" in marked[0]
    assert "FAIL: entry 4: content does not match its hash (edited)" in out.err
    assert "NOT intact" in out.err and "Traceback" not in out.err
    # The other commands read it too: export keeps the row as stored, list and a restart skip it.
    assert main(["alarms", "export", "--store", str(store)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 10
    assert main(["alarms", "list", "--store", str(store)]) == 0
    j = Journal(store, readonly=True)
    assert {e["alarm_id"] for e in j.latest_events()} <= {"rack-01:a0", "rack-01:a1", "rack-01:a2"}
    j.close()


def test_history_of_an_intact_journal_exits_0(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["alarms", "history", "--store", str(store)]) == 0
    out = capsys.readouterr()
    assert len(out.out.splitlines()) == 10 and "TAMPERED" not in out.out and out.err == ""
