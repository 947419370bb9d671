"""Counts kept in Django's default cache, which every process sharing the cache adds to: the
failures of a provider in a row (``circuits``), the rejections of a key in a row (``keys``) and
the requests of a user per throttle window (``api.throttling``).

Every process and machine sharing the cache must see one count, so an increment is atomic:

- Redis, memcached and locmem: ``add`` and ``incr`` are each atomic in the backend.
- The file cache (the embedded default, shared by the processes of one machine): its ``incr`` is
  a read and a write, so the pair runs under an OS lock (``fcntl.flock``) on one of a fixed set of
  lock files beside the cache's files, released by the kernel if its holder dies. The threads of
  one process first queue on a lock of their own, so the OS lock is only contended by processes.
"""

from __future__ import annotations

import fcntl
import os
import random
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django.conf import settings
from django.core.cache import DEFAULT_CACHE_ALIAS, caches
from django.core.cache.backends.filebased import FileBasedCache

# Seconds a count waits for the lock of its key (the file cache only) before giving up.
LOCK_WAIT = 1.0
# Lock files of the file cache: a fixed set, so they never accumulate with keys; two keys that
# share one wait for each other only for the length of a cache read and write.
LOCK_STRIPES = 256
# Polling for a lock another process holds: first retry after this many seconds, doubling up to
# the maximum, jittered so that waiters released together do not retry together.
POLL_FIRST, POLL_MAX = 0.0002, 0.005

_thread_locks = [threading.Lock() for _ in range(LOCK_STRIPES)]


class CountLockTimeout(Exception):
    """The lock of a count could not be taken within its wait (the file cache only)."""


def stripe(key: str) -> int:
    """The lock stripe of ``key``: a CRC, the same in every process (``hash()`` of a string is
    salted per process)."""
    return zlib.crc32(key.encode()) % LOCK_STRIPES


def lock_file_path(directory: str, key: str) -> str:
    """The lock file of ``key`` in the file cache's ``directory``. The name does not end in
    ``.djcache``, so the cache's ``clear()`` and culling leave it alone."""
    return os.path.join(directory, f"count-{stripe(key):03d}.lock")


def _open_lock_file(path: str) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except FileNotFoundError:  # the cache has written nothing yet: it creates its directory too
        os.makedirs(os.path.dirname(path), 0o700, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)


def _poll(try_acquire: Callable[[], bool], deadline: float) -> None:
    pause = POLL_FIRST
    while not try_acquire():
        left = deadline - time.monotonic()
        if left <= 0:
            raise CountLockTimeout
        time.sleep(min(left, random.uniform(pause / 2, pause)))
        pause = min(pause * 2, POLL_MAX)


@contextmanager
def file_lock(path: str, wait: float = LOCK_WAIT) -> Iterator[None]:
    """An exclusive ``flock`` on ``path``, waited for at most ``wait`` seconds (then
    ``CountLockTimeout``). The threads of this process queue on a ``threading.Lock`` of the same
    stripe first. A descriptor of its own each time: closing it (or the holder's death)
    releases the lock."""
    deadline = time.monotonic() + wait
    thread_lock = _thread_locks[int(os.path.basename(path)[6:9])]
    if not thread_lock.acquire(timeout=wait):
        raise CountLockTimeout
    try:
        fd = _open_lock_file(path)
        try:

            def try_acquire() -> bool:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return False
                return True

            _poll(try_acquire, deadline)
            yield
        finally:
            os.close(fd)  # releases the flock
    finally:
        thread_lock.release()


def _file_cache_dir(alias: str) -> str | None:
    if isinstance(caches[alias], FileBasedCache):
        return os.path.abspath(settings.CACHES[alias]["LOCATION"])
    return None


def count_up(
    key: str,
    timeout: int,
    *,
    delta: int = 1,
    extend: bool = True,
    wait: float = LOCK_WAIT,
    alias: str = DEFAULT_CACHE_ALIAS,
) -> int:
    """Add ``delta`` to the count at ``key`` (a missing count is 0) and return the new count,
    which is forgotten ``timeout`` seconds after its last change. ``extend=False`` allows that
    to be ``timeout`` seconds after it was first counted instead, where that saves a round trip
    (for counts whose keys are never reused, like a throttle's windows).

    With the file cache, ``CountLockTimeout`` when its lock is not had within ``wait``."""
    cache = caches[alias]
    directory = _file_cache_dir(alias)
    if directory is not None:
        with file_lock(lock_file_path(directory, key), wait):
            count = cache.get(key, 0) + delta
            cache.set(key, count, timeout=timeout)
            return count
    if cache.add(key, delta, timeout=timeout):
        return delta
    try:
        count = cache.incr(key, delta)
    except ValueError:  # expired between the two calls
        cache.add(key, delta, timeout=timeout)
        return delta
    if extend:
        # ``incr`` keeps the expiry ``add`` set; a run of failures moves it on.
        cache.touch(key, timeout=timeout)
    return count
