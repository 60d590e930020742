"""`bms-gateway sinks` and `bms-gateway deadletter list|export|retry|delete` on a real store and HTTP server."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from gateway.cli.main import main
from gateway.sinks.config import InfluxSinkConfig
from gateway.sinks.influx.sink import InfluxSink
from gateway.sinks.runner import SinkRunner
from gateway.store.outbox import Outbox
from tests.delivery_support import InfluxLikeServer, running, sample_batch
from tests.support.waits import await_for


async def test_dead_letters_listed_exported_retried(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async with InfluxLikeServer(conflicts=("raw.v1=",)) as srv:
        cfg_file = tmp_path / "gateway.yaml"
        cfg_file.write_text(
            "site: {name: s1}\n"
            f"store: {{path: {tmp_path / 'store.db'}}}\n"
            f"sinks:\n  influx: {{type: influxdb, url: '{srv.url}', token: t, batch_max_age: 0.05}}\n"
        )
        ob = Outbox(tmp_path / "store.db")
        cfg = InfluxSinkConfig(url=srv.url, token="t", batch_max_age=0.05)
        runner = SinkRunner("influx", InfluxSink("influx", cfg, "s1"), ob, cfg)
        ob.append([sample_batch("r1", 1_000_000_000, 1), sample_batch("r1", 2_000_000_000, 2)])
        async with running(runner):
            await await_for(runner.caught_up)
        ob.append([sample_batch("r1", 3_000_000_000, 1)])  # pending for the status
        ob.close()

        async def cli(*argv: str) -> tuple[int, str]:
            capsys.readouterr()
            code = await asyncio.to_thread(main, list(argv))
            return code, capsys.readouterr().out

        code, out = await cli("sinks", "-c", str(cfg_file), "--json")
        doc = json.loads(out)
        assert code == 0
        assert doc["sinks"][0] | {"lag_seconds": 0} == {
            "sink": "influx", "acked_seq": 2, "pending_rows": 1, "pending_samples": 1, "lag_seconds": 0,
            "dropped_samples": 0, "dead_letters": 1,
        }  # fmt: skip
        code, out = await cli("deadletter", "list", "-c", str(cfg_file))
        assert code == 0 and "status=400" in out and "field type conflict" in out and "raw.v1=1.0" in out
        code, out = await cli("deadletter", "export", "-c", str(cfg_file), "--format", "lp")
        assert out == "rack,site=s1,rack=r1,quality=good,source=r1 raw.v0=0.0,raw.v1=1.0 2000\n"
        code, out = await cli("deadletter", "export", "--store", str(tmp_path / "store.db"))
        assert json.loads(out)["seq"] == 2
        # Still rejected: kept.
        code, out = await cli("deadletter", "retry", "-c", str(cfg_file), "--sink", "influx")
        assert code == 1 and "1 still rejected" in out
        srv.conflicts = ()  # the operator fixed the bucket's schema
        code, out = await cli("deadletter", "retry", "-c", str(cfg_file), "--sink", "influx")
        assert code == 0 and "1 written, 0 still rejected" in out
        assert srv.stored[-1] == "rack,site=s1,rack=r1,quality=good,source=r1 raw.v0=0.0,raw.v1=1.0 2000"
        code, out = await cli("deadletter", "list", "-c", str(cfg_file))
        assert "raw.v1" not in out
        code, out = await cli("deadletter", "delete", "-c", str(cfg_file))
        assert code == 2
        code, out = await cli("deadletter", "delete", "-c", str(cfg_file), "--all")
        assert code == 0 and "0 dead letters deleted" in out
        code, out = await cli("sinks", "-c", str(cfg_file))
        assert code == 0 and out.splitlines()[1].split()[:3] == ["influx", "2", "1"]
        n = len(srv.log)
        code, out = await cli("sinks", "-c", str(cfg_file), "--probe")
        assert code == 0 and out.startswith("influx: ok") and srv.log[n:] == [204]
        srv.token = "other"
        code, out = await cli("sinks", "-c", str(cfg_file), "--probe")
        assert code == 1 and "influx: FAILED" in out and "refused the credentials (401)" in out
        srv.token = None
        code, out = await cli("sinks", "-c", str(cfg_file), "--forget", "influx")

        assert code == 0 and "forgotten" in out
        code, out = await cli("sinks", "-c", str(cfg_file), "--json")
        assert json.loads(out)["sinks"] == []
