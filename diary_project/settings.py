"""Audio Diary settings: one module, every value read from the environment.

The embedded default (no variables set) runs on one machine with SQLite, local file
storage, a filesystem Celery broker, local Whisper and the rules formatter. A production
profile is a set of environment values (see README and deploy/), never a second file.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw not in (None, "") else default


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw not in (None, "") else default


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


def database_from_url(url: str) -> dict:
    """Parse DATABASE_URL (postgres://user:pass@host:port/name?sslmode=…) for psycopg 3."""
    parsed = urlparse(url)
    if parsed.scheme in {"sqlite", "sqlite3"}:
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": unquote(parsed.path[1:]) or ":memory:"}
    if parsed.scheme not in {"postgres", "postgresql", "pgsql"}:
        raise ValueError(f"DATABASE_URL scheme {parsed.scheme!r} is not supported (use postgres:// or sqlite:///)")
    options = {key: values[-1] for key, values in parse_qs(parsed.query).items()}
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parsed.path[1:]),
        "USER": unquote(parsed.username or ""),
        "PASSWORD": unquote(parsed.password or ""),
        "HOST": parsed.hostname or "",
        "PORT": str(parsed.port or ""),
        "CONN_MAX_AGE": env_int("DATABASE_CONN_MAX_AGE", 60),
        "CONN_HEALTH_CHECKS": True,
        "OPTIONS": options,
    }


# --- Core -------------------------------------------------------------------------------

# Where the embedded default keeps its database, media, broker folder and model cache.
DATA_DIR = Path(env_str("DIARY_DATA_DIR", str(BASE_DIR / "var"))).resolve()

# "production" makes every security default strict and requires SECRET_KEY; the embedded
# default ("development") runs on one machine over plain HTTP.
DIARY_ENV = env_str("DIARY_ENV", "development")
PRODUCTION = DIARY_ENV == "production"
DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY", "")
if not SECRET_KEY:
    if PRODUCTION:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured("SECRET_KEY must be set in the environment when DIARY_ENV=production")
    SECRET_KEY = "insecure-embedded-default-key-change-me-" + "x" * 24
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
SITE_URL = env_str("SITE_URL", "http://127.0.0.1:8000")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "diaries",
    "transcription",
    "axes",
]

MIDDLEWARE = [
    "diary_project.middleware.HealthCheckMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes requires: it turns a locked-out login into a 429 page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "diary_project.urls"
WSGI_APPLICATION = "diary_project.wsgi.application"

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
    # The embedded default keeps its SQLite file here; create the folder on first use.
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": env_str("SQLITE_PATH", str(DATA_DIR / "diary.sqlite3")),
            # Web server and worker share the file: wait for locks instead of failing.
            "OPTIONS": {"timeout": 30, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"},
            # A file, not memory: the Celery workers that tests start must see the same database.
            "TEST": {"NAME": str(DATA_DIR / "test-diary.sqlite3")},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(DATA_DIR / "static")))

# --- Storage ----------------------------------------------------------------------------

# "local" keeps audio under MEDIA_ROOT; "s3" uses django-storages' S3Boto3Storage.
STORAGE_BACKEND = env_str("STORAGE_BACKEND", "local")
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(DATA_DIR / "media")))
# Audio is never served from a public URL; MEDIA_URL is unused by design.
MEDIA_URL = "/media-not-served/"
AWS_STORAGE_BUCKET_NAME = env_str("AWS_STORAGE_BUCKET_NAME", "")
AWS_S3_REGION_NAME = env_str("AWS_REGION", env_str("AWS_DEFAULT_REGION", "us-east-1"))
AWS_ENDPOINT_URL = env_str("AWS_ENDPOINT_URL", "") or None
AWS_S3_ENDPOINT_URL = AWS_ENDPOINT_URL
AWS_S3_FILE_OVERWRITE = False  # keys are unique; never overwrite an upload
AWS_DEFAULT_ACL = "private"
AWS_QUERYSTRING_AUTH = True
AWS_QUERYSTRING_EXPIRE = env_int("AWS_QUERYSTRING_EXPIRE", 300)
AWS_S3_OBJECT_PARAMETERS = {"ServerSideEncryption": env_str("AWS_S3_SSE", "aws:kms")}
AWS_S3_KMS_KEY_ID = env_str("AWS_S3_KMS_KEY_ID", "")
if AWS_S3_KMS_KEY_ID:
    AWS_S3_OBJECT_PARAMETERS["SSEKMSKeyId"] = AWS_S3_KMS_KEY_ID

