"""Per-user throttles: DRF's ``UserRateThrottle``, counted in Django's default cache (shared by
every process when it is Redis or another shared cache), with the rates taken from the app's
settings (``LLM_API_RATE``, ``LLM_API_GENERATION_RATE``) rather than the host project's
``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]``."""

from rest_framework import throttling

from ..conf import llm_settings


class UserRateThrottle(throttling.UserRateThrottle):
    """Every endpoint: one rate per user (``LLM_API_RATE``)."""

    scope = "llm_api"
    rate_setting = "LLM_API_RATE"

    def get_rate(self) -> str | None:
        return getattr(llm_settings, self.rate_setting)


class GenerationRateThrottle(UserRateThrottle):
    """The endpoints that spend money upstream get their own, lower rate
    (``LLM_API_GENERATION_RATE``)."""

    scope = "llm_generation"
    rate_setting = "LLM_API_GENERATION_RATE"
