"""The router: detection, missing keys, fallback order, caller errors, validation, streaming."""

import json
from decimal import Decimal

import pytest

from llm_providers import circuits
from llm_providers.exceptions import (
    AllProvidersFailed,
    BudgetExceeded,
    CallerError,
    InvalidRequest,
    InvalidStructuredOutput,
    ModelNotFound,
    ProviderAuthError,
    ProviderFailure,
    ProviderNotConfigured,
    StreamInterrupted,
    UnknownProvider,
)
from llm_providers.keys import resolve_keys
from llm_providers.main_text_generation import llm_generate, llm_stream, llm_text_gen
from llm_providers.models import APIKey, LedgerEntry, UsageSummary
from llm_providers.registry import primary_provider
from llm_providers.results import Generation, TextDelta
from tests.conftest import FAKE_KEYS, GEMINI_URL, HF_URL, OPENROUTER_URL

pytestmark = pytest.mark.django_db

GEMINI_GENERATE = f"{GEMINI_URL}/models/gemini-2.5-flash:generateContent"
GEMINI_STREAM = f"{GEMINI_URL}/models/gemini-2.5-flash:streamGenerateContent"
OPENROUTER_CHAT = f"{OPENROUTER_URL}/chat/completions"
HF_CHAT = f"{HF_URL}/chat/completions"


def gemini_ok(text="from gemini"):
    return {
        "candidates": [
            {"content": {"parts": [{"text": text}], "role": "model"}, "finishReason": "STOP"}
        ],
        "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 3, "totalTokenCount": 8},
        "modelVersion": "gemini-2.5-flash",
        "responseId": "abc",
    }


def openai_ok(text, model, cost=None):
    usage = {"prompt_tokens": 9, "completion_tokens": 10, "total_tokens": 19}
    if cost is not None:
        usage["cost"] = cost
    return {
        "id": "gen-1",
        "object": "chat.completion",
        "model": model,
        "choices": [
            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}
        ],
        "usage": usage,
    }


def gemini_error(status, message, status_name):
    return {"error": {"code": status, "message": message, "status": status_name}}


# --- Detection ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("available", "expected"),
    [
        ((), None),
        (("gemini",), "gemini"),
        (("openrouter",), "openrouter"),
        (("huggingface",), "huggingface"),
        (("gemini", "openrouter", "huggingface"), "gemini"),
        (("openrouter", "huggingface"), "openrouter"),
        (("gemini", "huggingface"), "gemini"),
    ],
)
def test_primary_is_first_available_in_priority_order(use_keys, available, expected):
    use_keys(*available)
    assert primary_provider(resolve_keys()) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("gemini", "gemini"),
        ("Google", "gemini"),
        ("GEMINI", "gemini"),
        ("openrouter", "openrouter"),
        (" OpenRouter ", "openrouter"),
        ("huggingface", "huggingface"),
        ("HF", "huggingface"),
    ],
)
def test_gpt_provider_and_its_aliases_win_over_detection(settings, use_keys, value, expected):
    use_keys("gemini", "openrouter", "huggingface")
    settings.GPT_PROVIDER = value
    assert primary_provider(resolve_keys()) == expected


def test_unknown_gpt_provider_is_a_clear_configuration_error(settings, http):
    settings.GPT_PROVIDER = "anthropic"
    with pytest.raises(UnknownProvider) as err:
        llm_text_gen("hello")
    assert "GPT_PROVIDER='anthropic'" in str(err.value)
    assert "gemini" in str(err.value) and "hf" in str(err.value)
    assert len(http.calls) == 0


def test_database_key_makes_a_provider_available(use_keys):
    key = APIKey(provider="huggingface", label="prod")
    key.set_secret("hf_databasetoken00000000000000001234")
    key.save()
    assert primary_provider(resolve_keys()) == "huggingface"


# --- Missing keys ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "variable"),
    [("openrouter", "OPENROUTER_API_KEY"), ("gemini", "GEMINI_API_KEY"), ("hf", "HF_TOKEN")],
)
def test_named_provider_without_key_says_which_variable_and_how(http, use_keys, provider, variable):
    use_keys("gemini", "openrouter", "huggingface")
    from django.conf import settings

    setattr(settings, variable, None)
    with pytest.raises(ProviderNotConfigured) as err:
        llm_text_gen("hello", provider=provider)
    message = str(err.value)
    assert f"{variable} not found" in message
    assert ".env" in message and "admin" in message
    assert len(http.calls) == 0


