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


def observe(method: str, route: str, status: int, seconds: float) -> None:
    REQUESTS.labels(method, route, str(status)).inc()
    LATENCY.labels(method, route).observe(seconds)


def exposition() -> tuple[bytes, str]:
    return generate_latest(), CONTENT_TYPE_LATEST
