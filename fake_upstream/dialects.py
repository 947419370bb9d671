"""The providers' wire formats, as the fake upstream speaks them (shared/PROVIDERS.md).

A ``Dialect`` knows one provider's side of the wire: how its requests carry the key, the model,
the prompt and the JSON schema; how its answers, streams and errors look. The server
(``server``) runs the same pipeline for all of them and asks the dialect for the bytes: the
three built-in providers' formats, and OpenAI's own (``OpenAICompatible``) for custom providers.

Extension point: a new provider is a ``Dialect`` subclass (request parsing, bodies, stream
events, error bodies) plus its routes in ``server.FakeApp.routes``.

Bodies are built with plain dicts and one ``json.dumps`` each; stream chunks share a prefix
serialised once per request, so a chunk costs one small ``dumps`` of its ``choices``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .replies import (
    PRICES,
    chatcmpl_id,
    cost,
    count_words,
    decimal_str,
    gemini_response_id,
    now,
    openrouter_id,
)

JSON = "application/json"
SSE = "text/event-stream"
DONE = "[DONE]"
PREFILL_REFUSED = (
    "This model does not support assistant message prefill. The conversation must end with a "
    "user message."
)
CONTENT_POLICY = (
    "Your request was rejected as a result of our safety system. Your prompt may contain text "
    "that is not allowed by our safety system."
)


class Answer(Exception):  # Not an error: the response to send, found early.
    """Raised anywhere in the pipeline to answer with ``response`` right away."""

    def __init__(self, response: web.StreamResponse):
        super().__init__(response.status)
        self.response = response


@dataclass
class Ask:
    """What a generation request asks for, whatever the provider's format."""

    model: str
    prompt: str  # the last user text: the reply echoes its first words
    prompt_tokens: int
    stream: bool
    schema: Any = None  # a JSON schema, True for JSON mode without one, None for text
    max_tokens: int | None = None
    include_usage: bool = True
    sse: bool = True  # Gemini's stream endpoint without ?alt=sse answers a JSON array
    action: str = ""  # Gemini: generateContent | streamGenerateContent
    # The text of a trailing assistant (Gemini: "model") message: a prefill the reply continues.
    # None when the conversation ends with another role.
    prefill: str | None = None


@dataclass
class Reply:
    text: str
    completion_tokens: int
    truncated: bool = False  # cut at max_tokens: finish reason "length" / MAX_TOKENS


@dataclass
class StreamPlan:
    """A stream's payloads: comments first, then content events, then the closing events.

    Faults cut it: ``truncate`` drops ``tail`` (and most of ``content``); ``midstream_error``
    puts an error event after the first content event.
    """

    comments: list[str] = field(default_factory=list)
    content: list[str] = field(default_factory=list)
    tail: list[str] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)  # extra response headers
    chunk_prefix: str = ""  # the serialised head shared by the stream's chunks, if any


@dataclass(frozen=True)
class KeyInfo:
    """What a request's key looked like, for the records: never the key itself."""

    present: bool
    via: str | None = None  # "authorization" | "x-goog-api-key" | "query"
    prefix: str = ""
    last4: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "present": self.present,
            "via": self.via,
            "prefix": self.prefix,
            "last4": self.last4,
        }


KNOWN_KEY_PREFIXES = ("sk-or-", "AIza", "hf_")


def key_info(key: str | None, via: str | None) -> KeyInfo:
    if not key:
        return KeyInfo(False)
    prefix = next((p for p in KNOWN_KEY_PREFIXES if key.startswith(p)), "")
    return KeyInfo(True, via, prefix, key[-4:] if len(key) >= 8 else "")


def bearer(request: web.Request) -> str | None:
    value = request.headers.get("Authorization", "")
    scheme, _, token = value.partition(" ")
    return (token.strip() or None) if scheme.lower() == "bearer" else None


def is_bad_key(key: str) -> bool:
    """Keys the fake rejects: any starting with "bad" (e.g. "bad", "bad-key")."""
    return key.startswith("bad")


