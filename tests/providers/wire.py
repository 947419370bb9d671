"""Upstream bodies and SSE transcripts as the real services send them (shared/PROVIDERS.md).

The provider tests mock HTTP with ``responses`` and build every upstream answer here, so the
shapes stay those of the captures: OpenRouter's field set (``provider``, ``native_finish_reason``,
``usage.cost`` as a bare JSON number, ``: OPENROUTER PROCESSING`` comments, ``[DONE]``), Gemini's
pretty-printed bodies and ``\\r\\n\\r\\n``-framed streams without a sentinel, Hugging Face's
OpenAI-style router bodies and its string-or-object ``error``.

Decimal values are written into JSON as bare numbers with exactly their digits (``0.00000735``,
never ``7.35e-06``), the way OpenRouter writes its costs.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from llm_providers.providers.gemini import GeminiProvider
from llm_providers.providers.huggingface import HuggingFaceProvider
from llm_providers.providers.openai_compat import schema_name
from llm_providers.providers.openrouter import OpenRouterProvider
from llm_providers.results import Usage
from tests.conftest import FAKE_KEYS, GEMINI_URL, HF_URL, OPENROUTER_URL

SSE = "text/event-stream"

OPENROUTER_CHAT = f"{OPENROUTER_URL}/chat/completions"
OPENROUTER_KEY_URL = f"{OPENROUTER_URL}/key"
HF_CHAT = f"{HF_URL}/chat/completions"
GEMINI_MODELS = f"{GEMINI_URL}/models"


def gemini_generate_url(model: str = "gemini-2.5-flash") -> str:
    return f"{GEMINI_URL}/models/{model}:generateContent"


def gemini_stream_url(model: str = "gemini-2.5-flash") -> str:
    return f"{GEMINI_URL}/models/{model}:streamGenerateContent"


# --- JSON writing ---------------------------------------------------------------------------------


def dumps(obj: Any, **kwargs: Any) -> str:
    """``json.dumps`` that writes a Decimal as a bare number with exactly its digits."""
    exact: dict[str, str] = {}

    def swap(value: Any) -> Any:
        if isinstance(value, Decimal):
            token = f"__decimal_{len(exact)}__"
            exact[token] = format(value, "f")
            return token
        if isinstance(value, dict):
            return {k: swap(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [swap(v) for v in value]
        return value

    text = json.dumps(swap(obj), ensure_ascii=False, **kwargs)
    for token, digits in exact.items():
        text = text.replace(f'"{token}"', digits)
    return text


def sse(events: list[str], *, sep: str = "\n\n", comments: tuple[str, ...] = ()) -> bytes:
    """An SSE transcript: comment lines first, then one ``data:`` event per payload."""
    parts = [f": {c}{sep}" for c in comments] + [f"data: {e}{sep}" for e in events]
    return "".join(parts).encode("utf-8")


class CutConnection(io.BufferedReader):
    """A response body that delivers ``data`` and then fails as a socket would: ``error`` is
    ``ConnectionResetError`` for a reset, ``TimeoutError`` for a read that times out.

    With ``sse_padding`` the data is preceded by an SSE comment that brings it to whole 512-byte
    reads (requests' chunk size), so every event before the failure reaches the reader.
    """

    def __init__(self, data: bytes, error: OSError, *, sse_padding: bool = True):
        super().__init__(io.BytesIO(b""))
        if sse_padding:
            data = b": " + b"." * (-(len(data) + 3) % 512) + b"\n" + data
        self.data = data
        self.error = error

    def read(self, size: int | None = -1) -> bytes:
        if not self.data:
            raise self.error
        size = len(self.data) if size is None or size < 0 else size
        out, self.data = self.data[:size], self.data[size:]
        return out


# --- OpenRouter -----------------------------------------------------------------------------------

OR_ID = "gen-1779358422-LrEwL8SmYSWNlAzrHKq2"
OR_STREAM_ID = "gen-1778031400-AbCdEfGhIjKlMnOpQrSt"


def or_usage(
    prompt: int = 9, completion: int = 10, cost: Decimal | None = Decimal("0.00000735")
) -> dict:
    """``usage`` as OpenRouter reports it (2026 capture): tokens, cost in USD, details."""
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if cost is not None:
        usage["cost"] = cost
    usage.update(
        {
            "is_byok": False,
            "prompt_tokens_details": {
                "cached_tokens": 0,
                "cache_write_tokens": 0,
                "audio_tokens": 0,
                "video_tokens": 0,
            },
            "cost_details": {
                "upstream_inference_cost": cost,
                "upstream_inference_prompt_cost": Decimal("0.00000135"),
                "upstream_inference_completions_cost": Decimal("0.000006"),
            },
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "image_tokens": 0,
                "audio_tokens": 0,
            },
        }
    )
    return usage


def or_completion(
    content: str | None = "Hello! How can I assist you today?",
    *,
    model: str = "openai/gpt-4o-mini",
    usage: dict | None = None,
    finish_reason: str = "stop",
) -> str:
    """A non-streaming chat completion (shape of the captured gpt-4o-mini answer)."""
    return dumps(
        {
            "id": OR_ID,
            "object": "chat.completion",
            "created": 1779358422,
            "model": model,
            "provider": "Azure",
            "system_fingerprint": "fp_eb37e061ec",
            "choices": [
                {
                    "index": 0,
                    "logprobs": None,
                    "finish_reason": finish_reason,
                    "native_finish_reason": finish_reason,
                    "message": {
                        "role": "assistant",
                        "content": content,
                        "refusal": None,
                        "reasoning": None,
                    },
                }
            ],
            "usage": usage if usage is not None else or_usage(),
        },
        separators=(",", ":"),
    )


def or_chunk(
    content: str | None = None,
    *,
    finish_reason: str | None = None,
    usage: dict | None = None,
    choices: bool = True,
    model: str = "openai/gpt-4o",
) -> str:
    chunk: dict[str, Any] = {
        "id": OR_STREAM_ID,
        "object": "chat.completion.chunk",
        "created": 1778031400,
        "model": model,
        "provider": "OpenAI",
        "system_fingerprint": "fp_1234",
        "choices": [
            {
                "index": 0,
                "delta": {"role": "assistant", "content": content},
                "finish_reason": finish_reason,
                "native_finish_reason": finish_reason,
            }
        ]
        if choices
        else [],
    }
    if usage is not None:
        chunk["usage"] = usage
    return dumps(chunk, separators=(",", ":"))


def or_stream(
    deltas: list[str],
    *,
    usage: dict | None = None,
    usage_variant: str = "repeat",
    model: str = "openai/gpt-4o",
    processing: int = 2,
    finish: bool = True,
    done: bool = True,
) -> bytes:
    """A text stream: ``: OPENROUTER PROCESSING`` comments, a role chunk, one chunk per delta,
    the finish chunk, the usage chunk, ``[DONE]``.

    ``usage_variant``: ``"repeat"`` repeats the finish chunk with ``usage`` attached (2026
    capture); ``"empty"`` sends ``usage`` on a chunk with ``choices: []`` (docs).
    """
    usage = usage if usage is not None else or_usage(10, 3, Decimal("0.000055"))
    events = [or_chunk("", model=model)]
    events += [or_chunk(d, model=model) for d in deltas]
    if finish:
        events.append(or_chunk("", finish_reason="stop", model=model))
        if usage_variant == "repeat":
            events.append(or_chunk("", finish_reason="stop", usage=usage, model=model))
        else:
            events.append(or_chunk(None, choices=False, usage=usage, model=model))
    if done:
        events.append("[DONE]")
    return sse(events, comments=("OPENROUTER PROCESSING",) * processing)


def or_stream_error(code: int | str = 502, message: str = "Provider disconnected") -> str:
    """The mid-stream error event: top-level ``error`` plus a terminating choice."""
    return dumps(
        {
            "id": "gen-abc123",
            "object": "chat.completion.chunk",
            "created": 1234567890,
            "model": "openai/gpt-4o",
            "provider": "OpenAI",
            "error": {
                "code": code,
                "message": message,
                "metadata": {"error_type": "provider_unavailable"},
            },
            "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}],
        },
        separators=(",", ":"),
    )


def or_error(code: int, message: str, metadata: dict | None = None) -> str:
    """OpenRouter's error envelope: ``error.code`` is the HTTP status; a top-level user_id."""
    error: dict[str, Any] = {"message": message, "code": code}
    if metadata is not None:
        error["metadata"] = metadata
    return dumps({"error": error, "user_id": "user_2zAklG7HDLZgAMY7y5rgO0dYwwN"})


OR_ERRORS = {
    400: "acme/fake-1.0 is not a valid model ID",
    401: "User not found.",
    402: (
        "This request requires more credits, or fewer max_tokens. You requested up to 16384 "
        "tokens, but can only afford 3324. To increase, visit "
        "https://openrouter.ai/settings/credits and add more credits"
    ),
    403: "Request blocked: prompt injection patterns detected",
    404: "No endpoints found for meta-llama/llama-3.2-1b-instruct:free.",
    408: "Operation timed out. Please try again later.",
    429: "Rate limit exceeded: free-models-per-min.",
    500: "Internal Server Error",
    502: "Provider returned error",
    503: "Service temporarily unavailable",
    504: "Request timed out. Please try again later.",
}

OR_KEY_INFO = dumps(
    {
        "data": {
            "label": "sk-or-v1-au7...890",
            "limit": 100,
            "limit_reset": "monthly",
            "limit_remaining": Decimal("74.5"),
            "usage": Decimal("25.5"),
            "is_free_tier": False,
        }
    }
)


# --- Google Gemini --------------------------------------------------------------------------------

GEMINI_RESPONSE_ID = "ag4pavQTzLrj4Q-XkKnZBA"


def gemini_usage(prompt: int = 21, candidates: int | None = 14, thoughts: int = 0) -> dict:
    usage: dict[str, Any] = {"promptTokenCount": prompt}
    if candidates is not None:
        usage["candidatesTokenCount"] = candidates
    usage["totalTokenCount"] = prompt + (candidates or 0) + thoughts
    usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": prompt}]
    if thoughts:
        usage["thoughtsTokenCount"] = thoughts
    return usage


def gemini_response(
    text: str | None = "Red and blue.",
    *,
    model_version: str = "gemini-2.5-flash",
    usage: dict | None = None,
    finish_reason: str = "STOP",
    parts: list | None = None,
) -> str:
    """A non-streaming ``generateContent`` answer, pretty-printed as Google sends it."""
    content: dict[str, Any] = {"role": "model"}
    if parts is not None:
        content = {"parts": parts, "role": "model"}
    elif text is not None:
        content = {"parts": [{"text": text}], "role": "model"}
    return dumps(
        {
            "candidates": [{"content": content, "finishReason": finish_reason, "index": 0}],
            "usageMetadata": usage if usage is not None else gemini_usage(),
            "modelVersion": model_version,
            "responseId": GEMINI_RESPONSE_ID,
        },
        indent=2,
    )


def gemini_chunk(
    text: str | None = None,
    *,
    finish_reason: str | None = None,
    usage: dict | None = None,
    model_version: str = "gemini-2.5-flash",
) -> str:
    """One stream chunk, in Google's serializer style (``": "`` after keys, bare commas).

    Without ``text`` the content is ``{"role": "model"}`` with no ``parts``, as in the final
    chunk of the captures.
    """
    content: dict[str, Any] = {"role": "model"}
    if text is not None:
        content = {"parts": [{"text": text}], "role": "model"}
    candidate: dict[str, Any] = {"content": content}
    if finish_reason:
        candidate["finishReason"] = finish_reason
    candidate["index"] = 0
    chunk: dict[str, Any] = {"candidates": [candidate]}
    if usage is not None:
        chunk["usageMetadata"] = usage
    chunk["modelVersion"] = model_version
    chunk["responseId"] = GEMINI_RESPONSE_ID
    return dumps(chunk, separators=(",", ": "))


def gemini_stream(
    deltas: list[str],
    *,
    final_usage: dict | None = None,
    sep: str = "\r\n\r\n",
    finish: bool = True,
    model_version: str = "gemini-2.5-flash",
) -> bytes:
    """A text stream: one chunk per delta with a running (cumulative) ``usageMetadata``, then a
    final chunk with ``finishReason`` and no ``parts``. No ``[DONE]``."""
    final_usage = final_usage if final_usage is not None else gemini_usage(51, 2 * len(deltas))
    prompt = final_usage["promptTokenCount"]
    events = [
        gemini_chunk(
            d,
            usage={"promptTokenCount": prompt, "totalTokenCount": prompt + i},
            model_version=model_version,
        )
        for i, d in enumerate(deltas)
    ]
    if finish:
        events.append(
            gemini_chunk(finish_reason="STOP", usage=final_usage, model_version=model_version)
        )
    return sse(events, sep=sep)


def gemini_error(code: int, message: str, status: str, details: list | None = None) -> str:
    """A google.rpc.Status error body, pretty-printed."""
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details is not None:
        error["details"] = details
    return dumps({"error": error}, indent=2)


def gemini_invalid_key() -> str:
    """What Google answers a made-up key: 400 INVALID_ARGUMENT, reason API_KEY_INVALID."""
    message = "API key not valid. Please pass a valid API key."
    return gemini_error(
        400,
        message,
        "INVALID_ARGUMENT",
        [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            },
            {
                "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
                "locale": "en-US",
                "message": message,
            },
        ],
    )