def test_gpt_provider_without_key_does_not_fall_back(settings, use_keys, http):
    use_keys("gemini")
    settings.GPT_PROVIDER = "openrouter"
    with pytest.raises(ProviderNotConfigured, match="OPENROUTER_API_KEY not found"):
        llm_text_gen("hello")
    assert len(http.calls) == 0


def test_no_provider_at_all_names_all_three_variables(http):
    with pytest.raises(ProviderNotConfigured) as err:
        llm_text_gen("hello")
    for variable in ("GEMINI_API_KEY", "OPENROUTER_API_KEY", "HF_TOKEN"):
        assert variable in str(err.value)


# --- Fallback ----------------------------------------------------------------------------------


def test_primary_answers_without_fallback(use_keys, http):
    use_keys("gemini", "openrouter")
    http.post(GEMINI_GENERATE, json=gemini_ok("hi"))
    generation = llm_generate("hello")
    assert generation.text == "hi"
    assert generation.provider == "gemini"
    assert generation.fallback_from == []
    assert generation.upstream_requests == 1


def test_fallback_follows_priority_order_with_each_default_model(use_keys, http, settings):
    use_keys("gemini", "openrouter", "huggingface")
    settings.OPENROUTER_MODEL = "openai/gpt-4o-mini"
    http.post(GEMINI_GENERATE, status=503, json=gemini_error(503, "overloaded", "UNAVAILABLE"))
    http.post(
        OPENROUTER_CHAT, status=401, json={"error": {"message": "User not found.", "code": 401}}
    )
    http.post(HF_CHAT, json=openai_ok("from hf", "meta-llama/llama-3.1-8b-instruct"))

    generation = llm_generate("hello", model="gemini-2.5-flash")

    assert generation.text == "from hf"
    assert generation.provider == "huggingface"
    assert generation.fallback_from == ["gemini", "openrouter"]
    # Gemini: 1 + 3 retries; OpenRouter: 401 is not retried; Hugging Face: 1.
    assert generation.upstream_requests == 4 + 1 + 1
    assert [a.requests for a in generation.attempts] == [4, 1, 1]
    assert [a.is_fallback for a in generation.attempts] == [False, True, True]
    sent = [json.loads(c.request.body) for c in http.calls if c.request.url == OPENROUTER_CHAT]
    assert sent[0]["model"] == "openai/gpt-4o-mini"
    sent_hf = json.loads(http.calls[-1].request.body)
    assert sent_hf["model"] == "meta-llama/Llama-3.1-8B-Instruct"


def test_gemini_invalid_key_400_falls_back(use_keys, http):
    use_keys("gemini", "openrouter")
    http.post(
        GEMINI_GENERATE,
        status=400,
        json={
            "error": {
                "code": 400,
                "message": "API key not valid. Please pass a valid API key.",
                "status": "INVALID_ARGUMENT",
                "details": [
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "API_KEY_INVALID",
                    }
                ],
            }
        },
    )
    http.post(OPENROUTER_CHAT, json=openai_ok("from openrouter", "openai/gpt-4-turbo", 0.0001))
    generation = llm_generate("hello")
    assert generation.provider == "openrouter"
    assert generation.fallback_from == ["gemini"]
    assert generation.upstream_requests == 2


def test_all_providers_failing_reports_every_attempt(use_keys, http):
    use_keys("gemini", "openrouter")
    http.post(GEMINI_GENERATE, status=500, json=gemini_error(500, "internal", "INTERNAL"))
    http.post(OPENROUTER_CHAT, status=402, json={"error": {"message": "no credits", "code": 402}})
    with pytest.raises(AllProvidersFailed) as err:
        llm_generate("hello")
    failure = err.value
    assert failure.code == "provider_error" and failure.status == 502
    attempts = failure.as_dict()["attempts"]
    assert [(a["provider"], a["code"]) for a in attempts] == [
        ("gemini", "provider_error"),
        ("openrouter", "provider_error"),
    ]
    public = json.dumps(failure.as_dict()) + str(failure) + repr(failure)
    assert not any(key in public for key in FAKE_KEYS.values())