# Encryption at rest for audio on local storage (S3 uses server-side encryption instead).
# A 32-byte key, base64: python -c "import base64,os;print(base64.urlsafe_b64encode(os.urandom(32)).decode())"
AUDIO_ENCRYPTION_KEY = env_str("AUDIO_ENCRYPTION_KEY", "")
AUDIO_ENCRYPTION = env_bool("AUDIO_ENCRYPTION", PRODUCTION or bool(AUDIO_ENCRYPTION_KEY))
if STORAGE_BACKEND == "s3":
    _default_storage = {"BACKEND": "storages.backends.s3.S3Storage"}
elif AUDIO_ENCRYPTION:
    if not AUDIO_ENCRYPTION_KEY:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured("AUDIO_ENCRYPTION is on for local storage but AUDIO_ENCRYPTION_KEY is not set")
    _default_storage = {
        "BACKEND": "transcription.storage.EncryptedFileSystemStorage",
        "OPTIONS": {"location": str(MEDIA_ROOT), "base_url": MEDIA_URL},
    }
else:
    _default_storage = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(MEDIA_ROOT), "base_url": MEDIA_URL},
    }
STORAGES = {
    "default": _default_storage,
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# --- Uploads ----------------------------------------------------------------------------

UPLOAD_MAX_BYTES = env_int("UPLOAD_MAX_BYTES", 500 * 1024 * 1024)
# Anything above this is streamed to a temporary file instead of being held in memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = env_int("FILE_UPLOAD_MAX_MEMORY_SIZE", 2 * 1024 * 1024)
FILE_UPLOAD_TEMP_DIR = env_str("FILE_UPLOAD_TEMP_DIR", "") or None
FILE_UPLOAD_PERMISSIONS = 0o600
FILE_UPLOAD_HANDLERS = ["transcription.uploads.LimitedTemporaryFileUploadHandler"]
RECORDING_MAX_SECONDS = env_int("RECORDING_MAX_SECONDS", 4 * 3600)
RECORDED_AT_MAX_FUTURE_SECONDS = env_int("RECORDED_AT_MAX_FUTURE_SECONDS", 24 * 3600)

# --- Cache (rate limits) ------------------------------------------------------------

# Rate limits are counted in the cache: set CACHE_URL=redis://host:6379/1 (or "database")
# when several web processes must share the counts.
CACHE_URL = env_str("CACHE_URL", "locmem://")
if CACHE_URL.startswith(("redis://", "rediss://")):
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}}
elif CACHE_URL == "database":
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "diary_cache"}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- REST API ---------------------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "diaries.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": env_int("API_PAGE_SIZE", 20),
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "diaries.apis.api_exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_THROTTLE_CLASSES": ["diaries.throttling.ApiKeyRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "user": env_str("API_RATE_LIMIT", "600/min"),
        "upload": env_str("UPLOAD_RATE_LIMIT", "60/min"),
    },
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Audio Diary API",
    "DESCRIPTION": "Upload spoken diary recordings and read the structured entries made from them.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI assets are served from the sidecar package: the docs work offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}
API_KEY_PREFIX = "ad"

# --- Celery (CELERY_ namespace, read by diary_project/celery.py) ------------------------

