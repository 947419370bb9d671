"""What is particular to OpenRouter: the chat completions request, attribution headers, the cost
it reports (exact, in both stream usage variants), errors inside a 200, model ids and its two
"not found" answers, retry hints in error metadata, the key endpoint, and the seed's
``openrouter_*`` functions. What every provider does is in ``test_contract.py``."""

from decimal import Decimal

import pytest
import responses

from llm_providers.exceptions import (
    AllProvidersFailed,
    ContentPolicyViolation,
    ContextLengthExceeded,
    InvalidRequest,
    InvalidStructuredOutput,
    ModelNotFound,
    ProviderAuthError,
    ProviderFailure,
    ProviderNotConfigured,
    ProviderUnavailable,
    RateLimited,
)
from llm_providers.models import APIKey
from llm_providers.openrouter_provider import (
    openrouter_structured_json_response,
    openrouter_text_response,
)
from llm_providers.providers.openrouter import OpenRouterProvider
from llm_providers.results import ChatRequest, Message, TextDelta, Usage
from tests.conftest import FAKE_KEYS
from tests.providers import wire

KEY = FAKE_KEYS["openrouter"]
CHAT = wire.OPENROUTER_CHAT
SCHEMA = {
    "title": "weather",
    "type": "object",
    "properties": {
        "location": {"type": "string"},
        "temperature": {"type": "number"},
        "conditions": {"type": "string"},
    },
    "required": ["location", "temperature", "conditions"],
    "additionalProperties": False,
}
WEATHER = '{"location": "London", "temperature": 14.5, "conditions": "drizzle"}'


def ask(prompt="Hi", *, model="openai/gpt-4o-mini", **kwargs):
    return ChatRequest.from_prompt(prompt, model=model, **kwargs)


def answer(http, body=None, **kwargs):
    http.add(
        responses.POST, CHAT, body=body if body is not None else wire.or_completion(), **kwargs
    )


def fail(http, status, message=None, *, headers=None, metadata=None):
    http.add(
        responses.POST,
        CHAT,
        body=wire.or_error(status, message or wire.OR_ERRORS[status], metadata),
        status=status,
        headers=headers or {},
    )


# --- Text completion ------------------------------------------------------------------------------


def test_request_body_is_the_chat_completions_format(http, openrouter):
    answer(http)
    openrouter.complete(
        ask(
            "What's the weather like in London?",
            system_prompt="Reply in JSON.",
            temperature=0.2,
            max_tokens=200,
        )
    )
    assert len(http.calls) == 1
    call = http.calls[0]
    assert call.request.method == "POST"
    assert call.request.url == CHAT
    assert wire.request_json(call) == {
        "model": "openai/gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "Reply in JSON."},
            {"role": "user", "content": "What's the weather like in London?"},
        ],
        "temperature": 0.2,
        "max_tokens": 200,
    }


def test_conversation_and_no_optional_fields(http, openrouter):
    answer(http)
    request = ChatRequest(
        messages=(Message("user", "Hi"), Message("assistant", "Hello!"), Message("user", "Bye")),
        model="openai/gpt-4o-mini",
    )
    openrouter.complete(request)
    assert wire.request_json(http.calls[0]) == {
        "model": "openai/gpt-4o-mini",
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "Bye"},
        ],
    }


def test_attribution_headers_when_set(http, settings):
    settings.OPENROUTER_HTTP_REFERER = "https://alwrity.example"
    settings.OPENROUTER_X_TITLE = "ALwrity"
    answer(http)
    OpenRouterProvider(KEY).complete(ask())
    headers = http.calls[0].request.headers
    assert headers["HTTP-Referer"] == "https://alwrity.example"
    assert headers["X-Title"] == "ALwrity"


def test_only_the_referer_when_only_it_is_set(http, settings):
    settings.OPENROUTER_HTTP_REFERER = "https://alwrity.example"
    answer(http)
    OpenRouterProvider(KEY).complete(ask())
    headers = http.calls[0].request.headers
    assert headers["HTTP-Referer"] == "https://alwrity.example"
    assert "X-Title" not in headers