def text_of(content: Any) -> str:
    """Text of an OpenAI-style message content: a string or a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("text")
        )
    return ""


def _max_tokens(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


class Dialect:
    """One provider's wire format. Subclasses fill in every method."""

    name: str  # the provider's name in llm_providers ("openrouter", "gemini", "huggingface")
    prefix: str  # the path prefix on the fake ("/openrouter/api/v1")
    setting: str  # the setting that holds the base URL

    midstream_status = 502  # the code of a mid-stream error event when the script gives none
    keepalive = "keep-alive"  # the SSE comment a waiting stream sends (``first_token_delay``)
    # An event cut short: not JSON (``bad_event``).
    broken_event = '{"choices": [{"delta": '
    context_window = 8192  # the window the context-length error names

    def raw_key(self, request: web.Request) -> tuple[str | None, str | None]:
        """(the key the request carries, where it was: "authorization", ...) or (None, None)."""
        token = bearer(request)
        return (token, "authorization") if token else (None, None)

    def check_auth(self, raw_key: str | None) -> None:
        """Raise ``Answer`` with the provider's auth error if the key is missing or bad."""
        raise NotImplementedError

    def requested_model(self, body: Any, request: web.Request) -> str:
        return str(body.get("model") or "") if isinstance(body, dict) else ""

    def parse(self, body: Any, request: web.Request) -> Ask:
        raise NotImplementedError

    def completion(self, ask: Ask, reply: Reply) -> web.Response:
        raise NotImplementedError

    def stream_plan(self, ask: Ask, reply: Reply, pieces: list[str]) -> StreamPlan:
        raise NotImplementedError

    def stream_headers(self, ask: Ask, plan: StreamPlan | None = None) -> dict[str, str]:
        return {"Content-Type": SSE, "Cache-Control": "no-cache", **(plan.headers if plan else {})}

    def frame(self, ask: Ask, payloads: list[str], *, comments: list[str], complete: bool) -> bytes:
        """The bytes of a stream: SSE ``data:`` events (``\\n\\n``-separated by default)."""
        parts = [f": {c}\n\n" for c in comments]
        parts += [f"data: {p}\n\n" for p in payloads]
        return "".join(parts).encode()

    def stream_error(self, ask: Ask, plan: StreamPlan, status: int) -> str:
        """The payload of an error event sent after the stream has started."""
        raise NotImplementedError

    def error_in_200(self, ask: Ask, status: int) -> web.Response:
        """A provider error reported inside a 200 answer (``midstream_error`` without a stream)."""
        raise NotImplementedError

    def error(
        self, status: int, *, model: str = "", retry_after: float | None = None, message=None
    ) -> web.Response:
        """The provider's error answer for ``status``, as its real API sends it."""
        raise NotImplementedError

    def malformed(self, ask: Ask) -> web.Response:
        if ask.stream:
            body = self.frame(
                ask, ['{"choices": [{"delta": {"content": "Hel'], comments=[], complete=False
            )
            return web.Response(body=body, headers=self.stream_headers(ask))
        return web.Response(
            body=b"<html><body>upstream said something that is not JSON</body></html>",
            content_type=JSON,
        )

    def comment(self, ask: Ask, text: str) -> bytes:
        """One SSE comment line (a keep-alive), as this stream frames events."""
        return f": {text}\n\n".encode()

    def context_length(self, ask: Ask, completion_tokens: int, message: str | None) -> web.Response:
        """The 400 for a prompt larger than the model's window (``context_length``)."""
        window = self.context_window
        prompt = window + ask.prompt_tokens
        return _openai_error(
            message
            or f"This model's maximum context length is {window} tokens. However, you requested "
            f"{prompt + completion_tokens} tokens ({prompt} in the messages, {completion_tokens} "
            "in the completion). Please reduce the length of the messages or completion.",
            param="messages",
            code="context_length_exceeded",
        )

    def content_policy(self, ask: Ask, message: str | None) -> web.Response:
        """The provider's refusal of the prompt (``content_policy``)."""
        return _openai_error(message or CONTENT_POLICY, code="content_policy_violation")

    def prefill_refused(self, ask: Ask, message: str | None) -> web.Response:
        """The 400 of a model that does not continue a trailing assistant message."""
        return _openai_error(message or PREFILL_REFUSED, param="messages")

    def list_models(self, request: web.Request) -> web.Response:
        raise NotImplementedError


def _openai_error_body(
    message: str, kind: str = "invalid_request_error", param: str | None = None, code=None
) -> dict:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _openai_error(message: str, *, param: str | None = None, code: str | None = None):
    """OpenAI's 400 body, as OpenAI-compatible servers and the Hugging Face router's providers
    send it."""
    return _json_response(_openai_error_body(message, param=param, code=code), 400)


def _json_response(
    obj: Any, status: int = 200, headers: dict | None = None, **dumps
) -> web.Response:
    return web.Response(
        body=json.dumps(obj, ensure_ascii=False, **dumps).encode(),
        status=status,
        headers={"Content-Type": JSON, **(headers or {})},
    )


# --- OpenAI-style shared bits (OpenRouter, Hugging Face) -----------------------------------------


def _openai_ask(body: Any, default_model: str) -> Ask:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ValueError('"messages" must be a non-empty list')
    prompt, words = "", 0
    for message in messages:
        if not isinstance(message, dict):
            raise ValueError("every message must be an object")
        text = text_of(message.get("content"))
        words += count_words(text)
        if message.get("role") == "user":
            prompt = text
    schema: Any = None
    fmt = body.get("response_format")
    if isinstance(fmt, dict):
        if fmt.get("type") == "json_schema":
            inner = fmt.get("json_schema")
            # Nested (OpenAI) or flattened (what the HF router sends Together/Fireworks).
            schema = inner.get("schema") if isinstance(inner, dict) else fmt.get("schema")
            schema = schema if isinstance(schema, dict) else True
        elif fmt.get("type") == "json_object":
            schema = fmt.get("value") if isinstance(fmt.get("value"), dict) else True  # TGI form
    options = body.get("stream_options")
    last = messages[-1]
    prefill = text_of(last.get("content")) if last.get("role") == "assistant" else None
    return Ask(
        model=str(body.get("model") or default_model),
        prompt=prompt,
        prompt_tokens=max(words, 1),
        stream=body.get("stream") is True,
        schema=schema,
        max_tokens=_max_tokens(body.get("max_completion_tokens"))
        or _max_tokens(body.get("max_tokens")),
        include_usage=isinstance(options, dict) and options.get("include_usage") is True,
        prefill=prefill,
    )


def _chunk_prefix(fields: dict[str, Any]) -> str:
    """The serialised head of every chunk of one stream, ready for ``"choices": …}``."""
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":"))[:-1] + ","


def _compact(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


# --- OpenRouter ---------------------------------------------------------------------------------

_OR_MODEL = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.:-]*$")
# The upstream OpenRouter reports as "provider" for a model's vendor.
_OR_VENDORS = {
    "openai": "OpenAI",
    "anthropic": "Anthropic",
    "google": "Google",
    "meta-llama": "DeepInfra",
    "mistralai": "Mistral",
    "deepseek": "DeepSeek",
}
_OR_USER = "user_2fakeUpstream0000000000000"
_OR_ERROR_TYPES = {
    400: "invalid_request",
    401: "authentication",
    402: "payment_required",
    403: "permission_denied",
    404: "not_found",
    408: "timeout",
    429: "rate_limit_exceeded",
    500: "server",
    502: "provider_unavailable",
    503: "provider_overloaded",
    504: "timeout",
}


