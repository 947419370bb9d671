"""The app's settings, read through one object with defaults.

``llm_settings.LLM_TIMEOUT`` returns ``settings.LLM_TIMEOUT`` when the project defines it, else the
default below. Values are cached and the cache is cleared on ``setting_changed`` (as DRF does), so
``override_settings`` and pytest-django's ``settings`` fixture work in tests.

The names are the environment variable names of SPEC §3, so an error can name the one place a
user sets them (``.env`` / the environment, read by ``alwrity/settings.py``).
"""

from typing import Any

from django.conf import settings
from django.core.signals import setting_changed

DEFAULTS: dict[str, Any] = {
    "GPT_PROVIDER": None,
    "GEMINI_API_KEY": None,
    "OPENROUTER_API_KEY": None,
    "HF_TOKEN": None,
    "OPENROUTER_MODEL": "openai/gpt-4-turbo",
    "GEMINI_MODEL": "gemini-2.5-flash",
    "HF_MODEL": "meta-llama/Llama-3.1-8B-Instruct",
    "OPENROUTER_HTTP_REFERER": None,
    "OPENROUTER_X_TITLE": None,
    "OPENROUTER_BASE_URL": "https://openrouter.ai/api/v1",
    "GEMINI_BASE_URL": "https://generativelanguage.googleapis.com/v1beta",
    "HF_BASE_URL": "https://router.huggingface.co/v1",
    # Seconds for one upstream request: the connect timeout and the timeout of each read.
    "LLM_TIMEOUT": 60.0,
    "LLM_MAX_RETRIES": 3,
    "LLM_RETRY_BASE_DELAY": 1.0,
    "LLM_RETRY_MAX_DELAY": 30.0,
    # Bound on the time one provider may spend waiting between retries of one call; a
    # Retry-After that would cross it ends the retries (and the router falls back).
    "LLM_RETRY_TOTAL_TIMEOUT": 120.0,
    # Size of the pooled HTTP connections per upstream host, shared by a process's threads.
    "LLM_HTTP_POOL_SIZE": 256,
    "LLM_ENCRYPTION_KEYS": [],
    # Defaults of the seed functions when a caller gives none (text vs structured JSON).
    "LLM_DEFAULT_TEMPERATURE": 0.7,
    "LLM_DEFAULT_MAX_TOKENS": 2048,
    "LLM_JSON_TEMPERATURE": 0.2,
    "LLM_JSON_MAX_TOKENS": 8192,
    # Budgets: the monthly limits of users without a budget of their own (None = unlimited).
    "LLM_DEFAULT_MONTHLY_COST_LIMIT": None,
    "LLM_DEFAULT_MONTHLY_CALL_LIMIT": None,
    # Seconds a process keeps the price table in memory (a save in the admin clears it).
    "LLM_PRICE_CACHE_SECONDS": 60.0,
    # Seconds a process keeps the resolved provider keys (a key saved or deleted in the same
    # process clears them at once; other processes see the change within this time). 0: off.
    "LLM_KEY_CACHE_SECONDS": 2.0,
    # Seconds a process keeps what an API token resolved to (its user and budget). Changes
    # through the models reach every process of the machine at once (llm_providers.freshness);
    # this bounds the rest (other machines, raw SQL). 0: off.
    "LLM_AUTH_CACHE_SECONDS": 2.0,
    # Raise when usage cannot be recorded (always logged with the spend either way).
    "LLM_STRICT_ACCOUNTING": False,
    # Upper bounds a request is validated against.
    "LLM_MAX_PROMPT_CHARS": 200_000,
    "LLM_MAX_OUTPUT_TOKENS": 65_536,
}


class LLMSettings:
    """Attribute access to the app settings with defaults; see the module docstring."""

    def __init__(self, defaults: dict[str, Any]):
        self._defaults = defaults
        self._cache: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        if name not in self._defaults:
            raise AttributeError(f"Unknown llm_providers setting: {name!r}")
        try:
            return self._cache[name]
        except KeyError:
            value = getattr(settings, name, self._defaults[name])
            self._cache[name] = value
            return value

    def reload(self) -> None:
        self._cache.clear()


llm_settings = LLMSettings(DEFAULTS)


def _reload_llm_settings(*, setting: str, **kwargs: Any) -> None:
    if setting in DEFAULTS or setting == "SECRET_KEY":
        llm_settings.reload()
        # Other caches keyed on settings (the Fernet instance, provider sessions) listen too.


setting_changed.connect(_reload_llm_settings)