def test_base_url_setting_is_used(http, settings):
    settings.OPENROUTER_BASE_URL = "https://proxy.test/openrouter/v1/"
    http.add(
        responses.POST,
        "https://proxy.test/openrouter/v1/chat/completions",
        body=wire.or_completion(),
    )
    assert OpenRouterProvider(KEY).complete(ask()).text == "Hello! How can I assist you today?"


def test_completion_text_model_usage_and_exact_cost(http, openrouter):
    answer(http)
    completion = openrouter.complete(ask(model="openrouter/auto"))
    assert completion.text == "Hello! How can I assist you today?"
    assert completion.provider == "openrouter"
    assert completion.model == "openai/gpt-4o-mini"  # the model that answered, not "auto"
    assert completion.usage == Usage(9, 10, 19, Decimal("0.00000735"))
    assert isinstance(completion.usage.reported_cost, Decimal)
    assert str(completion.usage.reported_cost) == "0.00000735"
    assert completion.finish_reason == "stop"
    assert completion.response_id == wire.OR_ID
    assert completion.requests == 1
    assert completion.data is None


def test_docs_minimal_usage_shape(http, openrouter):
    body = (
        '{"id":"gen-1","model":"openai/gpt-4o","choices":[{"index":0,"finish_reason":"stop",'
        '"message":{"role":"assistant","content":"ok"}}],"usage":{"prompt_tokens":10,'
        '"completion_tokens":4,"total_tokens":14,"prompt_tokens_details":{"cached_tokens":0},'
        '"completion_tokens_details":{"reasoning_tokens":0},"cost":0.00014}}'
    )
    answer(http, body)
    assert openrouter.complete(ask()).usage == Usage(10, 4, 14, Decimal("0.00014"))


def test_cost_written_in_exponent_form_stays_exact(http, openrouter):
    answer(
        http,
        wire.or_completion(
            usage={
                "prompt_tokens": 1,
                "completion_tokens": 1,
                "total_tokens": 2,
                "cost": Decimal("1.2345678E-7"),
            }
        ),
    )
    assert openrouter.complete(ask()).usage.reported_cost == Decimal("0.00000012345678")


def test_no_cost_in_usage_is_none(http, openrouter):
    answer(http, wire.or_completion(usage=wire.or_usage(5, 6, cost=None)))
    assert openrouter.complete(ask()).usage == Usage(5, 6, 11, None)


def test_null_content_is_empty_text(http, openrouter):
    answer(http, wire.or_completion(None, finish_reason="tool_calls"))
    completion = openrouter.complete(ask())
    assert completion.text == ""
    assert completion.finish_reason == "tool_calls"


def test_provider_error_inside_a_200_is_raised(http, openrouter):
    body = (
        '{"id":"gen-1","model":"openai/gpt-4o","choices":[{"index":0,"finish_reason":"error",'
        '"message":{"role":"assistant","content":"partial"},"error":{"code":502,'
        '"message":"Upstream provider failed","metadata":{"error_type":"provider_unavailable"}}}],'
        '"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}'
    )
    answer(http, body)
    with pytest.raises(ProviderUnavailable) as caught:
        openrouter.complete(ask())
    assert "Upstream provider failed" in caught.value.message
    assert caught.value.requests == 1
    assert len(http.calls) == 1  # a 200 is never retried


def test_error_envelope_inside_a_200_is_raised(http, openrouter):
    answer(http, wire.or_error(429, "Rate limit exceeded"))
    with pytest.raises(RateLimited):
        openrouter.complete(ask())
    assert len(http.calls) == 1


# --- Structured JSON ------------------------------------------------------------------------------


def test_schema_without_title_is_named_response(http, openrouter):
    schema = {k: v for k, v in SCHEMA.items() if k != "title"}
    answer(http, wire.or_completion(WEATHER))
    openrouter.complete(ask(json_schema=schema))
    assert wire.request_json(http.calls[0])["response_format"]["json_schema"]["name"] == "response"


