"""Per-user throttles, counted in Django's cache (shared across processes when REDIS_URL is set).

Rates come from ``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]`` (``LLM_API_RATE`` and
``LLM_API_GENERATION_RATE`` in the environment).
"""

from rest_framework import throttling


class UserRateThrottle(throttling.UserRateThrottle):
    """Every endpoint: one rate per user (per IP for anonymous requests)."""

    scope = "llm_api"


class GenerationRateThrottle(throttling.UserRateThrottle):
    """The endpoints that spend money upstream get their own, lower rate."""

    scope = "llm_generation"
