"""The provider contract: what every provider does the same way, run against each of them.

Each provider is described by its ``ProviderWire`` (``wire.py``): where its requests go, where its
key travels, how its answers, streams and errors look. The tests below hold every provider of
the registry, and an OpenAI-compatible server with nothing particular about it (what a custom
provider of SPEC §12.1 is), to SPEC §5: text and usage, structured JSON through the native schema
field, retries on 408/429/5xx and none on 400/401/403/404, errors that name the provider and the
key's source but never the key, streams, and "Model not found". What is particular to one
provider is tested in its own module.
"""

from __future__ import annotations

import json

import pytest
import requests
import responses

from llm_providers import registry
from llm_providers.exceptions import (
    ContentPolicyViolation,
    ContextLengthExceeded,
    InsufficientCredits,
    InvalidRequest,
    InvalidStructuredOutput,
    ModelNotFound,
    ProviderAuthError,
    ProviderUnavailable,
    RateLimited,
    UpstreamTimeout,
)
from llm_providers.providers.custom import custom_provider_class
from llm_providers.results import ChatRequest, Message, TextDelta
from tests.providers import wire

LOCAL_KEY = "local-server-key-0123456789SECRET"


LOCAL_URL = "https://local.test/v1"
# A custom provider of SPEC §12.1, made as the registry makes them from LLM_CUSTOM_PROVIDERS or an
# admin row: an OpenAI-compatible server with nothing particular about it.
LocalServer = custom_provider_class(
    name="local", label="Local server", base_url=LOCAL_URL, default_model="llama3.2"
)

LOCAL = wire.openai_wire(
    "local",
    lambda **kw: LocalServer(LOCAL_KEY, **kw),
    LOCAL_KEY,
    "llama3.2",
    f"{LOCAL_URL}/chat/completions",
)
WIRES = [*wire.WIRES, LOCAL]

SCHEMA = {
    "title": "Answer",
    "type": "object",
    "properties": {"answer": {"type": "string"}, "confidence": {"type": "number"}},
    "required": ["answer", "confidence"],
    "additionalProperties": False,
}
ANSWER = '{"answer": "Paris", "confidence": 0.9}'
ADMIN_SOURCE = "the admin key manager (key #3 'prod')"


@pytest.fixture(params=WIRES, ids=lambda w: w.name)
def w(request) -> wire.ProviderWire:
    return request.param


def ask(w, prompt="What is the capital of France?", **kwargs) -> ChatRequest:
    return ChatRequest.from_prompt(prompt, model=w.model, **kwargs)


def answer(http, w, body, *, stream=False, status=200, headers=None):
    http.add(
        responses.POST,
        w.url(w.model, stream),
        body=body,
        status=status,
        headers=headers or {},
        content_type=wire.SSE if stream and status == 200 else "application/json",
    )


def test_every_registered_provider_is_in_the_contract():
    assert {w.name for w in wire.WIRES} == {cls.name for cls in registry.BUILTIN_PROVIDERS}
    for w in wire.WIRES:
        assert type(w.make()) is registry.provider_class(w.name)


# --- Text and usage -------------------------------------------------------------------------------


def test_text(http, w):
    answer(http, w, w.completion("Paris.", 12, 3))
    completion = w.make().complete(ask(w))
    assert completion.text == "Paris."
    assert completion.provider == w.name
    assert completion.requests == 1
    request = http.calls[0].request
    assert request.url.split("?")[0] == w.url(w.model, False)
    assert "What is the capital of France?" in request.body.decode()


def test_the_key_travels_in_its_header_only(http, w):
    answer(http, w, w.completion("Paris.", 12, 3))
    w.make().complete(ask(w))
    request = http.calls[0].request
    header, value = w.key_header
    assert request.headers[header] == value
    assert w.key not in request.url
    assert w.key not in request.body.decode()


def test_usage(http, w):
    answer(http, w, w.completion("Paris.", 1234, 56))
    assert w.make().complete(ask(w)).usage == w.usage(1234, 56)


# --- Structured JSON ------------------------------------------------------------------------------


def test_structured_json_goes_in_the_native_schema_field(http, w):
    answer(http, w, w.completion(ANSWER, 20, 9))
    completion = w.make().complete(ask(w, json_schema=SCHEMA))
    sent = json.loads(http.calls[0].request.body)
    for field, value in w.native_schema(SCHEMA).items():
        assert sent[field] == value
    assert completion.data == {"answer": "Paris", "confidence": 0.9}
    assert completion.text == ANSWER


@pytest.mark.parametrize("fence", ["```json\n{}\n```", "```\n{}\n```", "  ```json\n{}```\n"])
def test_structured_json_in_a_code_fence_is_accepted(http, w, fence):
    answer(http, w, w.completion(fence.replace("{}", ANSWER), 20, 9))
    assert w.make().complete(ask(w, json_schema=SCHEMA)).data["answer"] == "Paris"
    assert len(http.calls) == 1


