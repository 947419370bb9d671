"""The ``CustomProvider`` table: custom OpenAI-compatible providers defined in the admin
(SPEC §12.1). One row is one provider, with no migration and no code.

It is a module of its own because the registry reads it while ``models`` (keys) uses the
registry; ``models`` re-exports it, so it is found where Django's models are.
"""

from django.db import models


class CustomProvider(models.Model):
    """A server that speaks OpenAI's chat completions, e.g. Ollama at
    ``http://127.0.0.1:11434/v1``. Validated by ``forms.CustomProviderForm`` (reserved names)
    and again when the registry reads it (a bad row is skipped and logged, never fatal)."""

    name = models.CharField(
        max_length=32,
        unique=True,
        help_text="Lower case: the id in GPT_PROVIDER, the API (provider, v1 model "
        "<name>/<model>), keys, prices and reports.",
    )
    label = models.CharField(max_length=100, blank=True, help_text="For people; default: name.")
    base_url = models.CharField(
        "base URL",
        max_length=500,
        help_text="The URL that /chat/completions is appended to, e.g. http://127.0.0.1:11434/v1",
    )
    default_model = models.CharField(max_length=200)
    requires_key = models.BooleanField(
        default=True, help_text="Off for a server that takes no key (a local one)."
    )
    priority = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        help_text="Its place in detection and fallback (1 = first); empty: after the built-in "
        "providers.",
    )
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        app_label = "llm_providers"
        verbose_name = "custom provider"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.label or self.name
