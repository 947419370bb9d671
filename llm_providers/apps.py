from django.apps import AppConfig


class LLMProvidersConfig(AppConfig):
    name = "llm_providers"
    verbose_name = "LLM providers"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the system checks (encryption key in production, GPT_PROVIDER value).
        from . import (
            cache_version,
            checks,  # noqa: F401
        )

        # The rows processes keep in memory are versioned in the shared cache.
        cache_version.watch_models()
