"""Per-user throttles: DRF's ``UserRateThrottle``, counted in Django's default cache (shared by
every process when it is Redis or another shared cache), with the rates taken from the app's
settings (``LLM_API_RATE``, ``LLM_API_GENERATION_RATE``) rather than the host project's
``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]``."""

from rest_framework import throttling

from ..conf import llm_settings


class UserRateThrottle(throttling.UserRateThrottle):
    """Every endpoint but the generation ones: one rate per user (``LLM_API_RATE``)."""

    scope = "llm_api"
    rate_setting = "LLM_API_RATE"

    def get_rate(self) -> str | None:
        return getattr(llm_settings, self.rate_setting)


class GenerationRateThrottle(UserRateThrottle):
    """The endpoints that spend money upstream (``generate/``, ``v1/chat/completions``) have their
    own, lower rate (``LLM_API_GENERATION_RATE``) instead of the general one: each throttle reads
    and writes its history in the shared cache on every request, so one is half the cost of two."""

    scope = "llm_generation"
    rate_setting = "LLM_API_GENERATION_RATE"
