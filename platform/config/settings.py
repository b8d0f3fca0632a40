"""Accrete settings. Every value comes from the environment; the defaults are the embedded run
(`make demo`: SQLite, kombu's filesystem broker, artifacts under var/), which needs no service."""

import re
from datetime import timedelta
from pathlib import Path

from csp.constants import NONE, SELF, UNSAFE_INLINE
from django.core.exceptions import ImproperlyConfigured

from config.env import database_from_url, env_bool, env_float, env_int, env_list, env_str
from workers.engine.contract.scaling import Scaling, ScalingError

BASE_DIR = Path(__file__).resolve().parents[2]
VAR_DIR = Path(env_str("ACCRETE_VAR", str(BASE_DIR / "var"))).resolve()

DEBUG = env_bool("DJANGO_DEBUG", True)
SECRET_KEY = env_str("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is off.")
    SECRET_KEY = "accrete-embedded-development-key-not-for-production-use-0123456789"
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "axes",
    # The domain, lowest first (the layers import-linter checks, see pyproject.toml).
    "audit",
    "teams",
    "skills",
    "evaluation",
    "registry",
    "training",
    "tokens",
    "webhooks",
    "ninja",
    "api",
    "frontend",
    "demo",
    "ops",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "audit.actors.AuditActorMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

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

DATABASE_URL = env_str("DATABASE_URL", "")
if DATABASE_URL:
    DATABASES = {"default": database_from_url(DATABASE_URL)}
else:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "accrete.sqlite3",
            "OPTIONS": {
                # WAL lets the web process read while a worker writes; IMMEDIATE takes the write lock
                # at BEGIN so two writers queue instead of failing with "database is locked".
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 30,
            },
        }
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
# django-axes first: it refuses a locked-out username before the password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# Inside the image, not the data volume: collected at build time, served by WhiteNoise.
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

# Uploads: bodies above this go to a temp file, and the request is refused past the upload limit
# before the body is read (frontend enforces ACCRETE_UPLOAD_MAX_BYTES on Content-Length).
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024

SECURE_COOKIES = env_bool("DJANGO_SECURE_COOKIES", not DEBUG)
SESSION_COOKIE_SECURE = SECURE_COOKIES
CSRF_COOKIE_SECURE = SECURE_COOKIES
SESSION_COOKIE_HTTPONLY = True
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", False)
SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_SECURE_HSTS_PRELOAD", False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("DJANGO_BEHIND_PROXY", False) else None
X_FRAME_OPTIONS = "DENY"

# Login throttling (django-axes): after ACCRETE_LOGIN_FAILURE_LIMIT wrong passwords for one username from
# one address, that pair is refused — the right password included — for ACCRETE_LOGIN_COOLOFF_MINUTES,
# and the login page says so. Keyed on the pair, not the username alone, so a stranger cannot lock a
# colleague out from elsewhere; a success resets the count. Attempts are rows in the database (admin:
# "Access attempts"); `manage.py axes_reset` lifts every lock.
AXES_ENABLED = env_bool("ACCRETE_LOGIN_THROTTLING", True)
AXES_FAILURE_LIMIT = env_int("ACCRETE_LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("ACCRETE_LOGIN_COOLOFF_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "frontend/locked_out.html"
AXES_DISABLE_ACCESS_LOG = True  # successful logins are not audit events; failures are kept as attempts
AXES_VERBOSE = False  # no banner on every manage.py command; lockouts are still logged


def _forwarded_client_address(request) -> str | None:
    # Behind one reverse proxy every request comes from the proxy's address: use the client address the
    # proxy appended (the right-most X-Forwarded-For entry; the ones before it the client can forge).
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    return forwarded[-1] if forwarded else request.META.get("REMOTE_ADDR")


if SECURE_PROXY_SSL_HEADER:
    AXES_CLIENT_IP_CALLABLE = _forwarded_client_address

# Content-Security-Policy (django-csp): scripts, styles, fonts, images and requests from this origin only —
# no inline script, no eval, no CDN, no plugins, no framing. The one allowance is style="" attributes
# (style-src-attr): the heat-map cells and progress bars carry their computed colour and width there.
# An attribute cannot hold a selector, load a script or a style sheet, and any url() in it is still
# bound by img-src 'self'; <style> elements and other origins' style sheets stay refused (style-src-elem
# falls back to style-src 'self').
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "style-src-attr": [UNSAFE_INLINE],
        "img-src": [SELF],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    },
}

