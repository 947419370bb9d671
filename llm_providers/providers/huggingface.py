"""Hugging Face Inference Providers, through the OpenAI-compatible router.

What is particular to it (docs: https://huggingface.co/docs/inference-providers):
- model ids are Hub ids (``meta-llama/Llama-3.1-8B-Instruct``), optionally ``:provider``;
- it reports no cost, so cost comes from the price table;
- usage on streams only when asked for (``stream_options.include_usage``);
- ``error`` is a string or an object; an unknown model is ``model_not_supported`` (400);
- a model still loading answers 503 with ``estimated_time``, the wait to honour.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..exceptions import LLMError, ModelNotFound, ProviderUnavailable, RateLimited
from .base import HTTPCall, error_codes, error_text, parse_retry_after
from .openai_compat import OpenAICompatibleProvider

MODEL_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*(:[\w.-]+)?$")
# IETF draft RateLimit header as the Hub sends it: `"api";r=0;t=55` (t = seconds to reset).
_RATELIMIT_RESET = re.compile(r"\bt=(\d+)")


class HuggingFaceProvider(OpenAICompatibleProvider):
    name = "huggingface"
    label = "Hugging Face"
    key_setting = "HF_TOKEN"
    model_setting = "HF_MODEL"
    base_url_setting = "HF_BASE_URL"
    key_prefix = "hf_"
    example_model = "meta-llama/Llama-3.1-8B-Instruct"
    aliases = ("hf",)
    key_page = "https://huggingface.co/settings/tokens"

    @classmethod
    def check_model(cls, model: str) -> None:
        if not MODEL_ID.match(model or ""):
            raise ModelNotFound(
                f"Model not found: {model!r} is not a Hugging Face model id. Use the form "
                f"organization/model-name, e.g. {cls.example_model}.",
                provider=cls.name,
                model=model,
            )

    def read_error(self, status: int, body: Any, headers: Mapping[str, str]) -> LLMError:
        message = error_text(body)
        err = body.get("error") if isinstance(body, Mapping) else None
        code = err.get("code") if isinstance(err, Mapping) else None
        if (
            code == "model_not_supported"
            or (status in (400, 404) and "not supported" in message.lower())
            or status == 404
        ):
            return ModelNotFound(
                f"Model not found: Hugging Face says {message!r}. Use a Hub model id such as "
                f"{self.example_model}.",
                provider=self.name,
            )
        if status == 429:
            retry_after = parse_retry_after(headers.get("Retry-After"))
            reset = _RATELIMIT_RESET.search(headers.get("RateLimit", ""))
            if retry_after is None and reset:
                retry_after = float(reset.group(1))
            return RateLimited(
                f"Hugging Face answered HTTP 429: {message}",
                retry_after=retry_after,
                provider=self.name,
            )
        if status == 503 and isinstance(body, Mapping) and body.get("estimated_time") is not None:
            error = ProviderUnavailable(
                f"Hugging Face is loading the model: {message}", provider=self.name
            )
            error.retry_after = float(body["estimated_time"])
            return error
        return self.error_for_status(status, message, headers=headers, codes=error_codes(body))

    def connection_test_call(self) -> HTTPCall:
        # The router has no free authenticated endpoint under its base URL, so the test asks the
        # default model for one token: the cheapest call that proves the token works.
        return HTTPCall(
            "POST",
            self.chat_url(),
            self.auth_headers(),
            {
                "model": self.default_model(),
                "messages": [{"role": "user", "content": "ping"}],
                "max_tokens": 1,
            },
        )
