"""A count kept in Django's default cache, which every process sharing the cache adds to: the
failures of a provider in a row (``circuits``), the rejections of a key in a row (``keys``)."""

from __future__ import annotations

import threading

from django.core.cache import cache

# ``add`` and ``incr`` are each atomic with Redis and locmem; this lock serializes the threads
# of one process around the pair. With the file cache, two processes counting at the same
# instant may count once.
_lock = threading.Lock()


def count_up(key: str, timeout: int) -> int:
    """Add one to the count at ``key`` and return it; the count is forgotten ``timeout``
    seconds after its last increment."""
    with _lock:
        if cache.add(key, 1, timeout=timeout):
            return 1
        try:
            count = cache.incr(key)
        except ValueError:  # expired between the two calls
            cache.add(key, 1, timeout=timeout)
            return 1
    # ``incr`` keeps no timeout with some backends (the file cache stores the new value with
    # the default one): each increment sets the window again.
    cache.touch(key, timeout=timeout)
    return count