def test_invalid_json_is_retried_once_and_usage_summed(http, openrouter):
    answer(
        http,
        wire.or_completion(
            "I think it is rainy.", usage=wire.or_usage(20, 7, Decimal("0.0000072"))
        ),
    )
    answer(http, wire.or_completion(WEATHER, usage=wire.or_usage(20, 18, Decimal("0.0000138"))))
    completion = openrouter.complete(ask(json_schema=SCHEMA))
    assert completion.data["conditions"] == "drizzle"
    assert len(http.calls) == 2
    assert wire.request_json(http.calls[0]) == wire.request_json(http.calls[1])
    assert completion.requests == 2
    assert completion.usage == Usage(40, 25, 65, Decimal("0.0000210"))


# --- Streaming ------------------------------------------------------------------------------------


def open_stream(http, openrouter, transcript, request=None):
    http.add(responses.POST, CHAT, body=transcript, content_type=wire.SSE)
    return openrouter.stream(request or ask(model="openai/gpt-4o"))


@pytest.mark.parametrize("variant", ["repeat", "empty"])
def test_stream_deltas_in_order_then_completion_with_usage(http, openrouter, variant):
    stream = open_stream(
        http, openrouter, wire.or_stream(["Hello", " there", "!"], usage_variant=variant)
    )
    assert list(stream) == [TextDelta("Hello"), TextDelta(" there"), TextDelta("!")]
    completion = stream.completion
    assert completion.text == "Hello there!"
    assert completion.model == "openai/gpt-4o"
    assert completion.usage == Usage(10, 3, 13, Decimal("0.000055"))
    assert completion.finish_reason == "stop"
    assert completion.response_id == wire.OR_STREAM_ID
    assert completion.requests == 1


def test_stream_request_asks_for_a_stream_with_usage(http, openrouter):
    stream = open_stream(
        http, openrouter, wire.or_stream(["x"]), ask(model="openai/gpt-4o", max_tokens=50)
    )
    stream.drain()
    call = http.calls[0]
    body = wire.request_json(call)
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["max_tokens"] == 50
    assert call.request.headers["Accept"] == "text/event-stream"
    assert call.request.headers["Authorization"] == f"Bearer {KEY}"


def test_stream_processing_comments_only(http, openrouter):
    transcript = wire.or_stream(["Hi"], processing=5)
    assert transcript.startswith(b": OPENROUTER PROCESSING\n\n" * 5)
    stream = open_stream(http, openrouter, transcript)
    assert [d.text for d in stream] == ["Hi"]


def test_stream_finish_without_done_is_complete(http, openrouter):
    stream = open_stream(http, openrouter, wire.or_stream(["a"], done=False))
    assert stream.drain().text == "a"


def test_stream_error_event_with_usage_so_far_keeps_it(http, openrouter):
    usage = wire.or_usage(10, 1, Decimal("0.00001"))
    events = [wire.or_chunk("Hel", usage=usage), wire.or_stream_error(429, "Rate limit exceeded")]
    stream = open_stream(http, openrouter, wire.sse(events))
    with pytest.raises(RateLimited) as caught:
        stream.drain()
    assert caught.value.partial_usage == Usage(10, 1, 11, Decimal("0.00001"))
    assert caught.value.partial_text == "Hel"


def test_stream_error_event_with_a_string_code(http, openrouter):
    stream = open_stream(
        http,
        openrouter,
        wire.sse([wire.or_stream_error("server_error", "Provider disconnected unexpectedly")]),
    )
    with pytest.raises(ProviderUnavailable, match="Provider disconnected unexpectedly"):
        stream.drain()


def test_stream_event_of_an_unexpected_shape_is_skipped(http, openrouter):
    events = [wire.or_chunk("a"), '{"choices": ["x"]}', wire.or_chunk("b", finish_reason="stop")]
    assert open_stream(http, openrouter, wire.sse(events)).drain().text == "ab"


def test_stream_error_echoing_the_key_is_scrubbed(http, openrouter):
    stream = open_stream(http, openrouter, wire.sse([wire.or_stream_error(502, f"bad key {KEY}")]))
    with pytest.raises(ProviderUnavailable) as caught:
        stream.drain()
    assert KEY not in caught.value.message


