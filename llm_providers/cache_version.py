"""A version number, kept in Django's cache, of the rarely changed rows that processes keep in
memory (provider keys, custom providers; anything else read on every call): a process keeps its
copy while the version is the one it read *before* reading the rows, and for at most its time
to live.

The models' ``post_save``/``post_delete`` signals bump the version when the saving transaction
commits, so the change reaches every process that shares the cache at its next read: all the
processes of a machine with the project's default cache (file-based), all the machines with
Redis. With a cache private to each process (Django's default ``LocMemCache`` in a host project)
or changes that bypass the signals (``QuerySet.update()``, raw SQL), the time to live is the bound.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Generic, TypeVar

from django.apps import apps
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import DEFAULT_DB_ALIAS, connection, transaction
from django.db.models.signals import post_delete, post_save

from .conf import llm_settings

T = TypeVar("T")

CACHE_KEY = "llm_providers:rows-version"


def current() -> int | None:
    """The version to keep with a copy of the rows, read *before* the rows are; None when the
    cache keeps nothing (``DummyCache``): then no copy may be kept."""
    version = cache.get(CACHE_KEY)
    if version is None:
        _start()
        version = cache.get(CACHE_KEY)
    return version


def bump() -> None:
    """Make every copy kept under an earlier version stale."""
    try:
        cache.incr(CACHE_KEY)
    except ValueError:  # not there: any new value makes the copies stale
        _start()


def _start() -> None:
    # The version may vanish: never set yet, cleared, evicted, or expired (``incr`` of some
    # backends stores the new value with the default timeout). It starts again from the clock,
    # not 1, so it never comes back to a value that a process still holds (the version grows by
    # one per change, the clock by far more): a vanished version costs one read, never a stale
    # copy.
    cache.add(CACHE_KEY, time.time_ns(), timeout=None)


class KeptCopy(Generic[T]):
    """A process's copy of what ``load`` reads from the database, kept while the version is the
    one read before loading it and for at most ``LLM_KEY_CACHE_SECONDS`` (0: never kept)."""

    def __init__(self, load: Callable[[], T]):
        self._load = load
        self._kept: tuple[T, float, int] | None = None  # (value, when read, version read before)

    def get(self) -> T:
        ttl = float(llm_settings.LLM_KEY_CACHE_SECONDS)
        if ttl <= 0:
            return self._load()
        version = current()
        kept = self._kept
        if (
            kept is not None
            and version is not None
            and kept[2] == version
            and time.monotonic() - kept[1] < ttl
        ):
            return kept[0]
        value = self._load()
        # Inside a transaction the rows read may still be rolled back: not kept.
        if version is not None and not connection.in_atomic_block:
            self._kept = (value, time.monotonic(), version)
        return value

    def forget(self) -> None:
        self._kept = None


def changed(**kwargs) -> None:
    """Signal receiver: rows that processes keep changed (``using`` names the database)."""
    # At once, for this thread's own later reads inside its transaction, and again at the
    # commit: a process that read the old rows between the two would otherwise keep them.
    bump()
    transaction.on_commit(bump, using=kwargs.get("using") or DEFAULT_DB_ALIAS)


def watch_models() -> None:
    """Connect ``changed`` to the models whose rows are kept (called by the app's ready()):
    provider keys, custom providers, budgets, users and, when DRF's tokens are installed,
    tokens. (By name: the registry, which the models use, reads this module's version.)"""
    models = [
        apps.get_model("llm_providers", name)
        for name in ("APIKey", "CustomProvider", "UsageBudget")
    ]
    models.append(get_user_model())
    if apps.is_installed("rest_framework.authtoken"):
        from rest_framework.authtoken.models import Token

        models.append(Token)
    for model in models:
        for signal in (post_save, post_delete):
            signal.connect(changed, sender=model, dispatch_uid=f"llm-cache-version-{model._meta}")
