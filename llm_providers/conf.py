"""The app's settings, read through one object with defaults (SPEC §3).

``llm_settings.LLM_TIMEOUT`` is, in order: the Django setting ``LLM_TIMEOUT`` when the project
defines it (and not as None), else the environment variable ``LLM_TIMEOUT`` (an empty value counts
as unset), else the default below. So a host project that sets nothing works with, say,
``OPENROUTER_API_KEY`` exported, and a project that does set a value wins over the environment.

Environment values are text: they are converted to the type of the default (a number, a boolean
such as ``true``/``0``, or a list: comma-separated, or JSON when the value is a JSON array). A
setting whose default is None keeps the text as it is.

Values are cached and the cache is cleared on ``setting_changed`` (as DRF does), so
``override_settings`` and pytest-django's ``settings`` fixture work in tests; after changing
``os.environ`` at run time, call ``llm_settings.reload()``.
"""

from __future__ import annotations

import json
import os
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
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
    # Extra OpenAI-compatible providers (SPEC §12.1): a JSON list of objects with name, base_url,
    # default_model and optionally label, requires_key (default true) and priority. Checked by
    # ``llm_providers.registry`` (a system check reports a malformed list).
    "LLM_CUSTOM_PROVIDERS": [],
    # Seconds a non-streamed answer may take to arrive (each read of the socket).
    "LLM_TIMEOUT": 60.0,
    # SPEC §5.1 timeouts: opening a connection; a stream's first text (keep-alive comments do
    # not count); silence inside a started stream; one request in all, retries and fallbacks
    # included. A provider that timed out is not retried: the chain moves on.
    "LLM_CONNECT_TIMEOUT": 5.0,
    "LLM_FIRST_TOKEN_TIMEOUT": 30.0,
    "LLM_STREAM_IDLE_TIMEOUT": 30.0,
    "LLM_REQUEST_DEADLINE": 300.0,
    # Circuits (SPEC §5.1): this many consecutive failed calls open a provider's circuit for
    # LLM_CIRCUIT_COOLDOWN seconds, then one probe is let through.
    "LLM_CIRCUIT_FAILURES": 3,
    "LLM_CIRCUIT_COOLDOWN": 30.0,
    # The chain after a model: {"<provider>/<model>": ["<provider>/<model>", ...]}. Empty: the
    # other available providers with their default models.
    "LLM_FALLBACKS": {},
    # The sweep of dead processes' ledger rows (SPEC §7): an attempt still in flight this many
    # seconds after LLM_REQUEST_DEADLINE is interrupted; the server sweeps every
    # LLM_SWEEP_INTERVAL seconds (one process at a time, through the shared cache).
    "LLM_SWEEP_GRACE": 60.0,
    "LLM_SWEEP_INTERVAL": 20.0,
    "LLM_MAX_RETRIES": 3,
    "LLM_RETRY_BASE_DELAY": 1.0,
    "LLM_RETRY_MAX_DELAY": 30.0,
    # Bound on the time one provider may spend waiting between retries of one call; a
    # Retry-After that would cross it ends the retries (and the router falls back).
    "LLM_RETRY_TOTAL_TIMEOUT": 120.0,
    # Size of the pooled HTTP connections per upstream host, shared by a process's threads.
    "LLM_HTTP_POOL_SIZE": 400,
    "LLM_ENCRYPTION_KEYS": [],
    # Defaults of the seed functions when a caller gives none (text vs structured JSON).
    "LLM_DEFAULT_TEMPERATURE": 0.7,
    "LLM_DEFAULT_MAX_TOKENS": 2048,
    "LLM_JSON_TEMPERATURE": 0.2,
    "LLM_JSON_MAX_TOKENS": 8192,
    # Budgets: the monthly limits of users without a budget of their own (None = unlimited).
    "LLM_DEFAULT_MONTHLY_COST_LIMIT": None,
    "LLM_DEFAULT_MONTHLY_CALL_LIMIT": None,
    # A model with no known price, for a user with a cost limit: "refuse" it before any upstream
    # request, or "allow" it (recorded at 0, flagged unpriced). SPEC §7.
    "LLM_UNPRICED_MODELS": "refuse",
    # Fractions of a user's cost limit at which one alert per period is sent (signal, email).
    "LLM_BUDGET_ALERT_THRESHOLDS": [0.8, 1.0],
    # Whether calls made with a user's own key count against that user's cost limit (§12.2).
    "LLM_BYOK_COUNTS_AGAINST_BUDGET": False,
    # Seconds a process keeps the price table in memory (a save in the admin clears it).
    "LLM_PRICE_CACHE_SECONDS": 60.0,
    # Seconds a process keeps the resolved provider keys (a key saved or deleted in the same
    # process clears them at once; other processes see the change within this time). 0: off.
    "LLM_KEY_CACHE_SECONDS": 2.0,
    # Raise when usage cannot be recorded (always logged with the spend either way).
    "LLM_STRICT_ACCOUNTING": False,
    # Upper bounds a request is validated against.
    "LLM_MAX_PROMPT_CHARS": 200_000,
    "LLM_MAX_OUTPUT_TOKENS": 65_536,
    # Per-user request rates of the REST API (DRF's "<count>/<sec|min|hour|day>"): the
    # endpoints other than generation, and the generation ones (generate/, v1/chat/completions).
    "LLM_API_RATE": "600/min",
    "LLM_API_GENERATION_RATE": "60/min",
}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def from_environment(name: str, raw: str, default: Any) -> Any:
    """An environment variable's text as the type of its setting's ``default``."""
    if isinstance(default, bool):
        kind = "a boolean (true/false, yes/no, on/off, 1/0)"
    elif isinstance(default, int | float):
        kind = f"a number ({type(default).__name__})"
    elif isinstance(default, dict):
        kind = "a JSON object"
    elif isinstance(default, list | tuple):
        kind = "a comma-separated list or a JSON array"
    else:
        return raw
    try:
        if isinstance(default, bool):
            word = raw.strip().lower()
            if word not in _TRUE | _FALSE:
                raise ValueError(word)
            return word in _TRUE
        if isinstance(default, int | float):
            return type(default)(raw)
        if isinstance(default, dict) or raw.lstrip().startswith("["):
            value = json.loads(raw)
            if not isinstance(value, type(default) if isinstance(default, dict) else list):
                raise ValueError(name)
            return value
        return [item.strip() for item in raw.split(",") if item.strip()]
    except ValueError:
        # The message names the variable, never its value (it may be a secret).
        raise ImproperlyConfigured(f"The environment variable {name} is not {kind}.") from None