# Embedded default: kombu's filesystem transport, no server. Production: sqs://.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
CELERY_BROKER_FOLDER = Path(env_str("CELERY_BROKER_FOLDER", str(DATA_DIR / "broker")))
CELERY_TASK_DEFAULT_QUEUE = env_str("CELERY_QUEUE", "diary-transcription")
SQS_QUEUE_URL = env_str("SQS_QUEUE_URL", "")
SQS_VISIBILITY_TIMEOUT = env_int("SQS_VISIBILITY_TIMEOUT", 7200)
if CELERY_BROKER_URL.startswith("filesystem"):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(CELERY_BROKER_FOLDER / "queue"),
        "data_folder_out": str(CELERY_BROKER_FOLDER / "queue"),
        "processed_folder": str(CELERY_BROKER_FOLDER / "processed"),
        "control_folder": str(CELERY_BROKER_FOLDER / "control"),
        "store_processed": False,
        # Idle, a new job waits up to this long in the folder (a listdir 10x a second is cheap). Between a
        # job's five steps the worker polls every CELERY_BUSY_POLLING_INTERVAL instead, while a message is
        # in flight and CELERY_BUSY_POLLING_SECONDS after (diary_project/broker.py; make bench: a fixed
        # interval made the hops most of the fixed overhead, 2.4 s per job at 0.5 s, 0.5 s at 0.1 s).
        "polling_interval": env_float("CELERY_POLLING_INTERVAL", 0.1),
        "busy_polling_interval": env_float("CELERY_BUSY_POLLING_INTERVAL", 0.01),
        "busy_seconds": env_float("CELERY_BUSY_POLLING_SECONDS", 2.0),
    }
    CELERY_BROKER_TRANSPORT = "diary_project.broker:FilesystemTransport"
elif CELERY_BROKER_URL.startswith("sqs"):
    if CELERY_BROKER_URL == "sqs://" and AWS_ENDPOINT_URL:
        # kombu takes the SQS endpoint from the broker URL's host (a local endpoint such as moto).
        _endpoint = urlparse(AWS_ENDPOINT_URL)
        CELERY_BROKER_URL = f"sqs://@{_endpoint.netloc}"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "region": AWS_S3_REGION_NAME,
        "visibility_timeout": SQS_VISIBILITY_TIMEOUT,
        "wait_time_seconds": 20,
        "polling_interval": 1,
        "predefined_queues": ({CELERY_TASK_DEFAULT_QUEUE: {"url": SQS_QUEUE_URL}} if SQS_QUEUE_URL else {}),
    }
    if AWS_ENDPOINT_URL:
        CELERY_BROKER_TRANSPORT_OPTIONS["is_secure"] = AWS_ENDPOINT_URL.startswith("https")
    # Workers need no sqs:CreateQueue, and SQS has no fanout for remote control.
    CELERY_WORKER_ENABLE_REMOTE_CONTROL = False
    # kombu's SQS transport, kept polling after a cut-off response (diary_project/broker_sqs.py).
    CELERY_BROKER_TRANSPORT = "diary_project.broker_sqs:SQSTransport"
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": SQS_VISIBILITY_TIMEOUT}
# The database is the source of truth for job state; no result backend is needed.
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_WORKER_CONCURRENCY = env_int("CELERY_WORKER_CONCURRENCY", 1)
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Load the transcription model in each worker process right after the fork.
ENGINE_PRELOAD = env_bool("ENGINE_PRELOAD", True)
# Touched every 30 s by a running worker; the container's liveness probe checks its age.
WORKER_HEARTBEAT_FILE = env_str("WORKER_HEARTBEAT_FILE", "/tmp/diary-worker-heartbeat")

# Step limits: the soft limit raises inside the task so it can record the failure.
TRANSCRIBE_SOFT_TIME_LIMIT = env_int("TRANSCRIBE_SOFT_TIME_LIMIT", 3300)
TRANSCRIBE_HARD_TIME_LIMIT = env_int("TRANSCRIBE_HARD_TIME_LIMIT", 3600)
STEP_SOFT_TIME_LIMIT = env_int("STEP_SOFT_TIME_LIMIT", 240)
STEP_HARD_TIME_LIMIT = env_int("STEP_HARD_TIME_LIMIT", 300)
TASK_MAX_RETRIES = env_int("TASK_MAX_RETRIES", 5)
TASK_RETRY_BACKOFF_MAX = env_int("TASK_RETRY_BACKOFF_MAX", 600)

# Stuck-job sweep: a job whose step lease ran out (its worker died, its message was lost)
# is re-enqueued from the step it was on; after JOB_MAX_REQUEUES it is failed.
JOB_LEASE_SECONDS = env_int("JOB_LEASE_SECONDS", TRANSCRIBE_HARD_TIME_LIMIT + 60)
JOB_QUEUED_GRACE_SECONDS = env_int("JOB_QUEUED_GRACE_SECONDS", 600)
JOB_MAX_REQUEUES = env_int("JOB_MAX_REQUEUES", 5)
SWEEP_INTERVAL_SECONDS = env_int("SWEEP_INTERVAL_SECONDS", 60)
# Delete a recording's audio this many days after its entry was made (0 keeps audio forever).
AUDIO_RETENTION_DAYS = env_int("AUDIO_RETENTION_DAYS", 0)
POLL_INTERVAL_SECONDS = env_int("POLL_INTERVAL_SECONDS", 15)
POLL_DEADLINE_SECONDS = env_int("POLL_DEADLINE_SECONDS", 4 * 3600)

