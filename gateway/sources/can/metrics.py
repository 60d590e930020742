"""Prometheus metrics of the CAN source, on the process registry. Incremented once per batch."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from gateway.metrics import REGISTRY

frames = Counter("bms_gateway_can_frames", "CAN frames received", ["bus"], registry=REGISTRY)
decoded = Counter("bms_gateway_can_decoded", "CAN frames decoded into samples", ["bus", "rack"], registry=REGISTRY)
unknown = Counter(
    "bms_gateway_can_unknown",
    "CAN frames with an id no profile decodes (ids beyond the first 256 are counted as `other`)",
    ["bus", "id"],
    registry=REGISTRY,
)
errors = Counter(
    "bms_gateway_can_errors",
    "CAN frames counted instead of decoded (or flagged), by frame id and reason",
    ["bus", "id", "reason"],
    registry=REGISTRY,
)
dropped = Counter(
    "bms_gateway_can_frames_dropped",
    "CAN frames lost because the receive buffer was full (the pipeline could not keep up)",
    ["bus"],
    registry=REGISTRY,
)
bus_up = Gauge("bms_gateway_can_bus_up", "1 while the CAN bus is open", ["bus"], registry=REGISTRY)
reconnects = Counter("bms_gateway_can_reconnects", "Times a failed CAN bus was reopened", ["bus"], registry=REGISTRY)
stale = Counter(
    "bms_gateway_can_stale", "Times a cyclic message went stale (missed cycles)", ["rack", "message"], registry=REGISTRY
)
