"""Prometheus metrics shared across domains: the HTTP layer (labelled by route template, never
raw paths), error codes answered and inbound webhooks."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

REQUESTS = Counter(
    "rendio_http_requests_total", "HTTP requests served", ["method", "route", "status"]
)
LATENCY = Histogram(
    "rendio_http_request_duration_seconds",
    "Time to serve an HTTP request",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

ERRORS = Counter("rendio_errors_total", "Error answers, by SPEC code", ["code"])
WEBHOOKS = Counter(
    "rendio_webhooks_total",
    "Inbound webhook deliveries, by source and outcome",
    ["source", "outcome"],
)


# The labelled series of each (method, route, status) seen, so a request costs two dict lookups
# rather than two `labels()` calls (each validates and locks). Routes are templates, never raw
# paths, so these stay as small as the route table.
_SERIES: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}


def observe(method: str, route: str, status: int, seconds: float) -> None:
    key = (method, route, status)
    series = _SERIES.get(key)
    if series is None:
        series = (REQUESTS.labels(method, route, str(status)), LATENCY.labels(method, route))
        _SERIES[key] = series
    series[0].inc()
    series[1].observe(seconds)


def exposition() -> tuple[bytes, str]:
    return generate_latest(), CONTENT_TYPE_LATEST
