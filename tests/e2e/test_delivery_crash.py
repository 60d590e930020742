"""`kill -9` of `bms-gateway run` at random moments with both sinks: after each restart nothing committed is
lost at either sink. Ten kills with BMS_TEST_KILLS=10 (the suite runs three)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import signal
import sys
from pathlib import Path

from gateway.model import BatchKind
from gateway.sinks.influx.lineproto import encode_batch
from gateway.store.outbox import Outbox
from tests.delivery_support import Collector
from tests.servers import Mosquitto, VictoriaMetrics
from tests.support.site import PLAIN_RACK, write_config
from tests.support.store import last_seq
from tests.support.waits import await_for

KILLS = int(os.environ.get("BMS_TEST_KILLS", "3"))
_SPLIT = re.compile(r"(?<!\\) ")


def config(tmp_path: Path, vm: VictoriaMetrics, broker: Mosquitto) -> Path:
    fast = "batch_max_age: 0.05, backoff_initial: 0.1, backoff_max: 1.0"
    sinks = [
        "sinks:",
        # Precision ns: two polls of a rack within one millisecond (the simulator catching up after a
        # slow start) are two points, not one the clock guard moves a millisecond on (tested apart).
        f"  influx: {{type: influxdb, url: '{vm.url}', token: t, precision: ns, {fast}}}",
        f"  mqtt: {{type: mqtt, host: 127.0.0.1, port: {broker.port}, tls: false, {fast}}}",
    ]
    rack = {**PLAIN_RACK, "seed": None}
    extra = "\n".join(sinks) + "\n"
    return write_config(tmp_path, ["rack-0", "rack-1"], interval=0.05, grace=10, rack=rack, extra=extra)


def field_names(fields: str) -> list[str]:
    """Names of the fields of a line-protocol field set (VictoriaMetrics stores text fields as 0)."""
    out, key, i = [], "", 0
    while i < len(fields):
        j = fields.index("=", i)
        key = fields[i:j]
        if fields[j + 1] == '"':
            k = j + 2
            while fields[k] != '"' or fields[k - 1] == "\\":
                k += 1
            i = k + 2
            out.append(key)
        else:
            k = fields.find(",", j)
            k = len(fields) if k < 0 else k
            out.append(key)
            i = k + 1
    return out


def expected_points(db: Path) -> tuple[set[tuple[str, frozenset[tuple[str, str]], int]], set[int], int]:
    """Every point VictoriaMetrics must hold, the seqs of telemetry batches, the stored sample count."""
    ob = Outbox(db)
    points = set()
    seqs = set()
    for row in ob.query():
        if row.batch.kind == BatchKind.SAMPLES and row.batch.n:
            seqs.add(row.seq)
        for line in encode_batch(row.batch, "t", "ms"):
            key, fields, ts = _SPLIT.split(line)
            meas, *tags = key.split(",")
            labels = frozenset(tuple(t.split("=", 1)) for t in tags)
            for f in field_names(fields):
                points.add((f"{meas}_{f}", labels, int(ts)))  # type: ignore[arg-type]
    stored = ob.stored_samples()
    states = {c.name: c for c in ob.consumers()}
    last = ob.last_seq()
    ob.close()
    for name in ("influx", "mqtt"):
        assert states[name].acked == last, f"{name} not drained"
        assert states[name].dropped == 0
    return points, seqs, stored


async def stored_rows(db: Path) -> int:
    return await asyncio.to_thread(last_seq, db)


async def test_kill_9_at_random_moments_loses_nothing_committed(
    tmp_path: Path, victoria: VictoriaMetrics, mosquitto: Mosquitto
) -> None:
    cfg = config(tmp_path, victoria, mosquitto)
    db = tmp_path / "store.db"
    rnd = random.Random(5)
    log = (tmp_path / "gateway.log").open("ab")
    status = "bms/t/gateway/status"
    async with Collector(mosquitto.port, topic="bms/t/#") as sub:

        async def start() -> asyncio.subprocess.Process:
            before = await stored_rows(db)
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "gateway", "run", "-c", str(cfg), stdout=log, stderr=log
            )

            async def grew() -> bool:
                assert proc.returncode is None, (tmp_path / "gateway.log").read_text()[-3000:]
                return await stored_rows(db) > before + 20

            # A start on a busy machine can take a while.
            await await_for(grew, 60, "the restarted gateway storing rows")
            return proc

        for k in range(KILLS):
            proc = await start()
            await await_for(lambda: sub.payloads(status)[-1:] == [b"online"], timeout=60)
            await asyncio.sleep(rnd.uniform(0.2, 2.0))  # a random moment to kill at (the test's subject)
            proc.send_signal(signal.SIGKILL)
            assert await proc.wait() == -signal.SIGKILL
            await await_for(lambda: sub.payloads(status)[-1:] == [b"offline"], timeout=60)  # the Last Will
            print(f"kill {k + 1}: rows stored {await stored_rows(db)}")
        proc = await start()
        await await_for(lambda: sub.payloads(status)[-1:] == [b"online"], timeout=60)  # delivering again
        proc.send_signal(signal.SIGTERM)
        assert await proc.wait() == 0
        await await_for(lambda: sub.payloads(status)[-1:] == [b"offline"], timeout=60)
        points, seqs, stored = await asyncio.to_thread(expected_points, db)
        await await_for(lambda: seqs <= set(sub.telemetry_seqs("bms/t/rack-0/telemetry") + sub.telemetry_seqs(
            "bms/t/rack-1/telemetry")), timeout=60)  # fmt: skip
    got_seqs = sub.telemetry_seqs("bms/t/rack-0/telemetry") + sub.telemetry_seqs("bms/t/rack-1/telemetry")
    expected = {p for p in points if p[0].split("_")[0] in ("rack", "cell", "module", "device")}
    got: set[tuple[str, frozenset[tuple[str, str]], int]] = set()
    n_raw = 0

    async def all_exported() -> bool:
        nonlocal got, n_raw
        exported = await asyncio.to_thread(victoria.export, '{__name__=~"(rack|cell|module|device_status)_.*"}')
        got, n_raw = set(), 0
        for s in exported:
            m = dict(s["metric"])  # type: ignore[call-overload]
            name = m.pop("__name__")
            labels = frozenset(m.items())
            for ts in s["timestamps"]:  # type: ignore[attr-defined]
                got.add((name, labels, int(ts)))
                n_raw += 1
        return expected <= got

    with contextlib.suppress(AssertionError):  # what did not arrive is counted and asserted on below
        await await_for(all_exported, 60, "every committed point in VictoriaMetrics", step=0.5)
    produced = sum(sum(1 for _ in (tmp_path / f"truth-rack-{i}.jsonl").open()) for i in range(2))
    lost_influx = len(expected - got)
    lost_mqtt = len(seqs - set(got_seqs))
    print(
        f"{KILLS} kills: produced {produced}, committed {stored} samples; "
        f"influx lost: {lost_influx}, extra: {len(got - expected)}, re-sent duplicates: {n_raw - len(got)}; "
        f"mqtt lost: {lost_mqtt}, duplicates: {len(got_seqs) - len(set(got_seqs))}; "
        f"not committed at the kills (commit window): {produced - stored}"
    )
    assert lost_influx == 0 and lost_mqtt == 0
    assert got <= expected  # nothing that was not stored
