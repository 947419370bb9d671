"""Per-user throttles: DRF's ``UserRateThrottle``, counted in Django's default cache, with the
rates taken from the app's settings (``LLM_API_RATE``, ``LLM_API_GENERATION_RATE``) rather than
the host project's ``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]``.

DRF reads a history from the cache, filters it and writes it back: two processes doing that at
once each write their own version and one request goes uncounted, so a flood through several
workers admitted several times the rate. Here that read-modify-write is done under a lock on its
key, held by every process that shares the cache:

- the file cache (the embedded default, shared by the processes of one machine): an OS lock
  (``fcntl.flock``) on one of a fixed set of lock files beside the cache's files, released by the
  kernel if its holder dies;
- any other cache (Redis across machines; locmem, memcached): a key taken with ``cache.add``,
  atomic there, which expires on its own after ``LOCK_TTL`` seconds if its holder dies.

The histories stay DRF's (a list of timestamps under ``throttle_<scope>_<user>``), and so do
``wait()`` and the ``Retry-After`` it becomes.
"""

from __future__ import annotations

import fcntl
import logging
import os
import random
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django.conf import settings
from django.core.cache import DEFAULT_CACHE_ALIAS, BaseCache, caches
from django.core.cache.backends.filebased import FileBasedCache
from rest_framework import throttling

from ..conf import llm_settings

logger = logging.getLogger(__name__)

# Seconds a ``cache.add`` lock lives if its holder never releases it (a killed worker). Whole
# seconds: Redis and memcached round a timeout down to an integer.
LOCK_TTL = 1
# Seconds a request waits for the lock of its key before it is refused (see ``allow_request``).
LOCK_WAIT = 1.0
# Lock files of the file cache: a fixed set, so they never accumulate with users; two keys that
# share one wait for each other only for the length of a cache read and write.
LOCK_STRIPES = 256
# Polling for a busy lock: first retry after this many seconds, doubling up to the maximum.
POLL_FIRST, POLL_MAX = 0.0005, 0.01


class ThrottleLockTimeout(Exception):
    """The lock of a throttle history could not be taken within its wait."""


def _poll(try_acquire: Callable[[], bool], wait: float) -> None:
    """Call ``try_acquire`` until it returns True; raise ``ThrottleLockTimeout`` after ``wait``
    seconds. Sleeps are jittered so that waiters released together do not retry together."""
    deadline = time.monotonic() + wait
    pause = POLL_FIRST
    while not try_acquire():
        left = deadline - time.monotonic()
        if left <= 0:
            raise ThrottleLockTimeout
        time.sleep(min(left, random.uniform(pause / 2, pause)))
        pause = min(pause * 2, POLL_MAX)


def lock_file_path(directory: str, key: str) -> str:
    """The lock file of ``key`` in the file cache's ``directory``. The stripe is a CRC of the
    key, the same in every process (``hash()`` of a string is salted per process). The name
    does not end in ``.djcache``, so the cache's ``clear()`` and culling leave it alone."""
    stripe = zlib.crc32(key.encode()) % LOCK_STRIPES
    return os.path.join(directory, f"throttle-{stripe:03d}.lock")


def _open_lock_file(path: str) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except FileNotFoundError:  # the cache has written nothing yet: it creates its directory too
        os.makedirs(os.path.dirname(path), 0o700, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)


@contextmanager
def file_lock(path: str, wait: float = LOCK_WAIT) -> Iterator[None]:
    """An exclusive ``flock`` on ``path``, waited for at most ``wait`` seconds. A descriptor of
    its own each time: flock excludes other open files, so threads of one process exclude each
    other as processes do; and closing it (or the holder's death) releases the lock."""
    fd = _open_lock_file(path)
    try:

        def try_acquire() -> bool:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True

        _poll(try_acquire, wait)
        yield
    finally:
        os.close(fd)  # releases the lock


@contextmanager
def cache_lock(cache: BaseCache, key: str, wait: float = LOCK_WAIT) -> Iterator[None]:
    """A lock taken with ``cache.add(<key>:lock)`` (atomic in Redis, locmem and memcached),
    waited for at most ``wait`` seconds; it expires by itself after ``LOCK_TTL`` seconds. Released
    by deleting it only while it is certainly still ours: a holder stalled past ``LOCK_TTL`` may
    have lost it to another, whose lock it must not delete."""
    lock_key = f"{key}:lock"
    taken_at = 0.0

    def try_acquire() -> bool:
        nonlocal taken_at
        taken_at = time.monotonic()
        return cache.add(lock_key, 1, timeout=LOCK_TTL)

    _poll(try_acquire, wait)
    try:
        yield
    finally:
        if time.monotonic() - taken_at < LOCK_TTL * 0.9:
            cache.delete(lock_key)


class UserRateThrottle(throttling.UserRateThrottle):
    """Every endpoint but the generation ones: one rate per user (``LLM_API_RATE``)."""

    scope = "llm_api"
    rate_setting = "LLM_API_RATE"
    cache_alias = DEFAULT_CACHE_ALIAS
    lock_wait = LOCK_WAIT
    lock_timed_out = False

    @property
    def cache(self) -> BaseCache:
        # The backend itself (DRF's class attribute is a proxy): its type picks the lock.
        return caches[self.cache_alias]

    def get_rate(self) -> str | None:
        return getattr(llm_settings, self.rate_setting)

    def history_lock(self, key: str):
        """The lock (a context manager) that makes the read-modify-write of the history under
        ``key`` atomic for every process sharing the cache. Override it for a cache whose own
        lock is better (a Redis client's ``lock()``, say)."""
        cache = self.cache
        if isinstance(cache, FileBasedCache):
            directory = os.path.abspath(settings.CACHES[self.cache_alias]["LOCATION"])
            return file_lock(lock_file_path(directory, key), self.lock_wait)
        return cache_lock(cache, key, self.lock_wait)

    def allow_request(self, request, view) -> bool:
        """DRF's check, under the lock of the history's key. A lock not had within
        ``lock_wait`` refuses the request (429, retry after ``lock_wait``): it means a cache
        stalled or a flood on one key, and admitting uncounted requests then is what the
        throttle exists to prevent — the generation endpoints spend money upstream."""
        if self.rate is None:
            return True
        key = self.get_cache_key(request, view)
        if key is None:
            return True
        try:
            with self.history_lock(key):
                return super().allow_request(request, view)
        except ThrottleLockTimeout:
            self.lock_timed_out = True
            logger.warning(
                "Throttle %s: the lock of %s was not free within %gs; request refused.",
                self.scope,
                key,
                self.lock_wait,
            )
            return False

    def wait(self) -> float | None:
        if self.lock_timed_out:
            return self.lock_wait
        return super().wait()


class GenerationRateThrottle(UserRateThrottle):
    """The endpoints that spend money upstream (``generate/``, ``v1/chat/completions``) have their
    own, lower rate (``LLM_API_GENERATION_RATE``) instead of the general one: each throttle reads
    and writes its history in the shared cache on every request, so one is half the cost of two."""

    scope = "llm_generation"
    rate_setting = "LLM_API_GENERATION_RATE"
