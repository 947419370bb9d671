"""Per-user throttles, counted in Django's cache (shared across processes when REDIS_URL is set).

Rates come from ``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]`` (``LLM_API_RATE`` and
``LLM_API_GENERATION_RATE`` in the environment).
"""

from array import array

from rest_framework import throttling


class PackedHistoryThrottle(throttling.UserRateThrottle):
    """DRF's per-user sliding-window throttle, to the letter (the same window, count and
    ``Retry-After``), with the history of request times kept in the cache as packed doubles.

    DRF keeps a list of floats, which the cache pickles and unpickles on every request: for a
    user near a rate of 600/min that is 600 floats each way, twice per generation (two
    throttles), the bulk of what throttling cost. Packed, it is one bytes object (a copy).
    The history runs oldest first here (DRF's runs newest first), so a request appends.

    The key differs from DRF's (``_packed``): a process still running DRF's throttle (during
    a rolling restart, sharing Redis) never reads this format, nor this one DRF's.
    """

    cache_format = "throttle_%(scope)s_%(ident)s_packed"

    def allow_request(self, request, view):
        if self.rate is None:
            return True
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        history = array("d")
        packed = self.cache.get(self.key)
        if packed:
            history.frombytes(packed)
        self.history = history
        self.now = self.timer()
        # Drop the requests that left the window, oldest first, stopping at the first one still
        # in it: exactly what DRF's loop drops (also if the clock ever stepped back).
        cutoff = self.now - self.duration
        expired = 0
        while expired < len(history) and history[expired] <= cutoff:
            expired += 1
        if expired:
            del history[:expired]
        if len(history) >= self.num_requests:
            return self.throttle_failure()
        return self.throttle_success()

    def throttle_success(self):
        self.history.append(self.now)
        self.cache.set(self.key, self.history.tobytes(), self.duration)
        return True

    def wait(self):
        # DRF's, with its oldest entry (history[-1] there) at the front.
        if self.history:
            remaining_duration = self.duration - (self.now - self.history[0])
        else:
            remaining_duration = self.duration
        available_requests = self.num_requests - len(self.history) + 1
        if available_requests <= 0:
            return None
        return remaining_duration / float(available_requests)


class UserRateThrottle(PackedHistoryThrottle):
    """Every endpoint: one rate per user (per IP for anonymous requests)."""

    scope = "llm_api"


class GenerationRateThrottle(PackedHistoryThrottle):
    """The endpoints that spend money upstream get their own, lower rate."""

    scope = "llm_generation"