# --- Accrete -----------------------------------------------------------------------------------
# The artifact store: a local folder (the embedded default; one host, or a filesystem every host mounts), or
# `s3://bucket/prefix` for an S3-compatible bucket several hosts share (endpoint and credentials from
# AWS_ENDPOINT_URL / ACCRETE_S3_ENDPOINT_URL and the standard AWS variables). A URL stays a string: a Path
# would fold its "//".
ACCRETE_ARTIFACTS = env_str("ACCRETE_ARTIFACTS", str(VAR_DIR / "artifacts"))
if ACCRETE_ARTIFACTS.startswith("s3://"):
    if not ACCRETE_ARTIFACTS.removeprefix("s3://").split("/")[0]:
        raise ImproperlyConfigured(f"ACCRETE_ARTIFACTS={ACCRETE_ARTIFACTS!r} names no bucket: write s3://bucket/prefix.")
    ACCRETE_ARTIFACTS = ACCRETE_ARTIFACTS.rstrip("/")
elif "://" in ACCRETE_ARTIFACTS:
    raise ImproperlyConfigured(f"ACCRETE_ARTIFACTS={ACCRETE_ARTIFACTS!r}: use a local folder or s3://bucket/prefix.")
else:
    ACCRETE_ARTIFACTS = Path(ACCRETE_ARTIFACTS)
ACCRETE_UPLOAD_MAX_BYTES = env_int("ACCRETE_UPLOAD_MAX_BYTES", 50 * 1024 * 1024, minimum=1)
ACCRETE_UPLOAD_MAX_ROWS = env_int("ACCRETE_UPLOAD_MAX_ROWS", 200_000, minimum=10)
ACCRETE_UPLOAD_MIN_ROWS = env_int("ACCRETE_UPLOAD_MIN_ROWS", 10, minimum=1)
# a validated upload nobody saved or cancelled is deleted this long after it was validated (beat, hourly)
ACCRETE_UPLOAD_TTL_S = env_int("ACCRETE_UPLOAD_TTL_S", 24 * 3600, minimum=60)
ACCRETE_EVAL_FRACTION = env_float("ACCRETE_EVAL_FRACTION", 0.2, minimum=0.01)
if ACCRETE_EVAL_FRACTION >= 1:
    raise ImproperlyConfigured(f"ACCRETE_EVAL_FRACTION={ACCRETE_EVAL_FRACTION} must be below 1 (a share of the rows).")
ACCRETE_EVAL_MIN_CASES = env_int("ACCRETE_EVAL_MIN_CASES", 5, minimum=1)
ACCRETE_EVAL_MAX_CASES = env_int("ACCRETE_EVAL_MAX_CASES", 200, minimum=ACCRETE_EVAL_MIN_CASES)
# A job whose heartbeat is older than this is presumed dead (its worker crashed) and is reaped.
ACCRETE_HEARTBEAT_TIMEOUT_S = env_int("ACCRETE_HEARTBEAT_TIMEOUT_S", 300, minimum=5)
ACCRETE_JOB_MAX_ATTEMPTS = env_int("ACCRETE_JOB_MAX_ATTEMPTS", 2, minimum=1)
ACCRETE_PROGRESS_MIN_INTERVAL_S = env_float("ACCRETE_PROGRESS_MIN_INTERVAL_S", 2.0, minimum=0.0)
# How a train worker runs one job (README "Scaling a training job"): ACCRETE_TRAIN_PROCESSES ranks (one per GPU;
# 1 = in the worker's own process), data-parallel as ACCRETE_TRAIN_DISTRIBUTED (ddp, deepspeed-zero2,
# deepspeed-zero3), SDFT's rollouts through TRL's vLLM when ACCRETE_TRAIN_VLLM=colocate. A worker's setting:
# the job's global batch, and so its result, does not depend on it.
try:
    ACCRETE_TRAIN_SCALING = Scaling(
        processes=env_int("ACCRETE_TRAIN_PROCESSES", 1),
        strategy=env_str("ACCRETE_TRAIN_DISTRIBUTED", "ddp").strip().lower(),
        vllm=env_str("ACCRETE_TRAIN_VLLM", "off").strip().lower(),
        vllm_gpu_memory_utilization=env_float("ACCRETE_TRAIN_VLLM_GPU_MEMORY", 0.3),
        vllm_sleep=env_bool("ACCRETE_TRAIN_VLLM_SLEEP", False),
    )
except ScalingError as exc:
    raise ImproperlyConfigured(str(exc)) from None
