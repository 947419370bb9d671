"""The router: validate the request, pick the provider, fall back, and account the attempts.

Data flows one way: caller → ``generate``/``stream`` (validation, provider chain) → provider
(HTTP) → ``Completion`` → accounting → ``Generation``. The fallback loop has the shape of
``django.contrib.auth.authenticate``: a provider failure moves on to the next provider; a caller
error (or a configuration error) stops at once.
"""

from __future__ import annotations

import logging
import numbers
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from . import registry
from .accounting import budgets
from .accounting.budgets import Reservation
from .accounting.ledger import record_call_safely
from .accounting.prices import estimate_tokens, worst_case_cost
from .conf import llm_settings
from .exceptions import (
    AllProvidersFailed,
    FailedAttempt,
    InvalidRequest,
    LLMError,
    ProviderFailure,
)
from .keys import ResolvedKey, mark_used, resolve_keys
from .providers.base import Provider, ProviderStream
from .results import Attempt, ChatRequest, Completion, Generation, Message, TextDelta, Usage
from .structured import check_schema

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Step:
    """One provider in the chain, with the model and key it will be called with."""

    provider: type[Provider]
    model: str
    key: ResolvedKey
    is_fallback: bool


# --- Validation ------------------------------------------------------------------------------


def user_pk(user: Any) -> int | None:
    """A user object, a primary key (int or digit string) or None → the primary key or None."""
    if user is None:
        return None
    if hasattr(user, "pk"):
        return user.pk
    if isinstance(user, bool):
        raise InvalidRequest("user_id must be a user, a user's primary key, or None.")
    if isinstance(user, int):
        return user
    if isinstance(user, str) and user.isdigit():
        return int(user)
    raise InvalidRequest("user_id must be a user, a user's primary key, or None.")


def build_request(
    messages: Sequence[Message],
    *,
    system_prompt: str | None,
    model: str | None,
    temperature: float | None,
    max_tokens: int | None,
    json_schema: dict | None,
) -> ChatRequest:
    """Validate the caller's parameters (caller errors, before anything else happens).

    ``model`` may still be None here; the chain fills in each provider's default.
    """
    if not messages:
        raise InvalidRequest("A prompt is required.", field="prompt")
    limit = int(llm_settings.LLM_MAX_PROMPT_CHARS)
    total = 0
    for message in messages:
        if message.role not in ("user", "assistant"):
            raise InvalidRequest(
                f"Unknown message role {message.role!r}; use user or assistant.", field="messages"
            )
        if not isinstance(message.content, str):
            raise InvalidRequest("Message content must be a string.", field="prompt")
        total += len(message.content)
    if not any(m.content.strip() for m in messages if m.role == "user"):
        raise InvalidRequest("A prompt is required.", field="prompt")
    if system_prompt is not None and not isinstance(system_prompt, str):
        raise InvalidRequest("system_prompt must be a string.", field="system_prompt")
    total += len(system_prompt or "")
    if total > limit:
        raise InvalidRequest(
            f"The prompt is too long: {total} characters, at most {limit}.", field="prompt"
        )
    if model is not None and (not isinstance(model, str) or not model.strip()):
        raise InvalidRequest("model must be a non-empty string.", field="model")
    if temperature is not None:
        if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real):
            raise InvalidRequest("temperature must be a number.", field="temperature")
        if not 0 <= temperature <= 2:
            raise InvalidRequest("temperature must be between 0 and 2.", field="temperature")
        temperature = float(temperature)
    if max_tokens is not None:
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
            raise InvalidRequest("max_tokens must be a whole number.", field="max_tokens")
        ceiling = int(llm_settings.LLM_MAX_OUTPUT_TOKENS)
        if not 1 <= max_tokens <= ceiling:
            raise InvalidRequest(f"max_tokens must be between 1 and {ceiling}.", field="max_tokens")
    if json_schema is not None:
        check_schema(json_schema)
    return ChatRequest(
        messages=tuple(messages),
        model=(model or "").strip(),
        system_prompt=system_prompt or None,
        temperature=temperature,
        max_tokens=max_tokens,
        json_schema=json_schema,
    )


# --- The chain -------------------------------------------------------------------------------


def plan(
    provider: str | None, model: str | None, *, fallback: bool, keys: dict[str, ResolvedKey]
) -> list[Step]:
    """The providers to try, in order: the requested or primary one, then the fallbacks.

    Fallbacks are the other available providers (a key, or none needed), in priority order,
    each with its default model. A named provider without a key is a configuration error (no
    fallback).
    """
    classes = registry.provider_classes()
    if provider is not None:
        first = registry.provider_class(provider).name
    else:
        first = registry.primary_provider(keys, classes)
        if first is None:
            raise registry.no_provider_error()
    if first not in keys:
        raise registry.missing_key_error(first)
    first_cls = registry.provider_class(first)
    first_model = model or first_cls.default_model()
    first_cls.check_model(first_model)
    chain = [Step(first_cls, first_model, keys[first], is_fallback=False)]
    if fallback:
        for cls in classes:
            if cls.name != first and cls.name in keys:
                chain.append(Step(cls, cls.default_model(), keys[cls.name], is_fallback=True))
    return chain


