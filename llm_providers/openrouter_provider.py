"""The seed's OpenRouter functions: one call to OpenRouter, no fallback (the caller chose it).

The provider itself is ``llm_providers.providers.openrouter.OpenRouterProvider``."""

from __future__ import annotations

from typing import Any

from .main_text_generation import provider_structured_response, provider_text_response

__all__ = ["openrouter_structured_json_response", "openrouter_text_response"]


def openrouter_text_response(
    prompt: str,
    model: str = "openai/gpt-4-turbo",
    temperature: float = 0.7,
    max_tokens: int = 2048,
    system_prompt: str | None = None,
    *,
    user_id: Any = None,
) -> str:
    """Text from OpenRouter (no fallback to other providers: the caller chose this one)."""
    return provider_text_response(
        "openrouter",
        prompt,
        model=model,
        temperature=temperature,
        max_tokens=max_tokens,
        system_prompt=system_prompt,
        user_id=user_id,
    )


def openrouter_structured_json_response(
    prompt: str,
    schema: dict,
    model: str = "anthropic/claude-3-opus",
    temperature: float = 0.2,
    max_tokens: int = 8192,
    system_prompt: str | None = None,
    *,
    user_id: Any = None,
) -> dict:
    """A dict valid against ``schema``, from OpenRouter (no fallback to other providers)."""
    return provider_structured_response(
        "openrouter",
        prompt,
        schema,
        model=model,
        temperature=temperature,
        max_tokens=max_tokens,
        system_prompt=system_prompt,
        user_id=user_id,
    )
