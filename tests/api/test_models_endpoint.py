"""``GET v1/models`` and ``GET v1/models/<id>`` (SPEC §8): OpenAI's model list, with each
available provider's default model and every priced model, ids in the routing form that
``v1/chat/completions`` takes as ``model``."""

from __future__ import annotations

import openai
import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from llm_providers.models import ModelPrice
from llm_providers.router import route
from tests.api.fake_support import fake_upstream, sdk_client
from tests.api.support import API, assert_error, token_client

pytestmark = pytest.mark.django_db

MODELS = API + "v1/models"
OWN_OPENROUTER_KEY = "sk-or-v1-q7w3e9r1t5y8u2i6o4p0a3s7d1f9g5h2usr1"


@pytest.fixture
def bearer(user):
    """The user ``alice`` as the SDK authenticates: ``Authorization: Bearer <token>``."""
    return token_client(user, "Bearer")


def listed(client) -> list[dict]:
    response = client.get(MODELS)
    assert response.status_code == 200, response.content
    body = response.json()
    assert list(body) == ["object", "data"] and body["object"] == "list"
    return body["data"]


def ids(client) -> list[str]:
    return [entry["id"] for entry in listed(client)]


def priced_ids() -> set[str]:
    """The seeded price table's models in routing form, spelled out by hand (not by the code
    under test): OpenRouter's bare, except Google's, whose vendor is Gemini's alias."""
    expected = set()
    for provider, model in ModelPrice.objects.values_list("provider", "model"):
        if provider != "openrouter":
            expected.add(f"{provider}/{model}")
        elif model.startswith("google/"):
            expected.add(f"openrouter/{model}")
        else:
            expected.add(model)
    return expected


def test_the_list_has_openai_s_shape_and_the_priced_models(bearer, use_keys):
    use_keys("gemini")

    data = listed(bearer)

    for entry in data:
        assert list(entry) == ["id", "object", "created", "owned_by"]
        assert entry["object"] == "model"
        assert isinstance(entry["created"], int) and entry["created"] >= 0
    assert ModelPrice.objects.count() > 20  # the seeded table
    assert {e["id"] for e in data} == priced_ids()  # Gemini's default is priced too
    assert len(data) == len({e["id"] for e in data})
    assert data[0] == {
        "id": "gemini/gemini-2.5-flash",  # the available provider's default first
        "object": "model",
        "created": data[0]["created"],
        "owned_by": "gemini",
    }
    assert "openrouter/google/gemini-2.5-pro" in {e["id"] for e in data}
    assert "google/gemini-2.5-pro" not in {e["id"] for e in data}  # that would route to Gemini


def test_every_id_routes_to_its_owner(bearer, use_keys):
    use_keys("gemini", "openrouter", "huggingface")

    for entry in listed(bearer):
        provider, model = route(entry["id"])
        assert provider == entry["owned_by"], entry
        assert model


def test_the_order_is_by_provider_priority_then_default_then_id(bearer, use_keys):
    use_keys("gemini", "openrouter", "huggingface")

    data = listed(bearer)

    owners = [e["owned_by"] for e in data]
    assert owners == sorted(owners, key=["gemini", "openrouter", "huggingface"].index)
    openrouter = [e["id"] for e in data if e["owned_by"] == "openrouter"]
    assert openrouter[0] == "openai/gpt-4-turbo"  # OPENROUTER_MODEL in the tests' settings
    assert ids(bearer) == [e["id"] for e in data]  # the same order every time


def test_a_default_model_is_listed_only_for_an_available_provider(bearer, use_keys, settings):
    settings.OPENROUTER_MODEL = "mistralai/unpriced-model"

    use_keys("gemini")
    assert "mistralai/unpriced-model" not in ids(bearer)

    use_keys("openrouter")
    openrouter = [e["id"] for e in listed(bearer) if e["owned_by"] == "openrouter"]
    assert openrouter[0] == "mistralai/unpriced-model"


def test_a_model_priced_and_default_is_listed_once_as_the_default_spells_it(bearer, use_keys):
    use_keys("huggingface")  # HF_MODEL is meta-llama/Llama-3.1-8B-Instruct, priced lower-case

    hugging_face = [e["id"] for e in listed(bearer) if e["owned_by"] == "huggingface"]

    assert hugging_face == ["huggingface/meta-llama/Llama-3.1-8B-Instruct"]


def test_malformed_and_orphaned_prices_are_not_listed(bearer, use_keys):
    use_keys("gemini")
    for provider, model in [
        ("gemini", "not a model id!"),
        ("openrouter", "no-vendor"),
        ("gone-provider", "some/model"),
        ("gemini", "gemini-9-ultra"),
    ]:
        ModelPrice.objects.create(
            provider=provider, model=model, prompt_per_million=1, completion_per_million=2
        )

    listed_ids = ids(bearer)

    assert "gemini/gemini-9-ultra" in listed_ids
    for bad in ("gemini/not a model id!", "no-vendor", "openrouter/no-vendor"):
        assert bad not in listed_ids
    assert not [i for i in listed_ids if "gone-provider" in i or i == "some/model"]