def _attempt_failed(step: Step, exc: LLMError, started: float) -> Attempt:
    return Attempt(
        provider=step.provider.name,
        model=exc.model or step.model,
        requested_model=step.model,
        is_fallback=step.is_fallback,
        error=exc,
        latency_ms=_ms_since(started),
        requests=exc.requests,
        partial_usage=exc.partial_usage,
    )


def _attempt_succeeded(step: Step, completion: Completion) -> Attempt:
    return Attempt(
        provider=step.provider.name,
        model=completion.model,
        requested_model=step.model,
        is_fallback=step.is_fallback,
        completion=completion,
        latency_ms=completion.latency_ms,
        requests=completion.requests,
    )


def _estimated_usage(request: ChatRequest, text: list[str]) -> Usage:
    """Tokens of a stream cut off before the provider reported usage, estimated from text."""
    prompt = estimate_tokens(_prompt_chars(request))
    completion = estimate_tokens(len("".join(text)))
    return Usage(prompt, completion, prompt + completion)


def _prompt_chars(request: ChatRequest) -> int:
    return sum(len(m.content) for m in request.messages) + len(request.system_prompt or "")


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _for_step(request: ChatRequest, step: Step) -> ChatRequest:
    """The request with the step's model: the same (frozen) object when it already has it, as
    when the caller named the model; ``dataclasses.replace`` is a copy field by field."""
    return request if request.model == step.model else replace(request, model=step.model)


def _reserve(
    uid: int | None, request: ChatRequest, steps: list[Step], user: Any = None
) -> Reservation | None:
    """Reserve the worst case of the chain against the user's budget (BudgetExceeded if not).

    ``user``: the caller's ``user_id`` argument; a user object may carry its budget row."""
    chars = _prompt_chars(request)
    max_tokens = request.max_tokens or int(llm_settings.LLM_DEFAULT_MAX_TOKENS)
    estimate = max(
        worst_case_cost(step.provider.name, step.model, chars, max_tokens) for step in steps
    )
    return budgets.reserve(uid, estimate, user=user)


def _account(
    request_id: str,
    user_id: int | None,
    attempts: list[Attempt],
    steps: list[Step],
    reservation: Reservation | None,
):
    """Record what a generation did: the one place every path ends, success or failure."""
    used = {a.provider for a in attempts if a.succeeded}
    for step in steps:
        if step.provider.name in used:
            mark_used(step.key)
    if not attempts and reservation is None:
        return []
    return record_call_safely(request_id, user_id, attempts, reservation)


def _all_failed(attempts: list[Attempt]) -> AllProvidersFailed:
    return AllProvidersFailed(
        [FailedAttempt(a.provider, a.model, a.error) for a in attempts if a.error is not None]
    )


# --- Entry points ----------------------------------------------------------------------------


def _prepare(
    messages: Sequence[Message],
    *,
    provider: str | None,
    user_id: Any,
    fallback: bool,
    **params: Any,
) -> tuple[ChatRequest, int | None, list[Step], Reservation | None]:
    """Everything settled before the first upstream request, in order: validation (caller
    errors), the provider chain (configuration errors), the budget reservation."""
    request = build_request(messages, **params)
    uid = user_pk(user_id)
    steps = plan(provider, request.model or None, fallback=fallback, keys=resolve_keys())
    return request, uid, steps, _reserve(uid, request, steps, user_id)


def generate(
    messages: Sequence[Message],
    *,
    system_prompt: str | None = None,
    json_schema: dict | None = None,
    provider: str | None = None,
    model: str | None = None,
    temperature: float | None = None,
    max_tokens: int | None = None,
    user_id: Any = None,
    fallback: bool = True,
) -> Generation:
    """Generate a completion, falling back across providers; raise when none answers."""
    request, uid, steps, reservation = _prepare(
        messages,
        system_prompt=system_prompt,
        model=model,
        temperature=temperature,
        max_tokens=max_tokens,
        json_schema=json_schema,
        provider=provider,
        user_id=user_id,
        fallback=fallback,
    )
    request_id = uuid.uuid4().hex
    attempts: list[Attempt] = []
    try:
        generation = _run(request, request_id, uid, steps, attempts)
    except BaseException:
        _account(request_id, uid, attempts, steps, reservation)
        raise
    entries = _account(request_id, uid, attempts, steps, reservation)
    generation.cost = entries[-1].cost
    return generation


