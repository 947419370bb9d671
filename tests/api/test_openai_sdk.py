"""The official ``openai`` SDK against ``v1/chat/completions`` on a live server (SPEC §8).

The SDK speaks real HTTP (httpx) to the live server; the server's calls to the upstreams go
through ``requests``, which the ``http`` fixture (``responses``) mocks in every thread. Each
call is accounted to the token's user.
"""

from __future__ import annotations

import json
from decimal import Decimal

import openai
import pytest
from django.db.models import Sum
from openai import OpenAI
from rest_framework.authtoken.models import Token

from llm_providers.api.throttling import GenerationRateThrottle
from llm_providers.models import LedgerEntry, UsageBudget, UsageSummary
from tests.conftest import FAKE_KEYS
from tests.providers import wire

pytestmark = pytest.mark.django_db(transaction=True)

SSE = "text/event-stream"


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user("sdk-user")


@pytest.fixture
def token(user) -> str:
    return Token.objects.create(user=user).key


@pytest.fixture
def sdk(live_server, token) -> OpenAI:
    client = OpenAI(
        base_url=f"{live_server.url}/api/llm/v1", api_key=token, max_retries=0, timeout=20
    )
    yield client
    client.close()


def ask(sdk: OpenAI, model=openai.NOT_GIVEN, content: str = "Colours?", **kwargs):
    return sdk.chat.completions.create(
        model=model, messages=[{"role": "user", "content": content}], **kwargs
    )


def upstream_body(http, index: int = -1) -> dict:
    return wire.request_json(http.calls[index])


def assert_accounted(user, count: int) -> list[LedgerEntry]:
    """``count`` ledger rows for ``user``, and a summary that equals their sums."""
    entries = list(LedgerEntry.objects.filter(user=user).order_by("id"))
    assert len(entries) == count
    summary = UsageSummary.objects.filter(user=user).first()
    if summary is not None:
        sums = LedgerEntry.objects.filter(user=user).aggregate(
            tokens=Sum("total_tokens"), cost=Sum("cost")
        )
        assert summary.total_calls == sum(e.status == "success" for e in entries)
        assert summary.total_tokens == (sums["tokens"] or 0)
        assert summary.total_cost == (sums["cost"] or Decimal(0))
    return entries


# --- Round trips ---------------------------------------------------------------------------------


def test_gemini_round_trip(sdk, user, use_keys, http):
    use_keys("gemini", "openrouter")
    http.post(
        wire.gemini_generate_url(),
        body=wire.gemini_response("Red and blue.", usage=wire.gemini_usage(21, 14)),
    )
    completion = ask(sdk, "gemini/gemini-2.5-flash")
    assert completion.object == "chat.completion"
    assert completion.model == "gemini/gemini-2.5-flash"
    [choice] = completion.choices
    assert (choice.message.role, choice.message.content) == ("assistant", "Red and blue.")
    assert choice.finish_reason == "stop"
    assert completion.usage.prompt_tokens == 21
    assert completion.usage.completion_tokens == 14
    assert completion.usage.total_tokens == 35
    [call] = http.calls
    assert call.request.url == wire.gemini_generate_url()
    assert upstream_body(http)["contents"] == [{"role": "user", "parts": [{"text": "Colours?"}]}]
    [entry] = assert_accounted(user, 1)
    assert (entry.provider, entry.model, entry.status, entry.total_tokens) == (
        "gemini",
        "gemini-2.5-flash",
        "success",
        35,
    )
    assert completion.id == f"chatcmpl-{entry.request_id}"


@pytest.mark.parametrize("model", [openai.NOT_GIVEN, "auto"])
def test_default_model_is_the_primary_provider(sdk, user, use_keys, http, model):
    use_keys("openrouter", "huggingface")  # no Gemini: OpenRouter is the primary
    http.post(wire.OPENROUTER_CHAT, body=wire.or_completion("Hi!", model="openai/gpt-4-turbo"))
    completion = ask(sdk, model)
    assert completion.choices[0].message.content == "Hi!"
    assert completion.model == "openai/gpt-4-turbo"
    assert upstream_body(http)["model"] == "openai/gpt-4-turbo"  # OPENROUTER_MODEL
    [entry] = assert_accounted(user, 1)
    assert entry.provider == "openrouter"


