"""Prometheus metrics of the alarm engine (in the process's one registry)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from gateway.metrics import REGISTRY

alarms_active = Gauge(
    "bms_gateway_alarms_active", "Alarms in view (not normal), by severity", ["severity"], registry=REGISTRY
)
transitions = Counter(
    "bms_gateway_alarm_transitions",
    "Alarm state transitions, by severity and new state",
    ["severity", "state"],
    registry=REGISTRY,
)
commands = Counter(
    "bms_gateway_alarm_commands",
    "Operator commands received, by action and result (ok, partial, rejected, invalid, denied)",
    ["action", "result"],
    registry=REGISTRY,
)
commands_refused = Counter(
    "bms_gateway_alarm_commands_refused",
    "Operator commands refused, by reason (too_large, too_deep, not_json, non_finite, unsigned, bad_signature, "
    "stale, replayed, unknown_user, not_permitted, ...)",
    ["reason"],
    registry=REGISTRY,
)
commands_dropped = Counter(
    "bms_gateway_alarm_commands_dropped",
    "Operator commands dropped unread, by reason (rate_limited, queue_full, client_queue_full)",
    ["reason"],
    registry=REGISTRY,
)
journal_entries = Counter(
    "bms_gateway_alarm_journal_entries", "Entries appended to the alarm journal", registry=REGISTRY
)
journal_failures = Counter(
    "bms_gateway_alarm_journal_failures",
    "Journal writes that failed (entries kept in memory and retried)",
    registry=REGISTRY,
)
journal_dropped = Counter(
    "bms_gateway_alarm_journal_dropped",
    "Journal entries dropped after the journal stayed unwritable",
    registry=REGISTRY,
)
evaluate_seconds = Histogram(
    "bms_gateway_alarm_evaluate_seconds",
    "Time the alarm engine took per group of batches on the live path",
    registry=REGISTRY,
    buckets=(0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1),
)
