"""Key resolution: the provider's active key in the database, else its environment variable;
a provider that needs no key (a local server) is available with none. And key health (SPEC §6):
a key checked with its provider (``check_key``), and a stored key its provider keeps rejecting
deactivated (``record_key_outcome``).

Every call resolves the keys, so each process keeps the answer (decrypted) for at most
``LLM_KEY_CACHE_SECONDS``, and only while ``cache_version`` is the one it read with them: a key
saved or deleted through the models takes effect at the next call in every process sharing the
cache, other changes within that time.

Users' own keys (SPEC §12.2) are never in that copy: it keeps only the platform's keys and the
ids of the users who have a key of their own. A call for one of those users reads that user's
keys from the database (one query, so a key deleted stops at once); a call for anyone else
costs nothing more than a set lookup.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from django.core.cache import cache
from django.core.signals import setting_changed
from django.db import transaction
from django.db.models import Case, F, TextField, Value, When
from django.utils import timezone

from . import cache_version
from .conf import DEFAULTS, llm_settings
from .counting import CountLockTimeout, count_up
from .exceptions import InsufficientCredits, LLMError, ProviderAuthError
from .models import APIKey, mask_secret
from .registry import provider_class, provider_classes
from .scrubbing import without_secrets

logger = logging.getLogger(__name__)


PLATFORM, USER = "platform", "user"


@dataclass(frozen=True)
class ResolvedKey:
    provider: str
    secret: str = field(repr=False)
    source: str  # for messages: where the key came from, never the key itself
    key_id: int | None = None  # the APIKey row, when it came from the database
    owner: str = "platform"  # whose key: "platform" or "user" (the caller's own, SPEC §12.2)
    # A user's key whose owner lets a call it cannot make be retried with the platform's key.
    platform_fallback: bool = False

    @property
    def is_users(self) -> bool:
        return self.owner == USER


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
    """The key stored in ``row``, decrypted, with a source that names the row by its mask (a
    user's own key as theirs, so an error about it tells its owner which key to fix)."""
    mask = mask_secret(row.secret_prefix, row.last_four)
    if row.owner_id is not None:
        return ResolvedKey(
            provider=row.provider,
            secret=row.secret(),
            source=f"your own key (me/keys/ #{row.pk}, {mask})",
            key_id=row.pk,
            owner=USER,
            platform_fallback=row.platform_fallback,
        )
    label = f" {row.label!r}" if row.label else ""
    return ResolvedKey(
        provider=row.provider,
        secret=row.secret(),
        source=f"the admin key manager (key #{row.pk}{label}, {mask})",
        key_id=row.pk,
    )


def resolve_keys(user_id: int | None = None) -> dict[str, ResolvedKey]:
    """Every provider's key for a call of ``user_id``: {provider name: ResolvedKey}, the user's
    own active keys over the platform's (SPEC §12.2). One read of the cache's version, one
    query unless this process's copy is fresh, and one more only for a user who has keys of
    their own (see the module docstring). None (system calls): the platform's keys only."""
    platform, owners = _keys.get()
    keys = dict(platform)
    if user_id is not None and user_id in owners:
        keys.update(user_keys(user_id))
    return keys


def user_keys(user_id: int) -> dict[str, ResolvedKey]:
    """The user's own active keys, {provider name: ResolvedKey}, read now (never kept). Keys of
    providers no longer in the registry are left out."""
    known = {cls.name for cls in provider_classes()}
    rows = APIKey.objects.filter(owner_id=user_id, active=True)
    return {row.provider: stored_key(row) for row in rows if row.provider in known}


def invalidate_keys(**kwargs) -> None:
    """Forget this process's copy of the keys (and when it last marked each one used: a key id
    may name another row after a flush)."""
    _keys.forget()
    _users_secrets.forget()
    _last_marked.clear()


def _setting_changed(*, setting: str, **kwargs) -> None:
    # Environment keys, and SECRET_KEY / LLM_ENCRYPTION_KEYS that decrypt the stored ones.
    if setting in DEFAULTS or setting == "SECRET_KEY":
        invalidate_keys()


setting_changed.connect(_setting_changed)


def _read_keys() -> tuple[dict[str, ResolvedKey], frozenset[int]]:
    """The platform's key of every provider, and the ids of the users with active keys of
    their own, with one query; the users' keys are not read (their secret column is selected
    for the platform's rows only)."""
    platform_secret = Case(
        When(owner__isnull=True, then=F("encrypted_secret")),
        default=Value(""),
        output_field=TextField(),
    )
    rows: dict[str, APIKey] = {}
    owners: set[int] = set()
    active = APIKey.objects.filter(active=True).defer("encrypted_secret")
    for row in active.annotate(platform_secret=platform_secret):
        if row.owner_id is None:
            row.encrypted_secret = row.platform_secret
            rows[row.provider] = row
        else:
            owners.add(row.owner_id)
    resolved: dict[str, ResolvedKey] = {}
    for cls in provider_classes():
        key = stored_key(rows[cls.name]) if cls.name in rows else _env_key(cls)
        if key is not None:
            resolved[cls.name] = key
    return resolved, frozenset(owners)


_keys = cache_version.KeptCopy(_read_keys)


def users_secrets() -> list[str]:
    """Every user's active own key, decrypted: only for masking them wherever text is written
    (the log filter), never for a call. Kept per process like the platform's keys."""
    return list(_users_secrets.get())


def _read_users_secrets() -> tuple[str, ...]:
    return tuple(row.secret() for row in APIKey.objects.filter(active=True, owner__isnull=False))


_users_secrets = cache_version.KeptCopy(_read_users_secrets)


def resolve_key(provider: str) -> ResolvedKey | None:
    """One provider's platform key (active database key, else environment variable), or None."""
    cls = provider_class(provider)  # accepts aliases ("google"); rows store the canonical name
    row = APIKey.objects.filter(provider=cls.name, active=True, owner__isnull=True).first()
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


# --- Key health (SPEC §6) ----------------------------------------------------------------------


def check_key(provider: str, secret: str, *, source: str) -> str:
    """Ask ``provider`` whether it accepts ``secret`` (its ``test_connection``, no retry): its
    answer ("OpenRouter accepted the key (120 ms)."), or the mapped ``LLMError``, whose message
    names ``source`` and never holds the key (nor a piece of it)."""
    client = provider_class(provider)(secret, key_source=source)
    try:
        return client.test_connection()
    except LLMError as exc:
        exc.message = without_key(exc.message, secret)
        exc.args = (exc.message,)
        raise


def rejects_key(error: LLMError | None) -> bool:
    """Does ``error`` say the provider refused the key itself (invalid, revoked, lacking
    permission: HTTP 401/403, Gemini's API_KEY_INVALID)? A 402 (``InsufficientCredits``) is the
    account's credit, not the key: topping it up makes the key work again."""
    return isinstance(error, ProviderAuthError) and not isinstance(error, InsufficientCredits)


# Consecutive rejections are forgotten a day after the last one: "in a row" means calls of the
# same incident, not one rejection a week.
_REJECTIONS_TIMEOUT = 24 * 3600


def _rejections_key(key: ResolvedKey) -> str:
    # A stored key by its row; a setting's key by its provider (one such key per provider).
    return f"llm_providers:key:{key.provider}:{key.key_id or 'setting'}:rejections"


def record_key_outcome(key: ResolvedKey, error: LLMError | None) -> None:
    """Tell key health how a call made with ``key`` went (``error`` None: it succeeded).

    A success forgets the key's rejections; a rejection of the key (``rejects_key``) counts one
    in Django's cache, shared by the processes like the circuits' counts; other errors say
    nothing about the key. At ``LLM_CIRCUIT_FAILURES`` rejections in a row the key is checked
    once with the provider's ``test_connection`` (a request independent of the caller's model
    and content, so a caller asking again and again for a model the key may not use cannot
    get the platform's key switched off); refused there too, a stored key is deactivated with
    the reason in its ``status_note``, and a setting's key is reported in the log (it cannot
    be deactivated from here).

    Cost: a success is one cache read (and one delete only after rejections were counted);
    a rejection is an ``add`` or ``incr``. ``LLM_CIRCUIT_FAILURES`` below 1 turns it off.

    A user's own key (SPEC §12.2) is left alone: deactivating it would switch its owner's
    calls to the platform's key (and their cost limit) without their say. Each rejection is
    reported to them instead (the router names it as their key), until they replace or delete
    it under ``me/keys/``.
    """
    if not key.secret or key.is_users:  # no key; a user's own key (see below)
        return
    counter = _rejections_key(key)
    if error is None:
        if cache.get(counter) is not None:
            cache.delete(counter)
        return
    threshold = int(llm_settings.LLM_CIRCUIT_FAILURES)
    if threshold < 1 or not rejects_key(error):
        return
    try:
        count = count_up(counter, _REJECTIONS_TIMEOUT)
    except CountLockTimeout:  # a stalled cache: the next rejection counts
        logger.warning("The rejections of a %s key could not be counted.", key.provider)
        return
    if count >= threshold:
        _confirm_rejection(key, error, count)


def _confirm_rejection(key: ResolvedKey, error: LLMError, count: int) -> None:
    """The ``count``-th rejection in a row: deactivate the key if the provider's key check
    refuses it too; forget the rejections if the check accepts it (the calls were refused for
    what they asked, not for the key); keep counting if the check could not tell."""
    try:
        check_key(key.provider, key.secret, source=key.source)
    except LLMError as exc:
        if not rejects_key(exc):
            return
        error = exc
    else:
        cache.delete(_rejections_key(key))
        logger.info(
            "%s rejected %d calls in a row made with the key from %s, but accepts the key "
            "itself: it is kept.",
            provider_class(key.provider).label,
            count,
            key.source,
        )
        return
    cache.delete(_rejections_key(key))
    reason = without_key(error.message, key.secret)
    if key.key_id is None:
        logger.warning(
            "The key from %s was rejected on %d calls in a row and by a key check (%s). "
            "Replace it, or add a key in the admin key manager.",
            key.source,
            count,
            reason,
        )
        return
    deactivate_key(key.key_id, count=count, reason=reason)


def deactivate_key(key_id: int, *, count: int, reason: str) -> APIKey | None:
    """Deactivate the stored key ``key_id`` that its provider rejected on ``count`` calls in a
    row, with ``reason`` (the provider's message, already free of the key) in its
    ``status_note``. Saved through the model, so every process drops the key at its next call.
    None when the key is no longer active (another process or an admin was first)."""
    now = timezone.now()
    with transaction.atomic():
        row = APIKey.objects.select_for_update().filter(pk=key_id, active=True).first()
        if row is None:
            return None
        row.active = False
        row.checked_at = now
        row.status_note = _note(
            f"Deactivated {now:%Y-%m-%d %H:%M} UTC: rejected by "
            f"{row.get_provider_display()} on {count} calls in a row and by a key check. ",
            reason,
        )
        row.save(update_fields=["active", "checked_at", "status_note"])
    logger.warning("Deactivated %s: %s", row, row.status_note)
    return row


def _note(prefix: str, detail: str) -> str:
    limit = APIKey._meta.get_field("status_note").max_length
    room = limit - len(prefix)
    return prefix + (detail if len(detail) <= room else detail[: room - 1] + "…")


# A piece of a key this long is masked wherever a message may carry it: an upstream may echo the
# key cut short or masked its own way (``sk-or-v1-abc…wxyz``), which the exact key misses.
def without_key(text: str, secret: str) -> str:
    """``text`` with every piece of ``secret`` of 8 characters or more replaced by ``[key]``."""
    return without_secrets(text, [secret])
