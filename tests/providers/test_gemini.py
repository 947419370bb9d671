"""What is particular to Google Gemini: the ``generateContent`` request, ``modelVersion``,
thinking tokens and thought parts, blocked prompts and withheld answers, ``alt=sse`` streams with
``\r\n`` framing and running usage, ``RetryInfo`` waits, keys refused with a 400, model ids,
the models listing as connection test, and the seed's ``gemini_*`` functions. What every
provider does is in ``test_contract.py``."""

from urllib.parse import parse_qs, urlsplit

import pytest
import responses

from llm_providers.exceptions import (
    AllProvidersFailed,
    ContentPolicyViolation,
    InvalidRequest,
    ModelNotFound,
    ProviderAuthError,
    ProviderNotConfigured,
    ProviderUnavailable,
    RateLimited,
)
from llm_providers.gemini_provider import gemini_structured_json_response, gemini_text_response
from llm_providers.providers.gemini import GeminiProvider
from llm_providers.results import ChatRequest, Message, TextDelta, Usage
from tests.conftest import FAKE_KEYS
from tests.providers import wire

KEY = FAKE_KEYS["gemini"]
GENERATE = wire.gemini_generate_url()
STREAM = wire.gemini_stream_url()
SCHEMA = {
    "type": "object",
    "properties": {
        "colors": {"type": "array", "items": {"type": "string"}},
        "count": {"type": "integer"},
    },
    "required": ["colors", "count"],
    "additionalProperties": False,
}
COLORS = '{"colors": ["red", "blue"], "count": 2}'


def ask(prompt="List two primary colors.", *, model="gemini-2.5-flash", **kwargs):
    return ChatRequest.from_prompt(prompt, model=model, **kwargs)


def answer(http, body=None, url=GENERATE):
    http.add(responses.POST, url, body=body if body is not None else wire.gemini_response())


def fail(http, status, body=None, *, url=GENERATE, headers=None):
    http.add(
        responses.POST,
        url,
        body=body if body is not None else wire.gemini_status_error(status),
        status=status,
        headers=headers or {},
    )


def assert_key_only_in_header(call):
    assert call.request.headers["x-goog-api-key"] == KEY
    assert "Authorization" not in call.request.headers
    assert KEY not in call.request.url
    assert "key" not in parse_qs(urlsplit(call.request.url).query)


# --- Text completion ------------------------------------------------------------------------------


def test_request_body_is_generate_content(http, gemini):
    answer(http)
    gemini.complete(
        ask(system_prompt="You are a terse assistant.", temperature=0.2, max_tokens=1024)
    )
    assert len(http.calls) == 1
    call = http.calls[0]
    assert call.request.method == "POST"
    assert call.request.url == GENERATE
    assert wire.request_json(call) == {
        "contents": [{"role": "user", "parts": [{"text": "List two primary colors."}]}],
        "systemInstruction": {"parts": [{"text": "You are a terse assistant."}]},
        "generationConfig": {"temperature": 0.2, "maxOutputTokens": 1024},
    }


def test_conversation_roles_and_no_config(http, gemini):
    answer(http)
    gemini.complete(
        ChatRequest(
            messages=(
                Message("user", "List two primary colors."),
                Message("assistant", "Red and blue."),
                Message("user", "Now as JSON please."),
            ),
            model="gemini-2.5-flash",
        )
    )
    assert wire.request_json(http.calls[0]) == {
        "contents": [
            {"role": "user", "parts": [{"text": "List two primary colors."}]},
            {"role": "model", "parts": [{"text": "Red and blue."}]},
            {"role": "user", "parts": [{"text": "Now as JSON please."}]},
        ]
    }


def test_temperature_zero_is_sent(http, gemini):
    answer(http)
    gemini.complete(ask(temperature=0.0))
    assert wire.request_json(http.calls[0])["generationConfig"] == {"temperature": 0.0}


def test_full_resource_name_is_accepted(http, gemini):
    answer(http)
    gemini.complete(ask(model="models/gemini-2.5-flash"))
    assert http.calls[0].request.url == GENERATE


def test_base_url_setting_is_used(http, settings):
    settings.GEMINI_BASE_URL = "https://eu-proxy.test/gemini/v1beta"
    url = "https://eu-proxy.test/gemini/v1beta/models/gemini-2.5-flash:generateContent"
    http.add(responses.POST, url, body=wire.gemini_response("hi"))
    assert GeminiProvider(KEY).complete(ask()).text == "hi"