# --- Errors ---------------------------------------------------------------------------------------


def test_unknown_model_400_is_model_not_found_with_the_format(http, openrouter):
    fail(http, 400, "acme/fake-1.0 is not a valid model ID")
    with pytest.raises(ModelNotFound) as caught:
        openrouter.complete(ask(model="acme/fake-1.0"))
    message = caught.value.message
    assert "Model not found" in message
    assert "acme/fake-1.0 is not a valid model ID" in message
    assert "openai/gpt-4-turbo" in message
    assert "provider/model-name" in message
    assert caught.value.code == "model_not_found"
    assert len(http.calls) == 1


def test_404_without_endpoint_for_the_parameters_is_invalid_request(http, openrouter):
    fail(
        http,
        404,
        "No endpoints found that can handle the requested parameters. To learn more about "
        "provider routing, visit: https://openrouter.ai/docs/guides/routing/provider-selection",
    )
    with pytest.raises(InvalidRequest) as caught:
        openrouter.complete(ask(json_schema=SCHEMA))
    assert type(caught.value) is InvalidRequest
    assert len(http.calls) == 1


def test_404_no_endpoints_for_a_model_names_the_format(http, openrouter):
    fail(http, 404)
    with pytest.raises(ModelNotFound) as caught:
        openrouter.complete(ask(model="meta-llama/llama-3.2-1b-instruct:free"))
    assert "Model not found" in caught.value.message
    assert "openai/gpt-4-turbo" in caught.value.message


def test_429_retry_after_in_metadata(http, openrouter, sleeps):
    metadata = {
        "raw": "meta-llama/llama-3.3-70b-instruct:free is temporarily rate-limited upstream.",
        "provider_name": "Venice",
        "is_byok": False,
        "retry_after_seconds": 25,
        "retry_after_seconds_raw": Decimal("24.704"),
        "headers": {"Retry-After": "25"},
    }
    fail(http, 429, "Provider returned error", metadata=metadata)
    answer(http)
    openrouter.complete(ask())
    assert sleeps == [25.0]


def test_429_retry_after_in_metadata_headers_only(http, openrouter, sleeps):
    fail(http, 429, "Provider returned error", metadata={"headers": {"Retry-After": "12"}})
    answer(http)
    openrouter.complete(ask())
    assert sleeps == [12.0]


def test_429_free_tier_limit_without_hint(http, openrouter, sleeps):
    metadata = {
        "headers": {
            "X-RateLimit-Limit": "50",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": "1788825600000",
        },
        "limit_source": "openrouter_free_tier_daily",
    }
    fail(http, 429, "Rate limit exceeded: free-models-per-day.", metadata=metadata)
    with pytest.raises(RateLimited) as caught:
        openrouter.complete(ask())
    assert caught.value.retry_after is None
    assert caught.value.requests == 4
    assert sleeps == [0.0, 0.0, 0.0]


# --- Model ids ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model",
    [
        "openai/gpt-4-turbo",
        "anthropic/claude-3.5-sonnet",
        "meta-llama/llama-3.2-1b-instruct:free",
        "openrouter/auto",
        "mistralai/mixtral-8x7b-instruct",
    ],
)
def test_check_model_accepts_openrouter_ids(model):
    OpenRouterProvider.check_model(model)


@pytest.mark.parametrize(
    "model", ["gpt-4", "", "openai/", "/gpt-4", "openai/gpt 4", "a/b/c", "openai//gpt-4"]
)
def test_check_model_refuses_malformed_ids(model):
    with pytest.raises(ModelNotFound) as caught:
        OpenRouterProvider.check_model(model)
    assert "Model not found" in caught.value.message
    assert "openai/gpt-4-turbo" in caught.value.message
    assert caught.value.model == model


# --- test_connection ------------------------------------------------------------------------------


def test_test_connection_reads_the_key_endpoint(http, openrouter):
    http.add(responses.GET, wire.OPENROUTER_KEY_URL, body=wire.OR_KEY_INFO)
    assert openrouter.test_connection().startswith("OpenRouter accepted the key (")
    assert len(http.calls) == 1
    request = http.calls[0].request
    assert request.method == "GET"
    assert request.url == wire.OPENROUTER_KEY_URL
    assert request.headers["Authorization"] == f"Bearer {KEY}"


