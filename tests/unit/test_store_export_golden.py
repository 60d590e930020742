"""`bms-gateway export` and `tail` print what they printed before the store kept columns: the batches of
tests/cases/store/export_batches.json, stored today, give the golden output the code before format 3
gave for them (made by tests/cases/store/make_export_golden.py)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from gateway.cli import store as storecli
from gateway.model import Batch, BatchKind, DeviceState, DeviceStatus, Sample
from gateway.store.codec import MAGIC
from gateway.store.outbox import Outbox

CASES = Path(__file__).parent.parent / "cases" / "store"
RUNS = {
    "export.jsonl": ["export"],
    "export_all_kinds.jsonl": ["export", "--all-kinds"],
    "export.csv": ["export", "--format", "csv"],
    "export_r1.jsonl": ["export", "--rack", "r1"],
    "export_r1.lp": ["export", "--format", "lp", "--rack", "r1"],
    "tail.txt": ["tail", "-n", "10"],
}


def stored(db: Path) -> Path:
    doc = json.loads((CASES / "export_batches.json").read_text())
    box = Outbox(db, site=doc["site"])
    for b in doc["batches"]:
        st = b.get("status")
        status = None if st is None else DeviceStatus(st[0], DeviceState(st[1]), st[2], st[3])
        samples = [Sample(*s) for s in b["samples"]]
        kind = BatchKind(b.get("kind", "samples"))
        box.append([Batch.of_samples(b["source"], samples, kind, b["device"], status, b["created"], b.get("records"))])
    payloads = [bytes(r[0]) for r in box.db.execute("SELECT payload FROM batches ORDER BY seq")]
    assert [p.startswith(MAGIC) for p in payloads] == [True, True, False, False]  # points as columns
    box.close()
    return db


@pytest.mark.parametrize("golden", sorted(RUNS))
def test_export_and_tail_print_the_golden_output(golden: str, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    db = stored(tmp_path / "s.db")
    parser = argparse.ArgumentParser()
    storecli.register(parser.add_subparsers())
    args = parser.parse_args([*RUNS[golden], "--store", str(db)])
    assert args.func(args) == 0
    assert capsys.readouterr().out == (CASES / golden).read_bytes().decode()
