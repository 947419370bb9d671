"""The seed's Hugging Face functions: one call to Hugging Face, no fallback (the caller chose it).

The provider itself is ``llm_providers.providers.huggingface.HuggingFaceProvider``."""

from __future__ import annotations

from typing import Any

from .main_text_generation import provider_structured_response, provider_text_response

__all__ = ["huggingface_structured_json_response", "huggingface_text_response"]


def huggingface_text_response(
    prompt: str,
    model: str | None = None,
    temperature: float = 0.7,
    max_tokens: int = 2048,
    system_prompt: str | None = None,
    *,
    user_id: Any = None,
) -> str:
    """Text from Hugging Face (``HF_MODEL`` by default; no fallback to other providers)."""
    return provider_text_response(
        "huggingface",
        prompt,
        model=model,
        temperature=temperature,
        max_tokens=max_tokens,
        system_prompt=system_prompt,
        user_id=user_id,
    )


def huggingface_structured_json_response(
    prompt: str,
    schema: dict,
    model: str | None = None,
    temperature: float = 0.2,
    max_tokens: int = 8192,
    system_prompt: str | None = None,
    *,
    user_id: Any = None,
) -> dict:
    """A dict valid against ``schema``, from Hugging Face (no fallback to other providers)."""
    return provider_structured_response(
        "huggingface",
        prompt,
        schema,
        model=model,
        temperature=temperature,
        max_tokens=max_tokens,
        system_prompt=system_prompt,
        user_id=user_id,
    )