def test_completion_text_model_and_usage(http, gemini):
    answer(
        http,
        wire.gemini_response("Red and blue.", model_version="gemini-2.5-flash"),
        url=wire.gemini_generate_url("gemini-flash-latest"),
    )
    completion = gemini.complete(ask(model="gemini-flash-latest"))
    assert completion.text == "Red and blue."
    assert completion.provider == "gemini"
    assert completion.model == "gemini-2.5-flash"  # modelVersion: the model that answered
    assert completion.usage == Usage(21, 14, 35, None)
    assert completion.finish_reason == "STOP"
    assert completion.response_id == wire.GEMINI_RESPONSE_ID
    assert completion.requests == 1


def test_thinking_tokens_count_as_completion_tokens(http, gemini):
    answer(http, wire.gemini_response("ok", usage=wire.gemini_usage(181, 19, thoughts=59)))
    assert gemini.complete(ask()).usage == Usage(181, 78, 259)


def test_model_version_with_models_prefix(http, gemini):
    answer(http, wire.gemini_response("ok", model_version="models/gemini-2.5-flash-preview-04-17"))
    assert gemini.complete(ask()).model == "gemini-2.5-flash-preview-04-17"


def test_no_model_version_keeps_the_requested_model(http, gemini):
    answer(
        http,
        '{"candidates": [{"content": {"parts": [{"text": "x"}], "role": "model"}, '
        '"finishReason": "STOP"}]}',
        url=wire.gemini_generate_url("gemini-2.5-pro"),
    )
    completion = gemini.complete(ask(model="models/gemini-2.5-pro"))
    assert completion.model == "gemini-2.5-pro"
    assert completion.usage == Usage()


def test_parts_are_joined_and_thoughts_left_out(http, gemini):
    parts = [
        {"text": "Planning the call.", "thought": True},
        {"text": "Red"},
        {"text": " and blue."},
    ]
    answer(http, wire.gemini_response(parts=parts))
    assert gemini.complete(ask()).text == "Red and blue."


def test_answer_without_parts_is_empty_text(http, gemini):
    # MAX_TOKENS spent on thinking: content is {"role": "model"} with no parts.
    answer(
        http,
        wire.gemini_response(
            None, finish_reason="MAX_TOKENS", usage=wire.gemini_usage(10, None, 64)
        ),
    )
    completion = gemini.complete(ask(max_tokens=64))
    assert completion.text == ""
    assert completion.finish_reason == "MAX_TOKENS"
    assert completion.usage == Usage(10, 64, 74)


def test_blocked_prompt_is_invalid_request_not_retried(http, gemini):
    body = (
        '{"promptFeedback": {"blockReason": "SAFETY", "safetyRatings": []}, '
        '"usageMetadata": {"promptTokenCount": 8, "totalTokenCount": 8}, '
        '"modelVersion": "gemini-2.5-flash", "responseId": "x"}'
    )
    answer(http, body)
    with pytest.raises(InvalidRequest) as caught:
        gemini.complete(ask())
    assert caught.value.message == "Google Gemini declined the prompt (SAFETY)."
    assert caught.value.requests == 1
    assert len(http.calls) == 1


def test_withheld_answer_is_invalid_request(http, gemini):
    answer(http, wire.gemini_response(None, finish_reason="SAFETY"))
    with pytest.raises(InvalidRequest, match=r"withheld the answer \(finishReason SAFETY\)"):
        gemini.complete(ask())


def test_error_inside_a_200(http, gemini):
    answer(http, wire.gemini_stream_error(503))
    with pytest.raises(ProviderUnavailable, match="The model is overloaded"):
        gemini.complete(ask())
    assert len(http.calls) == 1


# --- Streaming ------------------------------------------------------------------------------------


def open_stream(http, gemini, transcript, request=None):
    http.add(responses.POST, STREAM, body=transcript, content_type=wire.SSE)
    return gemini.stream(request or ask())