def test_every_provider_rate_limited_is_a_429_with_the_shortest_hint(use_keys, http, settings):
    settings.LLM_MAX_RETRIES = 0
    use_keys("openrouter", "huggingface")
    http.post(
        OPENROUTER_CHAT,
        status=429,
        headers={"Retry-After": "30"},
        json={"error": {"message": "Rate limit exceeded", "code": 429}},
    )
    http.post(HF_CHAT, status=429, headers={"Retry-After": "12"}, json={"error": "rate limit"})
    with pytest.raises(AllProvidersFailed) as err:
        llm_generate("hello")
    assert err.value.code == "rate_limited"
    assert err.value.status == 429
    assert err.value.retry_after == 12


def test_model_not_found_stops_without_fallback(use_keys, http):
    use_keys("openrouter", "huggingface")
    http.post(
        OPENROUTER_CHAT,
        status=400,
        json={"error": {"message": "acme/fake-1.0 is not a valid model ID", "code": 400}},
    )
    with pytest.raises(ModelNotFound) as err:
        llm_generate("hello", model="acme/fake-1.0")
    assert "Model not found" in str(err.value)
    assert "openai/gpt-4-turbo" in str(err.value)
    assert len(http.calls) == 1


def test_malformed_openrouter_model_is_refused_before_any_call(use_keys, http):
    use_keys("openrouter")
    with pytest.raises(ModelNotFound, match="provider/model-name"):
        llm_generate("hello", model="gpt-4")
    assert len(http.calls) == 0


def test_invalid_request_upstream_does_not_fall_back(use_keys, http):
    use_keys("gemini", "openrouter")
    http.post(GEMINI_GENERATE, status=400, json=gemini_error(400, "bad field", "INVALID_ARGUMENT"))
    with pytest.raises(InvalidRequest):
        llm_generate("hello")
    assert len(http.calls) == 1


def test_budget_exceeded_is_a_caller_error_not_a_provider_failure():
    assert issubclass(BudgetExceeded, CallerError)
    assert not issubclass(BudgetExceeded, ProviderFailure)
    assert (BudgetExceeded.code, BudgetExceeded.status) == ("budget_exceeded", 402)


def test_explicit_provider_is_tried_first_and_others_follow(use_keys, http):
    use_keys("gemini", "openrouter", "huggingface")
    http.post(HF_CHAT, status=503, json={"error": "down"})
    http.post(GEMINI_GENERATE, json=gemini_ok("gemini answered"))
    generation = llm_generate("hello", provider="hf")
    assert generation.provider == "gemini"
    assert generation.fallback_from == ["huggingface"]


def test_seed_function_does_not_fall_back(use_keys, http, settings):
    settings.LLM_MAX_RETRIES = 0
    use_keys("gemini", "openrouter")
    from llm_providers.openrouter_provider import openrouter_text_response

    http.post(OPENROUTER_CHAT, status=503, json={"error": {"message": "down", "code": 503}})
    with pytest.raises(AllProvidersFailed):
        openrouter_text_response("hello")
    assert {c.request.url for c in http.calls} == {OPENROUTER_CHAT}


# --- Structured output ------------------------------------------------------------------------

SCHEMA = {
    "type": "object",
    "properties": {"title": {"type": "string"}, "year": {"type": "integer"}},
    "required": ["title", "year"],
}


def test_llm_text_gen_returns_a_validated_dict(use_keys, http):
    use_keys("gemini")
    http.post(GEMINI_GENERATE, json=gemini_ok('```json\n{"title": "AI", "year": 2026}\n```'))
    assert llm_text_gen("hello", json_struct=SCHEMA) == {"title": "AI", "year": 2026}
    sent = json.loads(http.calls[0].request.body)
    assert sent["generationConfig"]["responseJsonSchema"] == SCHEMA
    assert sent["generationConfig"]["temperature"] == 0.2


def test_invalid_structured_output_is_not_fallen_back_on(use_keys, http):
    use_keys("gemini", "openrouter")
    http.post(GEMINI_GENERATE, json=gemini_ok('{"title": "AI"}'))
    with pytest.raises(InvalidStructuredOutput) as err:
        llm_text_gen("hello", json_struct=SCHEMA)
    assert err.value.raw_text == '{"title": "AI"}'
    assert len(http.calls) == 2  # the one retry, then the error
    assert all(c.request.url == GEMINI_GENERATE for c in http.calls)


