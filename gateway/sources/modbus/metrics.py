"""Prometheus metrics of the Modbus sources, on the process registry (`bms_gateway_modbus_*`)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from gateway.metrics import REGISTRY
from gateway.sources.modbus.requests import RequestMetrics

# bms_gateway_modbus_requests_total{endpoint,function} and bms_gateway_modbus_request_seconds{endpoint}:
# counted by each link in plain numbers, read when scraped (no metric call per request)
requests = RequestMetrics(REGISTRY)

polls = Counter("bms_gateway_modbus_polls", "Poll cycles of a device", ["device"], registry=REGISTRY)
errors = Counter(
    "bms_gateway_modbus_errors",
    "Failed reads by device and kind (timeout, connection, exception_<code>)",
    ["device", "kind"],
    registry=REGISTRY,
)
last_success = Gauge(
    "bms_gateway_modbus_last_success_timestamp_seconds",
    "Unix time of the device's last successful read",
    ["device"],
    registry=REGISTRY,
)
bad_points = Gauge(
    "bms_gateway_modbus_bad_points", "Points the device refuses (isolated by splitting)", ["device"], registry=REGISTRY
)
connects = Counter(
    "bms_gateway_modbus_connects", "TCP connection attempts by result", ["endpoint", "result"], registry=REGISTRY
)
late_cycles = Counter(
    "bms_gateway_modbus_skipped_cycles",
    "Poll cycles skipped because the previous one ran late (the schedule does not drift)",
    ["device"],
    registry=REGISTRY,
)
decode_faults = Counter(
    "bms_gateway_modbus_decode_faults",
    "Changes to a fault of a device's data by kind (unknown_state, invalid_scale, invalid_clock)",
    ["device", "kind"],
    registry=REGISTRY,
)
discarded = Counter(
    "bms_gateway_modbus_discarded_bytes",
    "Bytes received on an RTU link that answered no read (line noise, late answers, garbage before a frame)",
    ["endpoint"],
    registry=REGISTRY,
)
