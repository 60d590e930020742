"""Alarms the gateway raises about itself (rack `gateway`): a sink refusing credentials, a full disk.

They use the alarm-event record of the alarm engine, so every sink renders them like any other alarm
(InfluxDB measurement `alarm`, MQTT `<prefix>/<site>/gateway/alarms/events`).
"""

from __future__ import annotations

import time

from gateway.model import Batch, BatchKind


def gateway_alarm(alarm_id: str, active: bool, message: str, source: str) -> Batch:
    """An alarm event raising (`active`) or returning to normal (`rtn_unack`) a gateway alarm."""
    rec: dict[str, object] = {
        "type": "event",
        "ts": time.time_ns(),
        "rack": "gateway",
        "alarm_id": alarm_id,
        "severity": "critical",
        "state": "active_unack" if active else "rtn_unack",
        "previous": "normal" if active else "active_unack",
        "message": message,
        "value": None,
        "rule": alarm_id.split(".", 1)[0],
        "user": None,
        "reason": None,
    }
    return Batch(source, [], kind=BatchKind.ALARM, device="gateway", records=[rec])
