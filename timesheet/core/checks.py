"""System checks for every setting the timesheet app reads, so bad values fail at start."""

import importlib.util
import ipaddress
import math
import os
from decimal import Decimal
from numbers import Real
from urllib.parse import SplitResult, urlsplit

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register

from timesheet.core import conf


def _is_positive_number(value: object) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value) and float(value) > 0


def _is_positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _are_networks(value: object) -> bool:
    if not isinstance(value, list | tuple):
        return False
    try:
        for network in value:
            ipaddress.ip_network(network)
    except (TypeError, ValueError):
        return False
    return True


def _is_rate(value):
    if not isinstance(value, str) or value.count("/") != 1:
        return False
    count, period = value.split("/")
    return (
        count.isascii()
        and count.isdigit()
        and int(count) > 0
        and period in {"s", "sec", "m", "min", "h", "hour", "d", "day"}
    )


RULES = [
    # (setting, is valid, what it must be, check id)
    ("INCREMENT_TIME_SECONDS", _is_positive_number, "a positive number of seconds", "timesheet.E001"),
    (
        "TICKER_BATCH_SIZE",
        lambda value: value is None or _is_positive_int(value),
        "a positive whole number of rows, or unset for the database's default",
        "timesheet.E002",
    ),
    ("TICKER_MAX_FAILURE_SECONDS", _is_positive_number, "a positive number of seconds", "timesheet.E003"),
    (
        "FICHE_MAX_RUNNING_HOURS",
        lambda value: value is None or _is_positive_number(value),
        "a positive number of hours, or unset for no limit",
        "timesheet.E004",
    ),
    ("TICKER_SHARDS", _is_positive_int, "a positive whole number of shards", "timesheet.E007"),
    (
        "REPORT_ROUNDING",
        lambda v: v in ("none", "up", "down", "nearest"),
        "none, up, down or nearest",
        "timesheet.E017",
    ),
    (
        "REPORT_ROUNDING_STEP_MINUTES",
        lambda v: _is_positive_int(v) and v <= 1440,
        "a whole number of minutes from 1 to 1440",
        "timesheet.E018",
    ),
    ("REPORT_ROUNDING_SCOPE", lambda v: v in ("stretch", "group"), "stretch or group", "timesheet.E019"),
    (
        "FICHE_MAX_RUNNING_PER_OWNER",
        lambda value: isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 100,
        "a whole number from 0 (no limit) to 100",
        "timesheet.E016",
    ),
    ("STREAM_POLL_SECONDS", _is_positive_number, "a positive number of seconds", "timesheet.E005"),
    ("STREAM_KEEPALIVE_SECONDS", _is_positive_number, "a positive number of seconds", "timesheet.E006"),
    ("STREAM_MAX_SECONDS", _is_positive_number, "a positive number of seconds", "timesheet.E020"),
    ("STREAM_MAX_PER_USER", _is_positive_int, "a positive whole number of streams", "timesheet.E021"),
    ("STREAM_MAX_PER_PROCESS", _is_positive_int, "a positive whole number of streams", "timesheet.E022"),
    ("TICKER_STOP_GRACE_SECONDS", _is_positive_number, "a positive number of seconds", "timesheet.E024"),
    ("MAX_BODY_BYTES", _is_positive_int, "a positive whole number of bytes", "timesheet.E023"),
    ("API_TOKEN_RATE", _is_rate, "a rate such as 600/min (requests per s, min, hour or day)", "timesheet.E008"),
    ("WEBHOOK_POLL_SECONDS", _is_positive_number, "a positive number of seconds", "timesheet.E009"),
    ("WEBHOOK_TIMEOUT_SECONDS", _is_positive_number, "a positive number of seconds", "timesheet.E010"),
    ("WEBHOOK_LEASE_SECONDS", _is_positive_number, "a positive number of seconds", "timesheet.E011"),
    ("WEBHOOK_MAX_BACKOFF_SECONDS", _is_positive_number, "a positive number of seconds", "timesheet.E012"),
    ("WEBHOOK_DISABLE_AFTER_HOURS", _is_positive_number, "a positive number of hours", "timesheet.E013"),
    ("WEBHOOK_CONCURRENCY", lambda v: _is_positive_int(v) and v <= 64, "a whole number from 1 to 64", "timesheet.E025"),
    ("WEBHOOK_ALLOW_HTTP", lambda v: isinstance(v, bool), "True or False", "timesheet.E026"),
    (
        "WEBHOOK_ALLOWED_NETWORKS",
        _are_networks,
        "a list of networks in CIDR form (10.0.0.0/8, ::1/128)",
        "timesheet.E027",
    ),
    (
        "ADJUSTMENT_MAX_HOURS",
        lambda v: _is_positive_number(v) and v <= 24 * 366 * 100,
        "a positive number of hours, at most a century's",
        "timesheet.E028",
    ),
    (
        "FICHE_MAX_TOTAL_HOURS",
        # A century at most: the database refuses a millennium (STORED_TIME_MAX), far out of running time's reach.
        lambda v: _is_positive_number(v) and v <= 24 * 366 * 100,
        "a positive number of hours, at most a century's",
        "timesheet.E029",
    ),
    ("EXPORT_MAX_ROWS", _is_positive_int, "a positive whole number of rows", "timesheet.E030"),
    ("EXPORT_MAX_CONCURRENT", _is_positive_int, "a positive whole number of exports", "timesheet.E031"),
    (
        "REMINDER_RUNNING_HOURS",
        lambda v: isinstance(v, int | float | Decimal) and not isinstance(v, bool) and 0 <= v <= 999,
        "a number of hours from 0 (no reminder) to 999",
        "timesheet.E032",
    ),
    (
        "METRICS_PORT",
        lambda value: value is None or (_is_positive_int(value) and value < 65536),
        "a TCP port (1-65535), or unset for none",
        "timesheet.E014",
    ),
]


