"""Custom OpenAI-compatible providers through the REST API (SPEC §12.1): ``providers/``,
``generate/``, ``usage/``, ``calls/``, ``reports/costs/``, ``keys/``, budgets, and ``v1`` routing as
``<name>/<model>``."""

from __future__ import annotations

import json

import pytest
import responses

from llm_providers.api.openai_compat import route
from llm_providers.models import APIKey, ModelPrice, UsageBudget
from tests.api.support import API, assert_error
from tests.providers import wire

OLLAMA_URL = "http://127.0.0.1:11434/v1"
OLLAMA_CHAT = f"{OLLAMA_URL}/chat/completions"
KEYLESS_OLLAMA = {
    "name": "ollama",
    "base_url": OLLAMA_URL,
    "default_model": "llama3.2",
    "requires_key": False,
}

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def ollama(settings):
    settings.LLM_CUSTOM_PROVIDERS = [KEYLESS_OLLAMA]


def ollama_answers(http, text: str = "Hi from llama", **usage) -> None:
    http.add(
        responses.POST,
        OLLAMA_CHAT,
        body=wire.hf_completion(text, model="llama3.2", **usage),
        content_type="application/json",
    )


def test_providers_lists_a_custom_provider_after_the_built_in_ones(api):
    rows = api.get(API + "providers/").json()
    assert [(r["name"], r["priority"], r["available"], r["primary"]) for r in rows] == [
        ("gemini", 1, False, False),
        ("openrouter", 2, False, False),
        ("huggingface", 3, False, False),
        ("ollama", 4, True, True),  # keyless: available when configured; the only one
    ]
    assert rows[3]["default_model"] == "llama3.2"


def test_generate_with_a_custom_provider_and_its_usage(api, http, user):
    ollama_answers(http)

    reply = api.post(API + "generate/", {"prompt": "hi", "provider": "ollama"}, format="json")

    assert reply.status_code == 200, reply.content
    assert (reply.json()["provider"], reply.json()["text"]) == ("ollama", "Hi from llama")
    usage = api.get(API + "usage/").json()
    assert usage["providers"]["ollama"] == {"calls": 1, "tokens": 62, "cost": "0"}
    assert usage["providers"]["gemini"] == {"calls": 0, "tokens": 0, "cost": "0"}
    assert usage["total"] == {"calls": 1, "tokens": 62, "cost": "0"}
    calls = api.get(API + "calls/", {"provider": "ollama"}).json()["results"]
    assert [c["provider"] for c in calls] == ["ollama"]


def test_an_unknown_provider_is_refused_with_the_choices(api):
    reply = api.post(API + "generate/", {"prompt": "hi", "provider": "nope"}, format="json")
    assert assert_error(reply, 400, "invalid_request")["fields"] == {
        "provider": ['"nope" is not a valid choice.']
    }
    reply = api.get(API + "calls/", {"provider": "nope"})
    assert "ollama" in assert_error(reply, 400, "invalid_request")["fields"]["provider"][0]


def test_a_custom_provider_is_priced_reported_and_held_by_a_budget(api, staff_api, http, user):
    ModelPrice.objects.create(
        provider="ollama", model="llama3.2", prompt_per_million=1000, completion_per_million=1000
    )
    UsageBudget.objects.create(user=user, monthly_cost_limit="0.07")
    ollama_answers(http, prompt=30, completion=20)

    first = api.post(API + "generate/", {"prompt": "hi", "max_tokens": 20}, format="json")
    assert first.status_code == 200 and first.json()["cost"] == "0.05"

    report = staff_api.get(API + "reports/costs/", {"group_by": "provider"}).json()
    assert [(r["key"], r["calls"], r["cost"]) for r in report] == [("ollama", 1, "0.05")]

    # 0.05 spent of 0.07: the next call's worst case (its prompt and 20 tokens) does not fit.
    second = api.post(API + "generate/", {"prompt": "hi " * 20, "max_tokens": 20}, format="json")
    assert_error(second, 402, "budget_exceeded")


def test_keys_stores_a_key_for_a_custom_provider(staff_api, http):
    reply = staff_api.post(
        API + "keys/", {"provider": "ollama", "key": "local-token"}, format="json"
    )
    assert reply.status_code == 201, reply.content
    assert reply.json()["provider"] == "ollama"
    ollama_answers(http)

    assert staff_api.post(API + "generate/", {"prompt": "hi"}, format="json").status_code == 200
    assert http.calls[0].request.headers["Authorization"] == "Bearer local-token"
    assert APIKey.objects.get().mask == "…"


def test_short_keys_are_still_refused_for_built_in_providers(staff_api):
    reply = staff_api.post(API + "keys/", {"provider": "openrouter", "key": "short"}, format="json")
    assert "too short" in assert_error(reply, 400, "invalid_request")["fields"]["key"][0]


# --- v1 routing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("ollama/llama3.2", ("ollama", "llama3.2")),
        ("Ollama/library/llama3.2:8b", ("ollama", "library/llama3.2:8b")),
        (
            "hf/meta-llama/Llama-3.1-8B-Instruct",
            ("huggingface", "meta-llama/Llama-3.1-8B-Instruct"),
        ),
        ("openai/gpt-4o", ("openrouter", "openai/gpt-4o")),
        ("auto", (None, None)),
    ],
)
def test_route(model, expected):
    assert route(model) == expected


def test_a_custom_name_wins_over_an_openrouter_vendor_of_the_same_name(settings):
    settings.LLM_CUSTOM_PROVIDERS = [{**KEYLESS_OLLAMA, "name": "mistralai"}]
    assert route("mistralai/mistral-7b-instruct") == ("mistralai", "mistral-7b-instruct")


def test_chat_completions_routes_name_slash_model_to_the_custom_provider(api, http):
    ollama_answers(http)

    reply = api.post(
        API + "v1/chat/completions",
        {"model": "ollama/llama3.2", "messages": [{"role": "user", "content": "hi"}]},
        format="json",
    )

    assert reply.status_code == 200, reply.content
    assert reply.json()["model"] == "ollama/llama3.2"
    assert json.loads(http.calls[0].request.body)["model"] == "llama3.2"