def gemini_quota(retry_delay: str | None = "7s", message_hint: str = "7.811233656s") -> str:
    """The free-tier 429 with Help, QuotaFailure and RetryInfo details."""
    details: list[dict[str, Any]] = [
        {
            "@type": "type.googleapis.com/google.rpc.Help",
            "links": [
                {
                    "description": "Learn more about Gemini API quotas",
                    "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
                }
            ],
        },
        {
            "@type": "type.googleapis.com/google.rpc.QuotaFailure",
            "violations": [
                {
                    "quotaMetric": (
                        "generativelanguage.googleapis.com/generate_content_free_tier_requests"
                    ),
                    "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                    "quotaDimensions": {"location": "global", "model": "gemini-2.5-flash"},
                }
            ],
        },
    ]
    if retry_delay is not None:
        details.append(
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry_delay}
        )
    return gemini_error(
        429,
        "You exceeded your current quota, please check your plan and billing details. For more "
        "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits. "
        "\n* Quota exceeded for metric: "
        "generativelanguage.googleapis.com/generate_content_free_tier_requests, limit: 0, "
        f"model: gemini-2.5-flash\nPlease retry in {message_hint}.",
        "RESOURCE_EXHAUSTED",
        details,
    )


GEMINI_ERRORS = {
    400: ('Invalid JSON payload received. Unknown name "foo".', "INVALID_ARGUMENT"),
    401: ("Request had invalid authentication credentials.", "UNAUTHENTICATED"),
    403: (
        "Method doesn't allow unregistered callers (callers without established identity). "
        "Please use API Key or other form of API consumer identity to call this API.",
        "PERMISSION_DENIED",
    ),
    404: (
        "models/gemini-1.5-flash is not found for API version v1beta, or is not supported for "
        "generateContent. Call ListModels to see the list of available models and their "
        "supported methods.",
        "NOT_FOUND",
    ),
    408: ("Request timed out.", "DEADLINE_EXCEEDED"),
    429: ("Resource has been exhausted (e.g. check quota).", "RESOURCE_EXHAUSTED"),
    500: (
        "An internal error has occurred. Please retry or report in "
        "https://developers.generativeai.google/guide/troubleshooting",
        "INTERNAL",
    ),
    502: ("Bad Gateway", "UNAVAILABLE"),
    503: ("The model is overloaded. Please try again later.", "UNAVAILABLE"),
    504: ("The request timed out. Please try again.", "DEADLINE_EXCEEDED"),
}


