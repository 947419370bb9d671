"""Seed the price table (USD per million tokens) with current list prices.

Sources: OpenRouter /models and litellm's price table as collected in shared/PROVIDERS.md §4;
Google's Gemini API pricing page (paid tier, prompts up to 200k tokens); for Hugging Face, whose
price depends on the inference provider its router picks, DeepInfra's list price for
Llama 3.1 8B Instruct. Refresh OpenRouter's with `manage.py sync_model_prices`; edit any in the
admin.
"""

from decimal import Decimal

from django.db import migrations

PRICES = {
    "openrouter": {
        "openai/gpt-4-turbo": ("10", "30"),
        "openai/gpt-4o": ("2.5", "10"),
        "openai/gpt-4o-mini": ("0.15", "0.6"),
        "openai/gpt-4": ("30", "60"),
        "openai/gpt-3.5-turbo": ("0.5", "1.5"),
        "openai/gpt-4.1": ("2", "8"),
        "openai/gpt-4.1-mini": ("0.4", "1.6"),
        "anthropic/claude-3-opus": ("15", "75"),
        "anthropic/claude-3.5-sonnet": ("3", "15"),
        "anthropic/claude-3.7-sonnet": ("3", "15"),
        "anthropic/claude-sonnet-4": ("3", "15"),
        "anthropic/claude-3-haiku": ("0.25", "1.25"),
        "anthropic/claude-3.5-haiku": ("0.8", "4"),
        "mistralai/mixtral-8x7b-instruct": ("0.24", "0.24"),
        "mistralai/mistral-7b-instruct": ("0.13", "0.13"),
        "meta-llama/llama-3-70b-instruct": ("0.59", "0.79"),
        "google/gemini-2.0-flash-001": ("0.1", "0.4"),
        "google/gemini-2.5-flash": ("0.3", "2.5"),
        "google/gemini-2.5-pro": ("1.25", "10"),
        "deepseek/deepseek-chat": ("0.14", "0.28"),
    },
    "gemini": {
        "gemini-2.5-pro": ("1.25", "10"),
        "gemini-2.5-flash": ("0.3", "2.5"),
        "gemini-2.5-flash-lite": ("0.1", "0.4"),
        "gemini-2.0-flash": ("0.1", "0.4"),
        "gemini-2.0-flash-001": ("0.1", "0.4"),
        "gemini-2.0-flash-lite": ("0.075", "0.3"),
        "gemini-3-pro-preview": ("2", "12"),
        "gemini-3-flash-preview": ("0.5", "3"),
    },
    "huggingface": {
        "meta-llama/llama-3.1-8b-instruct": ("0.03", "0.05"),
    },
}


def seed(apps, schema_editor):
    ModelPrice = apps.get_model("llm_providers", "ModelPrice")
    for provider, models in PRICES.items():
        for model, (prompt, completion) in models.items():
            ModelPrice.objects.update_or_create(
                provider=provider,
                model=model,
                defaults={
                    "prompt_per_million": Decimal(prompt),
                    "completion_per_million": Decimal(completion),
                    "source": "seed",
                },
            )


def unseed(apps, schema_editor):
    apps.get_model("llm_providers", "ModelPrice").objects.filter(source="seed").delete()


class Migration(migrations.Migration):
    dependencies = [("llm_providers", "0001_initial")]

    operations = [migrations.RunPython(seed, unseed)]
