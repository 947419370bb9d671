"""The application-facing API: ``llm_text_gen`` (the seed's function) and its richer forms.

    from llm_providers.main_text_generation import llm_text_gen
    text = llm_text_gen("Write a blog post about AI", user_id=request.user.pk)
    data = llm_text_gen("…", json_struct=schema, user_id=request.user.pk)   # -> dict

``llm_generate`` returns the whole ``Generation`` (text/data, provider, model, usage, cost,
attempts, fallback_from); ``llm_stream`` yields text pieces and then the ``Generation``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from . import router
from .conf import llm_settings
from .results import Generation, Message, TextDelta


def _defaults(json_struct: Any, temperature: float | None, max_tokens: int | None):
    if json_struct is not None:
        return (
            llm_settings.LLM_JSON_TEMPERATURE if temperature is None else temperature,
            llm_settings.LLM_JSON_MAX_TOKENS if max_tokens is None else max_tokens,
        )
    return (
        llm_settings.LLM_DEFAULT_TEMPERATURE if temperature is None else temperature,
        llm_settings.LLM_DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens,
    )


def llm_generate(
    prompt: str,
    *,
    system_prompt: str | None = None,
    json_struct: dict | None = None,
    user_id: Any = None,
    provider: str | None = None,
    model: str | None = None,
    temperature: float | None = None,
    max_tokens: int | None = None,
    fallback: bool = True,
    fallback_models: list[str] | None = None,
) -> Generation:
    """Generate from a prompt; return the full ``Generation``. See ``router.generate``."""
    temperature, max_tokens = _defaults(json_struct, temperature, max_tokens)
    return router.generate(
        [Message("user", prompt)],
        system_prompt=system_prompt,
        json_schema=json_struct,
        provider=provider,
        model=model,
        temperature=temperature,
        max_tokens=max_tokens,
        user_id=user_id,
        fallback=fallback,
        fallback_models=fallback_models,
    )


def llm_text_gen(
    prompt: str,
    system_prompt: str | None = None,
    json_struct: dict | None = None,
    user_id: Any = None,
    provider: str | None = None,
    model: str | None = None,
    temperature: float | None = None,
    max_tokens: int | None = None,
) -> str | dict:
    """Text from the primary provider (falling back on provider failures).

    With ``json_struct`` (a JSON Schema) the reply is parsed and validated and a dict returned.
    Raises an ``llm_providers.exceptions.LLMError`` subclass when no answer can be had.
    """
    generation = llm_generate(
        prompt,
        system_prompt=system_prompt,
        json_struct=json_struct,
        user_id=user_id,
        provider=provider,
        model=model,
        temperature=temperature,
        max_tokens=max_tokens,
    )
    return generation.data if json_struct is not None else generation.text


def llm_stream(
    prompt: str,
    *,
    system_prompt: str | None = None,
    user_id: Any = None,
    provider: str | None = None,
    model: str | None = None,
    temperature: float | None = None,
    max_tokens: int | None = None,
    fallback: bool = True,
    fallback_models: list[str] | None = None,
) -> Iterator[TextDelta | Generation]:
    """Stream text: ``TextDelta`` items, then the ``Generation`` with usage."""
    temperature, max_tokens = _defaults(None, temperature, max_tokens)
    return router.stream(
        [Message("user", prompt)],
        system_prompt=system_prompt,
        provider=provider,
        model=model,
        temperature=temperature,
        max_tokens=max_tokens,
        user_id=user_id,
        fallback=fallback,
        fallback_models=fallback_models,
    )


# --- The bodies of the seed's provider functions ---------------------------------------------
# ``openrouter_text_response`` & co. live in their provider modules (their import paths are the
# seed's API); they call one provider and never fall back: the caller chose it.


def provider_text_response(provider: str, prompt: str, **options: Any) -> str:
    """Text from one named provider, no fallback (``model`` etc. as in ``llm_generate``)."""
    return llm_generate(prompt, provider=provider, fallback=False, **options).text


def provider_structured_response(provider: str, prompt: str, schema: dict, **options: Any) -> dict:
    """A dict valid against ``schema`` from one named provider, no fallback."""
    return llm_generate(
        prompt, provider=provider, json_struct=schema, fallback=False, **options
    ).data
