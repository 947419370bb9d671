"""OpenRouter: OpenAI-compatible chat completions in front of many vendors' models.

What is particular to it (docs: https://openrouter.ai/docs):
- model ids are ``vendor/model-name`` (``openai/gpt-4-turbo``), optionally with a ``:variant``;
- optional attribution headers ``HTTP-Referer`` and ``X-Title``;
- every response reports its own cost in USD (``usage.cost``; on the last chunk of a stream),
  which is what the account is billed, so it is kept as the call's cost;
- an unknown model is a 400 ``"… is not a valid model ID"``; 404 means no endpoint can serve it.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from ..conf import llm_settings
from ..exceptions import (
    ContentPolicyViolation,
    InvalidRequest,
    LLMError,
    ModelNotFound,
    RateLimited,
)
from ..results import Usage
from .base import (
    HTTPCall,
    decimal_or_none,
    error_codes,
    error_text,
    parse_retry_after,
)
from .openai_compat import OpenAICompatibleProvider

MODEL_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.:-]*$")
# How much of the upstream's own error text goes into a message.
RAW_DETAIL_LENGTH = 300


class OpenRouterProvider(OpenAICompatibleProvider):
    name = "openrouter"
    label = "OpenRouter"
    key_setting = "OPENROUTER_API_KEY"
    model_setting = "OPENROUTER_MODEL"
    base_url_setting = "OPENROUTER_BASE_URL"
    key_prefix = "sk-or-"
    example_model = "openai/gpt-4-turbo"
    key_page = "https://openrouter.ai/settings/keys"
    bills_abandoned_streams = False

    @classmethod
    def check_model(cls, model: str) -> None:
        if not MODEL_ID.match(model or ""):
            raise ModelNotFound(
                f"Model not found: {model!r} is not an OpenRouter model id. Use the form "
                f"provider/model-name, e.g. {cls.example_model}.",
                provider=cls.name,
                model=model,
            )

    def extra_headers(self) -> dict[str, str]:
        headers = {}
        if llm_settings.OPENROUTER_HTTP_REFERER:
            headers["HTTP-Referer"] = str(llm_settings.OPENROUTER_HTTP_REFERER)
        if llm_settings.OPENROUTER_X_TITLE:
            headers["X-Title"] = str(llm_settings.OPENROUTER_X_TITLE)
        return headers

    def read_usage(self, usage: Mapping[str, Any]) -> Usage:
        counted = super().read_usage(usage)
        return Usage(
            prompt_tokens=counted.prompt_tokens,
            completion_tokens=counted.completion_tokens,
            total_tokens=counted.total_tokens,
            reported_cost=decimal_or_none(usage.get("cost")),
        )

    def read_error(self, status: int, body: Any, headers: Mapping[str, str]) -> LLMError:
        metadata = _metadata(body)
        message = _with_upstream_detail(error_text(body), metadata, self._without_key)
        codes = error_codes(body) | error_codes(_raw(metadata))
        if status in (400, 403) and any(
            metadata.get(field) for field in ("reasons", "flagged_input", "patterns")
        ):
            # OpenRouter's moderation (``reasons``, ``flagged_input``) and guardrails
            # (``patterns``): the input was refused, not the key.
            reasons = metadata.get("reasons") or metadata.get("patterns")
            reasons = ", ".join(map(str, reasons)) if isinstance(reasons, list) else ""
            return ContentPolicyViolation(
                f"OpenRouter refused the content: {message}"
                + (f" (reasons: {reasons})" if reasons else ""),
                provider=self.name,
            )
        if status == 400 and "not a valid model id" in message.lower():
            return ModelNotFound(
                f"Model not found: OpenRouter says {message!r}. Model ids have the form "
                f"provider/model-name, e.g. {self.example_model}.",
                provider=self.name,
            )
        if status == 404:
            if "requested parameters" in message or "data policy" in message:
                # The model exists, but no endpoint serves it with these options (e.g. a JSON
                # schema): a request problem, not a missing model.
                return InvalidRequest(f"OpenRouter: {message}", provider=self.name)
            return ModelNotFound(
                f"Model not found: OpenRouter says {message!r}. Model ids have the form "
                f"provider/model-name, e.g. {self.example_model}.",
                provider=self.name,
            )
        if status == 429:
            retry_after = parse_retry_after(headers.get("Retry-After"))
            if retry_after is None:
                hinted = metadata.get("retry_after_seconds")
                if hinted is None:
                    hinted = (metadata.get("headers") or {}).get("Retry-After")
                retry_after = parse_retry_after(str(hinted)) if hinted is not None else None
            return RateLimited(
                f"OpenRouter answered HTTP 429: {message}",
                retry_after=retry_after,
                provider=self.name,
            )
        return self.error_for_status(status, message, headers=headers, codes=codes)

    def connection_test_call(self) -> HTTPCall:
        # GET /key describes the key and costs nothing.
        return HTTPCall("GET", f"{self.base_url}/key", self.auth_headers())


def _with_upstream_detail(
    message: str, metadata: Mapping[str, Any], scrub: Callable[[str], str]
) -> str:
    """``message`` with the upstream's own words when OpenRouter passes them on.

    For an upstream failure OpenRouter says only "Provider returned error"; the cause is in
    ``metadata.raw``: the upstream's error body, as text (often a JSON document) or an object.
    It is ``scrub``-bed of the key before it is cut to length, so no piece of a key is left.
    """
    raw = _raw(metadata)
    if raw is None or raw == "":
        return message
    detail = scrub(error_text(scrub(raw) if isinstance(raw, str) else raw))
    if detail == "no error message" or detail in message:
        return message
    if len(detail) > RAW_DETAIL_LENGTH:
        detail = detail[: RAW_DETAIL_LENGTH - 1] + "…"
    source = metadata.get("provider_name")
    return f"{message} (from {source}: {detail})" if source else f"{message} ({detail})"


def _raw(metadata: Mapping[str, Any]) -> Any:
    """``metadata.raw``: the upstream's error body, parsed when it is a JSON document."""
    raw = metadata.get("raw")
    if isinstance(raw, str):
        with contextlib.suppress(ValueError):  # not JSON: prose, kept as it is
            raw = json.loads(raw)
    return raw


def _metadata(body: Any) -> Mapping[str, Any]:
    err = body.get("error") if isinstance(body, Mapping) else None
    meta = err.get("metadata") if isinstance(err, Mapping) else None
    return meta if isinstance(meta, Mapping) else {}