# The reaper (beat, every minute) also reclaims what a lost broker message or a killed eval worker strands:
# a gate still evaluating CELERY_EVAL_TIME_LIMIT_S + ACCRETE_GATE_GRACE_S after it (re)started (or a
# candidate whose gate never started that long after it was created), and a job queued longer than
# ACCRETE_QUEUED_TIMEOUT_S while no job runs (an idle worker would have taken it). Each is re-enqueued at
# most ACCRETE_REQUEUE_MAX_ATTEMPTS times, then failed with the reason.
ACCRETE_GATE_GRACE_S = env_int("ACCRETE_GATE_GRACE_S", 600, minimum=0)
ACCRETE_QUEUED_TIMEOUT_S = env_int("ACCRETE_QUEUED_TIMEOUT_S", 1800, minimum=60)
ACCRETE_REQUEUE_MAX_ATTEMPTS = env_int("ACCRETE_REQUEUE_MAX_ATTEMPTS", 2, minimum=0)

# --- Celery (read by config.celery with namespace CELERY) ----------------------------------------
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
BROKER_DIR = VAR_DIR / "broker"
if CELERY_BROKER_URL.startswith("filesystem://"):
    for sub in ("queue", "processed", "control"):
        (BROKER_DIR / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        # kombu's default is a relative "control" folder in whatever directory a process starts in.
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
    }
else:
    # Redis: a long visibility timeout so an acks_late training task is not redelivered while it
    # still runs; crashed workers are handled by the heartbeat reaper, not by redelivery.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT_S", 12 * 3600)}
# Results are kept only for the playground (a person waits for an answer); everything else is
# written to the database by the task itself.
CELERY_RESULT_BACKEND = env_str(
    "CELERY_RESULT_BACKEND",
    CELERY_BROKER_URL if CELERY_BROKER_URL.startswith("redis://") else f"file://{VAR_DIR / 'results'}",
)
if CELERY_RESULT_BACKEND.startswith("file://"):
    (VAR_DIR / "results").mkdir(parents=True, exist_ok=True)
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_EXPIRES = 3600
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TRAIN_TIME_LIMIT_S = env_int("CELERY_TRAIN_TIME_LIMIT_S", 12 * 3600, minimum=60)
CELERY_EVAL_TIME_LIMIT_S = env_int("CELERY_EVAL_TIME_LIMIT_S", 2 * 3600, minimum=60)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("ACCRETE_LOG_LEVEL", "INFO")},
    # django-axes logs every successful login at INFO; its failures and lockouts are WARNINGs.
    "loggers": {"axes": {"level": "WARNING"}},
}
# Retention probes: largest drop (0..1) the gate accepts. 0 = any forgotten probe blocks.
ACCRETE_PROBE_TOLERANCE = env_float("ACCRETE_PROBE_TOLERANCE", 0.0, minimum=0.0)
# Lineage budget: each candidate is gated against its parent only, so many small drops could add up.
# Also compared along the production lineage, each with a cumulative tolerance (0..1): an earlier skill
# against the best score it had since it entered production, the retention probes against the base model.
ACCRETE_LINEAGE_SKILL_TOLERANCE = env_float("ACCRETE_LINEAGE_SKILL_TOLERANCE", 0.2, minimum=0.0)
ACCRETE_LINEAGE_PROBE_TOLERANCE = env_float("ACCRETE_LINEAGE_PROBE_TOLERANCE", 0.3, minimum=0.0)

# --- The machine interface: /api/v1, tokens, webhooks --------------------------------------------
# Per-token (per-user for browser sessions) request rate of /api/v1, e.g. "600/min"; "" turns it off.
ACCRETE_API_RATE = env_str("ACCRETE_API_RATE", "600/min").strip()
if ACCRETE_API_RATE and not re.fullmatch(r"[1-9][0-9]*/(s|sec|m|min|h|hour|d|day)", ACCRETE_API_RATE):
    raise ImproperlyConfigured(f"ACCRETE_API_RATE={ACCRETE_API_RATE!r} is not a rate: write calls per period, e.g. "
                               "600/min, 20/s, 10000/day — or an empty value for no limit.")
