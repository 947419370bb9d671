"""Google Gemini (the Gemini API, ``generateContent``).

What is particular to it (docs: https://ai.google.dev/api/generate-content):
- its own request shape: ``contents`` with roles ``user``/``model``, ``systemInstruction``,
  ``generationConfig``; structured output as ``responseMimeType`` + ``responseJsonSchema``;
- the key goes in the ``x-goog-api-key`` header (never the URL, where logs would keep it);
- streams are ``:streamGenerateContent?alt=sse``, framed with ``\\r\\n\\r\\n``, with no end
  sentinel: a chunk with ``finishReason`` ends it, and ``usageMetadata`` is cumulative;
- an invalid key is a **400** with reason ``API_KEY_INVALID`` (not 401): a provider failure;
- rate limits carry the wait in ``RetryInfo.retryDelay`` (``"7s"``), not in a header.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from ..exceptions import (
    ContentPolicyViolation,
    InvalidRequest,
    LLMError,
    ModelNotFound,
    ProviderAuthError,
    ProviderUnavailable,
    RateLimited,
)
from ..results import ChatRequest, Completion, Usage
from .base import (
    REGION_WORDS,
    HTTPCall,
    Provider,
    StreamState,
    error_status,
    error_text,
    parse_duration,
    parse_retry_after,
)

MODEL_ID = re.compile(r"^(models/)?[A-Za-z0-9][\w.-]*$")
_RETRY_IN_MESSAGE = re.compile(r"retry in (\d+(?:\.\d+)?)s", re.IGNORECASE)
# Finish reasons that mean the answer was withheld, not completed; the first set are Google's
# content policies (https://ai.google.dev/api/generate-content#FinishReason).
_POLICY_BLOCKS = {"SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII", "IMAGE_SAFETY"}
_BLOCKED = _POLICY_BLOCKS | {"RECITATION", "LANGUAGE", "OTHER"}


class GeminiProvider(Provider):
    name = "gemini"
    label = "Google Gemini"
    key_setting = "GEMINI_API_KEY"
    model_setting = "GEMINI_MODEL"
    base_url_setting = "GEMINI_BASE_URL"
    key_prefix = "AIza"
    example_model = "gemini-2.5-flash"
    aliases = ("google",)
    key_page = "https://aistudio.google.com/app/apikey"

    @classmethod
    def check_model(cls, model: str) -> None:
        if not MODEL_ID.match(model or ""):
            raise ModelNotFound(
                f"Model not found: {model!r} is not a Gemini model id. Use a bare id such as "
                f"{cls.example_model}.",
                provider=cls.name,
                model=model,
            )

    def auth_headers(self) -> dict[str, str]:
        return {"x-goog-api-key": self._api_key}

    def build_call(self, request: ChatRequest, *, stream: bool) -> HTTPCall:
        model = request.model.removeprefix("models/")
        body: dict[str, Any] = {
            "contents": [
                {
                    "role": "model" if m.role == "assistant" else "user",
                    "parts": [{"text": m.content}],
                }
                for m in request.messages
            ]
        }
        if request.system_prompt:
            body["systemInstruction"] = {"parts": [{"text": request.system_prompt}]}
        config: dict[str, Any] = {}
        if request.temperature is not None:
            config["temperature"] = request.temperature
        if request.max_tokens is not None:
            config["maxOutputTokens"] = request.max_tokens
        if request.json_schema is not None:
            # responseJsonSchema takes standard JSON Schema (responseSchema takes an OpenAPI
            # subset with upper-case types), so the caller's schema is sent as it is.
            config["responseMimeType"] = "application/json"
            config["responseJsonSchema"] = request.json_schema
        if config:
            body["generationConfig"] = config
        if stream:
            return HTTPCall(
                "POST",
                f"{self.base_url}/models/{model}:streamGenerateContent",
                {**self.auth_headers(), "Accept": "text/event-stream"},
                body,
                params={"alt": "sse"},
            )
        return HTTPCall(
            "POST", f"{self.base_url}/models/{model}:generateContent", self.auth_headers(), body
        )

    def read_completion(self, body: Any, request: ChatRequest) -> Completion:
        if isinstance(body, Mapping) and "error" in body:
            raise self.read_error(error_status(body, 502), body, {})
        candidates = body.get("candidates") or []
        usage = _usage(body.get("usageMetadata") or {})
        if not candidates:
            raise self._prompt_blocked(body, usage)
        candidate = candidates[0]
        text = _text_of(candidate)
        finish = candidate.get("finishReason")
        if not text and finish in _BLOCKED:
            raise self._withheld(finish, usage)
        return Completion(
            text=text,
            provider=self.name,
            model=_model_of(body, request.model),
            usage=usage,
            finish_reason=finish,
            response_id=body.get("responseId"),
        )

    def read_stream_event(self, data: str, state: StreamState) -> str | None:
        # Not JSON raises ValueError: the stream skips the event (ProviderStream._read).
        chunk = json.loads(data, parse_float=Decimal)
        if isinstance(chunk, list):  # the non-SSE array framing wraps errors in a list
            chunk = chunk[0] if chunk else {}
        if not isinstance(chunk, Mapping):
            return None
        if chunk.get("usageMetadata"):
            # Cumulative: the last one is final. Read before an error: what it counts is billed.
            state.usage = _usage(chunk["usageMetadata"])
        if "error" in chunk:
            raise self.read_error(error_status(chunk, 502), chunk, {})
        state.model = _model_of(chunk, state.model)
        state.response_id = chunk.get("responseId") or state.response_id
        candidates = chunk.get("candidates") or []
        if not candidates:
            if (chunk.get("promptFeedback") or {}).get("blockReason"):
                raise self._prompt_blocked(chunk, state.usage or Usage())
            return None
        candidate = candidates[0]
        text = _text_of(candidate)
        finish = candidate.get("finishReason")
        if finish:
            if not text and not state.text and finish in _BLOCKED:
                raise self._withheld(finish, state.usage or Usage())
            state.finish_reason = finish
            state.finished = True
        return text or None

    def _prompt_blocked(self, body: Mapping[str, Any], usage: Usage) -> LLMError:
        """A 200 without candidates: the prompt was blocked (``promptFeedback.blockReason``).
        Its prompt tokens are billed, so they go with the error."""
        reason = (body.get("promptFeedback") or {}).get("blockReason")
        error: LLMError
        if reason:
            error = ContentPolicyViolation(
                f"Google Gemini declined the prompt ({reason}).", provider=self.name
            )
        else:
            error = InvalidRequest(
                "Google Gemini declined the prompt (no candidates).", provider=self.name
            )
        error.partial_usage = usage
        return error

    def _withheld(self, finish: str, usage: Usage) -> LLMError:
        """A candidate stopped with no text for ``finish``: a content policy or another cause."""
        cls = ContentPolicyViolation if finish in _POLICY_BLOCKS else InvalidRequest
        error = cls(
            f"Google Gemini withheld the answer (finishReason {finish}).", provider=self.name
        )
        error.partial_usage = usage
        return error

    def read_error(self, status: int, body: Any, headers: Mapping[str, str]) -> LLMError:
        message = error_text(body)
        err = body.get("error") if isinstance(body, Mapping) else None
        err = err if isinstance(err, Mapping) else {}
        details = [d for d in err.get("details") or [] if isinstance(d, Mapping)]
        reasons = {d.get("reason") for d in details}
        if "API_KEY_INVALID" in reasons or "API key not valid" in message:
            return ProviderAuthError(
                f"Google Gemini rejected the key from {self.key_source} (HTTP {status}: {message})",
                provider=self.name,
            )
        if REGION_WORDS.search(message):
            # "User location is not supported for the API use." (400 FAILED_PRECONDITION): no key
            # or caller can change it from this server; the chain moves on.
            return ProviderUnavailable(
                f"Google Gemini does not serve the region this server calls from "
                f"(HTTP {status}: {message})",
                provider=self.name,
            )
        if status == 400 and err.get("status") == "FAILED_PRECONDITION":
            # E.g. the free tier is not available: the account cannot use the API this way.
            return ProviderAuthError(
                f"Google Gemini cannot serve this account (HTTP 400: {message})",
                provider=self.name,
            )
        if status == 403:
            # PERMISSION_DENIED: no key, a leaked key, a key or project lacking permission.
            return ProviderAuthError(
                f"Google Gemini rejected the key from {self.key_source} (HTTP 403: {message})",
                provider=self.name,
            )
        if status == 404:
            return ModelNotFound(
                f"Model not found: Google Gemini says {message!r}. Use a model id such as "
                f"{self.example_model}.",
                provider=self.name,
            )
        if status == 429:
            retry_after = parse_retry_after(headers.get("Retry-After"))
            for detail in details:
                if retry_after is None and str(detail.get("@type", "")).endswith("RetryInfo"):
                    retry_after = parse_duration(detail.get("retryDelay"))
            if retry_after is None and (match := _RETRY_IN_MESSAGE.search(message)):
                retry_after = float(match.group(1))
            return RateLimited(
                f"Google Gemini answered HTTP 429: {message}",
                retry_after=retry_after,
                provider=self.name,
            )
        return self.error_for_status(status, message, headers=headers)

    def connection_test_call(self) -> HTTPCall:
        # Listing one model needs a valid key and costs nothing.
        return HTTPCall(
            "GET", f"{self.base_url}/models", self.auth_headers(), params={"pageSize": "1"}
        )


def _text_of(candidate: Mapping[str, Any]) -> str:
    # `parts` may be missing (MAX_TOKENS spent on thinking); thought summaries are not the answer.
    parts = (candidate.get("content") or {}).get("parts") or []
    return "".join(
        p.get("text", "") for p in parts if isinstance(p, Mapping) and not p.get("thought")
    )


def _model_of(body: Mapping[str, Any], requested: str) -> str:
    version = body.get("modelVersion")
    return str(version).removeprefix("models/") if version else requested.removeprefix("models/")


def _usage(meta: Mapping[str, Any]) -> Usage:
    prompt = int(meta.get("promptTokenCount") or 0)
    # Thinking tokens are billed at the output rate, so they count as completion tokens.
    completion = int(meta.get("candidatesTokenCount") or 0) + int(
        meta.get("thoughtsTokenCount") or 0
    )
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=int(meta.get("totalTokenCount") or prompt + completion),
    )
