"""How the export and tail golden files were made: the batches of `export_batches.json` stored by the
code before format 3 and read back by its `bms-gateway export` and `tail` (run from a checkout of that
code as `python tests/cases/store/make_export_golden.py tests/cases/store`). The golden test
(tests/unit/test_store_export_golden.py) stores the same batches with today's code and expects the same
output, byte for byte."""

from __future__ import annotations

import contextlib
import io
import json
import sys
import tempfile
from pathlib import Path

from gateway.cli.main import main as cli
from gateway.model import Batch, BatchKind, DeviceState, DeviceStatus, Sample
from gateway.store.outbox import Outbox

RUNS = {
    "export.jsonl": ["export"],
    "export_all_kinds.jsonl": ["export", "--all-kinds"],
    "export.csv": ["export", "--format", "csv"],
    "export_r1.jsonl": ["export", "--rack", "r1"],
    "export_r1.lp": ["export", "--format", "lp", "--rack", "r1"],
    "tail.txt": ["tail", "-n", "10"],
}


def main(out: Path) -> None:
    doc = json.loads((out / "export_batches.json").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "s.db"
        box = Outbox(db, site=doc["site"])
        for b in doc["batches"]:
            st = b.get("status")
            box.append([Batch(b["source"], [Sample(*s) for s in b["samples"]], kind=BatchKind(b.get("kind", "samples")),
                              device=b["device"], created=b["created"], records=b.get("records", []),
                              status=None if st is None else DeviceStatus(st[0], DeviceState(st[1]), st[2], st[3]))])
        box.close()
        for name, args in RUNS.items():
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf):
                cli([*args, "--store", str(db)])
            (out / name).write_text(buf.getvalue())


if __name__ == "__main__":
    main(Path(sys.argv[1]))
