"""What a provider is, in one place: the built-in classes, the custom ones, their priority, and
which one is primary.

``BUILTIN_PROVIDERS`` is listed explicitly, in priority order (SPEC §5: gemini → openrouter →
huggingface); adding a built-in provider means adding its class here. Custom OpenAI-compatible
providers (SPEC §12.1) come from ``LLM_CUSTOM_PROVIDERS`` and from the admin's
``CustomProvider`` rows; each becomes a class (``providers.custom``) and takes part in
everything the built-in ones do. Everything else that names providers (aliases, choices, ``v1``
prefixes, key pages, the providers endpoint) is derived from ``provider_classes()``.

The rows are read at most once per ``LLM_KEY_CACHE_SECONDS`` per process, and again as soon as
``cache_version`` moves (a row saved or deleted anywhere), like the keys.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Container, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.db import DatabaseError, connection

from . import cache_version
from .conf import llm_settings
from .custom_models import CustomProvider
from .exceptions import InvalidRequest, ProviderNotConfigured, UnknownProvider
from .providers.base import Provider
from .providers.custom import CustomOpenAIProvider, custom_provider_class
from .providers.gemini import GeminiProvider
from .providers.huggingface import HuggingFaceProvider
from .providers.openrouter import OpenRouterProvider

logger = logging.getLogger(__name__)

BUILTIN_PROVIDERS: tuple[type[Provider], ...] = (
    GeminiProvider,
    OpenRouterProvider,
    HuggingFaceProvider,
)
_BUILTIN_BY_NAME = {cls.name: cls for cls in BUILTIN_PROVIDERS}
ALIASES = {alias: cls.name for cls in BUILTIN_PROVIDERS for alias in cls.aliases}
# Names a custom provider may not take: they already mean a built-in provider.
RESERVED_NAMES = frozenset([*_BUILTIN_BY_NAME, *ALIASES])

HOW_TO_ADD_A_KEY = (
    "Add an active key in the admin key manager (/admin/llm_providers/apikey/), or set the "
    "Django setting or the environment variable of that name (a `.env` file works where the "
    "project reads one)."
)


# --- Custom provider definitions ---------------------------------------------------------------

CUSTOM_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_CUSTOM_FIELDS = {"name", "label", "base_url", "default_model", "requires_key", "priority"}


def check_custom_name(name: Any) -> str:
    """A custom provider's name, or ValueError saying why it cannot be one."""
    if not isinstance(name, str) or not CUSTOM_NAME.match(name):
        raise ValueError(
            f"name {name!r} must be 1-32 lower-case letters, digits, '-' or '_', starting "
            "with a letter (it is used in model ids such as <name>/<model>)."
        )
    if name in RESERVED_NAMES:
        raise ValueError(
            f"name {name!r} is reserved: it names a built-in provider "
            f"({', '.join(sorted(RESERVED_NAMES))} are taken)."
        )
    return name


def check_base_url(url: Any) -> str:
    """An http(s) URL with a host, or ValueError."""
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"base_url {url!r} must be an http:// or https:// URL with a host.")
    return url.rstrip("/")


def custom_definition(data: Mapping[str, Any]) -> dict[str, Any]:
    """One custom provider's definition, checked and completed; ValueError names the problem."""
    if not isinstance(data, Mapping):
        raise ValueError("each entry must be a JSON object.")
    unknown = set(data) - _CUSTOM_FIELDS
    if unknown:
        raise ValueError(
            f"unknown field(s) {', '.join(sorted(unknown))}; "
            f"use {', '.join(sorted(_CUSTOM_FIELDS))}."
        )
    for needed in ("name", "base_url", "default_model"):
        if needed not in data:
            raise ValueError(f"{needed} is required.")
    name = check_custom_name(data["name"])
    model = data["default_model"]
    if not isinstance(model, str) or not model.strip():
        raise ValueError("default_model must be a non-empty string.")
    label = data.get("label") or ""
    if not isinstance(label, str):
        raise ValueError("label must be a string.")
    requires_key = data.get("requires_key", True)
    if not isinstance(requires_key, bool):
        raise ValueError("requires_key must be true or false.")
    priority = data.get("priority")
    if priority is not None and (
        isinstance(priority, bool) or not isinstance(priority, int) or priority < 1
    ):
        raise ValueError("priority must be a whole number from 1 (first), or absent.")
    return {
        "name": name,
        "label": label,
        "base_url": check_base_url(data["base_url"]),
        "default_model": model.strip(),
        "requires_key": requires_key,
        "priority": priority,
    }


def configured_custom_definitions() -> list[dict[str, Any]]:
    """``LLM_CUSTOM_PROVIDERS``, checked: ImproperlyConfigured names the entry and the problem."""
    value = llm_settings.LLM_CUSTOM_PROVIDERS
    origin = llm_settings.origin("LLM_CUSTOM_PROVIDERS")
    if not isinstance(value, list | tuple):
        raise ImproperlyConfigured(
            f"LLM_CUSTOM_PROVIDERS ({origin}) must be a list of objects, "
            f'e.g. [{{"name": "ollama", "base_url": "http://127.0.0.1:11434/v1", '
            f'"default_model": "llama3.2", "requires_key": false}}].'
        )
    definitions, seen = [], set()
    for index, entry in enumerate(value):
        try:
            definition = custom_definition(entry)
        except ValueError as exc:
            raise ImproperlyConfigured(
                f"LLM_CUSTOM_PROVIDERS ({origin}), entry {index + 1}: {exc}"
            ) from None
        if definition["name"] in seen:
            raise ImproperlyConfigured(
                f"LLM_CUSTOM_PROVIDERS ({origin}), entry {index + 1}: name "
                f"{definition['name']!r} is defined twice."
            )
        seen.add(definition["name"])
        definitions.append(definition)
    return definitions


