"""End to end: the official ``openai`` SDK reads ``v1/models`` from the production server
(``make serve``, keys for all three providers) and every model it lists answers through
``chat.completions.create``, the fake upstream behind it."""

from __future__ import annotations

import openai
import pytest
from openai import OpenAI

from tests.e2e.harness import ledger_mark, rows_since


@pytest.fixture
def sdk(main, accounts):
    client = OpenAI(
        base_url=f"{main.url}/api/llm/v1", api_key=accounts["user"], max_retries=0, timeout=20
    )
    yield client
    client.close()


def upstream_model(record: dict) -> str:
    """The model a recorded upstream request asked for: in Gemini's path, else in the body."""
    if record["provider"] == "gemini":
        return record["path"].rpartition("/models/")[2].partition(":")[0]
    return record["json"]["model"]


def sent_as(model) -> str:
    """The model id the upstream gets for a listed model: the id without its provider's
    prefix (OpenRouter's ids may come without one)."""
    return model.id.removeprefix(f"{model.owned_by}/")


def test_the_sdk_lists_the_models_and_each_one_answers(sdk, api, fake):
    models = list(sdk.models.list())

    raw = api.with_token(api.token, "Bearer").get("v1/models")
    assert raw.status == 200, raw
    assert [m.id for m in models] == [entry["id"] for entry in raw.json()["data"]]
    assert models[0].id == "gemini/gemini-2.5-flash"  # the primary's default model first
    assert {"openai/gpt-4o", "openrouter/google/gemini-2.5-pro"} <= {m.id for m in models}
    assert {m.owned_by for m in models} == {"gemini", "openrouter", "huggingface"}

    mark = ledger_mark(api)
    for model in models:
        completion = sdk.chat.completions.create(
            model=model.id, messages=[{"role": "user", "content": "Colours?"}]
        )
        assert completion.choices[0].message.content, model.id
        assert completion.model.lower() == model.id.lower()

    assert [upstream_model(r) for r in fake.requests()] == [sent_as(m) for m in models]
    rows = rows_since(api, mark)
    assert sorted((r["provider"], r["status"]) for r in rows) == sorted(
        (m.owned_by, "success") for m in models
    )


def test_the_sdk_retrieves_a_model_by_an_id_with_slashes(sdk):
    model = sdk.models.retrieve("openrouter/google/gemini-2.5-pro")  # sent as one %2F segment

    assert (model.id, model.owned_by) == ("openrouter/google/gemini-2.5-pro", "openrouter")
    with pytest.raises(openai.NotFoundError) as missing:
        sdk.models.retrieve("acme/no-such-model")
    assert missing.value.body["code"] == "model_not_found"
    assert missing.value.response.headers["x-should-retry"] == "false"
