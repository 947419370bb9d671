"""The router: validate the request, walk its chain, continue broken streams, account attempts.

Data flows one way: caller → ``generate``/``stream`` (validation, the chain, the budget) →
provider (HTTP) → ``Completion`` → accounting → ``Generation``. The chain loop has the shape of
``django.contrib.auth.authenticate``: a provider failure (or a context window too small) moves on
to the next entry; any other caller error, or a configuration error, stops at once.

Every attempt is in the ledger from the moment it starts (``accounting.ledger.begin_attempt``):
a process that dies mid-call leaves an ``in_flight`` row that the sweep settles. The request's
budget reservation is held by its one in-flight row, handed from attempt to attempt, and
released with the last.
"""

from __future__ import annotations

import logging
import numbers
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Any

from django.db import connection

from . import circuits, metrics
from .accounting import budgets, ledger
from .accounting.budgets import Reservation
from .accounting.models import LedgerEntry
from .accounting.prices import chain_worst_case, estimate_tokens
from .chains import Chain, Step, plan, route
from .conf import llm_settings
from .exceptions import (
    AllProvidersFailed,
    ContextLengthExceeded,
    FailedAttempt,
    InvalidRequest,
    LLMError,
    ProviderAuthError,
    ProviderFailure,
    ProviderUnavailable,
    StreamInterrupted,
)
from .keys import mark_used, record_key_outcome, rejects_key, resolve_keys
from .providers.base import ProviderStream
from .results import Attempt, ChatRequest, Completion, Generation, Message, TextDelta, Usage
from .structured import check_schema

__all__ = ["Step", "build_request", "generate", "plan", "route", "stream", "user_pk"]

logger = logging.getLogger(__name__)

# What moves a request down its chain: the provider failed, or the model's window is too small.
MOVES_ON = (ProviderFailure, ContextLengthExceeded)


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


# --- Attempts and their ledger rows ----------------------------------------------------------


def _attempt_failed(step: Step, exc: LLMError, started: float) -> Attempt:
    return Attempt(
        provider=step.name,
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
        provider=step.name,
        model=completion.model,
        requested_model=step.model,
        is_fallback=step.is_fallback,
        completion=completion,
        latency_ms=completion.latency_ms,
        requests=completion.requests,
    )


def _estimated_usage(request: ChatRequest, text: Sequence[str]) -> Usage:
    """Tokens of a stream cut off before the provider reported usage, estimated from text."""
    prompt = estimate_tokens(_prompt_chars(request))
    completion = estimate_tokens(len("".join(text)))
    return Usage(prompt, completion, prompt + completion)


def _prompt_chars(request: ChatRequest) -> int:
    return sum(len(m.content) for m in request.messages) + len(request.system_prompt or "")


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _for_step(request: ChatRequest, step: Step) -> ChatRequest:
    """The request with the step's model: the same (frozen) object when it already has it."""
    return request if request.model == step.model else replace(request, model=step.model)


def release_connection() -> None:
    """Give the request's database connection back to the pool before a wait on the upstream
    (seconds, often), so that the calls in flight share the pool's few connections rather than
    holding one each; the next query takes one again. Only with a pool (PostgreSQL's, see the
    settings) and outside a transaction: closing a connection without one would only make the
    next query open a new one."""
    if getattr(connection, "pool", None) is not None and not connection.in_atomic_block:
        connection.close()


