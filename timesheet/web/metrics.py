"""
The web side's Prometheus metrics, served at ``/metrics`` to loopback clients
or with ``Authorization: Bearer $METRICS_TOKEN``: requests, latency,
throttling, and figures read at scrape time (freshness as the web side sees
it, webhook lag, open streams). The workers' own are in
``timesheet.workers.metrics``.
"""

import hmac
import time
from typing import Any

from asgiref.sync import iscoroutinefunction, sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.decorators import sync_and_async_middleware
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from prometheus_client.core import REGISTRY, GaugeMetricFamily

from timesheet.domain.health import freshness

# The web side ----------------------------------------------------------------

REQUESTS = Counter("fiches_http_requests", "HTTP requests answered.", ["method", "view", "status"])
LATENCY = Histogram(
    "fiches_http_request_duration_seconds",
    "Time to the response's headers (a stream's lifetime is not counted).",
    ["view"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
THROTTLED = Counter("fiches_throttled_requests", "Requests refused with 429 (sign-in or token throttling).")


class ScrapeTimeCollector:
    """Figures read from the database when /metrics is scraped: freshness as the web side sees it, webhook lag."""

    def collect(self):
        from timesheet.domain import webhooks
        from timesheet.web import stream

        running, age = freshness()
        yield GaugeMetricFamily(
            "fiches_web_stored_time_age_seconds", "Age of the oldest running fiche's accounting mark.", value=age or 0.0
        )
        yield GaugeMetricFamily("fiches_web_running", "Running fiches.", value=running)
        yield GaugeMetricFamily(
            "fiches_webhook_lag_seconds",
            "How long the oldest event not yet delivered to an active subscription has waited.",
            value=webhooks.lag_seconds(),
        )
        yield GaugeMetricFamily(
            "fiches_open_streams", "Open event streams in this process.", value=len(stream.hub.subscribers)
        )


_scrape_collector = None


def _observe(request, response, started):
    match = getattr(request, "resolver_match", None)
    view = (match.view_name if match else None) or "unmatched"
    REQUESTS.labels(request.method, view, str(response.status_code)).inc()
    LATENCY.labels(view).observe(time.perf_counter() - started)
    if response.status_code == 429:
        THROTTLED.inc()


@sync_and_async_middleware
def request_metrics(get_response: Any) -> Any:
    """Count every request and time it to its response's headers, in sync and async stacks alike."""
    if iscoroutinefunction(get_response):

        async def async_middleware(request: HttpRequest) -> Any:
            started = time.perf_counter()
            response = await get_response(request)
            _observe(request, response, started)
            return response

        return async_middleware

    def middleware(request: HttpRequest) -> Any:
        started = time.perf_counter()
        response = get_response(request)
        _observe(request, response, started)
        return response

    return middleware


def _allowed(request) -> bool:
    token = getattr(settings, "METRICS_TOKEN", None)
    if token:
        return hmac.compare_digest(request.headers.get("Authorization", ""), f"Bearer {token}")
    return request.META.get("REMOTE_ADDR") in ("127.0.0.1", "::1")


def _exposition():
    global _scrape_collector
    if _scrape_collector is None:
        _scrape_collector = ScrapeTimeCollector()
        REGISTRY.register(_scrape_collector)
    return generate_latest(REGISTRY)


async def metrics_view(request):
    """The web process's metrics, in Prometheus' text format."""
    if not _allowed(request):
        return HttpResponse("Forbidden: loopback only, or METRICS_TOKEN.\n", status=403, content_type="text/plain")
    return HttpResponse(await sync_to_async(_exposition)(), content_type=CONTENT_TYPE_LATEST)
