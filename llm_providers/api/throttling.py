"""Per-user throttles: DRF's ``UserRateThrottle`` (its rates, cache keys, ``wait()`` and the
``Retry-After`` it becomes), with the rates taken from the app's settings (``LLM_API_RATE``,
``LLM_API_GENERATION_RATE``) rather than the host project's
``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]``, and counted so that a rate holds across every
process and machine sharing the cache.

DRF keeps a history of timestamps per user and writes it back after reading it: two processes
doing that at once each write their own version and one request goes uncounted, and with many
requests in flight for one user every one of them waits for the others' read and write. Here a
user's requests are counted per window of the rate's length (``counting.counter``: one atomic
increment, without a lock) and the rate is checked against a sliding window: the current
window's count plus the previous window's, weighted by how much of it the sliding window still
covers. A refused request is taken back out of the count, as DRF does not count it either.
"""

from __future__ import annotations

import math

from django.core.cache import DEFAULT_CACHE_ALIAS
from rest_framework import throttling

from ..conf import llm_settings
from ..counting import counter


class UserRateThrottle(throttling.UserRateThrottle):
    """Every endpoint but the generation ones: one rate per user (``LLM_API_RATE``)."""

    scope = "llm_api"
    rate_setting = "LLM_API_RATE"
    cache_alias = DEFAULT_CACHE_ALIAS
    retry_after: float | None = None

    def get_rate(self) -> str | None:
        return getattr(llm_settings, self.rate_setting)

    def allow_request(self, request, view) -> bool:
        """Count the request in its window and admit it if the sliding window's count is within
        the rate; a refused request is taken back out of the count."""
        if self.rate is None:
            return True
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        now = self.timer()
        window = math.floor(now / self.duration)
        into = (now - window * self.duration) / self.duration  # 0..1 of the current window
        counts = counter(self.cache_alias)
        current_key, kept = f"{self.key}:{window}", 2 * self.duration  # the next one reads it too
        current = counts.add(current_key, 1, kept)
        previous = counts.get(f"{self.key}:{window - 1}")
        if previous * (1 - into) + current <= self.num_requests:
            return True
        # Concurrent refusals not yet taken back out are no admitted requests: at most the rate.
        admitted = min(current - 1, self.num_requests)
        self.retry_after = self._time_until_admitted(previous, admitted, into)
        counts.add(current_key, -1, kept)
        return False

    def _time_until_admitted(self, previous: int, current: int, into: float) -> float:
        """Seconds until one more request fits: until the previous window's weight has fallen
        enough, or, when this window alone is full, until the next window and the weight of
        this one in it has."""
        room = self.num_requests - 1 - current
        if room >= 0 and previous:
            return max(0.0, (1 - room / previous - into) * self.duration)
        overflow = current + 1 - self.num_requests  # of this window, into the next one
        return (1 - into) * self.duration + max(0, overflow) / max(current, 1) * self.duration

    def wait(self) -> float | None:
        # At least a moment: DRF rounds it up to the Retry-After in whole seconds.
        return None if self.retry_after is None else max(self.retry_after, 0.001)


class GenerationRateThrottle(UserRateThrottle):
    """The endpoints that spend money upstream (``generate/``, ``v1/chat/completions``) have their
    own, lower rate (``LLM_API_GENERATION_RATE``) instead of the general one: each throttle counts
    in the shared cache on every request, so one is half the cost of two."""

    scope = "llm_generation"
    rate_setting = "LLM_API_GENERATION_RATE"