class Tracker:
    """The ledger side of one request: the in-flight row of the attempt under way, handed to
    the next attempt in the same transaction that settles it, and the settled rows."""

    def __init__(
        self,
        request_id: str,
        uid: int | None,
        estimate: Decimal,
        reservation: Reservation | None,
        cost_limit: Decimal | None = None,
    ):
        self.request_id = request_id
        self.cost_limit = cost_limit  # the user's, for the budget alerts
        self.uid = uid
        self.estimate = estimate
        self.reservation = reservation
        self.row: LedgerEntry | None = None
        self.rows: list[LedgerEntry] = []
        self.attempts: list[Attempt] = []
        self._closed = False

    def begin(self, step: Step) -> None:
        """The attempt of ``step`` starts: its row exists before its first upstream byte."""
        if self.row is None:
            self.row = ledger.begin_attempt(
                self.request_id,
                self.uid,
                provider=step.name,
                model=step.model,
                is_fallback=step.is_fallback,
                estimate=self.estimate,
                reservation=self.reservation,
                key_owner=step.key.owner,
            )
        release_connection()

    def end(self, attempt: Attempt, then: Step | None = None) -> None:
        """Settle the attempt under way; hand its reservation to ``then``'s row, or release it."""
        self.attempts.append(attempt)
        if self.row is None:  # never began (nothing was sent)
            return
        row, self.row = self.row, None
        nxt = None
        if then is not None:
            nxt = {
                "provider": then.name,
                "model": then.model,
                "is_fallback": then.is_fallback,
                "key_owner": then.key.owner,
            }
        try:
            final, self.row = ledger.finish_attempt(
                row,
                attempt,
                reservation=self.reservation,
                next_attempt=nxt,
                cost_limit=self.cost_limit,
            )
        except Exception:
            # The row stays in flight with the reservation: the sweep settles both. Later
            # attempts hold none, and close() must not release it a second time.
            self.reservation, self._closed = None, True
            _log_unrecorded(self.request_id, self.uid, attempt)
            _observe(attempt, None)
            if llm_settings.LLM_STRICT_ACCOUNTING:
                raise
            return
        self.rows.append(final)
        if then is None:
            self._closed = True
        _observe(attempt, final.cost)

    def close(self) -> None:
        """The request is over: release a reservation no attempt took over (the chain ended
        before its first attempt began)."""
        if self._closed:
            return
        self._closed = True
        if self.row is None and self.reservation is not None:
            ledger.release(self.reservation)

    @property
    def cost(self) -> Decimal | None:
        return self.rows[-1].cost if self.rows else None


def _log_unrecorded(request_id: str, uid: int | None, attempt: Attempt) -> None:
    usage = attempt.usage
    logger.exception(
        "Could not record LLM usage: request=%s user=%s provider=%s model=%s tokens=%s/%s "
        "reported_cost=%s succeeded=%s",
        request_id,
        uid,
        attempt.provider,
        attempt.model,
        usage.prompt_tokens,
        usage.completion_tokens,
        usage.reported_cost,
        attempt.succeeded,
    )


def _observe(attempt: Attempt, cost: Decimal | None) -> None:
    """The attempt in the metrics (``metrics``); ``cost`` as its ledger row priced it."""
    usage = attempt.usage
    metrics.record_attempt(
        attempt.provider,
        attempt.model or attempt.requested_model,
        _outcome(attempt),
        attempt.latency_ms / 1000,
        usage.prompt_tokens,
        usage.completion_tokens,
        cost,
    )


def _outcome(attempt: Attempt) -> str:
    """``success``, or the error code its ledger row has."""
    if attempt.succeeded:
        return "success"
    return attempt.error_code or "error"


def _interrupted(step: Step, started: float) -> Attempt:
    """An attempt cut short by the process itself (a stop signal, an exit)."""
    error = ProviderUnavailable("the call was interrupted by the server", provider=step.name)
    error.requests = 1
    return _attempt_failed(step, error, started)


def _all_failed(attempts: Sequence[Attempt], chain: Chain) -> AllProvidersFailed:
    failures = [FailedAttempt(a.provider, a.model, a.error) for a in attempts if a.error]
    failures += [FailedAttempt(s.name, s.model, error) for s, error in chain.skipped]
    return AllProvidersFailed(failures)


def _health(step: Step, error: LLMError | None) -> None:
    """Tell the step's circuit and key how the call went: provider failures count, caller
    errors (content refused, a window too small) say nothing about the provider's health, nor
    does a user's own key refused (their key, not the provider, is at fault: it must not open
    the circuit for everyone).

    A user's own key is never swapped for the platform's within a call (SPEC §12.2): the chain
    was planned with the caller's keys, one per provider, so a later entry of the same
    provider uses the same key and other providers may still answer."""
    own_key_refused = step.key.is_users and isinstance(error, ProviderAuthError)
    if error is None:
        circuits.record_success(step.name)
    elif isinstance(error, ProviderFailure) and not own_key_refused:
        circuits.record_failure(step.name)
    if own_key_refused and rejects_key(error):
        _name_own_key(step, error)
    # A stored key its provider rejects on LLM_CIRCUIT_FAILURES calls in a row is
    # deactivated (SPEC §6); costs one cache read on a success.
    record_key_outcome(step.key, error)


