"""The timesheet app's settings, with their defaults. timesheet.core.checks validates them."""

from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection

DEFAULTS: dict[str, Any] = {
    "INCREMENT_TIME_SECONDS": 5,
    "TICKER_BATCH_SIZE": None,
    "TICKER_SHARDS": 1,
    "TICKER_MAX_FAILURE_SECONDS": 300,
    "TICKER_STOP_GRACE_SECONDS": 1.5,
    "FICHE_MAX_RUNNING_HOURS": None,
    "FICHE_MAX_RUNNING_PER_OWNER": 1,
    "STREAM_POLL_SECONDS": 1,
    "STREAM_KEEPALIVE_SECONDS": 15,
    "STREAM_MAX_SECONDS": 3600,
    "STREAM_MAX_PER_USER": 5,
    "STREAM_MAX_PER_PROCESS": 1000,
    "API_TOKEN_RATE": "600/min",
    "MAX_BODY_BYTES": 1_048_576,
    "WEBHOOK_POLL_SECONDS": 1,
    "WEBHOOK_TIMEOUT_SECONDS": 10,
    "WEBHOOK_LEASE_SECONDS": 60,
    "WEBHOOK_MAX_BACKOFF_SECONDS": 3600,
    "WEBHOOK_DISABLE_AFTER_HOURS": 24,
    "WEBHOOK_CONCURRENCY": 4,
    "WEBHOOK_ALLOW_HTTP": False,
    "WEBHOOK_ALLOWED_NETWORKS": [],
    "ADJUSTMENT_MAX_HOURS": 24 * 31,
    "FICHE_MAX_TOTAL_HOURS": 24 * 366 * 10,
    "EXPORT_MAX_ROWS": 500_000,
    "EXPORT_MAX_CONCURRENT": 2,
    "METRICS_PORT": None,
    "REPORT_ROUNDING": "none",
    "REPORT_ROUNDING_STEP_MINUTES": 15,
    "REPORT_ROUNDING_SCOPE": "group",
    # Hours a fiche may run before its owner is told (0: never); a person may set their own.
    "REMINDER_RUNNING_HOURS": 4,
    # The one currency of rates, amounts and money budgets (ISO 4217).
    "CURRENCY": "EUR",
    # The site's address, for the absolute links of emails (unsubscribe, the people's page).
    "SITE_URL": "http://127.0.0.1:8000",
    # Notification delivery (run_notifications): the wait after an idle pass, the notifications fanned out
    # in one transaction, an attempt's deadline and its lease, the back-off and when to give up.
    "NOTIFY_POLL_SECONDS": 1,
    "NOTIFY_BATCH_SIZE": 500,
    "NOTIFY_TIMEOUT_SECONDS": 10,
    "NOTIFY_LEASE_SECONDS": 60,
    "NOTIFY_RETRY_SECONDS": 30,
    "NOTIFY_MAX_BACKOFF_SECONDS": 3600,
    "NOTIFY_MAX_ATTEMPTS": 10,
}


def get(name: str) -> Any:
    return getattr(settings, name, DEFAULTS[name])


def tick_interval() -> float:
    """Seconds between two ticks: how fresh the stored time is, not a unit of time."""
    return float(get("INCREMENT_TIME_SECONDS"))


# Unless set: short batches on SQLite, whose one write lock a batch holds
# against every transition; on PostgreSQL, which locks rows, few and large
# ones, each a range scan close to a plain UPDATE's cost per row.
DEFAULT_BATCH_SIZES = {"sqlite": 5_000, "postgresql": 100_000}


def batch_size() -> int:
    """Most running fiches settled in one transaction."""
    configured = get("TICKER_BATCH_SIZE")
    if configured is not None:
        return int(configured)
    return DEFAULT_BATCH_SIZES.get(connection.vendor, DEFAULT_BATCH_SIZES["sqlite"])


def shards() -> int:
    """How many advisory-locked shards the running fiches are split into (PostgreSQL); 1 for none."""
    return int(get("TICKER_SHARDS"))


def max_failure_seconds() -> float:
    """How long the worker keeps failing before it exits for its supervisor to restart it."""
    return float(get("TICKER_MAX_FAILURE_SECONDS"))


def max_running() -> timedelta | None:
    """How long a fiche may run before the ticker pauses it, or None for no limit."""
    hours = get("FICHE_MAX_RUNNING_HOURS")
    return None if hours is None else timedelta(hours=hours)


def max_running_per_owner() -> int:
    """How many fiches one owner may run at once; 0 for no limit."""
    return int(get("FICHE_MAX_RUNNING_PER_OWNER"))


def stream_poll_seconds() -> float:
    """How often the process's one poller looks for new fiche events for the open streams."""
    return float(get("STREAM_POLL_SECONDS"))


def stream_keepalive_seconds() -> float:
    """Silence after which an open stream gets a keep-alive comment."""
    return float(get("STREAM_KEEPALIVE_SECONDS"))


def adjustment_max() -> timedelta:
    """The largest adjustment either way (``ADJUSTMENT_MAX_HOURS``)."""
    return timedelta(hours=get("ADJUSTMENT_MAX_HOURS"))


def fiche_max_total() -> timedelta:
    """The most time one fiche may hold after an adjustment (``FICHE_MAX_TOTAL_HOURS``)."""
    return timedelta(hours=get("FICHE_MAX_TOTAL_HOURS"))


def reminder_running_hours() -> Decimal:
    """Hours a fiche runs before its owner is told, for people who set none (``REMINDER_RUNNING_HOURS``; 0: never)."""
    return Decimal(str(get("REMINDER_RUNNING_HOURS")))


def site_url() -> str:
    """The site's address (``SITE_URL``) without its trailing slash: absolute links start with it."""
    return str(get("SITE_URL")).rstrip("/")
