"""
Settings for the fiches-temps project, read from environment variables.

DJANGO_ENV=production turns on the production posture and refuses to start
without a real secret key and allowed hosts. Every variable is listed in the
README. Values for the timesheet app are passed through as given when they
cannot be parsed, so that its system checks can name the bad setting.
"""

import os
import sys
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env(name, default=None):
    """Return the variable, or the content of the file named by NAME_FILE."""
    path = os.environ.get(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE={path!r} cannot be read: {exc}") from exc
    return os.environ.get(name, default)


def env_bool(name, default):
    value = env(name)
    if value is None:
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off", ""}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), got {value!r}.")


def env_list(name, default=()):
    value = env(name)
    if value is None:
        return list(default)
    return [item.strip() for item in value.split(",") if item.strip()]


def env_number(name, default):
    """Return an int or float, or the raw string for the system checks to reject."""
    value = env(name)
    if value is None:
        return default
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


ENVIRONMENT = env("DJANGO_ENV", "development")
if ENVIRONMENT not in {"development", "production"}:
    raise ImproperlyConfigured(f"DJANGO_ENV must be 'development' or 'production', got {ENVIRONMENT!r}.")
PRODUCTION = ENVIRONMENT == "production"

DEBUG = env_bool("DJANGO_DEBUG", not PRODUCTION)
SECRET_KEY = env("DJANGO_SECRET_KEY")
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", [] if PRODUCTION else ["localhost", "127.0.0.1", "[::1]"])

if PRODUCTION:
    if DEBUG:
        raise ImproperlyConfigured("DJANGO_DEBUG must be off when DJANGO_ENV=production.")
    if not SECRET_KEY or len(SECRET_KEY) < 50:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY (or DJANGO_SECRET_KEY_FILE) must hold a random key of at least "
            "50 characters when DJANGO_ENV=production."
        )
    if not ALLOWED_HOSTS:
        raise ImproperlyConfigured("DJANGO_ALLOWED_HOSTS must list the served host names when DJANGO_ENV=production.")
elif not SECRET_KEY:
    SECRET_KEY = "django-insecure-development-only-never-use-in-production"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "servestatic",  # its system checks
    "ninja",  # the API docs' own static files, not a CDN's
    "axes",  # sign-in throttling
    "django_htmx",  # htmx's script among the static files
    "timesheet",
]

