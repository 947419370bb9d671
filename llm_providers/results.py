"""Value objects passed along the one path data takes: caller → router → provider → result.

``ChatRequest`` goes into a provider; a provider gives back a ``Completion`` (or, streaming,
``TextDelta`` items and then a ``Completion``); the router wraps the answer and every
``Attempt`` into a ``Generation``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from .exceptions import LLMError


@dataclass(frozen=True)
class Message:
    role: str  # "user" | "assistant" (system text goes in ChatRequest.system_prompt)
    content: str


@dataclass(frozen=True)
class ChatRequest:
    """What to ask a provider. ``model`` is final here: the router has filled in defaults."""

    messages: tuple[Message, ...]
    model: str
    system_prompt: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    json_schema: dict | None = None

    @classmethod
    def from_prompt(cls, prompt: str, **kwargs: Any) -> ChatRequest:
        return cls(messages=(Message("user", prompt),), **kwargs)


@dataclass(frozen=True)
class Usage:
    """Token counts of one provider call, and the cost the provider itself reported (if any)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    # USD as reported by the provider (OpenRouter's usage.cost); None when it reports none.
    reported_cost: Decimal | None = None

    def as_dict(self) -> dict:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }


@dataclass
class Completion:
    """One provider's successful answer."""

    text: str
    provider: str
    model: str  # the model that actually answered, as the provider reports it
    usage: Usage = field(default_factory=Usage)
    latency_ms: int = 0
    requests: int = 1  # upstream HTTP requests it took, retries and the JSON retry included
    data: Any = None  # the parsed, validated object when a JSON schema was given
    finish_reason: str | None = None
    response_id: str | None = None


@dataclass(frozen=True)
class TextDelta:
    """A piece of streamed text."""

    text: str


@dataclass
class Attempt:
    """One provider tried within a generation: what the ledger records as one row."""

    provider: str
    model: str
    is_fallback: bool
    completion: Completion | None = None
    error: LLMError | None = None
    latency_ms: int = 0
    requests: int = 0
    # Usage known for a failed or abandoned attempt (e.g. a stream cut off after some tokens).
    partial_usage: Usage | None = None
    # The caller stopped reading a stream before it ended.
    abandoned: bool = False
    # The model asked for (``model`` is the one that answered, when the provider says).
    requested_model: str = ""
    # Token counts estimated from text (a stream abandoned before the provider reported usage).
    usage_estimated: bool = False
    # It continued a stream whose text an earlier attempt had begun to send (SPEC §5.1).
    resumed: bool = False

    @property
    def succeeded(self) -> bool:
        return self.completion is not None

    @property
    def usage(self) -> Usage:
        if self.completion is not None:
            return self.completion.usage
        return self.partial_usage or Usage()

    @property
    def retries(self) -> int:
        return max(self.requests - 1, 0)

    @property
    def error_code(self) -> str:
        """What went wrong, as the ledger and the metrics record it: ``client_disconnected``
        when the caller stopped reading, else the error's code ("" when there is none)."""
        if self.abandoned:
            return "client_disconnected"
        return self.error.code if self.error is not None else ""


@dataclass
class Generation:
    """The router's answer: the completion that succeeded, and every attempt that led to it."""

    request_id: str
    completion: Completion
    attempts: list[Attempt]
    user_id: int | None = None
    # USD, set when the call is accounted (price table or the provider's reported cost).
    cost: Decimal | None = None
    # A stream that broke after text was sent and was continued by the next entry of the chain.
    resumed: bool = False

    @property
    def text(self) -> str:
        return self.completion.text

    @property
    def data(self) -> Any:
        return self.completion.data

    @property
    def provider(self) -> str:
        return self.completion.provider

    @property
    def model(self) -> str:
        return self.completion.model

    @property
    def usage(self) -> Usage:
        return self.completion.usage

    @property
    def upstream_requests(self) -> int:
        """SPEC §8 ``attempts``: upstream requests made, all providers and retries included."""
        return sum(a.requests for a in self.attempts)

    @property
    def fallback_from(self) -> list[str]:
        return [a.provider for a in self.attempts if not a.succeeded]
