"""The seed's Google Gemini functions: one call to Google Gemini, no fallback (the caller chose it).

The provider itself is ``llm_providers.providers.gemini.GeminiProvider``."""

from __future__ import annotations

from typing import Any

from .main_text_generation import provider_structured_response, provider_text_response

__all__ = ["gemini_structured_json_response", "gemini_text_response"]


def gemini_text_response(
    prompt: str,
    model: str | None = None,
    temperature: float = 0.7,
    max_tokens: int = 2048,
    system_prompt: str | None = None,
    *,
    user_id: Any = None,
) -> str:
    """Text from Gemini (``GEMINI_MODEL`` by default; no fallback to other providers)."""
    return provider_text_response(
        "gemini",
        prompt,
        model=model,
        temperature=temperature,
        max_tokens=max_tokens,
        system_prompt=system_prompt,
        user_id=user_id,
    )


def gemini_structured_json_response(
    prompt: str,
    schema: dict,
    model: str | None = None,
    temperature: float = 0.2,
    max_tokens: int = 8192,
    system_prompt: str | None = None,
    *,
    user_id: Any = None,
) -> dict:
    """A dict valid against ``schema``, from Gemini (no fallback to other providers)."""
    return provider_structured_response(
        "gemini",
        prompt,
        schema,
        model=model,
        temperature=temperature,
        max_tokens=max_tokens,
        system_prompt=system_prompt,
        user_id=user_id,
    )