def _run(
    request: ChatRequest, request_id: str, uid: int | None, steps: list[Step], attempts: list
) -> Generation:
    for step in steps:
        step.provider.check_model(step.model)
        client = step.provider(step.key.secret, key_source=step.key.source)
        started = time.monotonic()
        try:
            completion = client.complete(_for_step(request, step))
        except ProviderFailure as exc:
            attempts.append(_attempt_failed(step, exc, started))
            continue
        except LLMError as exc:
            attempts.append(_attempt_failed(step, exc, started))
            raise
        attempts.append(_attempt_succeeded(step, completion))
        return Generation(request_id, completion, attempts, user_id=uid)
    raise _all_failed(attempts)


def stream(
    messages: Sequence[Message],
    *,
    system_prompt: str | None = None,
    provider: str | None = None,
    model: str | None = None,
    temperature: float | None = None,
    max_tokens: int | None = None,
    user_id: Any = None,
    fallback: bool = True,
) -> Iterator[TextDelta | Generation]:
    """Stream a completion: ``TextDelta`` items, then the ``Generation``.

    Validation and the provider chain are settled before the first item. Falling back is
    possible until the first text arrives; after that an upstream failure ends the stream with
    ``AllProvidersFailed``. A stream closed early by its consumer is accounted as abandoned.
    """
    request, uid, steps, reservation = _prepare(
        messages,
        system_prompt=system_prompt,
        model=model,
        temperature=temperature,
        max_tokens=max_tokens,
        json_schema=None,
        provider=provider,
        user_id=user_id,
        fallback=fallback,
    )
    return _stream(request, uid, steps, reservation)


def _stream(
    request: ChatRequest, uid: int | None, steps: list[Step], reservation: Reservation | None
) -> Iterator[TextDelta | Generation]:
    request_id = uuid.uuid4().hex
    attempts: list[Attempt] = []
    generation: Generation | None = None
    try:
        for step in steps:
            step.provider.check_model(step.model)
            client = step.provider(step.key.secret, key_source=step.key.source)
            started = time.monotonic()
            try:
                upstream: ProviderStream = client.stream(_for_step(request, step))
            except ProviderFailure as exc:
                attempts.append(_attempt_failed(step, exc, started))
                continue
            except LLMError as exc:
                attempts.append(_attempt_failed(step, exc, started))
                raise
            try:
                # Not `yield from`: it would close `upstream` before GeneratorExit reaches us,
                # and an abandoned stream may still have to be read for its billed usage.
                for delta in upstream:  # noqa: UP028
                    yield delta
            except GeneratorExit:
                attempts.append(_abandoned(step, upstream, request, started))
                raise
            except LLMError as exc:
                attempt = _attempt_failed(step, exc, started)
                if attempt.partial_usage is None and upstream.state.text:
                    # Text reached the caller, so the provider generated (and bills) it, but
                    # its usage report never came: charge an estimate, flagged as one.
                    attempt.partial_usage = _estimated_usage(request, upstream.state.text)
                    attempt.usage_estimated = True
                attempts.append(attempt)
                if isinstance(exc, ProviderFailure) and not upstream.state.text:
                    continue  # nothing reached the caller yet: the next provider may answer
                if isinstance(exc, ProviderFailure):
                    raise _all_failed(attempts) from None
                raise
            assert upstream.completion is not None
            attempts.append(_attempt_succeeded(step, upstream.completion))
            generation = Generation(request_id, upstream.completion, attempts, user_id=uid)
            break
        else:
            raise _all_failed(attempts)
    except BaseException:
        _account(request_id, uid, attempts, steps, reservation)
        raise
    # Recorded before the final item is handed over, so a consumer that stops right after the
    # text still has its usage recorded, and the Generation carries its cost.
    entries = _account(request_id, uid, attempts, steps, reservation)
    generation.cost = entries[-1].cost
    yield generation


def _abandoned(
    step: Step, upstream: ProviderStream, request: ChatRequest, started: float
) -> Attempt:
    """The consumer stopped reading: account for what the provider will bill.

    Providers that bill a generation even when the client goes away (Gemini, Hugging Face)
    are read to the end for their exact usage; the others are closed, which stops the
    generation, and are charged what they reported — or, if they reported nothing yet, tokens
    estimated from the text, flagged ``estimated``.
    """
    completion = None
    if step.provider.bills_abandoned_streams:
        try:
            completion = upstream.drain()
        except LLMError:
            completion = None
    upstream.close()
    state = upstream.state
    usage, estimated = (completion.usage if completion else state.usage), False
    if usage is None:
        usage, estimated = _estimated_usage(request, state.text), True
    return Attempt(
        provider=step.provider.name,
        model=state.model,
        requested_model=step.model,
        is_fallback=step.is_fallback,
        latency_ms=_ms_since(started),
        requests=upstream.requests_made,
        partial_usage=usage,
        abandoned=True,
        usage_estimated=estimated,
    )
