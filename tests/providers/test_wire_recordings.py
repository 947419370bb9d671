"""Real upstream responses, recorded against the live services by other open-source projects,
replayed through the provider code: the text, tokens and cost read from each answer, and the
error (class, retryable or not, retry hint) each failure becomes.

The recordings live in ``../shared/wire-recordings`` beside the repository (their README says what
each one shows) and are not copied here: without that folder these tests are skipped. Every file
there needs an expectation below; a new recording without one fails
``test_every_recording_has_an_expectation``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from llm_providers import registry
from llm_providers.exceptions import (
    ContentPolicyViolation,
    ContextLengthExceeded,
    InsufficientCredits,
    InvalidRequest,
    LLMError,
    ModelNotFound,
    ProviderAuthError,
    ProviderUnavailable,
    RateLimited,
)
from llm_providers.results import ChatRequest, Completion, Usage
from tests.conftest import FAKE_KEYS

RECORDINGS = Path(__file__).resolve().parents[2] / ".." / "shared" / "wire-recordings"
FILES = (
    sorted(path.relative_to(RECORDINGS).as_posix() for path in RECORDINGS.glob("*/*.json"))
    if RECORDINGS.is_dir()
    else []
)
# Framing headers describe the recorded transfer, not the body as stored (decompressed, joined).
HOP_BY_HOP = {"content-length", "content-encoding", "transfer-encoding", "connection"}

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}
SQUARE_ROOT = {"type": "object", "properties": {"result": {"type": "number"}}}


@dataclass(frozen=True)
class Answers:
    """The recording is a successful answer with this text (or text starting so) and usage."""

    text: str
    usage: Usage
    finish_reason: str | None = None
    model: str | None = None
    schema: dict | None = None  # the request asked for JSON of this schema…
    data: Any = None  # …and this is the object parsed from the answer
    prefix: bool = False  # a long answer: ``text`` is how it begins


@dataclass(frozen=True)
class Fails:
    """The recording is a failure the provider maps to ``error``."""

    error: type[LLMError]
    retryable: bool = False
    says: str = ""  # a piece of the message
    retry_after: float | None = None
    partial_usage: Usage | None = None


def cost(value: str) -> Decimal:
    return Decimal(value)


EXPECTED: dict[str, Answers | Fails] = {
    # --- Gemini ----------------------------------------------------------------------------------
    "gemini/gem-error-400-api-key-invalid-stream.json": Fails(
        ProviderAuthError, says="Google Gemini rejected the key from the environment variable"
    ),
    "gemini/gem-error-400-api-key-invalid.json": Fails(
        ProviderAuthError, says="Google Gemini rejected the key from the environment variable"
    ),
    "gemini/gem-error-400-context-length.json": Fails(
        ContextLengthExceeded, says="The input token count exceeds the maximum"
    ),
    "gemini/gem-error-400-thinking-level-unsupported.json": Fails(
        InvalidRequest, says="Thinking level MINIMAL is not supported"
    ),
    "gemini/gem-error-400-unknown-field.json": Fails(
        InvalidRequest, says='Unknown name "response_format"'
    ),
    "gemini/gem-error-404-model-not-found.json": Fails(
        ModelNotFound, says="Model not found: Google Gemini says"
    ),
    "gemini/gem-error-429-retryinfo-free-tier.json": Fails(
        RateLimited, retryable=True, retry_after=23.0, says="You exceeded your current quota"
    ),
    "gemini/gem-error-429-retryinfo-paid-tier.json": Fails(
        RateLimited, retryable=True, retry_after=48.0, says="You exceeded your current quota"
    ),
    "gemini/gem-error-500-internal.json": Fails(
        ProviderUnavailable, retryable=True, says="An internal error has occurred"
    ),
    "gemini/gem-finish-safety-no-parts.json": Fails(
        # The prompt was read (and billed) before the answer was withheld.
        ContentPolicyViolation,
        says="withheld the answer (finishReason SAFETY)",
        partial_usage=Usage(14, 0, 14),
    ),
    "gemini/gem-generate-thoughts-tokens.json": Answers(
        "Let's think step by step:\n\n1.  You have the number 2.\n2.  You are adding another 2 "
        "to it.\n3.  Counting forward 2 steps from 2 gives you 3, then 4.\n\nSo, 2 + 2 = **4**.",
        # Thinking tokens are billed as output: 65 + 110.
        Usage(13, 175, 188),
        finish_reason="STOP",
        model="gemini-2.5-flash",
    ),
    "gemini/gem-max-tokens-no-parts.json": Answers(
        "", Usage(15, 2, 17), finish_reason="MAX_TOKENS", model="gemini-2.5-pro"
    ),
    "gemini/gem-prompt-blocked-prohibited-content.json": Fails(
        ContentPolicyViolation,
        says="declined the prompt (PROHIBITED_CONTENT)",
        partial_usage=Usage(9, 0, 9),
    ),
    "gemini/gem-stream-basic-prompt-count-changes.json": Answers(
        # The last chunk's counts, not the earlier ones (promptTokenCount 15 there).
        "The capital of France is Paris.\n",
        Usage(13, 8, 21),
        finish_reason="STOP",
        model="gemini-2.0-flash-exp",
    ),
    "gemini/gem-stream-sse-thoughts-cumulative.json": Answers(
        "Let's think step-by-step:\n\n1.  You have the number 2.\n2.  You are adding another 2 "
        "to it.\n3.  If you count two items, and then count two more items, you will have a "
        "total of four items.\n\nSo, 2 + 2 = 4.",
        Usage(13, 71 + 137, 221),  # cumulative counts: the last chunk's, never a sum
        finish_reason="STOP",
    ),
    "gemini/gem-structured-response-json-schema.json": Answers(
        '{"name":"John","age":30}',
        Usage(13, 10 + 258, 281),
        schema=PERSON,
        data={"name": "John", "age": 30},
        model="gemini-3-flash-preview",
    ),
    "gemini/gem-structured-response-schema-openapi.json": Answers(
        '{"result": 8}', Usage(22, 6 + 106, 134), schema=SQUARE_ROOT, data={"result": 8}
    ),
    # --- Hugging Face ----------------------------------------------------------------------------
    "huggingface/hf-error-401-invalid-credentials.json": Fails(
        ProviderAuthError,
        says="Hugging Face rejected the key from the environment variable HF_TOKEN "
        "(HTTP 401: Invalid username or password.)",
    ),
    "huggingface/hf-error-404-model-does-not-exist.json": Fails(
        ModelNotFound, says="Model this-model-does-not-exist-123 does not exist"
    ),
    "huggingface/hf-error-422-template-error.json": Fails(
        InvalidRequest, says="Template error: template not found"
    ),
    "huggingface/hf-error-422-text-plain.json": Fails(
        InvalidRequest, says="HTTP 422: Failed to deserialize the JSON body"
    ),
    "huggingface/hf-error-429-legacy-api-inference.json": Fails(
        RateLimited, retryable=True, says="Rate limit reached"
    ),
    "huggingface/hf-error-500-together-retry-after.json": Fails(
        ProviderUnavailable, retryable=True, retry_after=1.0, says="Internal server error"
    ),
    "huggingface/hf-error-503-model-loading.json": Fails(
        ProviderUnavailable,
        retryable=True,
        retry_after=32.13720703125,
        says="Hugging Face is loading the model",
    ),
    "huggingface/hf-hfinference-tgi-stream.json": Answers(
        "Deep learning is a subset of machine learning that involves the use of artificial "
        "neural networks (ANNs)",
        Usage(),  # TGI sends "usage": null on every chunk; the price table has nothing to price
        finish_reason="length",
    ),
    "huggingface/hf-novita-stream-usage-empty-choices.json": Answers(
        "Paris", Usage(40, 2, 42), finish_reason="stop"
    ),
    "huggingface/hf-together-tool-call-bigint-seed.json": Answers(
        "", Usage(19, 29, 48), finish_reason="tool_calls", model="deepseek-ai/DeepSeek-R1"
    ),
    "huggingface/hf-v1-nonstream-groq.json": Answers(
        "Olá!", Usage(20, 4, 24), finish_reason="stop", model="moonshotai/kimi-k2-instruct-0905"
    ),
    "huggingface/hf-v1-stream-groq-usage-twice.json": Answers(
        "Olá!",
        Usage(20, 4, 24),
        finish_reason="stop",  # sent three times, counted once
    ),
    "huggingface/hf-v1-tool-call-nonstream.json": Answers(
        "", Usage(93, 21, 114), finish_reason="tool_calls"
    ),
    "huggingface/hf-v1-tool-call-stream.json": Answers(
        "", Usage(93, 21, 114), finish_reason="tool_calls"
    ),
    # --- OpenRouter ------------------------------------------------------------------------------
    "openrouter/or-error-400-context-length.json": Fails(
        ContextLengthExceeded, says="This endpoint's maximum context length is 200000 tokens"
    ),
    "openrouter/or-error-400-invalid-model-id.json": Fails(
        ModelNotFound, says="minimax-m2.5:free is not a valid model ID"
    ),
    "openrouter/or-error-400-provider-returned-error.json": Fails(
        # The upstream's own words are in metadata.raw, a JSON document inside a string.
        InvalidRequest,
        says="Provider returned error (from OpenAI: Unsupported value: 'none' is not supported "
        "with the 'o3-2025-04-16' model",
    ),
    "openrouter/or-error-401-missing-auth-header.json": Fails(
        ProviderAuthError,
        says="OpenRouter rejected the key from the environment variable OPENROUTER_API_KEY "
        "(HTTP 401: Missing Authentication header)",
    ),
    "openrouter/or-error-401-no-auth-credentials.json": Fails(
        ProviderAuthError, says="(HTTP 401: No auth credentials found)"
    ),
    "openrouter/or-error-402-insufficient-credits.json": Fails(
        InsufficientCredits, says="Insufficient credits. This account never purchased credits."
    ),
    "openrouter/or-error-403-provider-region.json": Fails(
        # Not the key: OpenAI does not serve the caller's region; the chain moves on.
        ProviderUnavailable,
        says="does not serve the region this server calls from (HTTP 403: Provider returned "
        "error (from OpenAI: Country, region, or territory not supported))",
    ),
    "openrouter/or-error-404-no-endpoints.json": Fails(
        ModelNotFound, says="No endpoints found for google/gemini-2.5-flash:free."
    ),
    "openrouter/or-error-429-upstream-rate-limited.json": Fails(
        RateLimited,
        retryable=True,
        says="Provider returned error (from Google: google/gemini-2.0-flash-exp:free is "
        "temporarily rate-limited upstream",
    ),
    "openrouter/or-nonstream-leading-whitespace.json": Answers(
        "Hello!", Usage(12, 2, 14, cost("0.00005")), finish_reason="stop", model="openai/gpt-4o"
    ),
    "openrouter/or-nonstream-usage-include-cost.json": Answers(
        "Here\u2019s a concise but thorough overview of Mars",
        Usage(17, 2177, 2194, cost("0.00435825")),
        finish_reason="stop",
        prefix=True,
    ),
    "openrouter/or-nonstream-usage-no-include.json": Answers(
        "Brief summary\n- Venus is the second planet from the Sun",
        Usage(17, 1515, 1532, None),
        finish_reason="stop",
        prefix=True,
    ),
    "openrouter/or-stream-midstream-error-chunk.json": Fails(
        # The error chunk carries the usage of what was generated: it is billed.
        InvalidRequest,
        says="Token limit reached",
        partial_usage=Usage(43, 10, 53, cost("0")),
    ),
    "openrouter/or-stream-modern-bedrock.json": Answers(
        "1\n2\n3",
        Usage(15, 9, 24, cost("0.00006")),
        finish_reason="stop",
        model="anthropic/claude-4.5-haiku-20251001",
    ),
    "openrouter/or-stream-processing-comment-midstream.json": Answers(
        "Gully or Skipper", Usage(17, 5, 22, None), finish_reason="stop"
    ),
    "openrouter/or-stream-tool-call.json": Answers(
        "", Usage(48, 11, 59, cost("0.0000368")), finish_reason="tool_calls"
    ),
    "openrouter/or-stream-usage-final-chunk.json": Answers(
        "Pebbles and Skipper.", Usage(17, 6, 23, cost("0.0001025")), finish_reason="stop"
    ),
    "openrouter/or-structured-output-json-schema.json": Answers(
        '{"name":"John","age":30}',
        Usage(181, 12, 193, cost("0.000241")),
        schema=PERSON,
        data={"name": "John", "age": 30},
        model="anthropic/claude-4.5-haiku-20251001",
    ),
}


@pytest.fixture(autouse=True)
def one_attempt(settings):
    """Each recording is one upstream answer: no retries (``retryable`` says what would be)."""
    settings.LLM_MAX_RETRIES = 0


def test_every_recording_has_an_expectation():
    if not FILES:
        pytest.skip(f"no recordings at {RECORDINGS}")
    assert sorted(EXPECTED) == FILES
    assert len(FILES) == len(list(RECORDINGS.glob("*/*.json")))


def requested_model(recording: dict, provider) -> str:
    request = recording["request"] or {}
    body = request.get("json") if isinstance(request.get("json"), dict) else {}
    if body.get("model"):
        return body["model"]
    path = request.get("url_path") or ""
    if recording["provider"] == "gemini" and "/models/" in path:
        return path.split("/models/", 1)[1].split(":", 1)[0]
    return provider.default_model()


def is_stream(recording: dict) -> bool:
    request = recording["request"] or {}
    body = request.get("json") if isinstance(request.get("json"), dict) else {}
    return body.get("stream") is True or ":streamGenerateContent" in (request.get("url_path") or "")


def replay(name: str, expected: Answers | Fails, http) -> Completion:
    """Answer the provider's request with the recorded response; return what it made of it."""
    recording = json.loads((RECORDINGS / name).read_text(encoding="utf-8"))
    provider_name = recording["provider"]
    provider = registry.provider_class(provider_name)(FAKE_KEYS[provider_name])
    request = ChatRequest.from_prompt(
        "Hi",
        model=requested_model(recording, provider),
        json_schema=expected.schema if isinstance(expected, Answers) else None,
    )
    stream = is_stream(recording)
    call = provider.build_call(request, stream=stream)
    response = recording["response"]
    headers = {k: v for k, v in response["headers"].items() if k not in HOP_BY_HOP}
    http.add(
        call.method,
        call.url,
        body=response["body"].encode("utf-8"),
        status=response["status"],
        headers={k: v for k, v in headers.items() if k != "content-type"},
        content_type=headers.get("content-type", "application/json"),
    )
    if stream:
        return provider.stream(request).drain()
    return provider.complete(request)


@pytest.mark.parametrize("name", FILES or [pytest.param("-", marks=pytest.mark.skip)])
def test_recording(name, http):
    expected = EXPECTED.get(name)
    if expected is None:
        pytest.fail(f"{name} has no expectation in EXPECTED")
    provider_name = name.split("/", 1)[0]
    if isinstance(expected, Fails):
        with pytest.raises(LLMError) as caught:
            replay(name, expected, http)
        error = caught.value
        assert type(error) is expected.error, error.message
        assert error.retryable is expected.retryable
        assert error.provider == provider_name
        assert expected.says in error.message
        assert FAKE_KEYS[provider_name] not in error.message
        assert getattr(error, "retry_after", None) == expected.retry_after
        assert error.partial_usage == expected.partial_usage
        assert error.requests == 1
        return
    completion = replay(name, expected, http)
    if expected.prefix:
        assert completion.text.startswith(expected.text)
        assert len(completion.text) > 1000
    else:
        assert completion.text == expected.text
    assert completion.usage == expected.usage
    assert completion.provider == provider_name
    assert completion.requests == 1
    assert completion.data == expected.data
    if expected.finish_reason is not None:
        assert completion.finish_reason == expected.finish_reason
    if expected.model is not None:
        assert completion.model == expected.model