class OpenRouter(Dialect):
    name = "openrouter"
    prefix = "/openrouter/api/v1"
    setting = "OPENROUTER_BASE_URL"
    default_model = "openai/gpt-4o-mini"  # the "account default" when a request names none
    keepalive = "OPENROUTER PROCESSING"

    def __init__(self, config):
        self.config = config
        self._models_body = self._build_models()

    def check_auth(self, raw_key):
        if not raw_key:
            raise Answer(self.error(401, message="No auth credentials found"))
        if is_bad_key(raw_key):
            raise Answer(self.error(401))

    def parse(self, body, request):
        ask = _openai_ask(body, self.default_model)
        org = ask.model.partition("/")[0].lower()
        if not _OR_MODEL.match(ask.model) or org == "acme":
            raise Answer(self.error(400, message=f"{ask.model} is not a valid model ID"))
        return ask

    def _vendor(self, model: str) -> str:
        return _OR_VENDORS.get(model.partition("/")[0].lower(), "FakeUpstream")

    def context_length(self, ask, completion_tokens, message):
        # The recorded body (wire-recordings/openrouter/or-error-400-context-length.json).
        price = PRICES.get(ask.model.partition(":")[0].lower())
        window = price[2] if price else 128000
        requested = window + ask.prompt_tokens
        message = message or (
            f"This endpoint's maximum context length is {window} tokens. However, you "
            f"requested about {requested} tokens ({requested} of text input). Please reduce the "
            "length of either one, or use the context-compression plugin to compress your "
            "prompt automatically."
        )
        error = {
            "message": message,
            "code": 400,
            "metadata": {
                "provider_name": None,
                "previous_errors": [{"code": 400, "message": message}],
            },
        }
        return _json_response({"error": error, "user_id": _OR_USER}, 400, separators=(",", ":"))

    def _relayed_400(self, ask: Ask, upstream: dict) -> web.Response:
        """A provider's 400 relayed the way OpenRouter relays it: its body as a JSON string in
        ``metadata.raw`` (wire-recordings/openrouter/or-error-400-provider-returned-error.json)."""
        error = {
            "code": 400,
            "message": "Provider returned error",
            "metadata": {
                "raw": json.dumps(upstream, indent=2),
                "provider_name": self._vendor(ask.model),
                "is_byok": False,
            },
        }
        return _json_response({"error": error, "user_id": _OR_USER}, 400, separators=(",", ":"))

    def content_policy(self, ask, message):
        body = _openai_error_body(message or CONTENT_POLICY, code="content_policy_violation")
        return self._relayed_400(ask, body)

    def prefill_refused(self, ask, message):
        return self._relayed_400(
            ask, _openai_error_body(message or PREFILL_REFUSED, param="messages")
        )

    def _usage(self, ask: Ask, reply: Reply) -> str:
        """The usage object as JSON text, costs written as exact decimals (like OpenRouter)."""
        p_cost, c_cost = cost(ask.model, ask.prompt_tokens, reply.completion_tokens)
        total = decimal_str(p_cost + c_cost)
        return (
            f'{{"prompt_tokens":{ask.prompt_tokens},'
            f'"completion_tokens":{reply.completion_tokens},'
            f'"total_tokens":{ask.prompt_tokens + reply.completion_tokens},'
            f'"cost":{total},"is_byok":false,'
            '"prompt_tokens_details":{"cached_tokens":0,"cache_write_tokens":0,'
            '"audio_tokens":0,"video_tokens":0},'
            f'"cost_details":{{"upstream_inference_cost":{total},'
            f'"upstream_inference_prompt_cost":{decimal_str(p_cost)},'
            f'"upstream_inference_completions_cost":{decimal_str(c_cost)}}},'
            '"completion_tokens_details":{"reasoning_tokens":0,"image_tokens":0,'
            '"audio_tokens":0}}'
        )

    def completion(self, ask, reply):
        created = now()
        gen_id = openrouter_id(created)
        finish = "length" if reply.truncated else "stop"
        head = {
            "id": gen_id,
            "object": "chat.completion",
            "created": created,
            "model": ask.model,
            "provider": self._vendor(ask.model),
            "system_fingerprint": "fp_fake0upstream",
            "choices": [
                {
                    "index": 0,
                    "logprobs": None,
                    "finish_reason": finish,
                    "native_finish_reason": finish,
                    "message": {
                        "role": "assistant",
                        "content": reply.text,
                        "refusal": None,
                        "reasoning": None,
                    },
                }
            ],
        }
        body = _compact(head)[:-1] + ',"usage":' + self._usage(ask, reply) + "}"
        return web.Response(
            body=body.encode(), headers={"Content-Type": JSON, "X-Generation-Id": gen_id}
        )

    def _stream_head(self, ask: Ask) -> tuple[str, str]:
        created = now()
        gen_id = openrouter_id(created)
        prefix = _chunk_prefix(
            {
                "id": gen_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": ask.model,
                "provider": self._vendor(ask.model),
                "system_fingerprint": "fp_fake0upstream",
            }
        )
        return gen_id, prefix

    def stream_plan(self, ask, reply, pieces):
        gen_id, prefix = self._stream_head(ask)
        content = [
            prefix
            + '"choices":[{"index":0,"delta":'
            + _compact({"role": "assistant", "content": piece})
            + ',"finish_reason":null,"native_finish_reason":null}]}'
            for piece in pieces
        ]
        finish = "length" if reply.truncated else "stop"
        finish_choices = (
            '"choices":[{"index":0,"delta":{"role":"assistant","content":""},'
            f'"finish_reason":"{finish}","native_finish_reason":"{finish}"}}]'
        )
        usage = self._usage(ask, reply)
        if self.config.openrouter_usage_chunk == "empty_choices":
            usage_chunk = prefix + '"choices":[],"usage":' + usage + "}"
        else:  # the finish chunk repeated with usage (2026 capture)
            usage_chunk = prefix + finish_choices + ',"usage":' + usage + "}"
        return StreamPlan(
            comments=["OPENROUTER PROCESSING"],
            content=content,
            tail=[prefix + finish_choices + "}", usage_chunk, "[DONE]"],
            headers={"X-Generation-Id": gen_id},
            chunk_prefix=prefix,
        )

    def stream_error(self, ask, plan, status):
        prefix = plan.chunk_prefix or self._stream_head(ask)[1]
        error = {
            "code": status,
            "message": "Provider disconnected unexpectedly" if status >= 500 else "Upstream error",
            "metadata": {"error_type": _OR_ERROR_TYPES.get(status, "unmapped")},
        }
        return (
            prefix
            + '"error":'
            + _compact(error)
            + ',"choices":[{"index":0,"delta":{"content":""},"finish_reason":"error"}]}'
        )

    def error_in_200(self, ask, status):
        created = now()
        error = {
            "code": status,
            "message": "Provider returned error",
            "metadata": {"error_type": _OR_ERROR_TYPES.get(status, "unmapped")},
        }
        body = {
            "id": openrouter_id(created),
            "object": "chat.completion",
            "created": created,
            "model": ask.model,
            "provider": self._vendor(ask.model),
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "error",
                    "native_finish_reason": "error",
                    "error": error,
                    "message": {"role": "assistant", "content": "Echo:"},
                }
            ],
        }
        return _json_response(body, separators=(",", ":"))

    def error(self, status, *, model="", retry_after=None, message=None):
        headers: dict[str, str] = {}
        error: dict[str, Any] = {"message": message or "", "code": status}
        top: dict[str, Any] = {"error": error, "user_id": _OR_USER}
        if status == 401:
            error["message"] = message or "User not found."
            top.pop("user_id")
        elif status == 402:
            error["message"] = message or (
                "This request requires more credits, or fewer max_tokens. You requested up to "
                "16384 tokens, but can only afford 3324. To increase, visit "
                "https://openrouter.ai/settings/credits and add more credits"
            )
            error["metadata"] = {"limit_source": "openrouter_credits"}
        elif status == 404:
            error["message"] = message or f"No endpoints found for {model or 'this model'}."
        elif status == 429:
            if retry_after is not None:
                # An upstream provider's 429 relayed with its hint (body mirrors the header).
                error["message"] = message or "Provider returned error"
                error["metadata"] = {
                    "raw": f"{model or 'The model'} is temporarily rate-limited upstream. "
                    "Please retry shortly.",
                    "provider_name": self._vendor(model),
                    "is_byok": False,
                    "retry_after_seconds": retry_after,
                    "headers": {"Retry-After": _seconds(retry_after)},
                }
            else:
                reset = str((now() + 60) * 1000)  # epoch milliseconds, as observed
                limits = {
                    "X-RateLimit-Limit": "20",
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": reset,
                }
                error["message"] = message or "Rate limit exceeded: free-models-per-min."
                error["metadata"] = {"headers": limits, "limit_source": "openrouter_free_tier"}
                headers.update(limits)
        elif status == 502:
            error["message"] = message or "Provider returned error"
            error["metadata"] = {
                "raw": "upstream connect error or disconnect/reset before headers",
                "provider_name": self._vendor(model),
            }
        else:
            error["message"] = message or {
                400: "Invalid request parameters",
                403: "Request blocked by moderation",
                408: "Operation timed out. Please try again later.",
                500: "Internal Server Error",
                503: "Service temporarily unavailable",
                504: "Request timed out. Please try again later.",
            }.get(status, "Upstream error")
        if retry_after is not None:
            headers["Retry-After"] = _seconds(retry_after)
        return _json_response(top, status, headers, separators=(",", ":"))

    def _build_models(self) -> bytes:
        data = []
        for model_id, (prompt, completion, context) in PRICES.items():
            vendor, _, slug = model_id.partition("/")
            data.append(
                {
                    "id": model_id,
                    "canonical_slug": model_id,
                    "hugging_face_id": None,
                    "name": f"{_OR_VENDORS.get(vendor, vendor)}: {slug}",
                    "created": 1715558400,
                    "description": f"{model_id} (served by the fake upstream).",
                    "context_length": context,
                    "architecture": {
                        "modality": "text->text",
                        "input_modalities": ["text"],
                        "output_modalities": ["text"],
                        "tokenizer": "Other",
                        "instruct_type": None,
                    },
                    "pricing": {
                        "prompt": decimal_str(prompt),
                        "completion": decimal_str(completion),
                        "request": "0",
                        "image": "0",
                        "web_search": "0",
                        "internal_reasoning": "0",
                    },
                    "top_provider": {
                        "context_length": context,
                        "max_completion_tokens": 16384,
                        "is_moderated": False,
                    },
                    "per_request_limits": None,
                    "supported_parameters": [
                        "max_tokens",
                        "response_format",
                        "structured_outputs",
                        "temperature",
                    ],
                    "default_parameters": None,
                    "expiration_date": None,
                    "links": {"details": f"/api/v1/models/{model_id}/endpoints"},
                }
            )
        body = {"data": data, "total_count": len(data), "links": {"next": None}}
        return json.dumps(body, separators=(",", ":")).encode()

    def list_models(self, request):
        return web.Response(body=self._models_body, content_type=JSON)

    def key_body(self, raw_key: str) -> web.Response:
        label = f"{raw_key[:11]}...{raw_key[-3:]}" if len(raw_key) > 14 else raw_key
        body = {
            "data": {
                "label": label,
                "limit": 100,
                "limit_reset": "monthly",
                "limit_remaining": 74.5,
                "include_byok_in_limit": False,
                "usage": 25.5,
                "usage_daily": 25.5,
                "usage_weekly": 25.5,
                "usage_monthly": 25.5,
                "byok_usage": 0,
                "byok_usage_daily": 0,
                "byok_usage_weekly": 0,
                "byok_usage_monthly": 0,
                "is_free_tier": False,
                "is_management_key": False,
                "is_provisioning_key": False,
                "creator_user_id": _OR_USER,
                "expires_at": None,
                "rate_limit": {
                    "requests": 1000,
                    "interval": "1h",
                    "note": "This field is deprecated and safe to ignore.",
                },
            }
        }
        return _json_response(body, separators=(",", ":"))


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