def test_stream_request_uses_alt_sse_and_the_header_key(http, gemini):
    stream = open_stream(http, gemini, wire.gemini_stream(["Four."]), ask(max_tokens=100))
    stream.drain()
    call = http.calls[0]
    split = urlsplit(call.request.url)
    assert f"{split.scheme}://{split.netloc}{split.path}" == STREAM
    assert parse_qs(split.query) == {"alt": ["sse"]}
    assert call.request.headers["Accept"] == "text/event-stream"
    assert_key_only_in_header(call)
    assert wire.request_json(call) == {
        "contents": [{"role": "user", "parts": [{"text": "List two primary colors."}]}],
        "generationConfig": {"maxOutputTokens": 100},
    }


@pytest.mark.parametrize("sep", ["\r\n\r\n", "\n\n"])
def test_stream_deltas_in_order_then_completion(http, gemini, sep):
    transcript = wire.gemini_stream(
        ["Here", " you go:", " red, blue."], final_usage=wire.gemini_usage(10, 49), sep=sep
    )
    stream = open_stream(http, gemini, transcript)
    assert list(stream) == [TextDelta("Here"), TextDelta(" you go:"), TextDelta(" red, blue.")]
    completion = stream.completion
    assert completion.text == "Here you go: red, blue."
    assert completion.usage == Usage(10, 49, 59)  # the last (cumulative) usageMetadata wins
    assert completion.model == "gemini-2.5-flash"
    assert completion.finish_reason == "STOP"
    assert completion.response_id == wire.GEMINI_RESPONSE_ID
    assert completion.requests == 1


def test_stream_captured_transcript(http, gemini):
    # Verbatim gemini-2.5-flash capture: the final chunk has no parts.
    transcript = (
        b'data: {"candidates": [{"content": {"parts": [{"text": "Four."}],"role": "model"},'
        b'"index": 0}],"usageMetadata": {"promptTokenCount": 51,"candidatesTokenCount": 2,'
        b'"totalTokenCount": 53},"modelVersion": "gemini-2.5-flash",'
        b'"responseId": "ag4pavQTzLrj4Q-XkKnZBA"}\r\n\r\n'
        b'data: {"candidates": [{"content": {"role": "model"},"finishReason": "STOP",'
        b'"index": 0}],"usageMetadata": {"promptTokenCount": 51,"candidatesTokenCount": 2,'
        b'"totalTokenCount": 53},'
        b'"modelVersion": "gemini-2.5-flash","responseId": "ag4pavQTzLrj4Q-XkKnZBA"}\r\n\r\n'
    )
    stream = open_stream(http, gemini, transcript)
    assert [d.text for d in stream] == ["Four."]
    assert stream.completion.usage == Usage(51, 2, 53)


def test_stream_multi_chunk_capture_with_unicode(http, gemini):
    chunks = [
        wire.gemini_chunk(
            "Here",
            usage={"promptTokenCount": 10, "totalTokenCount": 10},
            model_version="gemini-2.0-flash",
        ),
        wire.gemini_chunk(
            " you go:\n\nJapanese: ジャガイモ",
            usage={"promptTokenCount": 10, "totalTokenCount": 10},
            model_version="gemini-2.0-flash",
        ),
        wire.gemini_chunk(
            "\nRussian: картофель\n",
            finish_reason="STOP",
            usage=wire.gemini_usage(10, 49),
            model_version="gemini-2.0-flash",
        ),
    ]
    stream = open_stream(http, gemini, wire.sse(chunks, sep="\n\n"))
    assert stream.drain().text == "Here you go:\n\nJapanese: ジャガイモ\nRussian: картофель\n"
    assert stream.completion.model == "gemini-2.0-flash"
    assert stream.completion.usage == Usage(10, 49, 59)


def test_stream_thought_parts_are_not_text(http, gemini):
    thought = (
        '{"candidates": [{"content": {"parts": [{"text": "Planning the call.","thought": true}],'
        '"role": "model"},"index": 0}],"usageMetadata": {"promptTokenCount": 48,'
        '"thoughtsTokenCount": 40,"totalTokenCount": 88},"modelVersion": "gemini-2.5-flash"}'
    )
    final = wire.gemini_chunk("Done.", finish_reason="STOP", usage=wire.gemini_usage(48, 2, 40))
    stream = open_stream(http, gemini, wire.sse([thought, final], sep="\r\n\r\n"))
    assert [d.text for d in stream] == ["Done."]
    assert stream.completion.usage == Usage(48, 42, 90)


