from django.apps import AppConfig


class LLMProvidersConfig(AppConfig):
    name = "llm_providers"
    verbose_name = "LLM providers"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the system checks (encryption key in production, GPT_PROVIDER value).
        from . import (
            checks,  # noqa: F401
            freshness,
        )

        # The rows the hot path caches per process (keys, API tokens, users, budgets).
        freshness.watch_models()