def gemini_status_error(code: int) -> str:
    message, status = GEMINI_ERRORS[code]
    return gemini_error(code, message, status)


def gemini_stream_error(code: int = 503) -> str:
    message, status = GEMINI_ERRORS[code]
    return dumps(
        {"error": {"code": code, "message": message, "status": status}}, separators=(",", ": ")
    )


GEMINI_MODEL_LIST = dumps(
    {
        "models": [
            {
                "name": "models/gemini-2.5-flash",
                "displayName": "Gemini 2.5 Flash",
                "inputTokenLimit": 1048576,
                "outputTokenLimit": 65536,
                "supportedGenerationMethods": ["generateContent", "countTokens"],
            }
        ],
        "nextPageToken": "Ch5tb2RlbHMvZ2VtaW5pLTIuNS1mbGFzaA==",
    },
    indent=2,
)


# --- Hugging Face ---------------------------------------------------------------------------------

HF_RESPONSE_MODEL = "meta-llama/llama-3.1-8b-instruct"


def hf_completion(
    content: str | None = "Hello!",
    *,
    model: str = HF_RESPONSE_MODEL,
    prompt: int = 45,
    completion: int = 17,
    finish_reason: str = "stop",
) -> str:
    """An OpenAI-style chat completion as the router passes it through (no cost field)."""
    return dumps(
        {
            "id": "chatcmpl-9f2c1a7e0b6d4c3a",
            "object": "chat.completion",
            "created": 1756000000,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "logprobs": None,
                    "finish_reason": finish_reason,
                }
            ],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
            "system_fingerprint": "",
        }
    )


