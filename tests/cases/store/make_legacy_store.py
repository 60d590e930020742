"""How `legacy_v2.db` and `legacy_v2.expected.json` were made (kept for the record; it needs the old code).

The store file was written by bms-gateway before format 3 (store rows as JSON or as the version-2
compact pickle, with `Layout`s): run from a checkout of that code (commit 230dadb or any before the
columnar batch) as `python tests/cases/store/make_legacy_store.py tests/cases/store`. It writes every
kind of row that code wrote: compact samples rows (with and without qualities and device times, values
of every plain type), a JSON samples row (a batch without a layout), an alarm records row and a status
row, and the decoded rows as that code read them back (the expected content, as JSON).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from gateway.model import Batch, BatchKind, DeviceState, DeviceStatus, Layout, Sample  # type: ignore[attr-defined]
from gateway.store.outbox import Outbox

T0 = 1_760_000_000_000_000_000


def batches() -> list[Batch]:
    keys = [("soc", "%", "rack01", None, None), ("state", "", "rack01", None, None),
            ("contactor_closed", "", "rack01", None, None), ("cell_voltage", "V", "rack01", 1, 1),
            ("cell_voltage", "V", "rack01", 1, 2), ("cycles", "", "rack01", None, None)]  # fmt: skip
    layout = Layout(keys, [(0, 3), (3, 6)])
    values: list[object] = [55.5, "charging", True, 3.301, None, 1234]
    qualities = ["good", "good", "good", "good", "missing", "out_of_range"]
    one = [Sample(T0 + (0 if i < 3 else 7), k[0], v, k[1], q, k[2], k[3], k[4], (T0 - 5 if i == 0 else None))
           for i, (k, v, q) in enumerate(zip(keys, values, qualities, strict=True))]  # fmt: skip
    two = [Sample(T0 + 10**9 + (0 if i < 3 else 1), k[0], v, k[1], "good", k[2], k[3], k[4])
           for i, (k, v) in enumerate(zip(keys, [56.0, "idle", False, 3.3, 3.299, 1235], strict=True))]  # fmt: skip
    plain = [Sample(T0 + 2 * 10**9, "rack_voltage", 812.25, "V", "good", "rack02"),
             Sample(T0 + 2 * 10**9, "raw.flags", "0x0003", "", "bad", "rack02", 2, None, T0)]  # fmt: skip
    status = DeviceStatus("modbus:rack02", DeviceState.DEGRADED, "3 of 4 blocks answered", T0 + 3 * 10**9)
    alarm = {"type": "event", "rack": "rack01", "name": "cell_overvoltage", "state": "active", "value": 3.71}
    return [
        Batch("modbus:rack01", one, device="rack01", created=T0 + 1, layout=layout),
        Batch("modbus:rack01", two, device="rack01", created=T0 + 10**9 + 1, layout=layout),
        Batch("modbus:rack02", plain, device="rack02", created=T0 + 2 * 10**9 + 1),
        Batch("modbus:rack02", [], device="rack02", created=T0 + 3 * 10**9, status=status),
        Batch("alarms", [], kind=BatchKind.ALARM, device="rack01", created=T0 + 4 * 10**9, records=[alarm]),
    ]


def main(out: Path) -> None:
    db = out / "legacy_v2.db"
    db.unlink(missing_ok=True)
    box = Outbox(db, consumers=["influx"], site="plant")
    box.append(batches())
    rows = []
    for row in box.query():
        b = row.batch
        st = b.status
        rows.append({
            "seq": row.seq, "ts": row.ts, "kind": str(b.kind), "source": b.source, "device": b.device,
            "created": b.created, "records": b.records, "samples": [list(s) for s in b.samples],
            "status": None if st is None else [st.device, str(st.state), st.reason, st.ts],
            "format": "json" if row_payload(box, row.seq)[:1] == b"{" else "compact-v2",
        })  # fmt: skip
    box.close()
    (out / "legacy_v2.expected.json").write_text(json.dumps(rows, indent=1) + "\n")


def row_payload(box: Outbox, seq: int) -> bytes:
    return bytes(box.db.execute("SELECT payload FROM batches WHERE seq=?", (seq,)).fetchone()[0])


if __name__ == "__main__":
    main(Path(sys.argv[1]))
