"""What ``/api/docs/`` shows works as shown: every operation of the app has a summary and a
description, and the request examples of ``generate/`` and ``v1/chat/completions``, POSTed as
the schema gives them, succeed with any one provider configured (the fake upstream answering)."""

from __future__ import annotations

import json

import pytest

from tests.api.fake_support import fake_upstream

pytestmark = pytest.mark.django_db

EXAMPLE_PATHS = ["/api/llm/generate/", "/api/llm/v1/chat/completions"]
METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture
def schema(client) -> dict:
    response = client.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    return response.json()


def operations(schema: dict):
    for path, item in schema["paths"].items():
        if path.startswith("/api/llm/"):
            for method, operation in item.items():
                if method in METHODS:
                    yield f"{method.upper()} {path}", operation


def examples(schema: dict, path: str) -> dict[str, dict]:
    body = schema["paths"][path]["post"]["requestBody"]["content"]["application/json"]
    return {name: example["value"] for name, example in body["examples"].items()}


def test_every_operation_has_a_summary_and_a_one_line_description(schema):
    found = dict(operations(schema))

    assert len(found) >= 17
    for name, operation in found.items():
        summary, description = operation.get("summary"), operation.get("description")
        assert summary and len(summary) <= 60, name
        assert description and "\n" not in description.strip(), name
    summaries = [operation["summary"] for operation in found.values()]
    assert len(set(summaries)) == len(summaries)  # each says what its operation does


def test_json_schema_is_documented_as_an_object(schema):
    fields = schema["components"]["schemas"]["GenerateRequestRequest"]["properties"]

    assert fields["json_schema"]["type"] == "object"
    assert fields["json_schema"]["nullable"] is True


def test_the_examples_name_no_provider_and_no_model(schema):
    for path in EXAMPLE_PATHS:
        shown = examples(schema, path)
        assert len(shown) >= 2, path
        for value in shown.values():
            assert "provider" not in value
            assert value.get("model") in (None, "auto")


@pytest.mark.parametrize("provider", ["gemini", "openrouter", "huggingface"])
def test_the_examples_succeed_as_shown(schema, api, settings, http, provider):
    with fake_upstream(settings, http, provider) as fake:
        for path in EXAMPLE_PATHS:
            for name, body in examples(schema, path).items():
                response = api.post(path, body, format="json")
                assert response.status_code == 200, (path, name, response.content)
                assert_complete(response, path, name)
        assert {record["provider"] for record in fake.requests()} == {provider}


def assert_complete(response, path: str, name: str) -> None:
    """An answer, not an error disguised as one: a stream ends with its ``done`` event (or
    ``[DONE]``); JSON carries the text (and the parsed ``data`` when a schema was given)."""
    if response.streaming:
        events = b"".join(response.streaming_content).decode()
        assert "event: error" not in events, (path, name, events)
        assert "event: done" in events or "data: [DONE]" in events, (path, name, events)
        return
    body = response.json()
    if path.endswith("generate/"):
        assert body["text"], (path, name)
        if name == "JSON":
            assert isinstance(body["data"]["colours"], list)
    else:
        content = body["choices"][0]["message"]["content"]
        assert content, (path, name)
        if name == "JSON schema":
            assert isinstance(json.loads(content)["colours"], list)
