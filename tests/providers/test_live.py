"""Live tests against the real providers, one per provider.

Each is skipped unless its test key is set in the environment: ``LLM_TEST_GEMINI_KEY``,
``LLM_TEST_OPENROUTER_KEY``, ``LLM_TEST_HF_TOKEN`` (never the production variables, so a
developer's own keys are not spent by accident); select them with ``pytest -m live``. They use
the real base URL, wait for real between retries, and ask for a few tokens only.
``LLM_TEST_GEMINI_MODEL``, ``LLM_TEST_OPENROUTER_MODEL`` and ``LLM_TEST_HF_MODEL`` pick other
models.
"""

import os
import time
from decimal import Decimal

import pytest

from llm_providers.main_text_generation import llm_generate, llm_stream
from llm_providers.providers import base as base_provider
from llm_providers.results import Generation, TextDelta

pytestmark = [pytest.mark.live, pytest.mark.django_db]

PROMPT = "Reply with exactly one word: pong"


def needs(variable: str):
    return pytest.mark.skipif(
        not os.environ.get(variable, "").strip(), reason=f"{variable} is not set"
    )


@pytest.fixture(autouse=True)
def real_waits(settings, monkeypatch):
    """Be polite to the real services: back off for real between retries."""
    settings.LLM_TIMEOUT = 60.0
    settings.LLM_MAX_RETRIES = 2
    settings.LLM_RETRY_BASE_DELAY = 1.0
    settings.LLM_RETRY_MAX_DELAY = 10.0
    settings.LLM_RETRY_TOTAL_TIMEOUT = 30.0
    monkeypatch.setattr(base_provider, "sleep", time.sleep)


@needs("LLM_TEST_GEMINI_KEY")
def test_gemini_live(settings):
    settings.GEMINI_API_KEY = os.environ["LLM_TEST_GEMINI_KEY"].strip()
    settings.GEMINI_BASE_URL = "https://generativelanguage.googleapis.com/v1beta"
    settings.GEMINI_MODEL = os.environ.get("LLM_TEST_GEMINI_MODEL") or "gemini-2.5-flash"
    # Thinking tokens count against maxOutputTokens: leave room for them.
    generation = llm_generate(PROMPT, provider="gemini", max_tokens=1024, fallback=False)
    assert generation.provider == "gemini"
    assert "pong" in generation.text.lower()
    assert generation.usage.prompt_tokens > 0
    assert generation.usage.completion_tokens > 0
    assert generation.upstream_requests >= 1


@needs("LLM_TEST_OPENROUTER_KEY")
def test_openrouter_live(settings):
    settings.OPENROUTER_API_KEY = os.environ["LLM_TEST_OPENROUTER_KEY"].strip()
    settings.OPENROUTER_BASE_URL = "https://openrouter.ai/api/v1"
    model = os.environ.get("LLM_TEST_OPENROUTER_MODEL") or "openai/gpt-4o-mini"
    generation = llm_generate(
        PROMPT, provider="openrouter", model=model, max_tokens=16, fallback=False
    )
    assert generation.provider == "openrouter"
    assert "pong" in generation.text.lower()
    assert generation.usage.total_tokens > 0
    # OpenRouter reports its own cost on every response; it is kept exact.
    assert isinstance(generation.usage.reported_cost, Decimal)
    assert generation.usage.reported_cost >= 0


@needs("LLM_TEST_HF_TOKEN")
def test_huggingface_live(settings):
    settings.HF_TOKEN = os.environ["LLM_TEST_HF_TOKEN"].strip()
    settings.HF_BASE_URL = "https://router.huggingface.co/v1"
    settings.HF_MODEL = os.environ.get("LLM_TEST_HF_MODEL") or "meta-llama/Llama-3.1-8B-Instruct"
    items = list(llm_stream(PROMPT, provider="huggingface", max_tokens=16, fallback=False))
    generation = items[-1]
    assert isinstance(generation, Generation)
    assert generation.provider == "huggingface"
    assert "".join(i.text for i in items if isinstance(i, TextDelta)) == generation.text
    assert "pong" in generation.text.lower()