def test_stream_without_finish_reason_is_unavailable(http, gemini):
    stream = open_stream(http, gemini, wire.gemini_stream(["Here", " you"], finish=False))
    with pytest.raises(ProviderUnavailable) as caught:
        stream.drain()
    err = caught.value
    assert err.message == "Google Gemini stream ended before the answer was complete"
    assert err.partial_text == "Here you"
    assert err.partial_usage == Usage(51, 0, 52)  # the last running usageMetadata
    assert err.requests == 1


def test_stream_rate_limit_error_event(http, gemini):
    stream = open_stream(
        http,
        gemini,
        wire.sse(['{"error": {"code": 429, "message": "Quota", "status": "RESOURCE_EXHAUSTED"}}']),
    )
    with pytest.raises(RateLimited):
        stream.drain()


def test_stream_blocked_prompt(http, gemini):
    stream = open_stream(
        http, gemini, wire.sse(['{"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}}'])
    )
    with pytest.raises(InvalidRequest, match="declined the prompt"):
        stream.drain()


def test_stream_event_of_an_unexpected_shape_is_skipped(http, gemini):
    body = wire.sse(['{"candidates": ["x"]}']) + wire.gemini_stream(["ok"])
    assert open_stream(http, gemini, body).drain().text == "ok"


def test_stream_open_is_retried_with_retry_info(http, gemini, sleeps):
    fail(http, 429, wire.gemini_quota("600ms"), url=STREAM)
    http.add(responses.POST, STREAM, body=wire.gemini_stream(["ok"]), content_type=wire.SSE)
    stream = gemini.stream(ask())
    assert stream.drain().text == "ok"
    assert stream.completion.requests == 2
    assert sleeps == [pytest.approx(0.6)]


# --- Errors ---------------------------------------------------------------------------------------


def test_invalid_key_recognised_by_message_alone(http, gemini):
    fail(
        http,
        400,
        wire.gemini_error(
            400, "API key not valid. Please pass a valid API key.", "INVALID_ARGUMENT"
        ),
    )
    with pytest.raises(ProviderAuthError):
        gemini.complete(ask())


def test_unsupported_location_is_unavailable_not_the_key(http, gemini):
    # Nothing the key or the caller can change: the chain moves on, no retry.
    fail(
        http,
        400,
        wire.gemini_error(
            400, "User location is not supported for the API use.", "FAILED_PRECONDITION"
        ),
    )
    with pytest.raises(ProviderUnavailable) as caught:
        gemini.complete(ask())
    assert type(caught.value) is ProviderUnavailable
    assert "does not serve the region" in caught.value.message
    assert "rejected the key" not in caught.value.message
    assert len(http.calls) == 1


def test_other_failed_precondition_is_an_account_failure(http, gemini):
    fail(
        http,
        400,
        wire.gemini_error(
            400, "Gemini API free tier is not available in your country.", "FAILED_PRECONDITION"
        ),
    )
    with pytest.raises(ProviderAuthError, match="cannot serve this account"):
        gemini.complete(ask())


@pytest.mark.parametrize(
    "message",
    [
        "Method doesn't allow unregistered callers (callers without established identity). "
        "Please use API Key or other form of API consumer identity to call this API.",
        "Your API key was reported as leaked. Please use another API key.",
    ],
)
def test_permission_denied_is_the_key(http, gemini, message):
    fail(http, 403, wire.gemini_error(403, message, "PERMISSION_DENIED"))
    with pytest.raises(ProviderAuthError, match="rejected the key from the environment"):
        gemini.complete(ask())
    assert len(http.calls) == 1


@pytest.mark.parametrize(
    ("delay", "seconds"), [("7s", 7.0), ("600ms", 0.6), ("2.500s", 2.5), ("0.5s", 0.5)]
)
def test_429_retry_info_delay_is_the_wait(http, gemini, sleeps, delay, seconds):
    fail(http, 429, wire.gemini_quota(delay))
    answer(http)
    gemini.complete(ask())
    assert sleeps == [pytest.approx(seconds)]


def test_429_retry_in_message_when_no_retry_info(http, gemini, sleeps):
    fail(http, 429, wire.gemini_quota(None, message_hint="7.811233656s"))
    answer(http)
    gemini.complete(ask())
    assert sleeps == [pytest.approx(7.811233656)]


def test_429_retry_after_header_wins(http, gemini, sleeps):
    fail(http, 429, wire.gemini_quota("7s"), headers={"Retry-After": "3"})
    answer(http)
    gemini.complete(ask())
    assert sleeps == [3.0]


