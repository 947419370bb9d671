"""Custom providers (SPEC §12.1): any server that speaks OpenAI's chat completions (Ollama, vLLM,
LM Studio, llama.cpp's server, Groq, Together, …), described by data rather than code.

The registry makes one ``CustomOpenAIProvider`` subclass per definition (``LLM_CUSTOM_PROVIDERS``
or an admin row) with ``custom_provider_class``. What is particular to these servers:
- the base URL and default model come from the definition, not from settings of their own;
- a local server may take no key (``requires_key`` false): then no auth header is sent;
- an optional key is read from the admin key manager, else from ``<NAME>_API_KEY`` (Django
  setting or environment variable);
- model ids are whatever the server knows (``llama3.2``, ``Qwen/Qwen2.5-7B``): no form is
  imposed, and the server's own 404 or 400 says when one is unknown;
- no cost is reported: prices come from the price table (unpriced models cost 0, flagged).
"""

from __future__ import annotations

import re
from typing import ClassVar

from ..conf import read_named_setting
from .base import HTTPCall
from .openai_compat import OpenAICompatibleProvider


class CustomOpenAIProvider(OpenAICompatibleProvider):
    """Base of the classes made for custom providers; each fills in the class attributes."""

    server_url: ClassVar[str]  # the base URL, ``…/v1``
    default_model_id: ClassVar[str]
    # Where it goes among the providers (1 = first); None: after the built-in ones.
    priority: ClassVar[int | None] = None
    # Keys of OpenAI-compatible services come in every length (vLLM's is any string).
    min_key_length = 1
    is_custom: ClassVar[bool] = True

    @classmethod
    def default_model(cls) -> str:
        return cls.default_model_id

    @classmethod
    def configured_base_url(cls) -> str:
        return cls.server_url

    @classmethod
    def configured_key(cls) -> str | None:
        return read_named_setting(cls.key_setting)

    def connection_test_call(self) -> HTTPCall:
        # OpenAI's model list: free, and authenticated where the server takes a key.
        return HTTPCall("GET", f"{self.base_url}/models", self.auth_headers(), None)


def key_setting_for(name: str) -> str:
    """``"my-vllm"`` → ``"MY_VLLM_API_KEY"``: where a custom provider's key may be set."""
    return re.sub(r"[^A-Z0-9]+", "_", name.upper()) + "_API_KEY"


def custom_provider_class(
    *,
    name: str,
    base_url: str,
    default_model: str,
    label: str = "",
    requires_key: bool = True,
    priority: int | None = None,
) -> type[CustomOpenAIProvider]:
    """A provider class for one custom definition (already validated by the registry)."""
    attributes = {
        "name": name,
        "label": label or name,
        "key_setting": key_setting_for(name),
        "model_setting": "",
        "base_url_setting": "",
        "example_model": default_model,
        "server_url": base_url.rstrip("/"),
        "default_model_id": default_model,
        "requires_key": requires_key,
        "priority": priority,
        "__module__": __name__,
        "__doc__": f"The custom provider {name!r} at {base_url}.",
    }
    class_name = "Custom_" + re.sub(r"\W", "_", name)
    return type(class_name, (CustomOpenAIProvider,), attributes)
