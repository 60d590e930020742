"""The Grafana dashboard stays in step with the InfluxDB schema the gateway writes."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from gateway.catalog import CATALOG
from gateway.model import Batch, DeviceState, DeviceStatus, Quality, Sample
from gateway.sinks.influx import lineproto

DASHBOARD = Path(__file__).resolve().parents[2] / "config" / "grafana" / "bms-gateway-dashboard.json"


def queries(dash: dict[str, Any]) -> list[str]:
    return [t["query"] for p in dash["panels"] for t in p.get("targets", [])]


def written_measurements() -> set[str]:
    """Measurements the gateway really writes, from its own line-protocol encoder."""
    ts = 1_700_000_000_000_000_000
    batch = Batch.of_samples(
        "r1",
        [
            Sample(ts, "soc", 50.0, "%", Quality.GOOD, "r1"),
            Sample(ts, "cell_voltage", 3.3, "V", Quality.GOOD, "r1", 1, 1),
            Sample(ts, "module_voltage", 52.0, "V", Quality.GOOD, "r1", 1),
        ],
        device="r1",
        status=DeviceStatus("r1", DeviceState.ONLINE, "", ts),
    )
    lines = lineproto.encode_batch(batch, "s")
    lines.append(lineproto.encode_alarm_record({"type": "active", "rack": "r1", "active": []}, "s", ts) or "")
    event = {"type": "event", "rack": "r1", "alarm_id": "a", "severity": "major", "state": "active", "message": "m"}
    lines.append(lineproto.encode_alarm_record(event, "s", ts) or "")
    return {line.split(",", 1)[0] for line in lines if line}


def test_dashboard_queries_use_only_what_the_gateway_writes() -> None:
    dash = json.loads(DASHBOARD.read_text())
    measurements = written_measurements()
    assert {"rack", "cell", "module", "device_status", "alarm", "alarms_active"} <= measurements
    fields_known = set(CATALOG) | {"state", "message", "count", "online", "reason"}
    qs = queries(dash)
    assert len(qs) >= 8
    for q in qs:
        for m in re.findall(r'r\._measurement == "([^"]+)"', q):
            assert m in measurements, (m, q)
        for f in re.findall(r'r\._field == "([^"]+)"', q):
            assert f in fields_known, (f, q)
        assert 'bucket: "${bucket}"' in q
    variables = {v["name"] for v in dash["templating"]["list"]}
    used = {v for q in qs for v in re.findall(r"\$\{(\w+)", q)}
    assert used <= variables


def test_dashboard_covers_racks_spread_and_alarms() -> None:
    dash = json.loads(DASHBOARD.read_text())
    titles = " ".join(p["title"] for p in dash["panels"]).lower()
    for what in ("racks now", "state of charge", "cell voltage spread", "cell temperature spread", "alarm"):
        assert what in titles, what
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