class LLMSettings:
    """Attribute access to the app settings: Django setting, else environment, else default."""

    def __init__(self, defaults: dict[str, Any]):
        self._defaults = defaults
        self._cache: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        if name not in self._defaults:
            raise AttributeError(f"Unknown llm_providers setting: {name!r}")
        try:
            return self._cache[name]
        except KeyError:
            value = self._cache[name] = self._read(name)[0]
            return value

    def origin(self, name: str) -> str:
        """Where ``name``'s value comes from, for messages: "the Django setting X", "the
        environment variable X" or "the default"."""
        return self._read(name)[1]

    def _read(self, name: str) -> tuple[Any, str]:
        value = getattr(settings, name, None)
        if value is not None:
            return value, f"the Django setting {name}"
        raw = os.environ.get(name)
        if raw:
            return from_environment(name, raw, self._defaults[name]), (
                f"the environment variable {name}"
            )
        return self._defaults[name], "the default"

    def reload(self) -> None:
        self._cache.clear()


llm_settings = LLMSettings(DEFAULTS)


def read_named_setting(name: str) -> str | None:
    """A value whose name is not one of ``DEFAULTS`` (a custom provider's ``<NAME>_API_KEY``),
    read in the same order: the Django setting, else the environment variable, else None."""
    value = getattr(settings, name, None)
    if value is not None:
        return str(value)
    return os.environ.get(name) or None


def _reload_llm_settings(*, setting: str, **kwargs: Any) -> None:
    if setting in DEFAULTS or setting == "SECRET_KEY":
        llm_settings.reload()
        # Other caches keyed on settings (the Fernet instance, provider sessions) listen too.


setting_changed.connect(_reload_llm_settings)