def _with_platform_key(step: Step, error: LLMError) -> Step | None:
    """The same entry with the platform's key, when the provider refused the caller's own key
    and its owner allowed that (``platform_fallback`` on the key, ``me/keys/``)."""
    if not (step.key.is_users and step.key.platform_fallback and rejects_key(error)):
        return None
    platform = resolve_keys().get(step.name)
    return replace(step, key=platform) if platform is not None else None


def _name_own_key(step: Step, error: LLMError) -> None:
    """Say in ``error`` (what the caller, the key's owner, gets back, and the ledger row) that
    the provider rejected *their own* key, and what to do about it. The providers word a
    rejection "<provider> rejected the key from <source>"; the source of a user's key reads
    "your own key (me/keys/ #12, sk-or-…abcd)"."""
    message = error.message.replace(f"the key from {step.key.source}", step.key.source)
    retried = (
        "the call was retried with the platform's key, as the key allows"
        if step.key.platform_fallback
        else "the call was not retried with the platform's key"
    )
    error.message = f"{message}. Replace or delete it under me/keys/; {retried}."
    error.args = (error.message,)


# --- Preparing a request ---------------------------------------------------------------------


def _prepare(
    messages: Sequence[Message],
    *,
    provider: str | None,
    user_id: Any,
    fallback: bool,
    fallback_models: Sequence[str] | None,
    **params: Any,
) -> tuple[ChatRequest, list[Step], Tracker, float]:
    """Everything settled before the first upstream request, in order: validation (caller
    errors), the chain (configuration errors, bad entries), the budget reservation of the
    chain's dearest entry. Returns the request, its chain, its tracker and its deadline."""
    deadline = time.monotonic() + float(llm_settings.LLM_REQUEST_DEADLINE)
    request = build_request(messages, **params)
    uid = user_pk(user_id)
    if fallback_models is not None and not isinstance(fallback_models, list | tuple):
        raise InvalidRequest(
            "fallback_models must be a list of model ids.", field="fallback_models"
        )
    steps = plan(
        provider,
        request.model or None,
        fallback=fallback,
        keys=resolve_keys(uid),  # the caller's own keys over the platform's (SPEC §12.2)
        fallback_models=fallback_models,
    )
    limits = budgets.limits_for(uid, user_id)
    estimate = _chain_estimate(request, steps, uid, limits)
    reservation = budgets.reserve(uid, estimate, user=user_id, limits=limits)
    tracker = Tracker(uuid.uuid4().hex, uid, estimate, reservation, limits.cost)
    return request, steps, tracker, deadline


def _chain_estimate(
    request: ChatRequest, steps: Sequence[Step], uid: int | None, limits: budgets.Limits
) -> Decimal:
    """The worst case of the chain's dearest entry, at real prices. For a user with a cost
    limit, a missing price is looked up where its provider publishes prices; a model that
    stays unpriced is refused (``LLM_UNPRICED_MODELS = "refuse"``), since its cost could
    not be held against the limit, or let through at 0 (``"allow"``), recorded ``unpriced``.

    Entries that would use the user's own key are left out (they do not count against the
    cost limit, ``budgets``), unless ``LLM_BYOK_COUNTS_AGAINST_BUDGET`` or the key lets a
    refused call be retried with the platform's key: a chain of the user's keys only reserves
    nothing but its call."""
    chars = _prompt_chars(request)
    max_tokens = request.max_tokens or int(llm_settings.LLM_DEFAULT_MAX_TOKENS)
    limited = uid is not None and limits.cost is not None
    counted = [
        s for s in steps if budgets.counts_byok() or not s.key.is_users or s.key.platform_fallback
    ]
    if not counted:
        return Decimal(0)
    estimate, unpriced = chain_worst_case(
        [(s.name, s.model) for s in counted], chars, max_tokens, on_demand=limited
    )
    if unpriced and limited and str(llm_settings.LLM_UNPRICED_MODELS).lower() != "allow":
        raise budgets.unpriced_refusal(uid, limits, unpriced)
    return estimate