def test_invalid_json_is_asked_again_once_and_both_calls_count(http, w):
    answer(http, w, w.completion("It is Paris.", 20, 4))
    answer(http, w, w.completion(ANSWER, 20, 9))
    completion = w.make().complete(ask(w, json_schema=SCHEMA))
    assert completion.data["answer"] == "Paris"
    assert completion.requests == 2
    both = [w.usage(20, 4), w.usage(20, 9)]
    assert completion.usage.total_tokens == sum(u.total_tokens for u in both)


def test_invalid_json_twice_fails_with_the_raw_text_never_as_data(http, w):
    answer(http, w, w.completion("It is Paris.", 20, 4))
    answer(http, w, w.completion('{"answer": "Paris"}', 20, 6))
    with pytest.raises(InvalidStructuredOutput) as caught:
        w.make().complete(ask(w, json_schema=SCHEMA))
    assert caught.value.raw_text == '{"answer": "Paris"}'
    assert caught.value.requests == 2
    assert caught.value.partial_usage.total_tokens == 20 + 4 + 20 + 6
    assert "'confidence' is a required property" in caught.value.message


# --- Retries --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (408, UpstreamTimeout),
        (429, RateLimited),
        (500, ProviderUnavailable),
        (502, ProviderUnavailable),
        (503, ProviderUnavailable),
        (504, UpstreamTimeout),
    ],
)
def test_retryable_statuses_are_retried_then_mapped(http, w, sleeps, status, error):
    answer(http, w, w.error(status, "Try again later."), status=status)
    with pytest.raises(error) as caught:
        w.make().complete(ask(w))
    assert type(caught.value) is error
    assert len(http.calls) == 4  # LLM_MAX_RETRIES = 3
    assert caught.value.requests == 4
    assert caught.value.upstream_status == status
    assert caught.value.provider == w.name
    assert "Try again later." in caught.value.message
    assert len(sleeps) == 3


def test_a_retry_that_succeeds_counts_every_request(http, w, sleeps):
    answer(http, w, w.error(503, "Overloaded."), status=503)
    answer(http, w, w.completion("Paris.", 12, 3))
    completion = w.make().complete(ask(w))
    assert completion.text == "Paris."
    assert completion.requests == 2
    assert len(sleeps) == 1


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_the_wait(http, w, sleeps, status):
    answer(http, w, w.error(status, "Slow down."), status=status, headers={"Retry-After": "7"})
    answer(http, w, w.completion("Paris.", 12, 3))
    w.make().complete(ask(w))
    assert sleeps == [7.0]


def test_a_wait_beyond_the_total_bound_ends_the_retries(http, w, settings, sleeps):
    settings.LLM_RETRY_TOTAL_TIMEOUT = 30.0
    answer(http, w, w.error(429, "Slow down."), status=429, headers={"Retry-After": "45"})
    with pytest.raises(RateLimited) as caught:
        w.make().complete(ask(w))
    assert caught.value.requests == 1
    assert caught.value.retry_after == 45.0
    assert sleeps == []


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, InvalidRequest),
        (401, ProviderAuthError),
        (402, InsufficientCredits),
        (403, ProviderAuthError),
        (404, ModelNotFound),
    ],
)
def test_caller_and_key_errors_are_not_retried(http, w, sleeps, status, error):
    answer(http, w, w.error(status, "Refused: check the request."), status=status)
    with pytest.raises(error) as caught:
        w.make().complete(ask(w))
    assert type(caught.value) is error
    assert len(http.calls) == 1
    assert caught.value.requests == 1
    assert caught.value.provider == w.name
    assert sleeps == []


def test_a_network_error_is_retried_then_unavailable(http, w):
    http.add(responses.POST, w.url(w.model, False), body=requests.ConnectionError("reset"))
    with pytest.raises(ProviderUnavailable) as caught:
        w.make().complete(ask(w))
    assert type(caught.value) is ProviderUnavailable
    assert caught.value.requests == 4
    assert caught.value.message.startswith("Could not reach ")


def test_a_timeout_is_not_retried(http, w):
    # SPEC §5.1: a silent provider is left at once; the chain moves on.
    http.add(responses.POST, w.url(w.model, False), body=requests.ReadTimeout("slow"))
    with pytest.raises(UpstreamTimeout) as caught:
        w.make().complete(ask(w))
    assert caught.value.requests == 1
    assert caught.value.retryable is False
    assert caught.value.message.endswith("did not answer within 5s")


def test_a_200_that_is_not_json_is_unavailable_and_not_retried(http, w):
    answer(http, w, "<html>upstream connect error</html>")
    with pytest.raises(ProviderUnavailable, match=r"sent a body that is not JSON \(HTTP 200\)"):
        w.make().complete(ask(w))
    assert len(http.calls) == 1


