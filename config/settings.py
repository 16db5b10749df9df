"""Settings, read from the environment. Every variable has a safe default for the embedded mode.

The README lists every variable. A bad value raises ImproperlyConfigured naming the variable.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from pythonjsonlogger.core import RESERVED_ATTRS

from config.kernel.rates import parse_rate

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false), got {raw!r}")


def env_number(name: str, default: float, *, minimum: float = 0, cast: type = float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = cast(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a {cast.__name__}, got {raw!r}") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {raw!r}")
    return value


def env_choice(name: str, default: str, choices: set[str]) -> str:
    value = os.environ.get(name, default).strip().lower() or default
    if value not in choices:
        raise ImproperlyConfigured(f"{name} must be one of {sorted(choices)}, got {value!r}")
    return value


DEFAULT_SECRET_KEY = "sagaflow-insecure-development-key"
SECRET_KEY = env_str("SECRET_KEY", DEFAULT_SECRET_KEY)
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = [h.strip() for h in env_str("ALLOWED_HOSTS", "localhost,127.0.0.1").split(",") if h.strip()]
PORT = int(env_number("PORT", 8000, minimum=1, cast=int))
LOG_LEVEL = env_choice("LOG_LEVEL", "info", {"debug", "info", "warning", "error", "critical"}).upper()
LOG_FORMAT = env_choice("LOG_FORMAT", "json", {"json", "text"})

DATABASE_URL = env_str("DATABASE_URL", "")
BROKER_URL = env_str("BROKER_URL", "")


def weak_secret_key(key: str) -> str | None:
    """Why `key` must not sign a deployment's sessions, or None. The rule of Django's own check (security.W009)."""
    if key == DEFAULT_SECRET_KEY:
        return "it is the development key written in this file, which anyone can read"
    if len(key) < 50 or len(set(key)) < 5 or key.startswith("django-insecure-"):
        return "it is too short or too simple (it needs 50 characters or more, of 5 different ones or more)"
    return None


# A deployment (DATABASE_URL set) with DEBUG off refuses a key that anyone could know. The embedded mode
# (SQLite) keeps the development key, so that `manage.py` works there with nothing set; `make run` sets a
# random key anyway, and the tests set one of their own.
if DATABASE_URL and not DEBUG and weak_secret_key(SECRET_KEY):
    raise ImproperlyConfigured(
        f"SECRET_KEY will not do for a deployment: {weak_secret_key(SECRET_KEY)}. Set SECRET_KEY to a long random "
        "value, e.g. python3 -c 'import secrets; print(secrets.token_urlsafe(50))'."
    )

# Behind TLS (a proxy or load balancer that terminates it and sets X-Forwarded-Proto), set SECURE_TLS=true:
# cookies are then sent over HTTPS only, browsers are told to use HTTPS (HSTS), and plain HTTP is redirected,
# except the health and metrics endpoints, which probes and scrapers call inside the network.
SECURE_TLS = env_bool("SECURE_TLS", False)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = SECURE_SSL_REDIRECT = SECURE_TLS
SECURE_REDIRECT_EXEMPT = [r"^health(/|$)", r"^metrics$"]
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if SECURE_TLS else None
SECURE_HSTS_SECONDS = int(env_number("SECURE_HSTS_SECONDS", 31_536_000 if SECURE_TLS else 0, cast=int))
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"

# Bounded waits on PostgreSQL: a server that is down, silent or stuck is noticed, instead of a thread waiting on
# it for ever. 0 turns each off.
DATABASE_CONNECT_TIMEOUT_S = int(env_number("DATABASE_CONNECT_TIMEOUT_S", 5, cast=int))
DATABASE_STATEMENT_TIMEOUT_S = env_number("DATABASE_STATEMENT_TIMEOUT_S", 30.0)
DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_S = env_number("DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_S", 60.0)
DATABASE_KEEPALIVES_IDLE_S = int(env_number("DATABASE_KEEPALIVES_IDLE_S", 10, minimum=1, cast=int))
DATABASE_KEEPALIVES_INTERVAL_S = int(env_number("DATABASE_KEEPALIVES_INTERVAL_S", 5, minimum=1, cast=int))
DATABASE_KEEPALIVES_COUNT = int(env_number("DATABASE_KEEPALIVES_COUNT", 3, minimum=1, cast=int))
# How long the client waits for any answer before it gives the connection up (config/kernel/postgresql/base.py):
# a little longer than the server takes to cancel a statement itself, so that a slow statement gets the server's
# own error. None (no statement timeout) waits for ever.
DATABASE_ANSWER_TIMEOUT_S = DATABASE_STATEMENT_TIMEOUT_S + 5.0 if DATABASE_STATEMENT_TIMEOUT_S else None


def postgresql_options(url_options: dict) -> dict:
    """The connection options of PostgreSQL: the bounded waits above, under those of the URL's query string,
    which win (its `options`, e.g. `-c lock_timeout=100`, comes after ours and overrides the same setting)."""
    dead_after_s = DATABASE_KEEPALIVES_IDLE_S + DATABASE_KEEPALIVES_INTERVAL_S * DATABASE_KEEPALIVES_COUNT
    server = " ".join(
        f"-c {name}={int(seconds * 1000)}"
        for name, seconds in (
            ("statement_timeout", DATABASE_STATEMENT_TIMEOUT_S),
            ("idle_in_transaction_session_timeout", DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_S),
        )
        if seconds
    )
    ours = {
        # Parameters travel apart from the SQL, and psycopg prepares a statement run often on a connection: no
        # quoting of every value into the query text, which cost the worker about 8% of its CPU (5 of 5
        # interleaved bench runs faster, median +6% sagas/s). Behind PgBouncer in transaction mode, turn
        # psycopg's prepared statements off ("prepare_threshold": None).
        "server_side_binding": True,
        "connect_timeout": DATABASE_CONNECT_TIMEOUT_S,
        # A peer that is gone (a host down, a partition) is noticed by the kernel: idle, by keepalives; with
        # data unacknowledged, by the user timeout, which is given the same bound.
        "keepalives": 1,
        "keepalives_idle": DATABASE_KEEPALIVES_IDLE_S,
        "keepalives_interval": DATABASE_KEEPALIVES_INTERVAL_S,
        "keepalives_count": DATABASE_KEEPALIVES_COUNT,
        "tcp_user_timeout": dead_after_s * 1000,
    }
    merged = {**ours, **url_options}
    if server:
        # Behind PgBouncer, add `options` to its ignore_startup_parameters, or set these on the role instead.
        merged["options"] = f"{server} {url_options['options']}" if url_options.get("options") else server
    return merged


if DATABASE_URL:
    try:
        DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=600, conn_health_checks=True)}
    except Exception as error:
        raise ImproperlyConfigured(f"DATABASE_URL is not a valid database URL: {error}") from None
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        DATABASES["default"]["ENGINE"] = "config.kernel.postgresql"
        DATABASES["default"]["OPTIONS"] = postgresql_options(DATABASES["default"].get("OPTIONS", {}))
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": env_str("SQLITE_PATH", str(BASE_DIR / "db.sqlite3")),
            # WAL and IMMEDIATE transactions let the web threads and the in-process dispatcher share one file.
            "OPTIONS": {
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }
DATABASES["default"]["TEST"] = {"NAME": os.environ.get("TEST_DATABASE_NAME") or None}

# "amqp" relays the outbox to RabbitMQ for Celery workers to consume; "inprocess" runs the same handlers
# in a thread of the web process, so the embedded default needs no broker.
MESSAGING_TRANSPORT = "amqp" if BROKER_URL else "inprocess"
MESSAGING_EXCHANGE = env_str("MESSAGING_EXCHANGE", "sagaflow")
MESSAGING_MAX_ATTEMPTS = int(env_number("MESSAGING_MAX_ATTEMPTS", 5, minimum=1, cast=int))
MESSAGING_RETRY_BASE_S = env_number("MESSAGING_RETRY_BASE_S", 1.0, minimum=0.01)
MESSAGING_DELIVERY_LIMIT = int(env_number("MESSAGING_DELIVERY_LIMIT", 5, minimum=1, cast=int))
# Which consumers a worker runs (comma-separated; default all), so that each can be scaled on its own.
MESSAGING_CONSUMERS = [
    c.strip() for c in env_str("MESSAGING_CONSUMERS", "payments,inventory,saga,webhooks").split(",") if c.strip()
]
# Consumer threads per queue in each worker. More than one helps only where the database, not the CPU, limits.
MESSAGING_CONSUMER_THREADS = int(env_number("MESSAGING_CONSUMER_THREADS", 1, minimum=1, cast=int))
MESSAGING_PREFETCH = int(env_number("MESSAGING_PREFETCH", 50, minimum=1, cast=int))
# Deliveries a consumer thread handles in one transaction when more are already waiting; 1 handles each alone.
MESSAGING_CONSUMER_BATCH = int(env_number("MESSAGING_CONSUMER_BATCH", 10, minimum=1, cast=int))
OUTBOX_SWEEP_INTERVAL_S = env_number("OUTBOX_SWEEP_INTERVAL_S", 2.0, minimum=0.05)
# A worker hands the messages its handlers write to the consumers it hosts itself, without the broker, when every
# consumer of the message type runs in it and none is outward (messaging/handoff.py). Off: every message crosses
# RabbitMQ, where queues of the operators' own may be bound to them. A row not handed off within the lease (the
# worker died) is left to the relay.
MESSAGING_LOCAL_HANDOFF = env_bool("MESSAGING_LOCAL_HANDOFF", False)
MESSAGING_HANDOFF_LEASE_S = env_number("MESSAGING_HANDOFF_LEASE_S", 5.0, minimum=0.1)
OUTBOX_BATCH_SIZE = int(env_number("OUTBOX_BATCH_SIZE", 200, minimum=1, cast=int))
# A row the broker refused (a nack: a length limit with reject-publish, an alarm) is held back this long, twice
# as long at each refusal after that, up to the maximum.
OUTBOX_REFUSED_BACKOFF_S = env_number("OUTBOX_REFUSED_BACKOFF_S", 1.0, minimum=0.01)
OUTBOX_REFUSED_BACKOFF_MAX_S = env_number("OUTBOX_REFUSED_BACKOFF_MAX_S", 60.0, minimum=0.01)
# Every broker connection: AMQP heartbeats (a connection that hears nothing for two of them is dead), and a
# bound on every other wait for the broker (connecting, a confirm, a close).
MESSAGING_BROKER_HEARTBEAT_S = env_number("MESSAGING_BROKER_HEARTBEAT_S", 10.0, minimum=1)
MESSAGING_BROKER_TIMEOUT_S = env_number("MESSAGING_BROKER_TIMEOUT_S", 5.0, minimum=0.1)
MESSAGING_INPROCESS_AUTOSTART = env_bool("MESSAGING_INPROCESS_AUTOSTART", True)
INBOX_RETENTION_DAYS = env_number("INBOX_RETENTION_DAYS", 7, minimum=1)
OUTBOX_RETENTION_DAYS = env_number("OUTBOX_RETENTION_DAYS", 7, minimum=1)
# Background replays of dead letters (messaging.replays): letters per transaction, and at most this many a second,
# so that a replay of thousands does not swamp the consumers it sends them to. A job may set its own.
DEAD_LETTER_REPLAY_BATCH_SIZE = int(env_number("DEAD_LETTER_REPLAY_BATCH_SIZE", 200, minimum=1, cast=int))
DEAD_LETTER_REPLAY_RATE_PER_S = env_number("DEAD_LETTER_REPLAY_RATE_PER_S", 100.0, minimum=0.1)
# A running replay job that finishes no batch for this long, beyond the pause its rate asks between batches, is
# taken as left by a dead worker and handed to a worker again (swept every half of it).
REPLAY_JOB_STALL_S = env_number("REPLAY_JOB_STALL_S", 60.0, minimum=1.0)

SAGA_PAYMENT_DEADLINE_S = env_number("SAGA_PAYMENT_DEADLINE_S", 30.0, minimum=0.1)
SAGA_INVENTORY_DEADLINE_S = env_number("SAGA_INVENTORY_DEADLINE_S", 30.0, minimum=0.1)
SAGA_SWEEP_INTERVAL_S = env_number("SAGA_SWEEP_INTERVAL_S", 5.0, minimum=0.1)
# A compensation is sent again when it has not taken effect by its deadline, the wait doubling at each attempt
# up to the cap; past the last attempt the saga is flagged for an operator and retried at the cap.
SAGA_COMPENSATION_DEADLINE_S = env_number("SAGA_COMPENSATION_DEADLINE_S", 30.0, minimum=0.1)
SAGA_COMPENSATION_BACKOFF_MAX_S = env_number("SAGA_COMPENSATION_BACKOFF_MAX_S", 600.0, minimum=0.1)
SAGA_COMPENSATION_MAX_ATTEMPTS = int(env_number("SAGA_COMPENSATION_MAX_ATTEMPTS", 5, minimum=1, cast=int))
if SAGA_COMPENSATION_BACKOFF_MAX_S < SAGA_COMPENSATION_DEADLINE_S:
    raise ImproperlyConfigured(
        f"SAGA_COMPENSATION_BACKOFF_MAX_S ({SAGA_COMPENSATION_BACKOFF_MAX_S:g}) must be at "
        f"least SAGA_COMPENSATION_DEADLINE_S ({SAGA_COMPENSATION_DEADLINE_S:g})"
    )

ORDER_CURRENCY = env_str("ORDER_CURRENCY", "EUR")
# How long a request waits for another in flight with the same Idempotency-Key before it answers 409
# idempotency_key_in_use (PostgreSQL; SQLite has one writer at a time).
ORDERS_IDEMPOTENCY_WAIT_S = env_number("ORDERS_IDEMPOTENCY_WAIT_S", 5.0, minimum=0.1)
# GET /api/orders/{id}/wait (orders/waiting.py): how often the ASGI server asks which awaited orders have ended,
# one query for all the waits of the process. An ended order is answered within about this long.
ORDER_WAIT_POLL_S = env_number("ORDER_WAIT_POLL_S", 0.05, minimum=0.01)
# Webhooks (orders/webhooks.py): how long one POST to an endpoint may wait in each of its phases (connecting,
# sending, each wait for the answer). A timeout is a failed attempt, retried as any other.
WEBHOOK_TIMEOUT_S = env_number("WEBHOOK_TIMEOUT_S", 5.0, minimum=0.1)
# Webhook attempts older than this are pruned (hourly); a row every POST, they would otherwise grow for ever.
WEBHOOK_ATTEMPT_RETENTION_DAYS = env_number("WEBHOOK_ATTEMPT_RETENTION_DAYS", 30, minimum=1)
# Seconds a process keeps the active endpoints it has read, on PostgreSQL, while it hears the database's notice of
# every change to them (orders/webhooks.py): the end of an order then reads none. 0: every end reads them.
WEBHOOK_ENDPOINTS_CACHE_S = env_number("WEBHOOK_ENDPOINTS_CACHE_S", 60.0)

# Operating: what /health calls unhealthy, and how often each delivery loop says it is alive.
WORKER_HEARTBEAT_INTERVAL_S = env_number("WORKER_HEARTBEAT_INTERVAL_S", 5.0, minimum=0.1)
HEALTH_WORKER_MAX_SILENCE_S = env_number("HEALTH_WORKER_MAX_SILENCE_S", 30.0, minimum=1)
HEALTH_OUTBOX_LAG_MAX_S = env_number("HEALTH_OUTBOX_LAG_MAX_S", 60.0, minimum=1)
HEALTH_DEAD_LETTERS_WINDOW_S = env_number("HEALTH_DEAD_LETTERS_WINDOW_S", 900.0, minimum=1)
HEALTH_DEAD_LETTERS_MAX_NEW = int(env_number("HEALTH_DEAD_LETTERS_MAX_NEW", 0, minimum=0, cast=int))
HEALTH_STUCK_SAGAS_MAX = int(env_number("HEALTH_STUCK_SAGAS_MAX", 0, minimum=0, cast=int))
# A Celery worker serves its own metrics (handler latency, retries) on this port; 0 leaves it off.
METRICS_WORKER_PORT = int(env_number("METRICS_WORKER_PORT", 0, minimum=0, cast=int))
METRICS_WORKER_ADDR = env_str("METRICS_WORKER_ADDR", "0.0.0.0")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "health_check",
    "config.access",
    "messaging",
    "saga",
    "orders",
    "payments",
    "inventory",
    "config",
]

MIDDLEWARE = [
    "messaging.correlation.CorrelationIdMiddleware",
    "config.kernel.middleware.RequestSizeLimitMiddleware",
    "config.kernel.middleware.NulInUrlMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "config.kernel.middleware.StaticFilesMiddleware",
    # Django's session, user and messages, for every path but the API's (config/kernel/middleware.py).
    "config.kernel.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "config.kernel.middleware.AuthenticationMiddleware",
    "config.kernel.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
APPEND_SLASH = False

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
            ]
        },
    }
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Without collectstatic (the embedded mode, the tests) WhiteNoise serves straight from the apps' folders,
# and its warning that STATIC_ROOT is missing says nothing useful.
WHITENOISE_USE_FINDERS = True
warnings.filterwarnings("ignore", message="No directory at")
WHITENOISE_AUTOREFRESH = DEBUG

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

MAX_REQUEST_BODY_BYTES = 256 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BODY_BYTES
MAX_ORDER_LINES = 100


def env_rate(name: str, default: str) -> str | None:
    """A DRF throttle rate such as "5/s", "100/min" or "1000/h"; "off" gives None (no limit)."""
    raw = os.environ.get(name, "").strip() or default
    if raw.lower() == "off":
        return None
    try:
        parse_rate(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a rate like 5/s, 100/min, 1000/h or off, got {raw!r}") from None
    return raw


# Orders placed per token. A storefront backend places everyone's orders through one operator token.
API_CUSTOMER_ORDER_RATE = env_rate("API_CUSTOMER_ORDER_RATE", "5/s")
API_OPERATOR_ORDER_RATE = env_rate("API_OPERATOR_ORDER_RATE", "1000/s")
# Seconds a web process keeps a token it has looked up, on PostgreSQL, while it hears the database's notice of
# every change to tokens: a revocation anywhere takes effect at its notice (config/access/recent_tokens.py).
# 0: every request looks its token up. SQLite sends no notices: there every request looks it up.
API_TOKEN_CACHE_S = env_number("API_TOKEN_CACHE_S", 60.0)
# /metrics is public unless this is set; then it needs an operator token (Prometheus: `authorization:`).
METRICS_TOKEN_REQUIRED = env_bool("METRICS_TOKEN_REQUIRED", False)
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
}

REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["config.kernel.parsers.JSONParser"],
    # Every API view needs a bearer token unless it says otherwise (the schema and docs do).
    "DEFAULT_AUTHENTICATION_CLASSES": ["config.access.auth.BearerTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["config.access.auth.IsApiClient"],
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_SCHEMA_CLASS": "config.schema.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "config.kernel.api.Pagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "config.kernel.api.exception_handler",
    "COERCE_DECIMAL_TO_STRING": True,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "sagaflow",
    "DESCRIPTION": "Order processing as an orchestrated saga: payment, then stock, compensated on failure.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # The schema and Swagger UI are public, even to a request that carries a stale token.
    "SERVE_AUTHENTICATION": [],
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
}

CELERY_BROKER_URL = BROKER_URL or "memory://"
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_HEARTBEAT = MESSAGING_BROKER_HEARTBEAT_S
CELERY_BROKER_CONNECTION_TIMEOUT = MESSAGING_BROKER_TIMEOUT_S
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Threads, not prefork: the worker's consumers and relay are threads of one process.
CELERY_WORKER_POOL = "threads"
CELERY_WORKER_CONCURRENCY = int(env_number("CELERY_WORKER_CONCURRENCY", 2, minimum=1, cast=int))
CELERY_BEAT_SCHEDULE_FILENAME = env_str("CELERY_BEAT_SCHEDULE_FILENAME", "/tmp/sagaflow-celerybeat-schedule")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "context": {"()": "messaging.correlation.LogContextFilter"},
        # trace_id and span_id beside the correlation fields, where tracing is on (OTEL_TRACES_EXPORTER).
        "trace": {"()": "messaging.tracing.TraceContextLogFilter"},
    },
    "formatters": {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(levelname)s %(name)s %(message)s",
            # An ISO 8601 time in UTC ("2025-01-31T12:00:00.123456+00:00"), which log stores parse as it is.
            "timestamp": True,
            "rename_fields": {"levelname": "level", "name": "logger"},
            # Not uvicorn's copy of each message with terminal colours in it.
            "reserved_attrs": [*RESERVED_ATTRS, "color_message"],
        },
        "text": {
            "()": "logging.Formatter",
            "fmt": "%(asctime)s %(levelname)-7s %(name)s [%(correlation_id)s] %(message)s",
            "defaults": {"correlation_id": "-"},
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["context", "trace"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "amqp": {"level": "WARNING"},
        "kombu": {"level": "WARNING"},
        # It logs each failing check with a traceback; /health logs one line naming them all (config/views.py).
        "health_check": {"level": "ERROR"},
        # The ASGI server's own lines (start, stop, errors, access) in the application's format, as
        # gunicorn.conf.py does for gunicorn's: config/asgi.py sets Django up after uvicorn set up its logging.
        "uvicorn": {"level": "INFO", "handlers": ["console"], "propagate": False},
        "uvicorn.access": {"level": "INFO", "handlers": ["console"], "propagate": False},
    },
}
