"""Key resolution: the provider's active key in the database, else its environment variable."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from django.utils import timezone

from .conf import llm_settings
from .models import APIKey, mask_secret


@dataclass(frozen=True)
class ResolvedKey:
    provider: str
    secret: str = field(repr=False)
    source: str  # for messages: where the key came from, never the key itself
    key_id: int | None = None  # the APIKey row, when it came from the database


def _env_key(provider_cls) -> ResolvedKey | None:
    secret = getattr(llm_settings, provider_cls.key_setting)
    if not secret:
        return None
    return ResolvedKey(
        provider=provider_cls.name,
        secret=str(secret),
        source=f"the environment variable {provider_cls.key_setting}",
    )


def stored_key(row: APIKey) -> ResolvedKey:
    """The key stored in ``row``, decrypted, with a source that names the row by its mask."""
    label = f" {row.label!r}" if row.label else ""
    return ResolvedKey(
        provider=row.provider,
        secret=row.secret(),
        source=f"the admin key manager (key #{row.pk}{label}, "
        f"{mask_secret(row.secret_prefix, row.last_four)})",
        key_id=row.pk,
    )


def resolve_keys() -> dict[str, ResolvedKey]:
    """Every provider's key, resolved with one query: {provider name: ResolvedKey}."""
    from .registry import PROVIDER_CLASSES

    rows = {row.provider: row for row in APIKey.objects.filter(active=True)}
    resolved: dict[str, ResolvedKey] = {}
    for cls in PROVIDER_CLASSES:
        key = stored_key(rows[cls.name]) if cls.name in rows else _env_key(cls)
        if key is not None:
            resolved[cls.name] = key
    return resolved


def resolve_key(provider: str) -> ResolvedKey | None:
    """One provider's key (active database key, else environment variable), or None."""
    from .registry import provider_class

    cls = provider_class(provider)  # accepts aliases ("google"); rows store the canonical name
    row = APIKey.objects.filter(provider=cls.name, active=True).first()
    return stored_key(row) if row is not None else _env_key(cls)


# When this process last wrote each key's last_used_at: the column is for people ("is this key
# still in use?"), so a minute's precision is plenty and saves a write on almost every call.
_MARK_EVERY_SECONDS = 60.0
_last_marked: dict[int, float] = {}


def mark_used(key: ResolvedKey) -> None:
    if key.key_id is None:
        return
    now = time.monotonic()
    if now - _last_marked.get(key.key_id, -_MARK_EVERY_SECONDS) < _MARK_EVERY_SECONDS:
        return
    _last_marked[key.key_id] = now
    APIKey.objects.filter(pk=key.key_id).update(last_used_at=timezone.now())