def test_test_connection_rejected_key(http, openrouter):
    http.add(
        responses.GET,
        wire.OPENROUTER_KEY_URL,
        body=wire.or_error(401, "User not found."),
        status=401,
    )
    with pytest.raises(ProviderAuthError) as caught:
        openrouter.test_connection()
    assert KEY not in caught.value.message
    assert len(http.calls) == 1


# --- The seed's public functions, through the router ----------------------------------------------


@pytest.mark.django_db
def test_openrouter_text_response(http, use_keys):
    use_keys("openrouter")
    answer(http, wire.or_completion("A blog post.", model="openai/gpt-4-turbo"))
    text = openrouter_text_response("Write a blog post about AI", system_prompt="Be brief.")
    assert text == "A blog post."
    assert wire.request_json(http.calls[0]) == {
        "model": "openai/gpt-4-turbo",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Write a blog post about AI"},
        ],
        "temperature": 0.7,
        "max_tokens": 2048,
    }
    assert http.calls[0].request.headers["Authorization"] == f"Bearer {KEY}"


@pytest.mark.django_db
def test_openrouter_text_response_arguments(http, use_keys):
    use_keys("openrouter")
    answer(http)
    openrouter_text_response("Hi", model="openai/gpt-4o-mini", temperature=1.5, max_tokens=16)
    body = wire.request_json(http.calls[0])
    assert (body["model"], body["temperature"], body["max_tokens"]) == (
        "openai/gpt-4o-mini",
        1.5,
        16,
    )


@pytest.mark.django_db
def test_openrouter_structured_json_response(http, use_keys):
    use_keys("openrouter")
    answer(http, wire.or_completion(f"```json\n{WEATHER}\n```", model="anthropic/claude-3-opus"))
    data = openrouter_structured_json_response("Weather in London?", SCHEMA)
    assert data == {"location": "London", "temperature": 14.5, "conditions": "drizzle"}
    body = wire.request_json(http.calls[0])
    assert body["model"] == "anthropic/claude-3-opus"
    assert body["temperature"] == 0.2
    assert body["max_tokens"] == 8192
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["schema"] == SCHEMA


@pytest.mark.django_db
def test_openrouter_functions_do_not_fall_back(http, use_keys):
    use_keys("gemini", "openrouter", "huggingface")
    fail(http, 503)
    with pytest.raises(ProviderFailure) as caught:
        openrouter_text_response("Hi")
    assert isinstance(caught.value, AllProvidersFailed)
    assert [f.provider for f in caught.value.failures] == ["openrouter"]
    assert len(http.calls) == 4
    assert all(call.request.url == CHAT for call in http.calls)


@pytest.mark.django_db
def test_openrouter_structured_does_not_fall_back_on_auth_errors(http, use_keys):
    use_keys("gemini", "openrouter", "huggingface")
    fail(http, 401)
    with pytest.raises(AllProvidersFailed):
        openrouter_structured_json_response("Hi", SCHEMA)
    assert [call.request.url for call in http.calls] == [CHAT]


@pytest.mark.django_db
def test_openrouter_structured_invalid_twice_is_not_disguised_as_data(http, use_keys):
    use_keys("gemini", "openrouter")
    answer(http, wire.or_completion("no"))
    with pytest.raises(InvalidStructuredOutput) as caught:
        openrouter_structured_json_response("Hi", SCHEMA)
    assert caught.value.raw_text == "no"
    assert len(http.calls) == 2


@pytest.mark.django_db
def test_openrouter_malformed_model_refused_before_any_request(http, use_keys):
    use_keys("openrouter")
    with pytest.raises(ModelNotFound) as caught:
        openrouter_text_response("Hi", model="gpt-4-turbo")
    assert "Model not found" in caught.value.message
    assert "openai/gpt-4-turbo" in caught.value.message
    assert len(http.calls) == 0