def test_429_exhausted_carries_retry_after(http, gemini, sleeps):
    fail(http, 429, wire.gemini_quota("7s"))
    with pytest.raises(RateLimited) as caught:
        gemini.complete(ask())
    assert caught.value.retry_after == 7.0
    assert sleeps == [7.0, 7.0, 7.0]
    assert len(http.calls) == 4


def test_429_retry_delay_beyond_the_total_timeout_stops(http, gemini, settings, sleeps):
    settings.LLM_RETRY_TOTAL_TIMEOUT = 30.0
    fail(http, 429, wire.gemini_quota("45s"))
    with pytest.raises(RateLimited) as caught:
        gemini.complete(ask())
    assert caught.value.requests == 1
    assert sleeps == []


# --- Model ids ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model",
    ["gemini-2.5-flash", "models/gemini-2.5-pro", "gemini-2.0-flash-001", "gemini-3-pro-preview"],
)
def test_check_model_accepts_gemini_ids(model):
    GeminiProvider.check_model(model)


@pytest.mark.parametrize(
    "model",
    ["", "google/gemini-2.5-flash", "gemini 2.5", "../gemini", "gemini-2.5-flash:generateContent"],
)
def test_check_model_refuses_malformed_ids(model):
    with pytest.raises(ModelNotFound) as caught:
        GeminiProvider.check_model(model)
    assert "Model not found" in caught.value.message
    assert "gemini-2.5-flash" in caught.value.message


# --- test_connection ------------------------------------------------------------------------------


def test_test_connection_lists_one_model(http, gemini):
    http.add(responses.GET, wire.GEMINI_MODELS, body=wire.GEMINI_MODEL_LIST)
    assert gemini.test_connection().startswith("Google Gemini accepted the key (")
    call = http.calls[0]
    assert call.request.method == "GET"
    assert parse_qs(urlsplit(call.request.url).query) == {"pageSize": ["1"]}
    assert_key_only_in_header(call)


def test_test_connection_invalid_key(http, gemini):
    http.add(responses.GET, wire.GEMINI_MODELS, body=wire.gemini_invalid_key(), status=400)
    with pytest.raises(ProviderAuthError) as caught:
        gemini.test_connection()
    assert "GEMINI_API_KEY" in caught.value.message
    assert KEY not in caught.value.message
    assert len(http.calls) == 1


# --- The seed's public functions, through the router ----------------------------------------------


@pytest.mark.django_db
def test_gemini_text_response(http, use_keys):
    use_keys("gemini")
    answer(http, wire.gemini_response("A blog post."))
    text = gemini_text_response("Write a blog post about AI", system_prompt="Be brief.")
    assert text == "A blog post."
    assert http.calls[0].request.url == GENERATE  # GEMINI_MODEL by default
    assert wire.request_json(http.calls[0]) == {
        "contents": [{"role": "user", "parts": [{"text": "Write a blog post about AI"}]}],
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "generationConfig": {"temperature": 0.7, "maxOutputTokens": 2048},
    }
    assert_key_only_in_header(http.calls[0])


@pytest.mark.django_db
def test_gemini_text_response_model_setting_and_argument(http, use_keys, settings):
    use_keys("gemini")
    settings.GEMINI_MODEL = "gemini-2.5-pro"
    answer(http, url=wire.gemini_generate_url("gemini-2.5-pro"))
    answer(http, url=wire.gemini_generate_url("gemini-2.0-flash"))
    gemini_text_response("Hi")
    gemini_text_response("Hi", model="gemini-2.0-flash", temperature=1.0, max_tokens=10)
    assert [c.request.url for c in http.calls] == [
        wire.gemini_generate_url("gemini-2.5-pro"),
        wire.gemini_generate_url("gemini-2.0-flash"),
    ]
    assert wire.request_json(http.calls[1])["generationConfig"] == {
        "temperature": 1.0,
        "maxOutputTokens": 10,
    }


@pytest.mark.django_db
def test_gemini_structured_json_response(http, use_keys):
    use_keys("gemini")
    answer(http, wire.gemini_response(COLORS))
    assert gemini_structured_json_response("Two colors as JSON", SCHEMA) == {
        "colors": ["red", "blue"],
        "count": 2,
    }
    assert wire.request_json(http.calls[0])["generationConfig"] == {
        "temperature": 0.2,
        "maxOutputTokens": 8192,
        "responseMimeType": "application/json",
        "responseJsonSchema": SCHEMA,
    }