# --- Validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"prompt": ""}, "prompt"),
        ({"prompt": "   "}, "prompt"),
        ({"prompt": "hi", "temperature": 2.5}, "temperature"),
        ({"prompt": "hi", "temperature": -0.1}, "temperature"),
        ({"prompt": "hi", "temperature": "hot"}, "temperature"),
        ({"prompt": "hi", "max_tokens": 0}, "max_tokens"),
        ({"prompt": "hi", "max_tokens": 1.5}, "max_tokens"),
        ({"prompt": "hi", "max_tokens": 10**9}, "max_tokens"),
        ({"prompt": "hi", "json_struct": {"type": "nonsense"}}, "json_schema"),
        ({"prompt": "hi", "json_struct": ["not", "an", "object"]}, "json_schema"),
        ({"prompt": "hi", "provider": "anthropic"}, "provider"),
        ({"prompt": "hi", "model": ""}, "model"),
    ],
)
def test_bad_input_is_refused_before_any_upstream_call(use_keys, http, kwargs, field):
    use_keys("gemini", "openrouter", "huggingface")
    with pytest.raises(InvalidRequest) as err:
        llm_generate(**kwargs)
    assert err.value.field == field
    assert len(http.calls) == 0


def test_too_long_prompt_is_refused(use_keys, http, settings):
    settings.LLM_MAX_PROMPT_CHARS = 10
    use_keys("gemini")
    with pytest.raises(InvalidRequest, match="too long"):
        llm_generate("x" * 11)
    assert len(http.calls) == 0


@pytest.mark.parametrize("user_id", [1.5, "abc", object()])
def test_bad_user_id_is_refused(use_keys, user_id):
    use_keys("gemini")
    with pytest.raises(InvalidRequest, match="user_id"):
        llm_generate("hi", user_id=user_id)


def test_user_object_or_pk(django_user_model, use_keys, http):
    use_keys("gemini")
    user = django_user_model.objects.create_user("writer")
    http.post(GEMINI_GENERATE, json=gemini_ok())
    assert llm_generate("hi", user_id=user).user_id == user.pk
    assert llm_generate("hi", user_id=str(user.pk)).user_id == user.pk


# --- Streaming ---------------------------------------------------------------------------------


def sse(*events, sep="\r\n\r\n"):
    return "".join(f"data: {json.dumps(e)}{sep}" for e in events)


def gemini_chunk(text=None, finish=None, completion_tokens=1):
    candidate = {"content": {"role": "model"}, "index": 0}
    if text is not None:
        candidate["content"]["parts"] = [{"text": text}]
    if finish:
        candidate["finishReason"] = finish
    return {
        "candidates": [candidate],
        "usageMetadata": {
            "promptTokenCount": 4,
            "candidatesTokenCount": completion_tokens,
            "totalTokenCount": 4 + completion_tokens,
        },
        "modelVersion": "gemini-2.5-flash",
        "responseId": "r1",
    }


def openrouter_stream(*texts):
    chunks = [
        {"id": "gen-2", "model": "openai/gpt-4-turbo", "choices": [{"delta": {"content": t}}]}
        for t in texts
    ]
    chunks.append(
        {
            "id": "gen-2",
            "model": "openai/gpt-4-turbo",
            "choices": [],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5, "cost": 0.5},
        }
    )
    return ": OPENROUTER PROCESSING\n\n" + sse(*chunks, sep="\n\n") + "data: [DONE]\n\n"


def test_stream_yields_deltas_then_the_generation(use_keys, http):
    use_keys("gemini")
    http.post(
        GEMINI_STREAM,
        body=sse(
            gemini_chunk("Hel"),
            gemini_chunk("lo"),
            gemini_chunk(finish="STOP", completion_tokens=2),
        ),
        content_type="text/event-stream",
    )
    items = list(llm_stream("hi"))
    assert [i.text for i in items if isinstance(i, TextDelta)] == ["Hel", "lo"]
    final = items[-1]
    assert isinstance(final, Generation)
    assert final.text == "Hello"
    assert final.usage.total_tokens == 6


def test_stream_falls_back_before_the_first_delta(use_keys, http):
    use_keys("gemini", "openrouter")
    http.post(GEMINI_STREAM, status=503, json=gemini_error(503, "overloaded", "UNAVAILABLE"))
    http.post(OPENROUTER_CHAT, body=openrouter_stream("Hi", "!"), content_type="text/event-stream")
    items = list(llm_stream("hi"))
    final = items[-1]
    assert final.provider == "openrouter"
    assert final.text == "Hi!"
    assert final.fallback_from == ["gemini"]
    assert str(final.usage.reported_cost) == "0.5"