# --- Gemini -------------------------------------------------------------------------------------

_GEMINI_CT = "application/json; charset=UTF-8"
_GEMINI_STATUS = {
    400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
    401: (
        "UNAUTHENTICATED",
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
        "cookie or other valid authentication credential.",
    ),
    402: ("RESOURCE_EXHAUSTED", "Your prepaid credits are exhausted."),
    403: (
        "PERMISSION_DENIED",
        "Method doesn't allow unregistered callers (callers without established identity). "
        "Please use API Key or other form of API consumer identity to call this API.",
    ),
    404: ("NOT_FOUND", "Requested entity was not found."),
    408: ("DEADLINE_EXCEEDED", "Deadline expired."),
    429: ("RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
    499: ("CANCELLED", "The operation was cancelled."),
    500: (
        "INTERNAL",
        "An internal error has occurred. Please retry or report in "
        "https://developers.generativeai.google/guide/troubleshooting",
    ),
    503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
    504: ("DEADLINE_EXCEEDED", "The request timed out. Please try again."),
}
# What Google's front end sends for a 502: an HTML page, not the JSON envelope.
_GOOGLE_502 = (
    "<!DOCTYPE html>\n<html lang=en>\n  <meta charset=utf-8>\n"
    "  <title>Error 502 (Server Error)!!1</title>\n"
    "  <p><b>502.</b> <ins>That\u2019s an error.</ins>\n"
    "  <p>The server encountered a temporary error and could not complete your request."
    "<p>Please try again in 30 seconds.  <ins>That\u2019s all we know.</ins>\n"
)
_GEMINI_MODELS = [
    ("gemini-2.5-flash", "Gemini 2.5 Flash", 1048576, 65536),
    ("gemini-2.5-pro", "Gemini 2.5 Pro", 1048576, 65536),
    ("gemini-2.5-flash-lite", "Gemini 2.5 Flash-Lite", 1048576, 65536),
    ("gemini-2.0-flash", "Gemini 2.0 Flash", 1048576, 8192),
]


def _gemini_model_entry(model_id: str, display: str, inputs: int, outputs: int) -> dict:
    return {
        "name": f"models/{model_id}",
        "version": "001",
        "displayName": display,
        "description": f"{display} (served by the fake upstream).",
        "inputTokenLimit": inputs,
        "outputTokenLimit": outputs,
        "supportedGenerationMethods": ["generateContent", "countTokens"],
        "temperature": 1,
        "topP": 0.95,
        "topK": 64,
        "maxTemperature": 2,
        "thinking": model_id.startswith("gemini-2.5"),
    }


# The non-streamed answer's layout, pretty-printed once; Gemini.completion fills it in.
_GEMINI_BODY = json.dumps(
    {
        "candidates": [
            {
                "content": {"parts": [{"text": "@TEXT@"}], "role": "model"},
                "finishReason": "@FINISH@",
                "index": 0,
            }
        ],
        "usageMetadata": {
            "promptTokenCount": "@P@",
            "candidatesTokenCount": "@C@",
            "totalTokenCount": "@T@",
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": "@P@"}],
        },
        "modelVersion": "@MODEL@",
        "responseId": "@ID@",
    },
    indent=2,
)


class Gemini(Dialect):
    name = "gemini"
    prefix = "/gemini/v1beta"
    setting = "GEMINI_BASE_URL"

    def __init__(self, config):
        self.config = config
        self._models = [_gemini_model_entry(*m) for m in _GEMINI_MODELS]
        self._models_body = json.dumps({"models": self._models}, indent=2).encode()

    midstream_status = 503
    broken_event = '{"candidates": [{"content": '
    context_window = 1048576

    def raw_key(self, request):
        key = request.headers.get("x-goog-api-key")
        if key:
            return key, "x-goog-api-key"
        key = request.query.get("key")
        return (key, "query") if key else (None, None)

    def check_auth(self, raw_key):
        if not raw_key:
            raise Answer(self.error(403))
        if is_bad_key(raw_key):
            raise Answer(self.invalid_key())

    def invalid_key(self) -> web.Response:
        message = "API key not valid. Please pass a valid API key."
        error = {
            "code": 400,
            "message": message,
            "status": "INVALID_ARGUMENT",
            "details": [
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
        }
        return self._error_response(400, error)

    def requested_model(self, body, request):
        return request.match_info.get("model", "")

    def parse(self, body, request):
        model = request.match_info["model"]
        action = request.match_info["action"]
        contents = body.get("contents") if isinstance(body, dict) else None
        if not isinstance(contents, list) or not contents:
            raise Answer(
                self.error(
                    400, message="* GenerateContentRequest.contents: contents is not specified"
                )
            )
        words, prompt = 0, ""
        system = body.get("systemInstruction") or body.get("system_instruction")
        for content in [system, *contents] if isinstance(system, dict) else contents:
            if not isinstance(content, dict):
                raise Answer(self.error(400, message="Invalid value at 'contents'"))
            text = " ".join(
                str(p.get("text", ""))
                for p in content.get("parts") or []
                if isinstance(p, dict) and p.get("text")
            )
            words += count_words(text)
            if content is not system and content.get("role", "user") == "user":
                prompt = text
        last = contents[-1]
        prefill = text if last is not system and last.get("role") == "model" else None
        config = body.get("generationConfig") or body.get("generation_config") or {}
        schema: Any = None
        if isinstance(config, dict):
            for name in (
                "responseJsonSchema",
                "response_json_schema",
                "responseSchema",
                "response_schema",
            ):
                if isinstance(config.get(name), dict):
                    schema = config[name]
                    break
            mime = config.get("responseMimeType") or config.get("response_mime_type")
            if schema is None and mime == "application/json":
                schema = True
            max_tokens = _max_tokens(
                config.get("maxOutputTokens") or config.get("max_output_tokens")
            )
        else:
            max_tokens = None
        if not model.startswith("gemini-"):
            raise Answer(
                self.error(
                    404,
                    message=f"models/{model} is not found for API version v1beta, or is not "
                    f"supported for {action}. Call ListModels to see the list of available "
                    "models and their supported methods.",
                )
            )
        return Ask(
            model=model,
            prompt=prompt,
            prompt_tokens=max(words, 1),
            stream=action == "streamGenerateContent",
            schema=schema,
            max_tokens=max_tokens,
            sse=request.query.get("alt") == "sse",
            action=action,
            prefill=prefill,
        )

    def _usage(self, ask: Ask, completion_tokens: int) -> dict:
        return {
            "promptTokenCount": ask.prompt_tokens,
            "candidatesTokenCount": completion_tokens,
            "totalTokenCount": ask.prompt_tokens + completion_tokens,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": ask.prompt_tokens}],
        }

    def completion(self, ask, reply):
        # Google pretty-prints non-streamed bodies (2-space indent). json.dumps with an indent
        # runs in pure Python, so the layout is rendered once and filled in per request.
        body = (
            _GEMINI_BODY.replace('"@P@"', str(ask.prompt_tokens))
            .replace('"@C@"', str(reply.completion_tokens))
            .replace('"@T@"', str(ask.prompt_tokens + reply.completion_tokens))
            .replace("@FINISH@", "MAX_TOKENS" if reply.truncated else "STOP")
            .replace("@ID@", gemini_response_id())
            .replace('"@MODEL@"', json.dumps(ask.model, ensure_ascii=False))
            # The text last: nothing it contains can then be taken for a placeholder.
            .replace('"@TEXT@"', json.dumps(reply.text, ensure_ascii=False))
        )
        return web.Response(body=body.encode(), headers={"Content-Type": _GEMINI_CT})

    def stream_plan(self, ask, reply, pieces):
        response_id = gemini_response_id()
        tail_fields = f',"modelVersion": {json.dumps(ask.model)},"responseId": "{response_id}"}}'
        content, words = [], 0
        for piece in pieces:
            words += count_words(piece)
            content.append(
                '{"candidates": [{"content": {"parts": [{"text": '
                + json.dumps(piece, ensure_ascii=False)
                + '}],"role": "model"},"index": 0}],"usageMetadata": '
                + json.dumps(self._usage(ask, words), separators=(",", ": "))
                + tail_fields
            )
        finish = "MAX_TOKENS" if reply.truncated else "STOP"
        last = (
            f'{{"candidates": [{{"content": {{"role": "model"}},"finishReason": "{finish}",'
            '"index": 0}],"usageMetadata": '
            + json.dumps(self._usage(ask, reply.completion_tokens), separators=(",", ": "))
            + tail_fields
        )
        return StreamPlan(content=content, tail=[last])

    def stream_headers(self, ask, plan=None):
        if ask.sse:
            return super().stream_headers(ask, plan)
        return {"Content-Type": _GEMINI_CT}

    def frame(self, ask, payloads, *, comments, complete):
        if not ask.sse:  # a streamed JSON array
            text = "[" + ",\r\n".join(payloads) + ("]" if complete else "")
            return text.encode()
        sep = self.config.gemini_sse_separator
        return "".join(f"data: {p}{sep}" for p in payloads).encode()

    def comment(self, ask, text):
        # A JSON-array stream has no comments.
        return f": {text}{self.config.gemini_sse_separator}".encode() if ask.sse else b""

    def context_length(self, ask, completion_tokens, message):
        # The recorded body (wire-recordings/gemini/gem-error-400-context-length.json).
        return self.error(
            400,
            message=message
            or "The input token count exceeds the maximum number of tokens allowed "
            f"({self.context_window}).",
        )

    def content_policy(self, ask, message):
        # Gemini does not answer a blocked prompt with an error: 200, no candidates, the reason
        # in promptFeedback (PROVIDERS.md §2.3; gemini/gem-prompt-blocked-prohibited-content).
        # A stream is that one event, then its end.
        body = {
            "promptFeedback": {"blockReason": "SAFETY"},
            "usageMetadata": {
                "promptTokenCount": ask.prompt_tokens,
                "totalTokenCount": ask.prompt_tokens,
                "promptTokensDetails": [{"modality": "TEXT", "tokenCount": ask.prompt_tokens}],
            },
            "modelVersion": ask.model,
            "responseId": gemini_response_id(),
        }
        if ask.stream:
            event = json.dumps(body, separators=(",", ": "), ensure_ascii=False)
            data = self.frame(ask, [event], comments=[], complete=True)
            return web.Response(body=data, headers=self.stream_headers(ask))
        return web.Response(
            body=json.dumps(body, indent=2).encode(), headers={"Content-Type": _GEMINI_CT}
        )

    def prefill_refused(self, ask, message):
        return self.error(400, message=message or PREFILL_REFUSED)

    def stream_error(self, ask, plan, status):
        code_name, message = _GEMINI_STATUS.get(status, ("UNAVAILABLE", "Upstream error"))
        return json.dumps(
            {"error": {"code": status, "message": message, "status": code_name}},
            separators=(",", ": "),
        )

    def error_in_200(self, ask, status):
        return web.Response(
            body=self.stream_error(ask, StreamPlan(), status).encode(),
            headers={"Content-Type": _GEMINI_CT},
        )

    def _error_response(self, status: int, error: dict, headers: dict | None = None):
        return web.Response(
            body=json.dumps({"error": error}, indent=2).encode(),
            status=status,
            headers={"Content-Type": _GEMINI_CT, **(headers or {})},
        )

    def error(self, status, *, model="", retry_after=None, message=None):
        if status == 502 and message is None:
            return web.Response(body=_GOOGLE_502.encode(), status=502, content_type="text/html")
        code_name, default = _GEMINI_STATUS.get(status, ("UNKNOWN", "Unknown error."))
        error: dict[str, Any] = {"code": status, "message": message or default, "status": code_name}
        if status == 429:
            model = model or "gemini-2.5-flash"
            hint = f"\nPlease retry in {retry_after:g}s." if retry_after is not None else ""
            error["message"] = message or (
                "You exceeded your current quota, please check your plan and billing details. "
                "For more information on this error, head to: "
                "https://ai.google.dev/gemini-api/docs/rate-limits. \n* Quota exceeded for "
                "metric: generativelanguage.googleapis.com/generate_content_free_tier_requests, "
                f"limit: 10, model: {model}{hint}"
            )
            details: list[dict] = [
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
                            "quotaMetric": "generativelanguage.googleapis.com/"
                            "generate_content_free_tier_requests",
                            "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                            "quotaDimensions": {"location": "global", "model": model},
                            "quotaValue": "10",
                        }
                    ],
                },
            ]
            if retry_after is not None:
                details.append(
                    {
                        "@type": "type.googleapis.com/google.rpc.RetryInfo",
                        "retryDelay": f"{retry_after:g}s",
                    }
                )
            error["details"] = details
        # No Retry-After header: Gemini puts the wait only in the body.
        return self._error_response(status, error)

    def list_models(self, request):
        size = request.query.get("pageSize")
        if size and size.isdigit() and 0 < int(size) < len(self._models):
            n = int(size)
            body = {"models": self._models[:n], "nextPageToken": f"page-{n}"}
            return web.Response(
                body=json.dumps(body, indent=2).encode(), headers={"Content-Type": _GEMINI_CT}
            )
        return web.Response(body=self._models_body, headers={"Content-Type": _GEMINI_CT})

    def get_model(self, model: str) -> web.Response:
        for entry in self._models:
            if entry["name"] == f"models/{model}":
                return web.Response(
                    body=json.dumps(entry, indent=2).encode(), headers={"Content-Type": _GEMINI_CT}
                )
        return self.error(404, message=f"models/{model} is not found for API version v1beta.")


