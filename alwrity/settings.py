"""Settings for the ALwrity project.

The project's own settings are read from the environment here (django-environ), after `.env` is
loaded into it. The app reads its settings (SPEC §3) through ``llm_providers.conf.llm_settings``:
a Django setting of the same name, else the environment variable, else its default; so this
module sets only those the project chooses differently.
"""

from pathlib import Path

import environ
from django.core.management.utils import get_random_secret_key

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# A `.env` beside manage.py is read when present (`make run` writes one from `.env.example`);
# real environment variables win over it. ALWRITY_ENV_FILE points elsewhere, or to "" for none.
_env_file = env.str("ALWRITY_ENV_FILE", default=str(BASE_DIR / ".env"))
if _env_file and Path(_env_file).is_file():
    env.read_env(_env_file, overwrite=False)

# An unset SECRET_KEY gets a random one per process: fine for a quick look, but sessions and the
# SECRET_KEY-derived encryption key would not survive a restart. `make run` writes a stable one.
SECRET_KEY = env.str("SECRET_KEY", default="") or get_random_secret_key()
DEBUG = env.bool("DEBUG", default=False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "alwrity",
    "llm_providers",
]

MIDDLEWARE = [
    # First, so that it sees the errors Django's own middleware answers (a bad Host header, an
    # oversized body) and gives them the API's JSON error body under /api/.
    "llm_providers.middleware.APIErrorEnvelopeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Static files (the admin's CSS, Swagger UI) from the app server itself, so `make serve`
    # needs no separate web server in front.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "alwrity.urls"

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

WSGI_APPLICATION = "alwrity.wsgi.application"
ASGI_APPLICATION = "alwrity.asgi.application"

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Concurrent writers (threads and processes of the server) wait up to `timeout` seconds for
    # the lock instead of failing at once. BEGIN IMMEDIATE: a transaction takes the write lock
    # at its start, so two writers queue instead of deadlocking on a read lock each.
    _sqlite_options = DATABASES["default"].setdefault("OPTIONS", {})
    _sqlite_options.setdefault("timeout", 20)
    _sqlite_options.setdefault("transaction_mode", "IMMEDIATE")
    # Write-ahead logging: readers never wait for the writer, and a commit is one append
    # (synchronous=NORMAL is durable against a process crash; an OS crash may lose the last
    # commits, never corrupt the file). Every call writes the ledger, so this is the hot path.
    _sqlite_options.setdefault(
        "init_command", "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
    )
    # Persistent connections (one per server thread): opening one costs its PRAGMAs and
    # Django's function registrations, and closing the last one checkpoints the WAL into the
    # database file (an fsync) — on every request, without this. (PostgreSQL: set
    # ?conn_max_age= in DATABASE_URL, within the server's max_connections.)
    DATABASES["default"].setdefault("CONN_MAX_AGE", None)
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A pool of connections per server process (psycopg's, through Django), not one connection
    # per thread: a generation takes a connection only for its database work and gives it back
    # while it waits on the upstream (router), so a thousand calls in flight share a few
    # connections. DATABASE_POOL_SIZE=0 turns it off (then ?conn_max_age= in DATABASE_URL keeps
    # a connection per thread open, within the server's max_connections).
    _pool_size = env.int("DATABASE_POOL_SIZE", default=8)
    if _pool_size > 0:
        DATABASES["default"].setdefault("OPTIONS", {}).setdefault(
            "pool",
            {
                "min_size": 1,
                "max_size": _pool_size,
                # Seconds a request waits for a free connection before it fails.
                "timeout": env.float("DATABASE_POOL_TIMEOUT", default=30.0),
            },
        )
        DATABASES["default"]["CONN_MAX_AGE"] = 0  # the pool keeps them (Django requires 0)

# The cache holds throttle histories and the version of the rows processes keep in memory
# (llm_providers.cache_version), so every process must see the same one: Redis shares it across
# machines; without it, files shared by the processes of this machine (a per-process memory
# cache would let each worker throttle on its own and miss the others' changes).
if env.str("REDIS_URL", default=""):
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": env.str("REDIS_URL"),
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": env.str("CACHE_DIR", default=str(BASE_DIR / "var" / "cache")),
        }
    }

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# Served straight from the apps' static folders by WhiteNoise: no collectstatic step to forget
# (and so no STATIC_ROOT; set one only to hand the files to a CDN).
WHITENOISE_USE_FINDERS = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# The admin account `make run` ensures (`manage.py ensure_admin`).
DJANGO_SUPERUSER_USERNAME = env.str("DJANGO_SUPERUSER_USERNAME", default="admin")
DJANGO_SUPERUSER_PASSWORD = env.str("DJANGO_SUPERUSER_PASSWORD", default="")
DJANGO_SUPERUSER_EMAIL = env.str("DJANGO_SUPERUSER_EMAIL", default="")

# Everything to stderr, where the process manager collects it. Django's default sends server
# errors (django.request, with their traceback) to the console only with DEBUG on, and to
# ADMINS' mail otherwise; in production they would leave no trace in the log. Tracebacks name
# the code and the exception's message, not the environment or local variables; and every
# handler masks any piece of a key in use that a message or traceback would carry (SPEC §6).
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "require_debug_false": {"()": "django.utils.log.RequireDebugFalse"},
        "secrets": {"()": "llm_providers.log.SecretsFilter"},
        "refused_requests": {"()": "alwrity.log.RefusedRequestFilter"},
    },
    "formatters": {
        "plain": {"format": "{asctime} {levelname} {name}: {message}", "style": "{"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["secrets"]},
        "refused_requests": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["secrets", "refused_requests"],
        },
        "mail_admins": {
            "level": "ERROR",
            "filters": ["require_debug_false", "secrets"],
            "class": "django.utils.log.AdminEmailHandler",
        },
    },
    "loggers": {
        # Server errors (500s with their traceback); with DEBUG on, every 4xx too, as Django's
        # default does.
        "django": {
            "handlers": ["console", "mail_admins"],
            "level": "INFO" if DEBUG else "ERROR",
        },
        # Requests refused as suspicious (a wrong Host, a malformed body), logged by Django on
        # django.security.<error>: one warning line each, no traceback, no mail to ADMINS.
        "django.security": {
            "handlers": ["refused_requests"],
            "level": "WARNING",
            "propagate": False,
        },
        "llm_providers": {
            "handlers": ["console"],
            "level": env.str("LLM_LOG_LEVEL", default="INFO"),
        },
    },
}

# --- llm_providers (SPEC §3). The app reads the rest itself: see llm_providers/conf.py. ----------

# Also read by llm_providers.crypto straight from Django's settings.
LLM_ENCRYPTION_KEYS = env.list("LLM_ENCRYPTION_KEYS", default=[])
# Fail a call whose usage cannot be recorded (it is always logged with its spend).
LLM_STRICT_ACCOUNTING = env.bool("LLM_STRICT_ACCOUNTING", default=DEBUG)

# --- REST API (SPEC §8) ---------------------------------------------------------------------------

# The app's views carry their own authentication, permissions, throttles, renderers, parsers and
# error envelope (llm_providers.api.base); the project chooses only how its OpenAPI schema is made.
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "ALwrity LLM providers API",
    "DESCRIPTION": "Generation through Gemini, OpenRouter and Hugging Face, with per-user usage "
    "and cost. Authenticate with `Authorization: Token <key>` (or `Bearer <key>`).",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI assets come from the installed sidecar package, not a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "ProviderEnum": "llm_providers.models.PROVIDER_CHOICES",
        "ProviderOrAliasEnum": "llm_providers.api.serializers.PROVIDER_INPUTS",
    },
}