@pytest.mark.django_db
def test_gemini_functions_do_not_fall_back(http, use_keys):
    use_keys("gemini", "openrouter", "huggingface")
    fail(http, 503)
    with pytest.raises(AllProvidersFailed) as caught:
        gemini_text_response("Hi")
    assert [f.provider for f in caught.value.failures] == ["gemini"]
    assert len(http.calls) == 4
    assert all(c.request.url == GENERATE for c in http.calls)


@pytest.mark.django_db
def test_gemini_invalid_key_does_not_fall_back(http, use_keys):
    use_keys("gemini", "openrouter")
    fail(http, 400, wire.gemini_invalid_key())
    with pytest.raises(AllProvidersFailed) as caught:
        gemini_structured_json_response("Hi", SCHEMA)
    assert isinstance(caught.value.failures[0].error, ProviderAuthError)
    assert [c.request.url for c in http.calls] == [GENERATE]
    assert KEY not in str(caught.value)


@pytest.mark.django_db
def test_gemini_unknown_model_is_model_not_found(http, use_keys):
    use_keys("gemini", "openrouter")
    fail(http, 404, url=wire.gemini_generate_url("gemini-1.5-flash"))
    with pytest.raises(ModelNotFound):
        gemini_text_response("Hi", model="gemini-1.5-flash")
    assert len(http.calls) == 1


@pytest.mark.django_db
def test_gemini_malformed_model_refused_before_any_request(http, use_keys):
    use_keys("gemini")
    with pytest.raises(ModelNotFound):
        gemini_text_response("Hi", model="google/gemini-2.5-flash")
    assert len(http.calls) == 0


@pytest.mark.django_db
def test_gemini_missing_key(http, use_keys):
    use_keys("openrouter")
    with pytest.raises(ProviderNotConfigured) as caught:
        gemini_text_response("Hi")
    assert "GEMINI_API_KEY not found" in caught.value.message
    assert len(http.calls) == 0


# --- Content policy and usage on stream errors (SPEC §5.1) -------------------------------------


def test_stream_stopped_for_safety_without_text_is_a_content_policy_violation(http, gemini):
    transcript = wire.sse(
        [wire.gemini_chunk(finish_reason="SAFETY", usage=wire.gemini_usage(14, None))],
        sep="\r\n\r\n",
    )
    with pytest.raises(
        ContentPolicyViolation, match=r"withheld the answer \(finishReason SAFETY\)"
    ) as caught:
        open_stream(http, gemini, transcript).drain()
    assert caught.value.partial_usage == Usage(14, 0, 14)


def test_stream_stopped_for_safety_after_text_is_an_answer(http, gemini):
    transcript = wire.sse(
        [wire.gemini_chunk("Some"), wire.gemini_chunk(finish_reason="SAFETY")], sep="\r\n\r\n"
    )
    completion = open_stream(http, gemini, transcript).drain()
    assert completion.text == "Some"
    assert completion.finish_reason == "SAFETY"


def test_stream_with_a_blocked_prompt_keeps_the_prompt_tokens(http, gemini):
    blocked = wire.dumps(
        {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 9}}
    )
    with pytest.raises(ContentPolicyViolation, match=r"declined the prompt \(SAFETY\)") as caught:
        open_stream(http, gemini, wire.sse([blocked])).drain()
    assert caught.value.partial_usage == Usage(9, 0, 9)


def test_stream_error_chunk_with_usage_keeps_it(http, gemini):
    error = wire.dumps(
        {
            "error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"},
            "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 3},
        }
    )
    transcript = wire.sse([wire.gemini_chunk("Hel"), error])
    with pytest.raises(ProviderUnavailable) as caught:
        open_stream(http, gemini, transcript).drain()
    assert caught.value.partial_usage == Usage(9, 3, 12)
    assert caught.value.partial_text == "Hel"


def test_recitation_without_text_stays_an_invalid_request(http, gemini):
    body = wire.dumps({"candidates": [{"content": {}, "finishReason": "RECITATION"}]})
    http.add(responses.POST, GENERATE, body=body)
    with pytest.raises(InvalidRequest) as caught:
        gemini.complete(ask())
    assert type(caught.value) is InvalidRequest
