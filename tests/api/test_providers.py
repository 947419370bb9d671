"""``GET providers/``: each provider, whether it has a key, its default model, which is primary."""

import pytest

from llm_providers.models import APIKey
from tests.api.support import API, assert_error

pytestmark = pytest.mark.django_db

PROVIDERS = API + "providers/"


def listing(available=(), primary=None, models=None):
    models = {
        "gemini": "gemini-2.5-flash",
        "openrouter": "openai/gpt-4-turbo",
        "huggingface": "meta-llama/Llama-3.1-8B-Instruct",
        **(models or {}),
    }
    return [
        {
            "name": name,
            "available": name in available,
            "default_model": models[name],
            "priority": priority,
            "primary": name == primary,
            "circuit": "closed",
        }
        for priority, name in enumerate(["gemini", "openrouter", "huggingface"], start=1)
    ]


def test_nothing_configured(api):
    response = api.get(PROVIDERS)
    assert response.status_code == 200
    assert response.json() == listing()


@pytest.mark.parametrize(
    ("available", "primary"),
    [
        (("gemini",), "gemini"),
        (("openrouter",), "openrouter"),
        (("huggingface",), "huggingface"),
        (("gemini", "openrouter", "huggingface"), "gemini"),
        (("openrouter", "huggingface"), "openrouter"),
        (("gemini", "huggingface"), "gemini"),
    ],
)
def test_primary_is_detected_in_priority_order(api, use_keys, available, primary):
    use_keys(*available)
    assert api.get(PROVIDERS).json() == listing(available, primary)


@pytest.mark.parametrize(
    ("value", "primary"),
    [("HF", "huggingface"), ("google", "gemini"), (" OpenRouter ", "openrouter")],
)
def test_primary_follows_gpt_provider(api, use_keys, settings, value, primary):
    use_keys("gemini", "openrouter", "huggingface")
    settings.GPT_PROVIDER = value
    assert api.get(PROVIDERS).json() == listing(("gemini", "openrouter", "huggingface"), primary)


def test_gpt_provider_without_a_key_is_primary_but_unavailable(api, use_keys, settings):
    use_keys("gemini")
    settings.GPT_PROVIDER = "openrouter"
    assert api.get(PROVIDERS).json() == listing(("gemini",), "openrouter")


def test_stored_key_makes_a_provider_available(api):
    key = APIKey(provider="huggingface")
    key.set_secret("hf_storedtoken0000000000000000000001")
    key.save()
    assert api.get(PROVIDERS).json() == listing(("huggingface",), "huggingface")
    key.active = False
    key.save()
    assert api.get(PROVIDERS).json() == listing()


def test_default_models_follow_the_settings(api, settings, use_keys):
    use_keys("openrouter")
    settings.OPENROUTER_MODEL = "anthropic/claude-3-opus"
    settings.GEMINI_MODEL = "gemini-2.5-pro"
    assert api.get(PROVIDERS).json() == listing(
        ("openrouter",),
        "openrouter",
        {"openrouter": "anthropic/claude-3-opus", "gemini": "gemini-2.5-pro"},
    )


def test_unknown_gpt_provider_is_a_clear_configuration_error(api, settings):
    settings.GPT_PROVIDER = "anthropic"
    error = assert_error(api.get(PROVIDERS), 503, "provider_not_configured")
    assert "GPT_PROVIDER='anthropic'" in error["message"]