def test_custom_providers_are_listed_as_name_slash_model(bearer, settings):
    settings.LLM_CUSTOM_PROVIDERS = [
        {
            "name": "ollama",
            "base_url": "http://127.0.0.1:11434/v1",
            "default_model": "llama3.2",
            "requires_key": False,
        }
    ]
    ModelPrice.objects.create(
        provider="ollama", model="qwen2.5", prompt_per_million=0, completion_per_million=0
    )

    ollama = [e for e in listed(bearer) if e["owned_by"] == "ollama"]

    assert [e["id"] for e in ollama] == ["ollama/llama3.2", "ollama/qwen2.5"]
    assert ollama[0]["created"] == 0  # no price row: no date to give


def test_a_user_s_own_key_lists_that_provider_s_default_for_them_only(api, other_api, settings):
    settings.OPENROUTER_MODEL = "mistralai/unpriced-model"
    added = api.post(
        API + "me/keys/", {"provider": "openrouter", "key": OWN_OPENROUTER_KEY}, format="json"
    )
    assert added.status_code == 201

    assert "mistralai/unpriced-model" in ids(api)
    assert "mistralai/unpriced-model" not in ids(other_api)


@pytest.mark.parametrize(
    ("asked", "found"),
    [
        ("gemini/gemini-2.5-pro", "gemini/gemini-2.5-pro"),
        ("google/gemini-2.5-pro", "gemini/gemini-2.5-pro"),  # an alias routes to Gemini
        ("openai/gpt-4o", "openai/gpt-4o"),
        ("openrouter/openai/gpt-4o", "openai/gpt-4o"),
        ("openrouter/google/gemini-2.5-pro", "openrouter/google/gemini-2.5-pro"),
        ("hf/meta-llama/Llama-3.1-8B-Instruct", "huggingface/meta-llama/Llama-3.1-8B-Instruct"),
    ],
)
def test_retrieve_a_model_by_any_routing_form(bearer, use_keys, asked, found):
    use_keys("gemini", "openrouter", "huggingface")

    response = bearer.get(f"{MODELS}/{asked}")

    assert response.status_code == 200, response.content
    entry = response.json()
    assert entry["id"] == found
    assert entry in listed(bearer)


@pytest.mark.parametrize("asked", ["acme/none", "gemini/gemini-0", "auto", "ollama/llama3.2"])
def test_retrieving_a_model_not_listed_is_model_not_found(bearer, use_keys, asked):
    use_keys("gemini")

    response = bearer.get(f"{MODELS}/{asked}")

    error = assert_error(response, 404, "model_not_found")
    assert "v1/models" in error["message"]
    assert response["x-should-retry"] == "false"


@pytest.mark.parametrize("path", [MODELS, f"{MODELS}/openai/gpt-4o"])
def test_the_models_need_credentials(anon, path):
    assert_error(anon.get(path), 401, "not_authenticated")
    anon.credentials(HTTP_AUTHORIZATION="Bearer not-a-token")
    assert_error(anon.get(path), 401, "authentication_failed")


# --- The official SDK on a live server, the fake upstream behind it ------------------------------


@pytest.fixture
def sdk_token(django_user_model) -> str:
    return Token.objects.create(user=django_user_model.objects.create_user("sdk-models")).key


@pytest.mark.django_db(transaction=True)
def test_the_sdk_lists_retrieves_and_uses_every_model(live_server, sdk_token, settings, http):
    with (
        fake_upstream(settings, http, "gemini", "openrouter", "huggingface") as fake,
        sdk_client(live_server, sdk_token, max_retries=0, timeout=20) as client,
    ):
        models = list(client.models.list())
        bearer = APIClient()
        bearer.credentials(HTTP_AUTHORIZATION=f"Bearer {sdk_token}")
        assert [m.id for m in models] == ids(bearer)
        assert {m.owned_by for m in models} == {"gemini", "openrouter", "huggingface"}
        assert priced_ids() <= {m.id.lower() for m in models}  # prices are kept lower-case

        retrieved = client.models.retrieve("openrouter/google/gemini-2.5-pro")  # sent as %2F
        assert (retrieved.id, retrieved.owned_by) == (
            "openrouter/google/gemini-2.5-pro",
            "openrouter",
        )
        with pytest.raises(openai.NotFoundError) as missing:
            client.models.retrieve("acme/none")
        assert missing.value.body["code"] == "model_not_found"

        for model in models:
            completion = client.chat.completions.create(
                model=model.id, messages=[{"role": "user", "content": "Colours?"}]
            )
            assert completion.choices[0].message.content, model.id
            assert completion.model.lower() == model.id.lower()
        sent = [upstream_model(record) for record in fake.requests()]
        # One request each (none refused or retried), for the model the id names.
        assert sent == [route(m.id)[1] for m in models]


def upstream_model(record: dict) -> str:
    """The model a recorded upstream request asked for: in Gemini's path, else in the body."""
    if record["provider"] == "gemini":
        return record["path"].rpartition("/models/")[2].partition(":")[0]
    return record["json"]["model"]