ACCRETE_API_PAGE_MAX = env_int("ACCRETE_API_PAGE_MAX", 200, minimum=1)
# Webhook deliveries: the first retry after ACCRETE_WEBHOOK_RETRY_BASE_S, doubling (at most an hour apart),
# given up after ACCRETE_WEBHOOK_MAX_ATTEMPTS attempts; each attempt waits ACCRETE_WEBHOOK_TIMEOUT_S at most.
ACCRETE_WEBHOOK_RETRY_BASE_S = env_float("ACCRETE_WEBHOOK_RETRY_BASE_S", 10.0, minimum=0.0)
ACCRETE_WEBHOOK_MAX_ATTEMPTS = env_int("ACCRETE_WEBHOOK_MAX_ATTEMPTS", 8, minimum=1)
ACCRETE_WEBHOOK_TIMEOUT_S = env_float("ACCRETE_WEBHOOK_TIMEOUT_S", 10.0, minimum=0.1)
# The rate limit's counters: per process by default; set ACCRETE_CACHE_URL=redis://… so that every web
# process counts together (docker-compose does).
ACCRETE_CACHE_URL = env_str("ACCRETE_CACHE_URL", "")
CACHES = {"default": ({"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": ACCRETE_CACHE_URL}
                      if ACCRETE_CACHE_URL else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"})}
NINJA_PAGINATION_MAX_LIMIT = ACCRETE_API_PAGE_MAX

# --- Serving the shared model, exports, the artifact store's cache and retention (#15) -------------
# Each worker's (and the inference service's) local copy of versions fetched from a remote artifact store,
# keyed by checksum.
ACCRETE_ARTIFACT_CACHE = Path(env_str("ACCRETE_ARTIFACT_CACHE", str(VAR_DIR / "cache" / "artifacts"))).resolve()
# Merged weights of blocked, rejected, stale and failed candidates are deleted this many days after the
# candidate was created (adapters kept); 0 turns the policy off.
ACCRETE_RETENTION_DAYS = env_int("ACCRETE_RETENTION_DAYS", 14, minimum=0)
# The inference service (`make serve-model`): where the platform reaches it ("" = not running: the
# playground generates on an eval worker), and the key the platform itself calls it with.
ACCRETE_INFERENCE_URL = env_str("ACCRETE_INFERENCE_URL", "")
ACCRETE_INFERENCE_KEY = env_str("ACCRETE_INFERENCE_KEY", "")
if ACCRETE_INFERENCE_URL and len(ACCRETE_INFERENCE_KEY) < 32:
    raise ImproperlyConfigured("ACCRETE_INFERENCE_URL is set, so ACCRETE_INFERENCE_KEY must be too: a random secret of "
                               "at least 32 characters (the platform's key for the inference service, which may use "
                               "any version), e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`.")
ACCRETE_SERVE_MAX_BATCH = env_int("ACCRETE_SERVE_MAX_BATCH", 8, minimum=1)
ACCRETE_SERVE_BATCH_WAIT_MS = env_int("ACCRETE_SERVE_BATCH_WAIT_MS", 20, minimum=0)
ACCRETE_SERVE_POLL_S = env_float("ACCRETE_SERVE_POLL_S", 2.0, minimum=0.1)
ACCRETE_SERVE_MAX_NEW_TOKENS = env_int("ACCRETE_SERVE_MAX_NEW_TOKENS", 512, minimum=1)
# Webhook receivers inside the platform's own network (loopback, private, link-local addresses) are refused
# unless this is on: on by default for the embedded run (DJANGO_DEBUG), off in production.
ACCRETE_WEBHOOK_ALLOW_PRIVATE = env_bool("ACCRETE_WEBHOOK_ALLOW_PRIVATE", DEBUG)
# The GPU serving option (vLLM, docker-compose profile gpu) loads a folder, not the artifact store: when this
# is set (on the web process, which enqueues, and on the eval workers, which write), each new production
# version is exported (model files, no adapter/) to <dir>/v<N> and <dir>/production is switched to it.
# "" = off.
ACCRETE_PRODUCTION_EXPORT_DIR = env_str("ACCRETE_PRODUCTION_EXPORT_DIR", "")
# After each switch the eval worker POSTs {"version", "path", "model"} here (Bearer ACCRETE_INFERENCE_KEY when
# set), retried with backoff: whatever reloads the vLLM deployment. "" = nobody is told.
ACCRETE_PRODUCTION_RELOAD_URL = env_str("ACCRETE_PRODUCTION_RELOAD_URL", "").strip()
if ACCRETE_PRODUCTION_RELOAD_URL and not re.match(r"https?://[^/\s]+", ACCRETE_PRODUCTION_RELOAD_URL):
    raise ImproperlyConfigured(f"ACCRETE_PRODUCTION_RELOAD_URL={ACCRETE_PRODUCTION_RELOAD_URL!r} is not an http(s) "
                               "URL: write e.g. http://vllm-reloader:9000/reload, or an empty value for none.")
