"""Key resolution: the provider's active key in the database, else its environment variable."""

from __future__ import annotations

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


def _db_key(row: APIKey) -> ResolvedKey:
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
        key = _db_key(rows[cls.name]) if cls.name in rows else _env_key(cls)
        if key is not None:
            resolved[cls.name] = key
    return resolved


def resolve_key(provider: str) -> ResolvedKey | None:
    """One provider's key (active database key, else environment variable), or None."""
    from .registry import provider_class

    row = APIKey.objects.filter(provider=provider, active=True).first()
    return _db_key(row) if row is not None else _env_key(provider_class(provider))


def mark_used(key: ResolvedKey) -> None:
    if key.key_id is not None:
        APIKey.objects.filter(pk=key.key_id).update(last_used_at=timezone.now())