# --- Hugging Face ---------------------------------------------------------------------------------

_HF_MODEL = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*(:[\w.-]+)?$")
_HF_MODELS = [
    ("meta-llama/Llama-3.1-8B-Instruct", "novita"),
    ("meta-llama/Llama-3.3-70B-Instruct", "groq"),
    ("deepseek-ai/DeepSeek-V3-0324", "fireworks-ai"),
    ("Qwen/Qwen2.5-7B-Instruct", "together"),
]


class HuggingFace(Dialect):
    name = "huggingface"
    prefix = "/hf/v1"
    setting = "HF_BASE_URL"
    context_window = 131072

    def __init__(self, config):
        self.config = config
        data = [
            {
                "id": model_id,
                "object": "model",
                "created": 1721606400,
                "owned_by": model_id.partition("/")[0],
                "providers": [{"provider": provider, "status": "live", "context_length": 131072}],
            }
            for model_id, provider in _HF_MODELS
        ]
        self._models_body = json.dumps({"object": "list", "data": data}).encode()

    def check_auth(self, raw_key):
        if not raw_key or is_bad_key(raw_key):
            raise Answer(self.error(401))

    def parse(self, body, request):
        ask = _openai_ask(body, "")
        if not _HF_MODEL.match(ask.model):
            raise Answer(
                _json_response(
                    {
                        "error": {
                            "message": f"The requested model '{ask.model}' is not supported by "
                            "any provider you have enabled.",
                            "type": "invalid_request_error",
                            "param": "model",
                            "code": "model_not_supported",
                        }
                    },
                    400,
                )
            )
        return ask

    def _answer_model(self, ask: Ask) -> str:
        return ask.model.partition(":")[0]  # the router answers without the ":provider" suffix

    def _usage(self, ask: Ask, reply: Reply) -> dict:
        return {
            "prompt_tokens": ask.prompt_tokens,
            "completion_tokens": reply.completion_tokens,
            "total_tokens": ask.prompt_tokens + reply.completion_tokens,
        }

    def completion(self, ask, reply):
        body = {
            "id": chatcmpl_id(),
            "object": "chat.completion",
            "created": now(),
            "model": self._answer_model(ask),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": reply.text},
                    "logprobs": None,
                    "finish_reason": "length" if reply.truncated else "stop",
                }
            ],
            "usage": self._usage(ask, reply),
            "system_fingerprint": "",
        }
        return _json_response(body, separators=(",", ":"))

    def stream_plan(self, ask, reply, pieces):
        prefix = _chunk_prefix(
            {
                "id": chatcmpl_id(),
                "object": "chat.completion.chunk",
                "created": now(),
                "model": self._answer_model(ask),
            }
        )
        content = []
        for i, piece in enumerate(pieces):
            delta = {"role": "assistant", "content": piece} if i == 0 else {"content": piece}
            content.append(
                prefix
                + '"choices":[{"index":0,"delta":'
                + _compact(delta)
                + ',"logprobs":null,"finish_reason":null}]}'
            )
        finish = "length" if reply.truncated else "stop"
        tail = [
            prefix
            + f'"choices":[{{"index":0,"delta":{{}},"logprobs":null,"finish_reason":"{finish}"}}]}}'
        ]
        if ask.include_usage:
            tail.append(prefix + '"choices":[],"usage":' + _compact(self._usage(ask, reply)) + "}")
        tail.append("[DONE]")
        return StreamPlan(content=content, tail=tail)

    def stream_error(self, ask, plan, status):
        # Text Generation Inference's in-stream error, passed through by the router.
        return _compact(
            {
                "error": "Request failed during generation: Server error: upstream connection "
                "reset",
                "error_type": "generation",
            }
        )

    def error_in_200(self, ask, status):
        body = self.stream_error(ask, StreamPlan(), status).encode()
        return web.Response(body=body, content_type=JSON)

    def error(self, status, *, model="", retry_after=None, message=None):
        headers: dict[str, str] = {}
        body: dict[str, Any]
        if status == 403:
            body = {
                "error": {
                    "message": message
                    or "This authentication method does not have sufficient "
                    "permissions to call Inference Providers on behalf of user fake-user",
                    "type": "permission_error",
                }
            }
        else:
            body = {
                "error": message
                or {
                    400: "Bad request",
                    401: "Invalid credentials in Authorization header",
                    402: "You have exceeded your monthly included credits for Inference "
                    "Providers. Subscribe to PRO to get 20x more monthly included credits.",
                    404: f"Model {model or 'unknown'} not found.",
                    429: "You have reached the rate limit for Inference Providers. "
                    "Please retry later.",
                    500: "Internal Server Error",
                    502: "Bad Gateway: the provider did not answer",
                    503: "Service Unavailable",
                    504: "Gateway Timeout",
                }.get(status, "Upstream error")
            }
        if retry_after is not None:
            headers["Retry-After"] = _seconds(retry_after)
            if status == 429:
                headers["RateLimit"] = f'"api";r=0;t={max(int(retry_after), 1)}'
                headers["RateLimit-Policy"] = '"fixed window";"api";q=500;w=300'
        return _json_response(body, status, headers)

    def list_models(self, request):
        return web.Response(body=self._models_body, content_type=JSON)