def _stored_definitions(taken: Container[str]) -> list[dict[str, Any]]:
    """The admin's active rows, each checked; a bad row is logged and left out, not fatal."""
    definitions = []
    for row in CustomProvider.objects.filter(active=True).order_by("name"):
        if row.name in taken:
            logger.warning(
                "Custom provider %r is defined in LLM_CUSTOM_PROVIDERS and in the admin; "
                "the setting is used.",
                row.name,
            )
            continue
        try:
            definitions.append(custom_definition({f: getattr(row, f) for f in _CUSTOM_FIELDS}))
        except ValueError as exc:
            logger.warning("Custom provider row #%s is left out: %s", row.pk, exc)
    return definitions


def _ordered(custom: Iterable[type[CustomOpenAIProvider]]) -> tuple[type[Provider], ...]:
    """Built-in providers at places 1, 2, 3…; a custom one with ``priority`` p at place p (before
    a built-in provider of the same place), the others after them all, in definition order."""
    ranked: list[tuple[float, int, int, type[Provider]]] = [
        (place, 1, place, cls) for place, cls in enumerate(BUILTIN_PROVIDERS, start=1)
    ]
    for order, cls in enumerate(custom):
        place = cls.priority if cls.priority is not None else math.inf
        ranked.append((place, 0, len(BUILTIN_PROVIDERS) + 1 + order, cls))
    return tuple(cls for *_, cls in sorted(ranked, key=lambda r: r[:3]))


def _load() -> tuple[type[Provider], ...]:
    definitions = configured_custom_definitions()
    try:
        definitions += _stored_definitions({d["name"] for d in definitions})
    except DatabaseError:
        # Before `migrate` has made the table (system checks, the first migrate itself).
        if connection.in_atomic_block:
            raise
        logger.warning("Custom providers could not be read from the database.", exc_info=True)
    return _ordered(custom_provider_class(**d) for d in definitions)


_classes = cache_version.KeptCopy(_load)


def provider_classes() -> tuple[type[Provider], ...]:
    """Every provider class, built-in and custom, in priority order."""
    return _classes.get()


def invalidate(**kwargs: Any) -> None:
    """Forget this process's copy of the custom providers."""
    _classes.forget()


setting_changed.connect(invalidate)


def provider_names() -> list[str]:
    return [cls.name for cls in provider_classes()]


def as_choices() -> list[tuple[str, str]]:
    """(name, label) of every provider, for forms and filters (allauth's ``as_choices``)."""
    return [(cls.name, cls.label) for cls in provider_classes()]


def canonical_name(name: str) -> str | None:
    """``"Google"`` → ``"gemini"``; a custom provider's name as it is; None for no provider."""
    key = (name or "").strip().lower()
    key = ALIASES.get(key, key)
    if key in _BUILTIN_BY_NAME:  # no database read for the built-in providers
        return key
    return key if any(cls.name == key for cls in provider_classes()) else None


def is_configured_name(name: str) -> bool:
    """Whether ``name`` is a built-in provider, an alias or a provider of
    ``LLM_CUSTOM_PROVIDERS``: what is known without the database."""
    key = ALIASES.get((name or "").strip().lower(), (name or "").strip().lower())
    return key in _BUILTIN_BY_NAME or key in {d["name"] for d in configured_custom_definitions()}


def provider_class(name: str) -> type[Provider]:
    canonical = canonical_name(name)
    if canonical is None:
        raise InvalidRequest(
            f"Unknown provider {name!r}; choose one of {', '.join(provider_names())}.",
            field="provider",
        )
    if canonical in _BUILTIN_BY_NAME:
        return _BUILTIN_BY_NAME[canonical]
    return next(cls for cls in provider_classes() if cls.name == canonical)


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
    cls = provider_class(name)
    return ProviderNotConfigured(
        f"{cls.key_setting} not found: {cls.label} has no API key. {HOW_TO_ADD_A_KEY}",
        provider=cls.name,
    )


def no_provider_error() -> ProviderNotConfigured:
    names = ", ".join(cls.key_setting for cls in provider_classes() if cls.requires_key)
    return ProviderNotConfigured(
        f"No LLM provider is configured: none of {names} is set. {HOW_TO_ADD_A_KEY} "
        "A keyless OpenAI-compatible server can be added in LLM_CUSTOM_PROVIDERS or the admin."
    )


def primary_provider(
    keys: Container[str], classes: Iterable[type[Provider]] | None = None
) -> str | None:
    """``GPT_PROVIDER`` if set, else the first provider (in priority order) in ``keys`` (the
    names of the providers that are available: have a key, or need none). ``classes``: the
    caller's ``provider_classes()``, when it has them already."""
    configured = configured_primary()
    if configured is not None:
        return configured
    classes = provider_classes() if classes is None else classes
    return next((cls.name for cls in classes if cls.name in keys), None)
