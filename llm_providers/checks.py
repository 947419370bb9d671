"""System checks: configuration mistakes reported by ``manage.py check`` and at start-up."""

from django.apps import apps
from django.core.cache import DEFAULT_CACHE_ALIAS, caches
from django.core.cache.backends.dummy import DummyCache
from django.core.cache.backends.locmem import LocMemCache
from django.core.checks import Error, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured

from . import crypto
from .conf import llm_settings
from .exceptions import UnknownProvider
from .registry import configured_custom_definitions, configured_primary, is_configured_name

# The apps the API needs beside this one: DRF, and its token model (SPEC §8, §11).
REQUIRED_APPS = ("rest_framework", "rest_framework.authtoken")


@register()
def check_required_apps(app_configs, **kwargs):
    return [
        Error(
            f"llm_providers needs {name!r} in INSTALLED_APPS.",
            hint='INSTALLED_APPS += ["rest_framework", "rest_framework.authtoken", '
            '"llm_providers"], then `manage.py migrate`.',
            id="llm_providers.E002",
        )
        for name in REQUIRED_APPS
        if not apps.is_installed(name)
    ]


@register(Tags.security, deploy=True)
def check_encryption_key(app_configs, **kwargs):
    # What crypto will use, not the raw setting: a list of blank values is no key either.
    if crypto.configured_keys():
        return []
    return [
        Warning(
            "LLM_ENCRYPTION_KEYS is not set: stored provider keys are encrypted with a key "
            "derived from SECRET_KEY.",
            hint="Set LLM_ENCRYPTION_KEYS to a Fernet key kept apart from SECRET_KEY, then run "
            "`manage.py rotate_llm_keys`.",
            id="llm_providers.W001",
        )
    ]


@register()
def check_gpt_provider(app_configs, **kwargs):
    try:
        configured_primary()
    except UnknownProvider as exc:
        return [Error(str(exc), id="llm_providers.E001")]
    except ImproperlyConfigured:
        return []  # a malformed LLM_CUSTOM_PROVIDERS: E003 says what is wrong
    except Exception:
        # The admin's custom providers cannot be read where the checks run (no database
        # access): judged by the providers that settings define.
        if not is_configured_name(llm_settings.GPT_PROVIDER):
            return [
                Error(
                    f"GPT_PROVIDER={llm_settings.GPT_PROVIDER!r} names no provider defined in "
                    "the code or in LLM_CUSTOM_PROVIDERS.",
                    id="llm_providers.E001",
                )
            ]
    return []


@register()
def check_custom_providers(app_configs, **kwargs):
    try:
        configured_custom_definitions()
    except ImproperlyConfigured as exc:
        return [
            Error(
                str(exc),
                hint='Each entry: {"name": …, "base_url": …, "default_model": …} and '
                "optionally label, requires_key (default true) and priority.",
                id="llm_providers.E003",
            )
        ]
    return []


@register(Tags.caches, deploy=True)
def check_shared_throttle_cache(app_configs, **kwargs):
    """The throttles count in the default cache: a cache of each process's own memory counts
    per process. Which server runs the project is not known here, so this warns for any
    deployment whose default cache is per process."""
    cache = caches[DEFAULT_CACHE_ALIAS]
    if isinstance(cache, DummyCache):
        msg = (
            "The default cache is a DummyCache: it stores nothing, so the API's throttles "
            "(LLM_API_RATE, LLM_API_GENERATION_RATE) never refuse a request, and circuit "
            "states are not shared."
        )
    elif isinstance(cache, LocMemCache):
        msg = (
            "The default cache is a LocMemCache, private to each process: under a server "
            "with several worker processes each one throttles on its own, so a user gets "
            "LLM_API_RATE and LLM_API_GENERATION_RATE once per worker, and circuits open "
            "per worker."
        )
    else:
        return []
    return [
        Warning(
            msg,
            hint="Use a cache every process shares: Redis (django.core.cache.backends.redis."
            "RedisCache; REDIS_URL in this project) across machines, or on one machine "
            "FileBasedCache in a directory all workers can write (CACHE_DIR). A single-process "
            "server may ignore this warning.",
            id="llm_providers.W002",
        )
    ]