@register()
def check_webhook_lease(app_configs=None, **kwargs):
    """A lease shorter than a delivery's timeout would let two workers send one subscription's events at once."""
    lease, timeout = conf.get("WEBHOOK_LEASE_SECONDS"), conf.get("WEBHOOK_TIMEOUT_SECONDS")
    if _is_positive_number(lease) and _is_positive_number(timeout) and lease <= timeout:
        return [
            Error(
                f"WEBHOOK_LEASE_SECONDS ({lease}) must be longer than WEBHOOK_TIMEOUT_SECONDS ({timeout}).",
                hint="A delivery holds its subscription's lease for as long as the POST may take.",
                id="timesheet.E015",
            )
        ]
    return []


@register()
def check_settings(app_configs=None, **kwargs):
    errors = []
    for name, is_valid, expected, check_id in RULES:
        value = conf.get(name)
        if not is_valid(value):
            errors.append(
                Error(
                    f"{name} must be {expected}; got {value!r}.",
                    hint=f"Set {name} in the environment or the settings to {expected}.",
                    id=check_id,
                )
            )
    return errors


def _url_parts(value: object) -> SplitResult | None:
    """``value`` split as a URL, if it is ASCII text without spaces whose port (if any) is a number; else None."""
    if not isinstance(value, str) or not value.isascii() or any(ch.isspace() for ch in value):
        return None
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError:
        return None
    return parts


def _is_site_url(value: object) -> bool:
    """An http(s) address with a host, and nothing after its path: absolute links are built on it."""
    parts = _url_parts(value)
    if parts is None:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and not (parts.query or parts.fragment)


def _is_currency(value: object) -> bool:
    """An ISO 4217 code: three capital ASCII letters."""
    return isinstance(value, str) and len(value) == 3 and value.isascii() and value.isalpha() and value.isupper()


@register()
def check_currency(app_configs=None, **kwargs):
    value = conf.get("CURRENCY")
    if _is_currency(value):
        return []
    return [
        Error(
            f"CURRENCY must be an ISO 4217 code such as EUR; got {value!r}.",
            hint="Set CURRENCY in the environment or the settings to three capital letters.",
            id="timesheet.E070",
        )
    ]


NOTIFY_RULES = [
    # (setting, is valid, what it must be, check id): the notifications' delivery.
    ("SITE_URL", _is_site_url, "the site's address, such as https://fiches.example.org", "timesheet.E060"),
    ("NOTIFY_POLL_SECONDS", _is_positive_number, "a positive number of seconds", "timesheet.E061"),
    ("NOTIFY_BATCH_SIZE", _is_positive_int, "a positive whole number of notifications", "timesheet.E062"),
    ("NOTIFY_TIMEOUT_SECONDS", _is_positive_number, "a positive number of seconds", "timesheet.E063"),
    ("NOTIFY_LEASE_SECONDS", _is_positive_number, "a positive number of seconds", "timesheet.E064"),
    ("NOTIFY_RETRY_SECONDS", _is_positive_number, "a positive number of seconds", "timesheet.E065"),
    ("NOTIFY_MAX_BACKOFF_SECONDS", _is_positive_number, "a positive number of seconds", "timesheet.E066"),
    ("NOTIFY_MAX_ATTEMPTS", _is_positive_int, "a positive whole number of attempts", "timesheet.E067"),
]