def test_auto_follows_gpt_provider(sdk, settings, user, use_keys, http):
    use_keys("gemini", "huggingface")
    settings.GPT_PROVIDER = "hf"
    http.post(wire.HF_CHAT, body=wire.hf_completion("Hello!"))
    completion = ask(sdk, "auto")
    assert completion.model == f"huggingface/{wire.HF_RESPONSE_MODEL}"
    assert upstream_body(http)["model"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert assert_accounted(user, 1)[0].provider == "huggingface"


def test_auto_falls_back_to_the_next_provider(sdk, user, use_keys, http):
    use_keys("gemini", "openrouter")
    http.post(wire.gemini_generate_url(), status=503, body=wire.gemini_status_error(503))
    http.post(wire.OPENROUTER_CHAT, body=wire.or_completion("Backup.", model="openai/gpt-4-turbo"))
    completion = ask(sdk, "auto")
    assert completion.choices[0].message.content == "Backup."
    entries = assert_accounted(user, 2)
    assert [(e.provider, e.status, e.is_fallback) for e in entries] == [
        ("gemini", "error", False),
        ("openrouter", "success", True),
    ]


@pytest.mark.parametrize("model", ["openrouter/openai/gpt-4o", "openai/gpt-4o"])
def test_openrouter_models(sdk, user, use_keys, http, model):
    use_keys("gemini", "openrouter")
    usage = wire.or_usage(9, 10, Decimal("0.00000735"))
    http.post(
        wire.OPENROUTER_CHAT, body=wire.or_completion("Hi.", model="openai/gpt-4o", usage=usage)
    )
    completion = ask(sdk, model)
    assert completion.model == "openai/gpt-4o"
    assert completion.usage.total_tokens == 19
    [call] = http.calls
    assert call.request.url == wire.OPENROUTER_CHAT
    body = upstream_body(http)
    assert body["model"] == "openai/gpt-4o"
    assert body["messages"] == [{"role": "user", "content": "Colours?"}]
    assert call.request.headers["Authorization"] == f"Bearer {FAKE_KEYS['openrouter']}"
    [entry] = assert_accounted(user, 1)
    assert (entry.provider, entry.model, entry.cost, entry.cost_source) == (
        "openrouter",
        "openai/gpt-4o",
        Decimal("0.00000735"),
        "provider",
    )


def test_huggingface_model(sdk, user, use_keys, http):
    use_keys("gemini", "huggingface")
    http.post(wire.HF_CHAT, body=wire.hf_completion("Hello!", prompt=45, completion=17))
    completion = ask(sdk, "huggingface/meta-llama/Llama-3.1-8B-Instruct")
    assert completion.choices[0].message.content == "Hello!"
    assert completion.model == f"huggingface/{wire.HF_RESPONSE_MODEL}"
    assert completion.usage.total_tokens == 62
    assert http.calls[0].request.url == wire.HF_CHAT
    assert upstream_body(http)["model"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert assert_accounted(user, 1)[0].provider == "huggingface"


def test_system_messages_become_the_system_prompt(sdk, use_keys, http):
    use_keys("gemini", "openrouter")
    http.post(wire.gemini_generate_url(), body=wire.gemini_response("Short."))
    http.post(wire.OPENROUTER_CHAT, body=wire.or_completion("Short.", model="openai/gpt-4o"))
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": [{"type": "text", "text": "Colours?"}]},
    ]
    sdk.chat.completions.create(model="gemini/gemini-2.5-flash", messages=messages)
    gemini = upstream_body(http, 0)
    assert gemini["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert [c["role"] for c in gemini["contents"]] == ["user", "model", "user"]
    assert gemini["contents"][-1]["parts"] == [{"text": "Colours?"}]
    sdk.chat.completions.create(model="openai/gpt-4o", messages=messages)
    assert upstream_body(http, 1)["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Colours?"},
    ]


SCHEMA = {
    "type": "object",
    "properties": {"colour": {"type": "string"}},
    "required": ["colour"],
    "additionalProperties": False,
}


def test_json_schema_response_format(sdk, user, use_keys, http):
    use_keys("gemini", "openrouter")
    http.post(wire.gemini_generate_url(), body=wire.gemini_response('{"colour": "red"}'))
    completion = ask(
        sdk,
        "gemini/gemini-2.5-flash",
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": SCHEMA}},
    )
    assert json.loads(completion.choices[0].message.content) == {"colour": "red"}
    config = upstream_body(http)["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert config["responseJsonSchema"] == SCHEMA
    # The OpenRouter way: response_format json_schema upstream.
    http.post(wire.OPENROUTER_CHAT, body=wire.or_completion('{"colour": "blue"}'))
    completion = ask(
        sdk,
        "openai/gpt-4o",
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": SCHEMA}},
    )
    assert json.loads(completion.choices[0].message.content) == {"colour": "blue"}
    sent = upstream_body(http)["response_format"]
    assert sent["type"] == "json_schema"
    assert sent["json_schema"]["schema"] == SCHEMA
    assert_accounted(user, 2)


def test_output_that_never_matches_the_schema_is_a_502(sdk, user, use_keys, http):
    use_keys("gemini")
    http.post(wire.gemini_generate_url(), body=wire.gemini_response("not json"))
    with pytest.raises(openai.InternalServerError) as err:
        ask(
            sdk,
            "gemini/gemini-2.5-flash",
            response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": SCHEMA}},
        )
    assert err.value.status_code == 502
    assert err.value.code == "invalid_structured_output"
    assert len(http.calls) == 2  # asked again once
    assert assert_accounted(user, 1)[0].status == "error"


def test_streaming_with_usage(sdk, user, use_keys, http):
    use_keys("gemini")
    http.post(
        wire.gemini_stream_url(),
        body=wire.gemini_stream(["Red", " and", " blue."], final_usage=wire.gemini_usage(8, 6)),
        content_type=SSE,
    )
    stream = ask(
        sdk,
        "gemini/gemini-2.5-flash",
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Red and blue."
    finished = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finished[-1] == "stop" and set(finished[:-1]) == {None}
    last = chunks[-1]
    assert last.choices == []
    assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == (
        8,
        6,
        14,
    )
    assert all(c.usage is None for c in chunks[:-1])
    [entry] = assert_accounted(user, 1)
    assert (entry.status, entry.total_tokens) == ("success", 14)


def test_streaming_failure_mid_stream_raises_in_the_sdk(sdk, user, use_keys, http):
    use_keys("gemini")
    body = wire.sse([wire.gemini_chunk("partial"), wire.gemini_stream_error(503)], sep="\r\n\r\n")
    http.post(wire.gemini_stream_url(), body=body, content_type=SSE)
    stream = ask(sdk, "gemini/gemini-2.5-flash", stream=True)
    received = []
    with pytest.raises(openai.APIError) as err:
        for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "partial"
    assert "All providers failed" in err.value.message
    assert assert_accounted(user, 1)[0].status == "error"


def test_streaming_error_before_the_first_byte_is_a_status_error(sdk, use_keys, http):
    use_keys("gemini", "openrouter")
    with pytest.raises(openai.NotFoundError):
        ask(sdk, "openrouter/gpt-4o", stream=True)  # a malformed OpenRouter id
    assert len(http.calls) == 0


# --- Errors as the SDK's exception classes --------------------------------------------------------


def test_bad_token_is_an_authentication_error(live_server, use_keys, http):
    use_keys("gemini")
    bad = OpenAI(base_url=f"{live_server.url}/api/llm/v1", api_key="nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as err:
        ask(bad, "gemini/gemini-2.5-flash")
    assert err.value.status_code == 401
    assert err.value.code == "authentication_failed"
    assert len(http.calls) == 0
    assert not LedgerEntry.objects.exists()


@pytest.mark.parametrize("model", ["openrouter/gpt-4o", "gpt-4o", "openai/"])
def test_malformed_model_is_refused_before_any_call(sdk, user, use_keys, http, model):
    use_keys("gemini", "openrouter")
    with pytest.raises((openai.BadRequestError, openai.NotFoundError)) as err:
        ask(sdk, model)
    assert err.value.status_code in (400, 404)
    assert "Model not found" in err.value.message
    assert "openai/gpt-4-turbo" in err.value.message  # the expected form
    assert len(http.calls) == 0
    assert_accounted(user, 0)


def test_model_unknown_upstream_is_not_found(sdk, use_keys, http):
    use_keys("gemini", "openrouter")
    http.post(
        wire.gemini_generate_url("gemini-0-nope"), status=404, body=wire.gemini_status_error(404)
    )
    with pytest.raises(openai.NotFoundError) as err:
        ask(sdk, "gemini/gemini-0-nope")
    assert err.value.code == "model_not_found"
    assert len(http.calls) == 1  # a named model does not fall back


@pytest.mark.parametrize(
    "kwargs",
    [{"temperature": 3}, {"max_tokens": 0}, {"n": 2}],
)
def test_invalid_request_is_a_bad_request(sdk, user, use_keys, http, kwargs):
    use_keys("gemini")
    with pytest.raises(openai.BadRequestError) as err:
        ask(sdk, "gemini/gemini-2.5-flash", **kwargs)
    assert err.value.code == "invalid_request"
    assert len(http.calls) == 0
    assert_accounted(user, 0)


def test_empty_messages_are_a_bad_request(sdk, use_keys, http):
    use_keys("gemini")
    with pytest.raises(openai.BadRequestError):
        sdk.chat.completions.create(model="auto", messages=[])
    with pytest.raises(openai.BadRequestError):
        sdk.chat.completions.create(model="auto", messages=[{"role": "system", "content": "x"}])
    assert len(http.calls) == 0


def test_spent_budget_is_a_402(sdk, user, use_keys, http):
    use_keys("gemini")
    UsageBudget.objects.create(user=user, monthly_call_limit=0)
    with pytest.raises(openai.APIStatusError) as err:
        ask(sdk, "gemini/gemini-2.5-flash")
    assert err.value.status_code == 402
    assert err.value.code == "budget_exceeded"
    assert len(http.calls) == 0
    assert_accounted(user, 0)


def test_every_provider_failing_is_a_502(sdk, user, use_keys, http):
    use_keys("gemini", "openrouter")
    http.post(wire.gemini_generate_url(), status=503, body=wire.gemini_status_error(503))
    http.post(wire.OPENROUTER_CHAT, status=502, body=wire.or_error(502, wire.OR_ERRORS[502]))
    with pytest.raises(openai.InternalServerError) as err:
        ask(sdk, "auto")
    assert err.value.status_code == 502
    assert err.value.code == "provider_error"
    assert [a["provider"] for a in err.value.body["attempts"]] == ["gemini", "openrouter"]
    assert FAKE_KEYS["gemini"] not in json.dumps(err.value.body)
    entries = assert_accounted(user, 2)
    assert {e.status for e in entries} == {"error"}


def test_no_provider_configured_is_a_503(sdk, http):
    with pytest.raises(openai.InternalServerError) as err:
        ask(sdk, "auto")
    assert err.value.status_code == 503
    assert err.value.code == "provider_not_configured"


def test_upstream_rate_limit_is_a_rate_limit_error(sdk, user, use_keys, http):
    use_keys("openrouter")
    http.post(
        wire.OPENROUTER_CHAT,
        status=429,
        body=wire.or_error(429, wire.OR_ERRORS[429]),
        headers={"Retry-After": "3"},
    )
    with pytest.raises(openai.RateLimitError) as err:
        ask(sdk, "openai/gpt-4o")
    assert err.value.status_code == 429
    assert err.value.code == "rate_limited"
    assert int(err.value.response.headers["Retry-After"]) >= 1
    assert assert_accounted(user, 1)[0].error_code == "rate_limited"


def test_our_own_throttle_is_a_rate_limit_error(sdk, monkeypatch, use_keys, http):
    use_keys("gemini")
    monkeypatch.setattr(GenerationRateThrottle, "rate", "1/min", raising=False)
    http.post(wire.gemini_generate_url(), body=wire.gemini_response("One."))
    ask(sdk, "gemini/gemini-2.5-flash")
    with pytest.raises(openai.RateLimitError) as err:
        ask(sdk, "gemini/gemini-2.5-flash")
    assert err.value.code == "rate_limited"
    assert "Retry-After" in err.value.response.headers
    assert len(http.calls) == 1


def test_every_call_is_accounted_to_the_tokens_user(sdk, user, django_user_model, use_keys, http):
    use_keys("gemini", "openrouter")
    http.post(wire.gemini_generate_url(), body=wire.gemini_response("A."))
    http.post(wire.OPENROUTER_CHAT, body=wire.or_completion("B.", model="openai/gpt-4o"))
    django_user_model.objects.create_user("someone-else")
    ask(sdk, "gemini/gemini-2.5-flash")
    ask(sdk, "openai/gpt-4o")
    ask(sdk, "auto")
    entries = assert_accounted(user, 3)
    assert [e.provider for e in entries] == ["gemini", "openrouter", "gemini"]
    assert LedgerEntry.objects.exclude(user=user).count() == 0
    assert len({e.request_id for e in entries}) == 3