def _client(step: Step, deadline: float):
    return step.provider(step.key.secret, key_source=step.key.source, deadline=deadline)


def _finished(generation: Generation, tracker: Tracker, steps: Sequence[Step]) -> Generation:
    for step in steps:
        if step.name == generation.provider:
            mark_used(step.key)
            break
    generation.cost = tracker.cost
    return generation


# --- Entry points ----------------------------------------------------------------------------


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
    fallback_models: Sequence[str] | None = None,
) -> Generation:
    """Generate a completion along the request's chain; raise when no entry answers.

    ``fallback_models``: the chain after the first model (``<provider>/<model>`` ids); None
    for the configured or automatic one; ``fallback=False`` for none at all."""
    request, steps, tracker, deadline = _prepare(
        messages,
        system_prompt=system_prompt,
        model=model,
        temperature=temperature,
        max_tokens=max_tokens,
        json_schema=json_schema,
        provider=provider,
        user_id=user_id,
        fallback=fallback,
        fallback_models=fallback_models,
    )
    try:
        generation = _run(request, steps, tracker, deadline)
    finally:
        tracker.close()
    return _finished(generation, tracker, steps)


def _run(request: ChatRequest, steps: list[Step], tracker: Tracker, deadline: float) -> Generation:
    chain = Chain(steps, deadline)
    step = chain.next()
    while step is not None:
        tracker.begin(step)
        started = time.monotonic()
        try:
            completion = _client(step, deadline).complete(_for_step(request, step))
        except MOVES_ON as exc:
            _health(step, exc)
            nxt = _with_platform_key(step, exc) or chain.next()
            tracker.end(_attempt_failed(step, exc, started), nxt)
            step = nxt
            continue
        except LLMError as exc:
            _health(step, exc)
            tracker.end(_attempt_failed(step, exc, started))
            raise
        except BaseException:
            tracker.end(_interrupted(step, started))
            raise
        _health(step, None)
        attempt = _attempt_succeeded(step, completion)
        tracker.end(attempt)
        return Generation(tracker.request_id, completion, tracker.attempts, user_id=tracker.uid)
    raise _all_failed(tracker.attempts, chain)


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
    fallback_models: Sequence[str] | None = None,
) -> Iterator[TextDelta | Generation]:
    """Stream a completion: ``TextDelta`` items, then the ``Generation``.

    Validation, the chain and the reservation are settled before the first item. Until text
    reaches the consumer a failure moves down the chain; after that the stream is continued
    (``_Continuation``), and ends with ``StreamInterrupted`` if no entry can continue it —
    never with a ``Generation`` after a truncated answer. A stream closed early by its
    consumer is accounted as abandoned.
    """
    request, steps, tracker, deadline = _prepare(
        messages,
        system_prompt=system_prompt,
        model=model,
        temperature=temperature,
        max_tokens=max_tokens,
        json_schema=None,
        provider=provider,
        user_id=user_id,
        fallback=fallback,
        fallback_models=fallback_models,
    )
    return _stream(request, steps, tracker, deadline)


