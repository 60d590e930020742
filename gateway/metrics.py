"""Prometheus metrics, one registry for the process. Increment per batch or per event, never per sample
in a hot loop where a local counter would do."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

samples_produced = Counter("bms_gateway_samples_produced", "Samples produced by sources", ["source"], registry=REGISTRY)
batches_stored = Counter("bms_gateway_batches_stored", "Batches committed to the outbox", registry=REGISTRY)
samples_stored = Counter("bms_gateway_samples_stored", "Samples committed to the outbox", registry=REGISTRY)
samples_dropped = Counter(
    "bms_gateway_samples_dropped",
    "Samples dropped before a consumer delivered them (disk budget, retention, queue)",
    ["consumer", "reason"],
    registry=REGISTRY,
)
store_bytes = Gauge("bms_gateway_store_bytes", "Bytes used by the store", registry=REGISTRY)
commit_seconds = Histogram(
    "bms_gateway_commit_seconds",
    "Duration of one outbox group commit",
    registry=REGISTRY,
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1.0),
)
device_online = Gauge("bms_gateway_device_online", "1 when the device answers", ["device"], registry=REGISTRY)
sink_delivered = Counter("bms_gateway_sink_delivered_samples", "Samples a sink delivered", ["sink"], registry=REGISTRY)
sink_pending = Gauge("bms_gateway_sink_pending_samples", "Samples waiting for a sink", ["sink"], registry=REGISTRY)
sink_lag = Gauge("bms_gateway_sink_lag_seconds", "Age of the oldest undelivered batch", ["sink"], registry=REGISTRY)
sink_retries = Counter("bms_gateway_sink_retries", "Failed writes that will be retried", ["sink"], registry=REGISTRY)
sink_dead_lettered = Counter(
    "bms_gateway_sink_dead_lettered",
    "Points a server rejected, kept in the dead-letter table",
    ["sink"],
    registry=REGISTRY,
)
sink_connected = Gauge(
    "bms_gateway_sink_connected", "1 when the sink's last write succeeded", ["sink"], registry=REGISTRY
)
sink_write_seconds = Histogram(
    "bms_gateway_sink_write_seconds",
    "Duration of one confirmed sink write",
    ["sink"],
    registry=REGISTRY,
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0),
)
sink_batches = Counter("bms_gateway_sink_batches", "Confirmed sink writes", ["sink"], registry=REGISTRY)
sink_auth_failed = Gauge(
    "bms_gateway_sink_auth_failed", "1 while the server refuses the gateway's credentials", ["sink"], registry=REGISTRY
)
store_disk_full = Gauge("bms_gateway_store_disk_full", "1 while the store's disk is full", registry=REGISTRY)
store_set_aside = Counter(
    "bms_gateway_store_set_aside_rows", "Rows of a damaged store set aside at start", registry=REGISTRY
)
sink_dead_letters_discarded = Counter(
    "bms_gateway_sink_dead_letters_discarded",
    "Dead letters deleted because the dead-letter table reached its limit",
    ["sink"],
    registry=REGISTRY,
)
sink_delivery_seconds = Histogram(
    "bms_gateway_sink_delivery_seconds",
    "Age of a batch when its sink confirmed it (creation to acknowledgement): the end-to-end latency",
    ["sink"],
    registry=REGISTRY,
    buckets=(0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0),
)