# --- Keys -----------------------------------------------------------------------------------------


def test_a_rejected_key_names_the_provider_and_its_source_never_the_key(http, w):
    status, body = w.bad_key
    answer(http, w, body, status=status)
    provider = w.make(key_source=ADMIN_SOURCE)
    with pytest.raises(ProviderAuthError) as caught:
        provider.complete(ask(w))
    message = caught.value.message
    assert message.startswith(f"{provider.label} rejected the key from {ADMIN_SOURCE} (HTTP ")
    assert w.key not in str(caught.value)
    assert caught.value.requests == 1


def test_the_key_source_defaults_to_its_environment_variable(http, w):
    status, body = w.bad_key
    answer(http, w, body, status=status)
    provider = w.make()
    with pytest.raises(ProviderAuthError, match=f"the environment variable {provider.key_setting}"):
        provider.complete(ask(w))


@pytest.mark.parametrize("status", [401, 500])
def test_a_key_echoed_by_the_upstream_is_scrubbed(http, w, settings, status):
    settings.LLM_MAX_RETRIES = 0
    answer(http, w, w.error(status, f"Bad key {w.key} for this account"), status=status)
    with pytest.raises((ProviderAuthError, ProviderUnavailable)) as caught:
        w.make().complete(ask(w))
    assert w.key not in str(caught.value)
    assert "Bad key [key] for this account" in caught.value.message


def test_repr_hides_the_key(w):
    assert w.key not in repr(w.make())


# --- Streams --------------------------------------------------------------------------------------


def test_a_stream_gives_the_deltas_then_the_final_usage(http, w):
    answer(http, w, w.stream(["Par", "is", "."], 12, 3), stream=True)
    stream = w.make().stream(ask(w))
    assert list(stream) == [TextDelta("Par"), TextDelta("is"), TextDelta(".")]
    completion = stream.completion
    assert completion.text == "Paris."
    assert completion.usage == w.usage(12, 3)
    assert completion.provider == w.name
    assert completion.requests == 1
    assert http.calls[0].request.url.split("?")[0] == w.url(w.model, True)


def test_a_stream_drained_without_reading_still_has_its_usage(http, w):
    answer(http, w, w.stream(["Paris."], 12, 3), stream=True)
    completion = w.make().stream(ask(w)).drain()
    assert (completion.text, completion.usage) == ("Paris.", w.usage(12, 3))


def test_an_error_mid_stream_keeps_the_text_so_far(http, w):
    events = [w.chunk("Par"), w.stream_error(503, "Model overloaded mid-way")]
    answer(http, w, wire.sse(events, sep=w.sse_sep), stream=True)
    stream = w.make().stream(ask(w))
    assert next(stream) == TextDelta("Par")
    with pytest.raises(ProviderUnavailable) as caught:
        next(stream)
    assert "Model overloaded mid-way" in caught.value.message
    assert caught.value.partial_text == "Par"
    assert caught.value.requests == 1
    assert caught.value.provider == w.name
    assert stream.completion is None


def test_a_stream_that_ends_before_the_answer_is_complete_is_unavailable(http, w):
    answer(http, w, w.stream(["Par", "is"], 12, 3, finish=False), stream=True)
    with pytest.raises(
        ProviderUnavailable, match="stream ended before the answer was complete"
    ) as c:
        w.make().stream(ask(w)).drain()
    assert c.value.partial_text == "Paris"


def test_a_stream_cut_off_mid_way_is_unavailable(http, w):
    body = wire.CutConnection(wire.sse([w.chunk("Par")], sep=w.sse_sep), ConnectionResetError())
    http.add(responses.POST, w.url(w.model, True), body=body, content_type=wire.SSE)
    stream = w.make().stream(ask(w))
    assert next(stream) == TextDelta("Par")
    with pytest.raises(ProviderUnavailable, match="stream broke off") as caught:
        next(stream)
    assert caught.value.partial_text == "Par"


def test_a_stream_that_stalls_is_an_upstream_timeout(http, w):
    body = wire.CutConnection(wire.sse([w.chunk("Par")], sep=w.sse_sep), TimeoutError())
    http.add(responses.POST, w.url(w.model, True), body=body, content_type=wire.SSE)
    stream = w.make().stream(ask(w))
    assert next(stream) == TextDelta("Par")
    with pytest.raises(UpstreamTimeout, match="stream was silent for more than 30s") as caught:
        next(stream)
    assert caught.value.partial_text == "Par"
    assert caught.value.retryable is False