def _stream(
    request: ChatRequest, steps: list[Step], tracker: Tracker, deadline: float
) -> Iterator[TextDelta | Generation]:
    chain = Chain(steps, deadline)
    delivered: list[str] = []  # the text the consumer has received
    mode = "fresh"  # then "prefill" or "restart" once text was delivered (SPEC §5.1)
    try:
        step = chain.next()
        while step is not None:
            tracker.begin(step)
            started = time.monotonic()
            so_far = "".join(delivered)
            continuing = mode != "fresh"
            asked = _for_step(request, step)
            if mode == "prefill":
                asked = replace(asked, messages=(*asked.messages, Message("assistant", so_far)))
            try:
                upstream: ProviderStream = _client(step, deadline).stream(asked)
            except BaseException as exc:
                if not isinstance(exc, LLMError):
                    tracker.end(_interrupted(step, started))
                    raise
                _health(step, exc)
                attempt = _attempt_failed(step, exc, started)
                attempt.resumed = continuing
                if mode == "prefill" and type(exc) is InvalidRequest:
                    # Refused the prefill (or something in it): ask the same entry without one.
                    mode, step = "restart", chain.again(step)
                    tracker.end(attempt, step)
                    continue
                if isinstance(exc, MOVES_ON):
                    step = _with_platform_key(step, exc) or chain.next()
                    mode = "prefill" if delivered else "fresh"
                    tracker.end(attempt, step)
                    continue
                tracker.end(attempt)
                raise
            extend = _Extension(so_far if mode == "restart" else "")
            try:
                # Not `yield from`: it would close `upstream` before GeneratorExit reaches us,
                # and an abandoned stream may still have to be read for its billed usage.
                for delta in upstream:
                    new = extend.push(delta.text)
                    if new is None:
                        raise _Diverged(step)
                    if new:
                        delivered.append(new)
                        yield TextDelta(new)
            except GeneratorExit:
                attempt = _abandoned(step, upstream, request, started)
                attempt.resumed = continuing
                tracker.end(attempt)
                raise
            except _Diverged:
                attempt = _abandoned(step, upstream, request, started)
                attempt.resumed = continuing
                attempt.error = ProviderUnavailable(
                    f"{step.provider.label} restarted the answer differently; it cannot "
                    "continue what was already sent",
                    provider=step.name,
                )
                attempt.abandoned = False
                step, mode = chain.next(), "prefill"
                tracker.end(attempt, step)
                continue
            except LLMError as exc:
                _health(step, exc)
                attempt = _attempt_failed(step, exc, started)
                attempt.resumed = continuing
                if attempt.partial_usage is None and upstream.state.text:
                    # Text came, so the provider generated (and bills) it, but its usage
                    # report never did: charge an estimate, flagged as one.
                    attempt.partial_usage = _estimated_usage(request, upstream.state.text)
                    attempt.usage_estimated = True
                if isinstance(exc, MOVES_ON):
                    step = _with_platform_key(step, exc) or chain.next()
                    mode = "prefill" if delivered else "fresh"
                    tracker.end(attempt, step)
                    continue
                tracker.end(attempt)
                raise
            except BaseException:
                tracker.end(_interrupted(step, started))
                raise
            _health(step, None)
            completion = upstream.completion
            assert completion is not None
            attempt = _attempt_succeeded(step, completion)
            attempt.resumed = resumed = continuing
            tracker.end(attempt)
            if resumed:
                completion = replace(completion, text="".join(delivered))
            generation = Generation(
                tracker.request_id, completion, tracker.attempts, user_id=tracker.uid
            )
            generation.resumed = resumed
            break
        else:
            if delivered:
                failed = _all_failed(tracker.attempts, chain)
                raise StreamInterrupted(
                    "The stream broke after part of the answer was sent, and no model of the "
                    f"chain could continue it ({failed.message}). The text received is "
                    "incomplete.",
                    failures=failed.failures,
                )
            raise _all_failed(tracker.attempts, chain)
    finally:
        tracker.close()
    # Accounted before the final item is handed over, so a consumer that stops right after the
    # text still has its usage recorded, and the Generation carries its cost.
    yield _finished(generation, tracker, steps)


class _Diverged(Exception):
    """A restarted answer does not begin with the text already delivered."""

    def __init__(self, step: Step):
        super().__init__(step.label)


class _Extension:
    """Passes on only what extends ``prefix``: a restarted answer is read silently while it
    repeats the text already delivered, then streamed from where that text ended."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.seen = ""

    def push(self, text: str) -> str | None:
        """The part of ``text`` to deliver ("" for none yet), or None when the answer diverged."""
        if not self.prefix:
            return text
        before, self.seen = self.seen, self.seen + text
        if len(self.seen) <= len(self.prefix):
            return "" if self.prefix.startswith(self.seen) else None
        if len(before) < len(self.prefix) and not self.seen.startswith(self.prefix):
            return None
        return self.seen[max(len(before), len(self.prefix)) :]


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
        provider=step.name,
        model=state.model,
        requested_model=step.model,
        is_fallback=step.is_fallback,
        latency_ms=_ms_since(started),
        requests=upstream.requests_made,
        partial_usage=usage,
        abandoned=True,
        usage_estimated=estimated,
    )