MIDDLEWARE = [
    "timesheet.web.metrics.request_metrics",
    # The API's requests signed by a bearer token alone: these hooks called in place, no thread trips (its docstring).
    "timesheet.web.middleware.TokenApiShortcut",
    "django.middleware.security.SecurityMiddleware",
    "servestatic.middleware.ServeStaticMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "timesheet.web.middleware.JsonApiMiddleware",
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    # First: refuses a sign-in while its username and address are locked out.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Sign-in throttling (API, people's page and admin alike): after AXES_FAILURE_LIMIT
# failures for one username from one address, sign-ins are refused (429) for the
# cool-off; staff see and clear lockouts in the admin (Axes, Access attempts).
AXES_FAILURE_LIMIT = env_number("AXES_FAILURE_LIMIT", 10)
AXES_COOLOFF_TIME = float(env("AXES_COOLOFF_MINUTES", "15")) / 60  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "timesheet.web.http.locked_out"
AXES_VERBOSE = False

ROOT_URLCONF = "settings.urls"
WSGI_APPLICATION = "settings.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# The embedded default is a SQLite file under var/; DATABASE_URL picks another.
DATA_DIR = Path(env("DJANGO_DATA_DIR", BASE_DIR / "var"))
DATABASE_URL = env("DATABASE_URL") or f"sqlite:///{DATA_DIR / 'db.sqlite3'}"
# No persistent connections: each request runs its sync code on a thread of its
# own (kept for later requests, timesheet.request_threads), and every thread
# kept would hold an idle connection.
# PostgreSQL gets a connection pool instead, SQLite the backend's own reuse.
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=0, conn_health_checks=True)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    # Django's SQLite with writers taking turns (web side and workers alike)
    # instead of polling for the lock, and connections reused.
    DATABASES["default"]["ENGINE"] = "timesheet.core.sqlite"
    DATABASES["default"]["OPTIONS"] = {
        # WAL lets readers run beside the one writer; IMMEDIATE takes the write
        # lock at BEGIN, so a transaction never fails half-way to upgrade it.
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL",
        "transaction_mode": "IMMEDIATE",
        "timeout": env_number("SQLITE_BUSY_TIMEOUT_SECONDS", 20),
        **DATABASES["default"].get("OPTIONS", {}),
    }
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"]["OPTIONS"] = {
        # Names the process in pg_stat_activity: the ticker or the web side.
        "application_name": env(
            "DATABASE_APPLICATION_NAME", "fiches-ticker" if "run_fiches_ticker" in sys.argv else "fiches-web"
        ),
        # With health checks on, the pool checks a connection before handing
        # it out, so a restarted database costs a reconnection, not an error.
        "pool": {
            "min_size": 1,
            "max_size": env_number("DATABASE_POOL_MAX_SIZE", 20),
            "timeout": env_number("DATABASE_POOL_TIMEOUT_SECONDS", 10),
        },
        **DATABASES["default"].get("OPTIONS", {}),
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The store that the web processes share for token rate limits (and what else
# several processes must count once): Redis when REDIS_URL is set, which a
# deployment of more than one web process needs; else each process's memory.
REDIS_URL = env("REDIS_URL", "")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env("REDIS_KEY_PREFIX", "fiches"),
            # A Redis that does not answer must not hold requests: the throttle lets them through.
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = env("DJANGO_LANGUAGE_CODE", "en")
LANGUAGES = [("en", "English"), ("fr", "Français")]
TIME_ZONE = env("DJANGO_TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env("DJANGO_STATIC_ROOT", DATA_DIR / "static"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "servestatic.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
# Outside production, serve static files straight from the apps: no collectstatic needed.
# ServeStatic (WhiteNoise's async-capable fork): under a sync-only middleware,
# Django would run the rest of the chain in sync code and call async views back.
SERVESTATIC_USE_FINDERS = not PRODUCTION
if not PRODUCTION:
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # ServeStatic warns about a missing one
SERVESTATIC_AUTOREFRESH = DEBUG

CSRF_FAILURE_VIEW = "timesheet.web.views.csrf_failure"
# Every request body is bounded: larger ones get 413 before any of it is read (settings/asgi.py).
MAX_BODY_BYTES = env_number("MAX_BODY_BYTES", 1_048_576)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_BODY_BYTES
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

if PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
    # A local probe asks for health over plain HTTP.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    SECURE_HSTS_SECONDS = env_number("DJANGO_SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")

LOG_FORMAT = env("TIMESHEET_LOG_FORMAT", "text")
if LOG_FORMAT not in {"text", "json"}:
    raise ImproperlyConfigured(f"TIMESHEET_LOG_FORMAT must be 'text' or 'json', got {LOG_FORMAT!r}.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {"()": "timesheet.core.jsonlog.JsonFormatter"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT},
    },
    "loggers": {
        "timesheet": {"handlers": ["console"], "level": env("TIMESHEET_LOG_LEVEL", "INFO"), "propagate": False},
        # Every 500, with its traceback, in every mode.
        "django.request": {"handlers": ["console"], "level": "ERROR", "propagate": False},
    },
}

# The timesheet app. Checked at start by timesheet.checks.
INCREMENT_TIME_SECONDS = env_number("INCREMENT_TIME_SECONDS", 5)
TICKER_BATCH_SIZE = env_number("TICKER_BATCH_SIZE", None)  # None: the database's own (timesheet.conf)
TICKER_SHARDS = env_number("TICKER_SHARDS", 1)
TICKER_MAX_FAILURE_SECONDS = env_number("TICKER_MAX_FAILURE_SECONDS", 300)
# After SIGTERM, how long a tick in flight may take before it is abandoned (a database that does not answer).
TICKER_STOP_GRACE_SECONDS = env_number("TICKER_STOP_GRACE_SECONDS", 1.5)
FICHE_MAX_RUNNING_HOURS = env_number("FICHE_MAX_RUNNING_HOURS", None)
FICHE_MAX_RUNNING_PER_OWNER = env_number("FICHE_MAX_RUNNING_PER_OWNER", 1)
# Reports round at report time only: none, up, down or nearest, to a step, per stretch or per day-and-project group.
REPORT_ROUNDING = env("REPORT_ROUNDING", "none")
REPORT_ROUNDING_STEP_MINUTES = env_number("REPORT_ROUNDING_STEP_MINUTES", 15)
REPORT_ROUNDING_SCOPE = env("REPORT_ROUNDING_SCOPE", "group")
STREAM_POLL_SECONDS = env_number("STREAM_POLL_SECONDS", 1)
STREAM_KEEPALIVE_SECONDS = env_number("STREAM_KEEPALIVE_SECONDS", 15)
STREAM_MAX_SECONDS = env_number("STREAM_MAX_SECONDS", 3600)
STREAM_MAX_PER_USER = env_number("STREAM_MAX_PER_USER", 5)
STREAM_MAX_PER_PROCESS = env_number("STREAM_MAX_PER_PROCESS", 1000)
API_TOKEN_RATE = env("API_TOKEN_RATE", "600/min")
WEBHOOK_POLL_SECONDS = env_number("WEBHOOK_POLL_SECONDS", 1)
WEBHOOK_TIMEOUT_SECONDS = env_number("WEBHOOK_TIMEOUT_SECONDS", 10)
WEBHOOK_LEASE_SECONDS = env_number("WEBHOOK_LEASE_SECONDS", 60)
WEBHOOK_MAX_BACKOFF_SECONDS = env_number("WEBHOOK_MAX_BACKOFF_SECONDS", 3600)
WEBHOOK_DISABLE_AFTER_HOURS = env_number("WEBHOOK_DISABLE_AFTER_HOURS", 24)
# Subscriptions delivered at once by one worker: a slow receiver delays only itself.
WEBHOOK_CONCURRENCY = env_number("WEBHOOK_CONCURRENCY", 4)
# Webhook destinations: https only unless http is allowed; loopback, private, link-local and
# unique-local addresses refused unless inside one of these networks (CIDR, comma-separated).
WEBHOOK_ALLOW_HTTP = env_bool("WEBHOOK_ALLOW_HTTP", False)
WEBHOOK_ALLOWED_NETWORKS = env_list("WEBHOOK_ALLOWED_NETWORKS")
# One adjustment's largest size, and the most time one fiche may hold.
ADJUSTMENT_MAX_HOURS = env_number("ADJUSTMENT_MAX_HOURS", 24 * 31)
FICHE_MAX_TOTAL_HOURS = env_number("FICHE_MAX_TOTAL_HOURS", 24 * 366 * 10)
# Exports: the most rows one may hold, and how many run at once in one web process (429 past it).
EXPORT_MAX_ROWS = env_number("EXPORT_MAX_ROWS", 500_000)
EXPORT_MAX_CONCURRENT = env_number("EXPORT_MAX_CONCURRENT", 2)
REMINDER_RUNNING_HOURS = env_number("REMINDER_RUNNING_HOURS", 4)
# The one currency of rates, amounts and money budgets (ISO 4217).
CURRENCY = env("CURRENCY", "EUR")
# Email, for the notifications (manage.py run_notifications): an SMTP server, or, without EMAIL_HOST,
# the console (each email printed on the worker's output, as under `make run`).
EMAIL_HOST = env("EMAIL_HOST", "")
if EMAIL_HOST:
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_PORT = env_number("EMAIL_PORT", 587)
    EMAIL_HOST_USER = env("EMAIL_HOST_USER", "")
    EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD", "")
    EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
else:
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", "fiches@localhost")
# The site's address, for the emails' absolute links (the unsubscribe link, the people's page).
SITE_URL = env("SITE_URL", "http://127.0.0.1:8000")
# Notification delivery: the wait after an idle pass, notifications fanned out per transaction, an
# attempt's deadline and lease, the retries' first delay, their longest, and the attempts before giving up.
NOTIFY_POLL_SECONDS = env_number("NOTIFY_POLL_SECONDS", 1)
NOTIFY_BATCH_SIZE = env_number("NOTIFY_BATCH_SIZE", 500)
NOTIFY_TIMEOUT_SECONDS = env_number("NOTIFY_TIMEOUT_SECONDS", 10)
NOTIFY_LEASE_SECONDS = env_number("NOTIFY_LEASE_SECONDS", 60)
NOTIFY_RETRY_SECONDS = env_number("NOTIFY_RETRY_SECONDS", 30)
NOTIFY_MAX_BACKOFF_SECONDS = env_number("NOTIFY_MAX_BACKOFF_SECONDS", 3600)
NOTIFY_MAX_ATTEMPTS = env_number("NOTIFY_MAX_ATTEMPTS", 10)
# The port on which the ticker serves its Prometheus metrics (127.0.0.1); unset for none.
METRICS_PORT = env_number("METRICS_PORT", None)
# /metrics on the web side answers loopback clients, or anyone sending "Authorization: Bearer $METRICS_TOKEN".
METRICS_TOKEN = env("METRICS_TOKEN")