def test_stream_failing_after_output_began_is_interrupted_when_nothing_can_continue(use_keys, http):
    # The continuation (SPEC §5.1) is tested in tests/test_chains.py; here OpenRouter is
    # unreachable, so the stream ends with stream_interrupted, never a Generation.
    use_keys("gemini", "openrouter")
    body = sse(gemini_chunk("partial")) + sse(
        {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}
    )
    http.post(GEMINI_STREAM, body=body, content_type="text/event-stream")
    stream = llm_stream("hi")
    assert next(stream).text == "partial"
    with pytest.raises(StreamInterrupted) as caught:
        next(stream)
    assert [f.provider for f in caught.value.failures] == ["gemini", "openrouter"]


def test_abandoned_gemini_stream_is_read_to_the_end_for_its_billed_usage(use_keys, http):
    # Google bills the whole generation even when the client goes away: record all of it.
    use_keys("gemini")
    http.post(
        GEMINI_STREAM,
        body=sse(gemini_chunk("one", completion_tokens=1), gemini_chunk("two", completion_tokens=2))
        + sse(gemini_chunk(finish="STOP", completion_tokens=7)),
        content_type="text/event-stream",
    )
    stream = llm_stream("hi")
    assert next(stream).text == "one"
    stream.close()
    [entry] = LedgerEntry.objects.all()
    assert (entry.provider, entry.status, entry.error_code) == (
        "gemini",
        "error",
        "client_disconnected",
    )
    assert (entry.prompt_tokens, entry.completion_tokens, entry.total_tokens) == (4, 7, 11)
    assert entry.cost_source == "price_table"


def test_abandoned_openrouter_stream_is_closed_and_estimated_when_unreported(use_keys, http):
    # OpenRouter stops billing on disconnect; it had reported no usage yet, so the tokens are
    # estimated from the text (about four characters a token) and flagged.
    use_keys("openrouter")
    body = ": OPENROUTER PROCESSING\n\n" + sse(
        {"id": "g", "model": "openai/gpt-4-turbo", "choices": [{"delta": {"content": "12345678"}}]},
        {"id": "g", "model": "openai/gpt-4-turbo", "choices": [{"delta": {"content": "more"}}]},
        sep="\n\n",
    )
    http.post(OPENROUTER_CHAT, body=body, content_type="text/event-stream")
    stream = llm_stream("x" * 40)
    assert next(stream).text == "12345678"
    stream.close()
    [entry] = LedgerEntry.objects.all()
    assert entry.error_code == "client_disconnected"
    assert (entry.prompt_tokens, entry.completion_tokens) == (10, 2)
    assert entry.cost_source == "estimated"
    # openai/gpt-4-turbo is seeded at $10 / $30 per million tokens.
    assert entry.cost == Decimal("0.000160")


def test_stream_validation_happens_before_iteration(use_keys, http):
    use_keys("gemini")
    with pytest.raises(InvalidRequest):
        llm_stream("hi", temperature=5)
    assert len(http.calls) == 0


def test_openrouter_stream_broken_after_text_is_charged_an_estimate(use_keys, http):
    # The text reached the caller, so it was generated and billed; the usage chunk never came.
    use_keys("openrouter")
    body = ": OPENROUTER PROCESSING\n\n" + sse(
        {"id": "g", "model": "openai/gpt-4-turbo", "choices": [{"delta": {"content": "12345678"}}]},
        sep="\n\n",
    )  # ends without a finish chunk, usage or [DONE]
    http.post(OPENROUTER_CHAT, body=body, content_type="text/event-stream")
    stream = llm_stream("x" * 40)
    assert next(stream).text == "12345678"
    with pytest.raises(StreamInterrupted):
        next(stream)
    [entry] = LedgerEntry.objects.all()
    assert (entry.status, entry.error_code) == ("error", "provider_error")
    assert (entry.prompt_tokens, entry.completion_tokens) == (10, 2)
    assert entry.cost_source == "estimated"
    assert entry.cost == Decimal("0.000160")


# --- Users' own keys (SPEC §12.2) --------------------------------------------------------------

OWN_OPENROUTER_KEY = "sk-or-v1-q7w3e9r1t5y8u2i6o4p0a3s7d1f9g5h2usr1"