def hf_chunk(
    content: str | None = None,
    *,
    role: bool = False,
    finish_reason: str | None = None,
    usage: dict | None = None,
    model: str = HF_RESPONSE_MODEL,
) -> str:
    chunk: dict[str, Any] = {
        "id": "chatcmpl-9f2c",
        "object": "chat.completion.chunk",
        "created": 1756000000,
        "model": model,
    }
    if usage is not None:
        chunk["choices"] = []
        chunk["usage"] = usage
    else:
        delta: dict[str, Any] = {"role": "assistant"} if role else {}
        delta["content"] = content
        chunk["choices"] = [
            {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        ]
    return dumps(chunk, separators=(",", ":"))


def hf_stream(
    deltas: list[str],
    *,
    usage: tuple[int, int] | None = (12, 2),
    finish: bool = True,
    done: bool = True,
) -> bytes:
    """A text stream: a role chunk, the deltas (the last carrying ``finish_reason``), the usage
    chunk (``choices: []``) when ``usage`` is given, ``[DONE]``."""
    events = [hf_chunk("", role=True)]
    for i, d in enumerate(deltas):
        last = i == len(deltas) - 1
        events.append(hf_chunk(d, finish_reason="stop" if (finish and last) else None))
    if usage is not None:
        p, c = usage
        events.append(
            hf_chunk(usage={"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c})
        )
    if done:
        events.append("[DONE]")
    return sse(events)


def hf_error_object(message: str, *, type_: str, code: str | None = None, param=None) -> str:
    error: dict[str, Any] = {"message": message, "type": type_}
    if param is not None:
        error["param"] = param
    if code is not None:
        error["code"] = code
    return dumps({"error": error})


def hf_error(message: str) -> str:
    """The ``{"error": "<message>"}`` string form."""
    return dumps({"error": message})


def hf_model_not_supported(model: str) -> str:
    return hf_error_object(
        f"The requested model '{model}' is not supported by any provider you have enabled.",
        type_="invalid_request_error",
        code="model_not_supported",
        param="model",
    )


def hf_loading(model: str, estimated_time: Decimal = Decimal("23.4")) -> str:
    return dumps({"error": f"Model {model} is currently loading", "estimated_time": estimated_time})


HF_ERRORS = {
    400: hf_error("Model not supported by provider hf-inference"),
    401: hf_error("Invalid credentials in Authorization header"),
    402: hf_error(
        "You have exceeded your monthly included credits for Inference Providers. Subscribe to "
        "PRO to get 20x more monthly included credits."
    ),
    403: hf_error_object(
        "This authentication method does not have sufficient permissions to call Inference "
        "Providers on behalf of user alice",
        type_="permission_error",
    ),
    404: hf_error("Model acme/nothing not found."),
    408: hf_error("Request timeout"),
    429: hf_error("You have exceeded the rate limit, please retry later."),
    500: hf_error("Internal Server Error"),
    502: hf_error("Bad Gateway"),
    503: hf_error("Service Unavailable"),
    504: hf_error("Gateway Timeout"),
}


def request_json(call) -> dict:
    """The JSON body of a recorded ``responses`` call."""
    return json.loads(call.request.body)


# --- Wire descriptions: what the contract suite needs to know of a provider -----------------------


@dataclass(frozen=True)
class ProviderWire:
    """How one provider speaks on the wire, for ``test_contract.py``: where its requests go, where
    its key travels, and how its answers, streams and errors look. Builders take token counts
    and ``usage`` says what the provider must read from them (with the cost it reports, if any).
    """

    name: str
    make: Callable[..., Any]  # make(key_source=None): a client holding ``key``
    key: str
    model: str  # a well-formed model id
    url: Callable[[str, bool], str]  # the endpoint for (model, stream)
    key_header: tuple[str, str]  # the header that carries the key, and its value
    completion: Callable[[str, int, int], str]  # (text, prompt tokens, completion tokens)
    usage: Callable[[int, int], Usage]  # what is read from such an answer
    stream: Callable[..., bytes]  # (deltas, prompt, completion, *, finish=True)
    chunk: Callable[[str], str]  # one event with a text delta
    stream_error: Callable[[int, str], str]  # one event that reports an error
    error: Callable[[int, str], str]  # an error body for (status, message)
    bad_key: tuple[int, str]  # what the upstream answers a key it does not accept
    unknown_model: tuple[int, str]  # what it answers a model it does not know
    native_schema: Callable[[dict], dict]  # the request fields that carry a JSON schema
    sse_sep: str = "\n\n"


def openai_wire(
    name: str, make: Callable[..., Any], key: str, model: str, chat_url: str
) -> ProviderWire:
    """A plain OpenAI-compatible server (chat completions, no cost reported, OpenAI's error
    objects): Hugging Face's router, or a custom provider of SPEC §12.1 such as a local server."""

    def completion(text: str, prompt: int, completion: int) -> str:
        return hf_completion(text, model=model, prompt=prompt, completion=completion)

    def stream(deltas, prompt, completion, *, finish=True) -> bytes:
        return hf_stream(
            deltas, usage=(prompt, completion) if finish else None, finish=finish, done=finish
        )

    def error(status: int, message: str) -> str:
        return hf_error_object(
            message, type_="invalid_request_error" if status < 500 else "server_error"
        )

    return ProviderWire(
        name=name,
        make=make,
        key=key,
        model=model,
        url=lambda model, stream: chat_url,
        key_header=("Authorization", f"Bearer {key}"),
        completion=completion,
        usage=lambda p, c: Usage(p, c, p + c),
        stream=stream,
        chunk=lambda text: hf_chunk(text),
        stream_error=lambda status, message: dumps({"error": {"message": message, "code": status}}),
        error=error,
        bad_key=(401, error(401, "Invalid credentials in Authorization header")),
        unknown_model=(
            404,
            hf_error_object(
                "The model `acme/nothing` does not exist",
                type_="invalid_request_error",
                code="model_not_found",
            ),
        ),
        native_schema=lambda schema: {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": schema_name(schema), "schema": schema},
            }
        },
    )


def _or_cost(prompt: int, completion: int) -> Decimal:
    return Decimal("0.0000015") * (prompt + completion)


OPENROUTER = ProviderWire(
    name="openrouter",
    make=lambda **kw: OpenRouterProvider(FAKE_KEYS["openrouter"], **kw),
    key=FAKE_KEYS["openrouter"],
    model="openai/gpt-4o-mini",
    url=lambda model, stream: OPENROUTER_CHAT,
    key_header=("Authorization", f"Bearer {FAKE_KEYS['openrouter']}"),
    completion=lambda text, p, c: or_completion(text, usage=or_usage(p, c, _or_cost(p, c))),
    usage=lambda p, c: Usage(p, c, p + c, _or_cost(p, c)),
    stream=lambda deltas, p, c, *, finish=True: or_stream(
        deltas, usage=or_usage(p, c, _or_cost(p, c)), finish=finish, done=finish
    ),
    chunk=lambda text: or_chunk(text),
    stream_error=or_stream_error,
    error=lambda status, message: or_error(status, message),
    bad_key=(401, or_error(401, "User not found.")),
    unknown_model=(400, or_error(400, "acme/fake-1.0 is not a valid model ID")),
    native_schema=lambda schema: {
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": schema_name(schema), "schema": schema},
        }
    },
)

GEMINI_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    402: "RESOURCE_EXHAUSTED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

GEMINI = ProviderWire(
    name="gemini",
    make=lambda **kw: GeminiProvider(FAKE_KEYS["gemini"], **kw),
    key=FAKE_KEYS["gemini"],
    model="gemini-2.5-flash",
    url=lambda model, stream: (gemini_stream_url if stream else gemini_generate_url)(model),
    key_header=("x-goog-api-key", FAKE_KEYS["gemini"]),
    completion=lambda text, p, c: gemini_response(text, usage=gemini_usage(p, c)),
    usage=lambda p, c: Usage(p, c, p + c),
    stream=lambda deltas, p, c, *, finish=True: gemini_stream(
        deltas, final_usage=gemini_usage(p, c), finish=finish
    ),
    chunk=lambda text: gemini_chunk(text),
    stream_error=lambda status, message: dumps(
        {"error": {"code": status, "message": message, "status": GEMINI_STATUS[status]}},
        separators=(",", ": "),
    ),
    error=lambda status, message: gemini_error(status, message, GEMINI_STATUS[status]),
    bad_key=(400, gemini_invalid_key()),  # Google answers a bad key with 400, not 401
    unknown_model=(404, gemini_status_error(404)),
    native_schema=lambda schema: {
        "generationConfig": {"responseMimeType": "application/json", "responseJsonSchema": schema}
    },
    sse_sep="\r\n\r\n",
)

HUGGINGFACE = replace(
    openai_wire(
        "huggingface",
        lambda **kw: HuggingFaceProvider(FAKE_KEYS["huggingface"], **kw),
        FAKE_KEYS["huggingface"],
        "meta-llama/Llama-3.1-8B-Instruct",
        HF_CHAT,
    ),
    # The router's own errors are {"error": "<text>"}; an unknown model is model_not_supported.
    error=lambda status, message: hf_error(message),
    unknown_model=(400, hf_model_not_supported("acme/nothing")),
    stream_error=lambda status, message: dumps({"error": message, "error_type": "overloaded"}),
)

# Every provider of the registry; a custom OpenAI-compatible one joins with openai_wire(...).
WIRES = [GEMINI, OPENROUTER, HUGGINGFACE]
