"""The request metrics of the Modbus links, counted in plain numbers and read when scraped.

`bms_gateway_modbus_requests_total{endpoint,function}` and the histogram
`bms_gateway_modbus_request_seconds{endpoint}` are what a labelled prometheus_client Counter and
Histogram would expose (the same names, labels, buckets and `_created` samples), but a request costs a
few additions here instead of two metric calls, each taking a lock: at 100 racks × 8 reads a second
that is 800 calls a second on the event loop for figures read every 15 s or so.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.samples import Sample

from gateway.sources.modbus.plan import READ_FUNCTION_CODES

BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
_LE = [repr(b) for b in BUCKETS] + ["+Inf"]  # as prometheus_client writes these bounds
FUNCTIONS = sorted(READ_FUNCTION_CODES)


class EndpointRequests:
    """One endpoint's requests sent, by function code, and their times to a response."""

    __slots__ = ("buckets", "created", "sent", "total")

    def __init__(self) -> None:
        self.sent = dict.fromkeys(FUNCTIONS, 0)
        self.buckets = [0] * (len(BUCKETS) + 1)  # not cumulative: the last one is over the largest bound
        self.total = 0.0  # seconds
        self.created = time.time()

    def observe(self, seconds: float) -> None:
        self.buckets[bisect_left(BUCKETS, seconds)] += 1
        self.total += seconds


class RequestMetrics:
    """The collector of every endpoint's `EndpointRequests`, one per endpoint label (like a labelled
    metric's children: kept for the process's life, as many as the site has endpoints)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.endpoints: dict[str, EndpointRequests] = {}
        if registry is not None:
            registry.register(self)

    def endpoint(self, label: str) -> EndpointRequests:
        got = self.endpoints.get(label)
        if got is None:
            got = self.endpoints[label] = EndpointRequests()
        return got

    def describe(self) -> list[Metric]:
        return [self._requests(), self._seconds()]

    def collect(self) -> Iterator[Metric]:
        requests, seconds = self._requests(), self._seconds()
        for label, ep in list(self.endpoints.items()):
            for fc, n in ep.sent.items():
                requests.add_metric([label, str(fc)], n, created=ep.created)
            cumulative, buckets = 0, []
            for le, count in zip(_LE, list(ep.buckets), strict=True):
                cumulative += count
                buckets.append((le, float(cumulative)))
            seconds.add_metric([label], buckets, ep.total)
            seconds.samples.append(Sample(f"{seconds.name}_created", {"endpoint": label}, ep.created))
        yield requests
        yield seconds

    @staticmethod
    def _requests() -> CounterMetricFamily:
        return CounterMetricFamily(
            "bms_gateway_modbus_requests", "Read requests sent to an endpoint", labels=["endpoint", "function"]
        )

    @staticmethod
    def _seconds() -> HistogramMetricFamily:
        return HistogramMetricFamily(
            "bms_gateway_modbus_request_seconds", "Time from request to response", labels=["endpoint"]
        )
