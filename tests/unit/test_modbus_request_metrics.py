"""The Modbus links' request metrics are counted in plain numbers and read when scraped: the scrape shows
what prometheus_client's own labelled Counter and Histogram show for the same requests, line for line."""

from __future__ import annotations

import re

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from gateway.sources.modbus.requests import BUCKETS, RequestMetrics


def exposition(registry: CollectorRegistry) -> str:
    return re.sub(r"_created\{(.*)\} .*", r"_created{\1} T", generate_latest(registry).decode())


def test_the_scrape_is_what_a_counter_and_a_histogram_would_show() -> None:
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    help_requests, help_seconds = "Read requests sent to an endpoint", "Time from request to response"
    counter = Counter("bms_gateway_modbus_requests", help_requests, ["endpoint", "function"], registry=theirs)
    histogram = Histogram(
        "bms_gateway_modbus_request_seconds", help_seconds, ["endpoint"], registry=theirs, buckets=BUCKETS
    )
    metrics = RequestMetrics(ours)
    for endpoint in ("10.0.0.7:502", "/dev/ttyUSB0"):  # a link made and nothing sent yet: zeros
        metrics.endpoint(endpoint)
        histogram.labels(endpoint)
        for fc in (1, 2, 3, 4):
            counter.labels(endpoint, str(fc))
    assert exposition(ours) == exposition(theirs)
    for fc, seconds in [(3, 0.0004), (3, 0.001), (4, 0.0011), (1, 0.3), (3, 5.0), (2, 7.5), (3, 0.02)]:
        counter.labels("10.0.0.7:502", str(fc)).inc()
        histogram.labels("10.0.0.7:502").observe(seconds)
        ep = metrics.endpoint("10.0.0.7:502")
        ep.sent[fc] += 1
        ep.observe(seconds)
    assert exposition(ours) == exposition(theirs)
    assert 'bms_gateway_modbus_request_seconds_bucket{endpoint="10.0.0.7:502",le="0.001"} 2.0' in exposition(ours)
