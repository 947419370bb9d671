"""The providers, their priority, and which one is primary.

``PROVIDER_CLASSES`` is listed explicitly, in priority order (SPEC §5: gemini → openrouter →
huggingface); adding a provider means adding its class here.
"""

from __future__ import annotations

from collections.abc import Container

from .conf import llm_settings
from .exceptions import InvalidRequest, ProviderNotConfigured, UnknownProvider
from .providers.base import Provider
from .providers.gemini import GeminiProvider
from .providers.huggingface import HuggingFaceProvider
from .providers.openrouter import OpenRouterProvider

PROVIDER_CLASSES: tuple[type[Provider], ...] = (
    GeminiProvider,
    OpenRouterProvider,
    HuggingFaceProvider,
)
_BY_NAME = {cls.name: cls for cls in PROVIDER_CLASSES}
ALIASES = {"google": "gemini", "hf": "huggingface"}

HOW_TO_ADD_A_KEY = (
    "Add an active key in the admin key manager (/admin/llm_providers/apikey/), or set the "
    "Django setting or the environment variable of that name (a `.env` file works where the "
    "project reads one)."
)


def provider_names() -> list[str]:
    return [cls.name for cls in PROVIDER_CLASSES]


def as_choices() -> list[tuple[str, str]]:
    return [(cls.name, cls.label) for cls in PROVIDER_CLASSES]


def canonical_name(name: str) -> str | None:
    """``"Google"`` → ``"gemini"``; None for a name that is no provider."""
    key = (name or "").strip().lower()
    key = ALIASES.get(key, key)
    return key if key in _BY_NAME else None


def provider_class(name: str) -> type[Provider]:
    canonical = canonical_name(name)
    if canonical is None:
        raise InvalidRequest(
            f"Unknown provider {name!r}; choose one of {', '.join(provider_names())}.",
            field="provider",
        )
    return _BY_NAME[canonical]


def configured_primary() -> str | None:
    """The provider ``GPT_PROVIDER`` names, or None when it is unset."""
    value = llm_settings.GPT_PROVIDER
    if value is None or not str(value).strip():
        return None
    canonical = canonical_name(str(value))
    if canonical is None:
        choices = ", ".join([*provider_names(), *ALIASES])
        raise UnknownProvider(
            f"GPT_PROVIDER={value!r} names no provider; use one of {choices} "
            "(case-insensitive), or leave it unset to pick by available keys."
        )
    return canonical


def missing_key_error(name: str) -> ProviderNotConfigured:
    cls = _BY_NAME[name]
    return ProviderNotConfigured(
        f"{cls.key_setting} not found: {cls.label} has no API key. {HOW_TO_ADD_A_KEY}",
        provider=name,
    )


def no_provider_error() -> ProviderNotConfigured:
    names = ", ".join(cls.key_setting for cls in PROVIDER_CLASSES)
    return ProviderNotConfigured(
        f"No LLM provider is configured: none of {names} is set. {HOW_TO_ADD_A_KEY}"
    )


def primary_provider(keys: Container[str]) -> str | None:
    """``GPT_PROVIDER`` if set, else the first provider (in priority order) in ``keys`` (the
    names of the providers that have a key)."""
    configured = configured_primary()
    if configured is not None:
        return configured
    return next((name for name in provider_names() if name in keys), None)
