"""Key resolution: the provider's active key in the database, else its environment variable;
a provider that needs no key (a local server) is available with none.

Every call resolves the keys, so each process keeps the answer (decrypted) for at most
``LLM_KEY_CACHE_SECONDS``, and only while ``cache_version`` is the one it read with them: a key
saved or deleted through the models takes effect at the next call in every process sharing the
cache, other changes within that time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from django.core.signals import setting_changed
from django.utils import timezone

from . import cache_version
from .conf import DEFAULTS
from .models import APIKey, mask_secret
from .registry import provider_class, provider_classes


@dataclass(frozen=True)
class ResolvedKey:
    provider: str
    secret: str = field(repr=False)
    source: str  # for messages: where the key came from, never the key itself
    key_id: int | None = None  # the APIKey row, when it came from the database


def _env_key(provider_cls) -> ResolvedKey | None:
    """The key of the Django setting or environment variable; for a provider that needs none
    (a local server), an empty key, so that it is available."""
    secret = provider_cls.configured_key()
    if not secret:
        if provider_cls.requires_key:
            return None
        return ResolvedKey(provider=provider_cls.name, secret="", source="no key (none needed)")
    return ResolvedKey(
        provider=provider_cls.name,
        secret=secret,
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
    """Every provider's key: {provider name: ResolvedKey}. One read of the cache's version, and
    one query unless this process's copy is fresh (see the module docstring)."""
    return dict(_keys.get())


def invalidate_keys(**kwargs) -> None:
    """Forget this process's copy of the keys (and when it last marked each one used: a key id
    may name another row after a flush)."""
    _keys.forget()
    _last_marked.clear()


def _setting_changed(*, setting: str, **kwargs) -> None:
    # Environment keys, and SECRET_KEY / LLM_ENCRYPTION_KEYS that decrypt the stored ones.
    if setting in DEFAULTS or setting == "SECRET_KEY":
        invalidate_keys()


setting_changed.connect(_setting_changed)


def _read_keys() -> dict[str, ResolvedKey]:
    """Every provider's key, resolved with one query."""
    rows = {row.provider: row for row in APIKey.objects.filter(active=True)}
    resolved: dict[str, ResolvedKey] = {}
    for cls in provider_classes():
        key = stored_key(rows[cls.name]) if cls.name in rows else _env_key(cls)
        if key is not None:
            resolved[cls.name] = key
    return resolved


_keys = cache_version.KeptCopy(_read_keys)


def resolve_key(provider: str) -> ResolvedKey | None:
    """One provider's key (active database key, else environment variable), or None."""
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