# --- A plain OpenAI-compatible server (custom providers: Ollama, vLLM, LM Studio, ...) --------

_OPENAI_MODEL = re.compile(r"^[A-Za-z0-9][\w./:-]*$")
_OPENAI_MODELS = ("llama3.2", "qwen2.5:7b", "mistral-small3.1")
_OPENAI_ERRORS = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("permission_error", None, "You are not allowed to use this model."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist."),
    429: ("rate_limit_exceeded", "rate_limit_exceeded", "Rate limit reached. Retry later."),
    500: ("server_error", None, "The server had an error while processing your request."),
    502: ("server_error", None, "Bad gateway."),
    503: ("server_error", None, "The server is overloaded. Please try again later."),
    504: ("server_error", None, "The request timed out."),
}


class OpenAICompatible(Dialect):
    """OpenAI's own chat-completions format, as a keyless local server (Ollama's ``/v1``,
    vLLM, llama.cpp's server) speaks it: what a custom provider (SPEC §12.1) talks to.

    No key is needed; a key that does come is checked (one starting with "bad" is refused as
    OpenAI refuses it), so a custom provider that requires a key can be tested here too. Any
    model name is served, except one starting with "missing": 404, as for a model never pulled.
    A stream carries usage only when ``stream_options.include_usage`` asks for it: then every
    chunk has ``"usage": null`` and a last chunk with empty ``choices`` has the figures.
    """

    name = "openai"
    prefix = "/openai/v1"
    setting = "LLM_CUSTOM_PROVIDERS"  # a custom provider's "base_url"

    def __init__(self, config):
        self.config = config
        data = [
            {"id": model, "object": "model", "created": 1727740800, "owned_by": "library"}
            for model in _OPENAI_MODELS
        ]
        self._models_body = json.dumps({"object": "list", "data": data}).encode()

    def check_auth(self, raw_key):
        if raw_key and is_bad_key(raw_key):
            raise Answer(self.error(401))

    def parse(self, body, request):
        ask = _openai_ask(body, "")
        if not ask.model:
            raise Answer(self.error(400, message="you must provide a model parameter"))
        if not _OPENAI_MODEL.match(ask.model):
            raise Answer(self.error(400, message=f"invalid model name {ask.model!r}"))
        if ask.model.startswith("missing"):
            raise Answer(self.error(404, model=ask.model))
        return ask

    def _usage(self, ask: Ask, reply: Reply) -> dict:
        return {
            "prompt_tokens": ask.prompt_tokens,
            "completion_tokens": reply.completion_tokens,
            "total_tokens": ask.prompt_tokens + reply.completion_tokens,
        }

    def completion(self, ask, reply):
        body = {
            "id": chatcmpl_id(),
            "object": "chat.completion",
            "created": now(),
            "model": ask.model,
            "system_fingerprint": "fp_fake0upstream",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": reply.text},
                    "logprobs": None,
                    "finish_reason": "length" if reply.truncated else "stop",
                }
            ],
            "usage": self._usage(ask, reply),
        }
        return _json_response(body, separators=(",", ":"))

    def stream_plan(self, ask, reply, pieces):
        prefix = _chunk_prefix(
            {
                "id": chatcmpl_id(),
                "object": "chat.completion.chunk",
                "created": now(),
                "model": ask.model,
                "system_fingerprint": "fp_fake0upstream",
            }
        )
        end = ',"usage":null}' if ask.include_usage else "}"
        content = []
        for i, piece in enumerate(pieces):
            delta = {"role": "assistant", "content": piece} if i == 0 else {"content": piece}
            content.append(
                prefix
                + '"choices":[{"index":0,"delta":'
                + _compact(delta)
                + ',"logprobs":null,"finish_reason":null}]'
                + end
            )
        finish = "length" if reply.truncated else "stop"
        tail = [
            prefix
            + f'"choices":[{{"index":0,"delta":{{}},"logprobs":null,"finish_reason":"{finish}"}}]'
            + end
        ]
        if ask.include_usage:
            tail.append(prefix + '"choices":[],"usage":' + _compact(self._usage(ask, reply)) + "}")
        tail.append("[DONE]")
        return StreamPlan(content=content, tail=tail, chunk_prefix=prefix)

    def _error_body(self, status: int, message: str | None = None) -> dict:
        kind, code, default = _OPENAI_ERRORS.get(status, ("server_error", None, "Upstream error"))
        return {"error": {"message": message or default, "type": kind, "param": None, "code": code}}

    def stream_error(self, ask, plan, status):
        return _compact(self._error_body(status))

    def error_in_200(self, ask, status):
        return _json_response(self._error_body(status))

    def error(self, status, *, model="", retry_after=None, message=None):
        if status == 404 and message is None and model:
            message = f"The model `{model}` does not exist or you do not have access to it."
        headers = {} if retry_after is None else {"Retry-After": _seconds(retry_after)}
        return _json_response(self._error_body(status, message), status, headers)

    def list_models(self, request):
        return web.Response(body=self._models_body, content_type=JSON)