@pytest.mark.django_db
def test_openrouter_unknown_model_does_not_fall_back(http, use_keys):
    use_keys("gemini", "openrouter")
    fail(http, 400, "acme/fake-1.0 is not a valid model ID")
    with pytest.raises(ModelNotFound):
        openrouter_text_response("Hi", model="acme/fake-1.0")
    assert len(http.calls) == 1


@pytest.mark.django_db
def test_openrouter_missing_key(http, use_keys):
    use_keys("gemini")
    with pytest.raises(ProviderNotConfigured) as caught:
        openrouter_text_response("Hi")
    assert "OPENROUTER_API_KEY not found" in caught.value.message
    assert len(http.calls) == 0


@pytest.mark.django_db
def test_openrouter_key_from_the_database_wins(http, use_keys):
    use_keys("openrouter")
    stored = "sk-or-v1-stored0in0the0database000000dbdb"
    row = APIKey(provider="openrouter", label="prod")
    row.set_secret(stored)
    row.save()
    fail(http, 401)
    with pytest.raises(AllProvidersFailed) as caught:
        openrouter_text_response("Hi")
    assert http.calls[0].request.headers["Authorization"] == f"Bearer {stored}"
    message = caught.value.failures[0].error.message
    assert f"the admin key manager (key #{row.pk} 'prod', sk-or-…dbdb)" in message
    assert stored not in str(caught.value)


# --- Errors that are not about the key (SPEC §5.1) -----------------------------------------------


def test_moderation_403_is_a_content_policy_violation_with_its_reasons(http, openrouter):
    fail(
        http,
        403,
        "openai/gpt-4o requires moderation on OpenRouter. Your input was flagged for violence.",
        metadata={
            "reasons": ["violence", "harassment"],
            "flagged_input": "how do I ...",
            "provider_name": "OpenAI",
            "model_slug": "openai/gpt-4o",
        },
    )
    with pytest.raises(ContentPolicyViolation) as caught:
        openrouter.complete(ask())
    assert "reasons: violence, harassment" in caught.value.message
    assert "rejected the key" not in caught.value.message
    assert len(http.calls) == 1


def test_a_403_about_the_key_is_still_an_auth_error(http, openrouter):
    fail(http, 403, "This API key is disabled.")
    with pytest.raises(ProviderAuthError, match="rejected the key from the environment"):
        openrouter.complete(ask())


def test_typed_error_type_in_metadata_is_read(http, openrouter):
    fail(http, 400, "Input is too long.", metadata={"error_type": "context_length_exceeded"})
    with pytest.raises(ContextLengthExceeded):
        openrouter.complete(ask())


def test_metadata_raw_is_appended_cut_to_length_and_without_the_key(http, openrouter):
    raw = f"upstream refused key {KEY} " + "x" * 1000
    fail(http, 502, "Provider returned error", metadata={"raw": raw, "provider_name": "Together"})
    with pytest.raises(ProviderUnavailable) as caught:
        openrouter.complete(ask())
    message = caught.value.message
    assert "Provider returned error (from Together: upstream refused key [key] xxx" in message
    assert KEY not in message
    assert KEY[:12] not in message
    assert len(message) < 450


def test_an_error_inside_a_200_keeps_the_billed_usage(http, openrouter):
    body = wire.dumps(
        {
            "id": "gen-1",
            "model": "openai/gpt-4o",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Hel"},
                    "finish_reason": "error",
                    "error": {"code": 502, "message": "Upstream went away"},
                }
            ],
            "usage": wire.or_usage(10, 1, Decimal("0.00001")),
        }
    )
    answer(http, body)
    with pytest.raises(ProviderUnavailable, match="Upstream went away") as caught:
        openrouter.complete(ask())
    assert caught.value.partial_usage == Usage(10, 1, 11, Decimal("0.00001"))


def test_guardrail_403_is_a_content_policy_violation(http, openrouter):
    fail(
        http,
        403,
        "Request blocked: prompt injection patterns detected",
        metadata={"patterns": ["ignore all previous instructions"]},
    )
    with pytest.raises(ContentPolicyViolation, match="ignore all previous instructions"):
        openrouter.complete(ask())