@pytest.mark.django_db
def test_a_users_calls_carry_their_own_key_and_no_one_elses(django_user_model, use_keys, http):
    use_keys("openrouter")
    alice = django_user_model.objects.create_user("alice")
    bob = django_user_model.objects.create_user("bob")
    own = APIKey(provider="openrouter", owner=alice)
    own.set_secret(OWN_OPENROUTER_KEY)
    own.save()
    http.post(OPENROUTER_CHAT, json=openai_ok("hi", "openai/gpt-4o-mini", cost=0.001))

    llm_generate("hello", user_id=alice)
    llm_generate("hello", user_id=bob)
    llm_generate("hello")

    sent = [call.request.headers["Authorization"] for call in http.calls]
    assert sent == [
        f"Bearer {OWN_OPENROUTER_KEY}",
        f"Bearer {FAKE_KEYS['openrouter']}",
        f"Bearer {FAKE_KEYS['openrouter']}",
    ]


def _own_openrouter_key(user):
    own = APIKey(provider="openrouter", owner=user)
    own.set_secret(OWN_OPENROUTER_KEY)
    own.save()
    return own


@pytest.mark.django_db
def test_a_rejected_own_key_is_reported_as_theirs_and_not_retried_with_the_platforms(
    django_user_model, use_keys, http, settings
):
    settings.LLM_CIRCUIT_FAILURES = 2
    use_keys("openrouter", "huggingface")
    alice = django_user_model.objects.create_user("alice")
    own = _own_openrouter_key(alice)
    rejected = {"error": {"code": 401, "message": "User not found."}}
    http.post(OPENROUTER_CHAT, status=401, json=rejected)
    http.post(HF_CHAT, json=openai_ok("from hf", "meta-llama/Llama-3.1-8B-Instruct"))

    # Another provider of the chain (with the platform's key) may still answer...
    answered = llm_generate("hello", user_id=alice, provider="openrouter")
    # ...but OpenRouter is never asked with the platform's key.
    with pytest.raises(AllProvidersFailed) as caught:
        llm_generate("hello", user_id=alice, provider="openrouter", fallback=False)

    assert answered.provider == "huggingface"
    sent = [c.request.headers["Authorization"] for c in http.calls if "openrouter" in c.request.url]
    assert sent == [f"Bearer {OWN_OPENROUTER_KEY}"] * 2
    [failure] = caught.value.failures
    assert isinstance(failure.error, ProviderAuthError)
    message = str(caught.value)
    assert f"OpenRouter rejected your own key (me/keys/ #{own.pk}, sk-or-…usr1)" in message
    assert "me/keys/" in message and OWN_OPENROUTER_KEY not in message
    row = LedgerEntry.objects.filter(provider="openrouter", key_owner="user").first()
    assert "your own key" in row.error_message
    # Their key is at fault, not OpenRouter: the circuit stays closed for everyone, and the key
    # stays theirs to replace or delete (it is not deactivated behind their back).
    assert circuits.allow("openrouter")
    own.refresh_from_db()
    assert own.active


@pytest.mark.django_db
def test_a_rejected_own_key_is_retried_with_the_platforms_when_its_owner_allowed_it(
    django_user_model, use_keys, http, settings
):
    settings.LLM_DEFAULT_MONTHLY_COST_LIMIT = "5"
    use_keys("openrouter")
    alice = django_user_model.objects.create_user("alice")
    own = _own_openrouter_key(alice)
    own.platform_fallback = True
    own.save()
    http.post(OPENROUTER_CHAT, status=401, json={"error": {"code": 401, "message": "No."}})
    http.post(OPENROUTER_CHAT, json=openai_ok("with the platform's", "openai/gpt-4o-mini"))

    out = llm_generate("hello", user_id=alice, provider="openrouter", fallback=False)

    assert out.text == "with the platform's"
    sent = [c.request.headers["Authorization"] for c in http.calls]
    assert sent == [f"Bearer {OWN_OPENROUTER_KEY}", f"Bearer {FAKE_KEYS['openrouter']}"]
    rows = list(LedgerEntry.objects.order_by("id").values_list("key_owner", "status"))
    assert rows == [("user", "error"), ("platform", "success")]
    assert "retried with the platform's key" in LedgerEntry.objects.order_by("id")[0].error_message
    # The platform's key may be used, so the call was reserved against the budget.
    summary = UsageSummary.objects.get(user=alice)
    assert (summary.reserved_calls, summary.reserved_cost) == (0, 0)
    assert summary.total_cost == sum(r.cost for r in LedgerEntry.objects.all())
