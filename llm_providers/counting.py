"""Counts that every process sharing Django's default cache adds to: the failures of a provider
in a row (``circuits``), the rejections of a key in a row (``keys``) and the requests of a user
per throttle window (``api.throttling``).

Every process and machine sharing the cache must see one count, so an increment is atomic:

- Redis, memcached and locmem: ``add`` and ``incr`` are each atomic in the backend.
- The file cache (the embedded default, shared by the processes of one machine): its ``incr`` is
  a read and a write, so ``count_up`` runs the pair under an OS lock (``fcntl.flock``) on one of a
  fixed set of lock files beside the cache's files, released by the kernel if its holder dies.
  The threads of one process first queue on a lock of their own. That suits counts that change
  now and then (failures). A throttle counts every request, a thousand at once for one user
  under load, and a lock holder that gives up the GIL for its file I/O makes all of them wait
  for it: ``counter()`` gives it ``AppendCounter`` there instead, which takes no lock at all.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import random
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

from django.conf import settings
from django.core.cache import DEFAULT_CACHE_ALIAS, cache, caches
from django.core.cache.backends.filebased import FileBasedCache

# Seconds a count waits for the lock of its key (the file cache only) before giving up.
LOCK_WAIT = 1.0
# Lock files of the file cache: a fixed set, so they never accumulate with keys; two keys that
# share one wait for each other only for the length of a cache read and write.
LOCK_STRIPES = 256
# Polling for a lock another process holds: first retry after this many seconds, doubling up to
# the maximum, jittered so that waiters released together do not retry together.
POLL_FIRST, POLL_MAX = 0.0002, 0.005

# One per lock file, for the threads of this process (a fixed set, as the files are).
_thread_locks: dict[str, threading.Lock] = {}


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
    thread_lock = _thread_locks.setdefault(path, threading.Lock())
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


def count_up(key: str, timeout: int, *, delta: int = 1, wait: float = LOCK_WAIT) -> int:
    """Add ``delta`` to the count at ``key`` (a missing count is 0) and return the new count,
    which is forgotten ``timeout`` seconds after its last change.

    With the file cache, ``CountLockTimeout`` when its lock is not had within ``wait``."""
    directory = _file_cache_dir(DEFAULT_CACHE_ALIAS)
    if directory is not None:
        with file_lock(lock_file_path(directory, key), wait):
            count = cache.get(key, 0) + delta
            cache.set(key, count, timeout=timeout)
            return count
    return CacheCounter().add(key, delta, timeout, extend=True)


# --- Counts under keys that are never reused (a throttle's windows) -----------------------------


class Counter(Protocol):
    """Counts under keys that are each used for one stretch of time and never again."""

    def add(self, key: str, delta: int, timeout: int) -> int:
        """Add ``delta`` (1 or -1) to the count at ``key`` and return the new count; it may be
        forgotten ``timeout`` seconds after it was first counted."""

    def get(self, key: str) -> int:
        """The count at ``key``; 0 when there is none."""


class CacheCounter:
    """A count in a cache whose ``add`` and ``incr`` are atomic (Redis, memcached, locmem)."""

    def __init__(self, alias: str = DEFAULT_CACHE_ALIAS):
        self.cache = caches[alias]

    def add(self, key: str, delta: int, timeout: int, *, extend: bool = False) -> int:
        """``extend``: forget the count ``timeout`` seconds after its last change instead (one
        more round trip when it already existed)."""
        if self.cache.add(key, delta, timeout=timeout):
            return delta
        try:
            count = self.cache.incr(key, delta)
        except ValueError:  # expired between the two calls
            self.cache.add(key, delta, timeout=timeout)
            return delta
        if extend:  # ``incr`` keeps the expiry ``add`` set
            self.cache.touch(key, timeout=timeout)
        return count

    def get(self, key: str) -> int:
        return self.cache.get(key, 0)


class AppendCounter:
    """Counts in files beside the file cache's, without a lock: adding one appends a byte to the
    key's file of ups (``O_APPEND``: each write lands at the end, atomically, whatever other
    processes do) and the offset that write ends at is the number of ups so far; taking one back
    appends to its file of downs. The count is ups minus downs. Files not written to for longer
    than the longest timeout counted are removed, at most every ``SWEEP_EVERY`` seconds."""

    SWEEP_EVERY = 600.0
    _swept_at = 0.0
    _longest = 0

    def __init__(self, directory: str):
        self.directory = os.path.join(directory, "counts")

    def _path(self, key: str, part: str) -> str:
        name = hashlib.md5(key.encode(), usedforsecurity=False).hexdigest()
        return os.path.join(self.directory, f"{name}.{part}")

    def _append(self, path: str, count: int) -> int:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        except FileNotFoundError:
            os.makedirs(self.directory, 0o700, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, b"1" * count)
            return os.lseek(fd, 0, os.SEEK_CUR)
        finally:
            os.close(fd)

    @staticmethod
    def _size(path: str) -> int:
        try:
            return os.stat(path).st_size
        except FileNotFoundError:
            return 0

    def add(self, key: str, delta: int, timeout: int) -> int:
        self._sweep_now_and_then(timeout)
        if delta >= 0:
            # The downs are read before the up is appended: a down taken after it (another
            # request refused after this one counted) must not make this count look smaller,
            # or two requests could each see room for one. As it is, a count is never below the
            # requests counted before it and not taken back out, as ``incr`` in Redis returns.
            downs = self._size(self._path(key, "down"))
            return self._append(self._path(key, "up"), delta) - downs
        downs = self._append(self._path(key, "down"), -delta)
        return self._size(self._path(key, "up")) - downs

    def get(self, key: str) -> int:
        return self._size(self._path(key, "up")) - self._size(self._path(key, "down"))

    def _sweep_now_and_then(self, timeout: int) -> None:
        cls = type(self)
        cls._longest = max(cls._longest, timeout)
        now = time.time()
        if now - cls._swept_at < self.SWEEP_EVERY:
            return
        cls._swept_at = now
        self.sweep(now - cls._longest)

    def sweep(self, before: float) -> None:
        """Remove the files last written to before ``before`` (a time)."""
        try:
            entries = list(os.scandir(self.directory))
        except FileNotFoundError:
            return
        for entry in entries:
            try:
                if entry.stat().st_mtime < before:
                    os.unlink(entry.path)
            except FileNotFoundError:  # another process swept it
                pass

    def clear(self) -> None:
        self.sweep(float("inf"))


def counter(alias: str = DEFAULT_CACHE_ALIAS) -> Counter:
    """The counter that suits the cache ``alias``: lock-free in every case."""
    directory = _file_cache_dir(alias)
    return CacheCounter(alias) if directory is None else AppendCounter(directory)