def test_a_malformed_stream_event_is_skipped_and_logged(http, w, caplog):
    # SPEC §5.1: one bad event is logged (its size, never its content) and the stream goes on.
    good = w.stream(["is"], 12, 2).decode()
    bad = ["{not json: SECRET-PROMPT", '{"choices": ["SECRET-PROMPT"], "candidates": ["x"]}']
    body = wire.sse([w.chunk("Par"), *bad], sep=w.sse_sep).decode() + good
    answer(http, w, body.encode(), stream=True)
    with caplog.at_level("WARNING", logger="llm_providers.providers.base"):
        completion = w.make().stream(ask(w)).drain()
    assert completion.text == "Paris"
    warnings = [
        r.getMessage() for r in caplog.records if "malformed stream event" in r.getMessage()
    ]
    assert len(warnings) == 2
    assert f"({len(bad[0])} characters)" in warnings[0]
    assert "SECRET" not in caplog.text


def test_opening_a_stream_is_retried(http, w, sleeps):
    answer(
        http, w, w.error(429, "Slow down."), stream=True, status=429, headers={"Retry-After": "2"}
    )
    answer(http, w, w.stream(["Paris."], 12, 3), stream=True)
    stream = w.make().stream(ask(w))
    assert stream.drain().requests == 2
    assert sleeps == [2.0]


def test_a_stream_refused_at_once_is_not_retried(http, w):
    status, body = w.bad_key
    answer(http, w, body, status=status, stream=True)
    with pytest.raises(ProviderAuthError) as caught:
        w.make().stream(ask(w))
    assert caught.value.requests == 1
    assert len(http.calls) == 1


# --- Models ---------------------------------------------------------------------------------------


def test_a_model_the_upstream_does_not_know_is_model_not_found(http, w, sleeps):
    status, body = w.unknown_model
    answer(http, w, body, status=status)
    provider = w.make()
    with pytest.raises(ModelNotFound) as caught:
        provider.complete(ask(w))
    assert caught.value.message.startswith("Model not found")
    assert provider.example_model in caught.value.message  # the expected form, by example
    assert caught.value.code == "model_not_found"
    assert caught.value.requests == 1
    assert sleeps == []


# --- Context length, content policy, prefill (SPEC §5.1) ----------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        "This model's maximum context length is 8192 tokens. However, you requested 9000 tokens.",
        "The input token count exceeds the maximum number of tokens allowed (1048576).",
        "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096. Given: 4000 "
        "`inputs` tokens and 200 `max_new_tokens`",
        "Request has too many tokens for this model",
    ],
)
def test_a_context_length_error_is_context_length_exceeded(http, w, message):
    answer(http, w, w.error(400, message), status=400)
    with pytest.raises(ContextLengthExceeded) as caught:
        w.make().complete(ask(w))
    assert message in caught.value.message
    assert caught.value.code == "context_length_exceeded"
    assert len(http.calls) == 1


def test_a_content_policy_refusal_is_content_policy_violation(http, w):
    message = "Your request was rejected: it violates our content policy (violence)."
    answer(http, w, w.error(400, message), status=400)
    with pytest.raises(ContentPolicyViolation, match=r"violates our content policy \(violence\)"):
        w.make().complete(ask(w))
    assert len(http.calls) == 1


def test_a_region_refusal_is_unavailable_not_the_key(http, w):
    answer(http, w, w.error(403, "Country, region, or territory not supported"), status=403)
    with pytest.raises(ProviderUnavailable) as caught:
        w.make().complete(ask(w))
    assert type(caught.value) is ProviderUnavailable
    assert "rejected the key" not in caught.value.message
    assert len(http.calls) == 1


def last_turn(w, body: dict) -> dict:
    """The last turn of a request body, in the provider's own shape."""
    if w.name == "gemini":
        return body["contents"][-1]
    return body["messages"][-1]


def test_a_trailing_assistant_message_is_sent_as_a_prefill(http, w):
    answer(http, w, w.stream(["is"], 12, 2), stream=True)
    request = ChatRequest(
        messages=(
            Message("user", "What is the capital of France?"),
            Message("assistant", "Paris "),
        ),
        model=w.model,
    )
    assert w.make().stream(request).drain().text == "is"
    sent = wire.request_json(http.calls[0])
    if w.name == "gemini":
        assert last_turn(w, sent) == {"role": "model", "parts": [{"text": "Paris "}]}
        assert sent["contents"][0]["role"] == "user"
    else:
        assert last_turn(w, sent) == {"role": "assistant", "content": "Paris "}
        assert sent["messages"][0]["role"] == "user"


def test_a_refused_prefill_is_an_invalid_request(http, w):
    answer(
        http, w, w.error(400, "This model does not support assistant message prefill."), status=400
    )
    request = ChatRequest(
        messages=(Message("user", "Hi"), Message("assistant", "Hel")), model=w.model
    )
    with pytest.raises(InvalidRequest) as caught:
        w.make().complete(request)
    assert type(caught.value) is InvalidRequest
    assert len(http.calls) == 1