# --- Engines ----------------------------------------------------------------------------

TRANSCRIPTION_ENGINE = env_str("TRANSCRIPTION_ENGINE", "whisper")
DIARY_FORMATTER = env_str("DIARY_FORMATTER", "rules")
# "base" (multilingual, assembled from PyPI packages), "tiny.en", or a model directory path.
WHISPER_MODEL = env_str("WHISPER_MODEL", "base")
WHISPER_MODEL_CACHE = Path(env_str("WHISPER_MODEL_CACHE", str(DATA_DIR / "models")))
WHISPER_DEVICE = env_str("WHISPER_DEVICE", "cpu")
WHISPER_COMPUTE_TYPE = env_str("WHISPER_COMPUTE_TYPE", "int8")


def _whisper_available_cpus() -> int:
    """CPUs this process may use: its affinity, capped by a cgroup v2 CPU quota (a container's limit)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, int(-(-int(quota) // int(period)))))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


# Worker processes x WHISPER_NUM_WORKERS (model replicas, run concurrently) x WHISPER_CPU_THREADS <= CPUs.
# One thread per replica is fastest on small CPUs (make bench): the decoder does not scale with threads.
WHISPER_AVAILABLE_CPUS = env_int("WHISPER_AVAILABLE_CPUS", _whisper_available_cpus())
WHISPER_CPU_THREADS = env_int("WHISPER_CPU_THREADS", 1)
WHISPER_NUM_WORKERS = env_int(
    "WHISPER_NUM_WORKERS",
    max(1, min(4, WHISPER_AVAILABLE_CPUS // max(1, CELERY_WORKER_CONCURRENCY * WHISPER_CPU_THREADS))),
)
WHISPER_BEAM_SIZE = env_int("WHISPER_BEAM_SIZE", 1)
# 0 runs sequential decoding; >0 uses faster-whisper's BatchedInferencePipeline with at most this many
# 30 s windows per model call. Memory grows ~70 MB per window in a call (encoder attention); a single-threaded
# replica is as fast one window at a time, a multi-threaded one needs batches to keep its threads busy.
WHISPER_BATCH_SIZE = env_int("WHISPER_BATCH_SIZE", 1 if WHISPER_CPU_THREADS == 1 else 4)
WHISPER_VAD_FILTER = env_bool("WHISPER_VAD_FILTER", True)
# Silences shorter than this do not split speech into separate VAD pieces (faster-whisper's default).
WHISPER_VAD_MIN_SILENCE_MS = env_int("WHISPER_VAD_MIN_SILENCE_MS", 160)
# Empty means detect the language per recording (from the windows being decoded: no extra encoder pass).
WHISPER_LANGUAGE = env_str("WHISPER_LANGUAGE", "")
# Short recordings waiting at the same time are transcribed together, up to this many per call
# (0 = WHISPER_NUM_WORKERS), when each is at most WHISPER_JOB_BATCH_MAX_SECONDS long.
WHISPER_JOB_BATCH = env_int("WHISPER_JOB_BATCH", 0) or WHISPER_NUM_WORKERS
WHISPER_JOB_BATCH_MAX_SECONDS = env_float("WHISPER_JOB_BATCH_MAX_SECONDS", 90)
# Recordings at least this long are split at silences into chunks of about WHISPER_CHUNK_SECONDS,
# transcribed in parallel by any worker (0 disables chunking).
WHISPER_CHUNK_MIN_SECONDS = env_float("WHISPER_CHUNK_MIN_SECONDS", 600)
WHISPER_CHUNK_SECONDS = env_float("WHISPER_CHUNK_SECONDS", 120)
# A cut point must lie in a silence at least this long (the middle of the silence is used).
WHISPER_CHUNK_MIN_SILENCE_MS = env_int("WHISPER_CHUNK_MIN_SILENCE_MS", 300)
# How often the poll step checks a chunked job's chunks (the last chunk to finish also wakes it).
WHISPER_CHUNK_POLL_SECONDS = env_float("WHISPER_CHUNK_POLL_SECONDS", 2)
WHISPER_CHUNK_SOFT_TIME_LIMIT = env_int("WHISPER_CHUNK_SOFT_TIME_LIMIT", 840)
WHISPER_CHUNK_HARD_TIME_LIMIT = env_int("WHISPER_CHUNK_HARD_TIME_LIMIT", 900)
# A claimed chunk whose worker has not finished by then is given to another worker by the poll step.
WHISPER_CHUNK_LEASE_SECONDS = env_int("WHISPER_CHUNK_LEASE_SECONDS", WHISPER_CHUNK_HARD_TIME_LIMIT + 60)
WHISPER_CHUNK_MAX_ATTEMPTS = env_int("WHISPER_CHUNK_MAX_ATTEMPTS", 3)
# Decoded 16 kHz audio of chunked jobs, so chunk tasks on this machine need not decode again.
WHISPER_AUDIO_CACHE_DIR = Path(env_str("WHISPER_AUDIO_CACHE_DIR", str(DATA_DIR / "cache" / "audio")))

AWS_TRANSCRIBE_OUTPUT_BUCKET = env_str("AWS_TRANSCRIBE_OUTPUT_BUCKET", AWS_STORAGE_BUCKET_NAME)
# Empty: AWS Transcribe identifies the language (a recording's own language wins).
AWS_TRANSCRIBE_LANGUAGE = env_str("AWS_TRANSCRIBE_LANGUAGE", "")
OPENAI_API_KEY = env_str("OPENAI_API_KEY", "")
OPENAI_BASE_URL = env_str("OPENAI_BASE_URL", "") or None
OPENAI_FORMAT_MODEL = env_str("OPENAI_FORMAT_MODEL", "gpt-4o-mini")
OPENAI_TRANSCRIBE_MODEL = env_str("OPENAI_TRANSCRIBE_MODEL", "whisper-1")
OPENAI_TIMEOUT_SECONDS = env_float("OPENAI_TIMEOUT_SECONDS", 60)
OPENAI_FORMAT_MAX_RETRIES = env_int("OPENAI_FORMAT_MAX_RETRIES", 3)

# Paragraph break when speech pauses longer than this.
RULES_PARAGRAPH_PAUSE_SECONDS = env_float("RULES_PARAGRAPH_PAUSE_SECONDS", 2.0)

# --- Security ---------------------------------------------------------------------------

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("BEHIND_TLS_PROXY", PRODUCTION) else None
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", PRODUCTION)
# The health check is probed over plain HTTP inside the cluster.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000 if PRODUCTION else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", SECURE_HSTS_SECONDS > 0)
# Preload is a commitment to HTTPS for the whole domain; set SECURE_HSTS_PRELOAD=0 to opt out.
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", PRODUCTION)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", PRODUCTION)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", PRODUCTION)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# --- Sign-in and failed-login lockout (django-axes) --------------------------------------

# Axes first: it refuses a locked-out login before the password is checked. It needs the
# request, so tests sign in with `client.force_login`, not `client.login`.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "diary-home"
AXES_ENABLED = env_bool("AXES_ENABLED", True)
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5)
# Float hours (axes reads a float as hours); 0 locks until an admin runs `manage.py axes_reset`.
AXES_COOLOFF_TIME = env_float("AXES_COOLOFF_HOURS", 1.0) or None
# Comma-separated alternatives, each locked on its own; "+" combines: "username+ip_address".
AXES_LOCKOUT_PARAMETERS = [
    part.split("+") if "+" in part else part for part in env_list("AXES_LOCKOUT_PARAMETERS", "username,ip_address")
]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "diaries/locked_out.html"
# Proxies in front that append to X-Forwarded-For (one load balancer: 1); 0 trusts only REMOTE_ADDR.
AXES_TRUSTED_PROXY_COUNT = env_int("AXES_TRUSTED_PROXY_COUNT", 1 if SECURE_PROXY_SSL_HEADER else 0)
AXES_CLIENT_IP_CALLABLE = "diaries.views.client_ip_address"

# --- Logging ----------------------------------------------------------------------------

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"faster_whisper": {"level": "WARNING"}},
}
