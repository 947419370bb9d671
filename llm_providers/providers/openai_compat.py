"""OpenAI's chat completions wire format: the dialect OpenRouter, Hugging Face's router and any
OpenAI-compatible server speak (https://platform.openai.com/docs/api-reference/chat)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from ..exceptions import LLMError
from ..results import ChatRequest, Completion, Usage
from .base import HTTPCall, Provider, StreamState, error_status


class OpenAICompatibleProvider(Provider):
    """Chat completions in the OpenAI wire format, as OpenRouter and Hugging Face's router speak it.

    Subclasses add their headers, their error quirks and their cost reporting.
    """

    def chat_url(self) -> str:
        return f"{self.base_url}/chat/completions"

    def extra_headers(self) -> dict[str, str]:
        return {}

    def build_payload(self, request: ChatRequest, *, stream: bool) -> dict:
        messages = []
        if request.system_prompt:
            messages.append({"role": "system", "content": request.system_prompt})
        messages += [{"role": m.role, "content": m.content} for m in request.messages]
        payload: dict[str, Any] = {"model": request.model, "messages": messages}
        if request.temperature is not None:
            payload["temperature"] = request.temperature
        if request.max_tokens is not None:
            payload["max_tokens"] = request.max_tokens
        if request.json_schema is not None:
            payload["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": schema_name(request.json_schema),
                    "schema": request.json_schema,
                },
            }
        if stream:
            payload["stream"] = True
            payload["stream_options"] = {"include_usage": True}
        return payload

    def build_call(self, request: ChatRequest, *, stream: bool) -> HTTPCall:
        headers = {**self.auth_headers(), **self.extra_headers()}
        if stream:
            headers["Accept"] = "text/event-stream"
        return HTTPCall(
            "POST", self.chat_url(), headers, self.build_payload(request, stream=stream)
        )

    def read_usage(self, usage: Mapping[str, Any]) -> Usage:
        prompt = int(usage.get("prompt_tokens") or 0)
        completion = int(usage.get("completion_tokens") or 0)
        return Usage(
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=int(usage.get("total_tokens") or prompt + completion),
        )

    def read_completion(self, body: Any, request: ChatRequest) -> Completion:
        if isinstance(body, Mapping) and "error" in body and not body.get("choices"):
            raise self._in_band_error(body, body)
        choice = body["choices"][0]
        if choice.get("finish_reason") == "error" and choice.get("error"):
            # A provider error after partial output, reported inside a 200 (OpenRouter docs).
            raise self._in_band_error({"error": choice["error"]}, body)
        message = choice.get("message") or {}
        return Completion(
            text=message.get("content") or "",
            provider=self.name,
            model=body.get("model") or request.model,
            usage=self.read_usage(body.get("usage") or {}),
            finish_reason=choice.get("finish_reason"),
            response_id=body.get("id"),
        )

    def _in_band_error(self, error_body: Mapping[str, Any], body: Mapping[str, Any]) -> LLMError:
        """The error reported inside a 200, with the usage the answer reported (it is billed)."""
        error = self.read_error(error_status(error_body, 502), error_body, {})
        if isinstance(body.get("usage"), Mapping):
            error.partial_usage = self.read_usage(body["usage"])
        return error

    def read_stream_event(self, data: str, state: StreamState) -> str | None:
        if data.strip() == "[DONE]":
            state.finished = True
            return None
        # Not JSON raises ValueError: the stream skips the event (ProviderStream._read).
        chunk = json.loads(data, parse_float=Decimal)
        if not isinstance(chunk, Mapping):
            return None
        if chunk.get("usage"):
            # Read first: an error chunk may carry the usage of what was generated (billed).
            state.usage = self.read_usage(chunk["usage"])
        if chunk.get("error"):
            raise self.read_error(error_status(chunk, 502), chunk, {})
        state.model = chunk.get("model") or state.model
        state.response_id = chunk.get("id") or state.response_id
        delta_text = None
        for choice in chunk.get("choices") or []:
            delta_text = (choice.get("delta") or {}).get("content") or delta_text
            if choice.get("finish_reason"):
                state.finish_reason = choice["finish_reason"]
                state.finished = True
        return delta_text


def schema_name(schema: Mapping[str, Any]) -> str:
    """``json_schema.name`` for OpenAI-style requests: a-zA-Z0-9_- up to 64 characters."""
    title = re.sub(r"[^A-Za-z0-9_-]+", "_", str(schema.get("title") or "")).strip("_")
    return title[:64] or "response"