@register()
def check_notify_settings(app_configs=None, **kwargs):
    """The notifications' settings, and a lease longer than an attempt's deadline (else two workers could send one)."""
    errors = [
        Error(
            f"{name} must be {expected}; got {conf.get(name)!r}.",
            hint=f"Set {name} in the environment or the settings to {expected}.",
            id=check_id,
        )
        for name, is_valid, expected, check_id in NOTIFY_RULES
        if not is_valid(conf.get(name))
    ]
    lease, timeout = conf.get("NOTIFY_LEASE_SECONDS"), conf.get("NOTIFY_TIMEOUT_SECONDS")
    if _is_positive_number(lease) and _is_positive_number(timeout) and lease <= timeout:
        errors.append(
            Error(
                f"NOTIFY_LEASE_SECONDS ({lease}) must be longer than NOTIFY_TIMEOUT_SECONDS ({timeout}).",
                hint="A delivery holds its lease for as long as sending it may take.",
                id="timesheet.E068",
            )
        )
    port = getattr(settings, "EMAIL_PORT", 25)
    if not (_is_positive_int(port) and port < 65536):
        errors.append(
            Error(
                f"EMAIL_PORT must be a TCP port (1-65535); got {port!r}.",
                hint="Set EMAIL_PORT in the environment to the SMTP server's port (587, 465 or 25).",
                id="timesheet.E069",
            )
        )
    return errors


# The cache backends whose add and incr are atomic across processes and hosts: the token rate limit's
# count is exact only on one of them (timesheet/web/api/throttles.py).
SHARED_CACHES = {
    "django.core.cache.backends.redis.RedisCache",
    "django.core.cache.backends.memcached.PyMemcacheCache",
    "django.core.cache.backends.memcached.PyLibMCCache",
}


def _is_redis_url(value: str) -> bool:
    """A URL redis-py connects to: redis:// or rediss:// with a host, or unix:// with a socket's path."""
    parts = _url_parts(value)
    if parts is None:
        return False
    if parts.scheme in ("redis", "rediss"):
        return bool(parts.hostname)
    return parts.scheme == "unix" and bool(parts.path)


@register()
def check_shared_store(app_configs: object = None, **kwargs: object) -> list[CheckMessage]:
    """
    REDIS_URL, when set, is a URL redis-py understands and the redis extra is
    installed; and a web side started with several uvicorn workers
    (WEB_CONCURRENCY, which uvicorn reads when --workers is not given and the
    web unit passes as --workers) has a cache that its processes share.
    """
    problems: list[CheckMessage] = []
    url = getattr(settings, "REDIS_URL", "") or ""
    if url:
        if not isinstance(url, str) or not _is_redis_url(url):
            problems.append(
                Error(
                    f"REDIS_URL must be a redis://, rediss:// or unix:// URL; got {url!r}.",
                    hint="Set REDIS_URL to the shared Redis, such as redis://127.0.0.1:6379/0, or unset it.",
                    id="timesheet.E080",
                )
            )
        elif importlib.util.find_spec("redis") is None:
            problems.append(
                Error(
                    "REDIS_URL is set but the redis package is not installed.",
                    hint="Install the redis extra: pip install -c constraints.txt '.[postgres,server,redis]'.",
                    id="timesheet.E081",
                )
            )
    workers = os.environ.get("WEB_CONCURRENCY", "")
    backend = settings.CACHES.get("default", {}).get("BACKEND", "")
    if workers.isdigit() and int(workers) > 1 and backend not in SHARED_CACHES:
        problems.append(
            Warning(
                f"WEB_CONCURRENCY is {workers} but the cache is each process's own: each web process "
                f"counts API_TOKEN_RATE on its own, so a token gets up to {workers} times its rate.",
                hint="Set REDIS_URL to a Redis that every web process reaches (docs/operations.md).",
                id="timesheet.W080",
            )
        )
    return problems
