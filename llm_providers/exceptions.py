"""Every error the app raises, in one hierarchy.

Four families, because callers (and the router) act on the family, not the class:

- ``ConfigurationError`` — the deployment is wrong (missing key, unknown ``GPT_PROVIDER``,
  undecryptable stored key). Derives from ``ImproperlyConfigured`` so nothing swallows it.
- ``CallerError`` — the request is wrong (invalid input, unknown model, budget spent). Retrying
  or falling back would give the same answer, so the router stops at once.
- ``ProviderFailure`` — the provider failed (network, timeout, 408/429/5xx after retries, a key
  or account it rejected). The router falls back to the next available provider.
- ``InvalidStructuredOutput`` — the model answered, twice, with JSON that does not match the
  schema. Not a caller error and not an outage; it is surfaced, not fallen back on, because a
  schema one model cannot satisfy usually defeats the next one too, and each try costs money.

``AllProvidersFailed`` closes a generation in which every provider tried failed; it carries them.

Each class has a stable ``code`` and HTTP ``status`` (SPEC §8) so the REST layer maps the
hierarchy with one handler. Messages never contain a secret: providers scrub their own key
from anything they put in one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from django.core.exceptions import ImproperlyConfigured


class LLMError(Exception):
    """Base of every error raised by llm_providers."""

    code = "llm_error"
    status = 500
    # Seconds the upstream asked to wait before trying again (Retry-After, Gemini's RetryInfo,
    # Hugging Face's estimated_time), when it said; kept through to the final error.
    retry_after: float | None = None
    # Set by providers on the instance: whether the HTTP layer may retry it, and what a
    # stream or a structured-output retry had consumed before failing (for the ledger).
    retryable = False
    partial_usage = None
    partial_text = ""

    def __init__(self, message: str, *, provider: str | None = None, model: str | None = None):
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.model = model
        # Upstream HTTP requests spent before this error (retries included); set by providers.
        self.requests = 0

    def __str__(self) -> str:
        return self.message

    def as_dict(self) -> dict:
        """The public description of the error: what an API response may show."""
        body: dict = {"code": self.code, "message": self.message}
        if self.provider:
            body["provider"] = self.provider
        return body


# --- Configuration -----------------------------------------------------------------------------


class ConfigurationError(LLMError, ImproperlyConfigured):
    code = "provider_not_configured"
    status = 503


class ProviderNotConfigured(ConfigurationError):
    """A provider was asked for (or none is available) but has no key."""


class UnknownProvider(ConfigurationError):
    """``GPT_PROVIDER`` names no provider."""


class KeyDecryptionError(ConfigurationError):
    """A stored key cannot be decrypted with the configured encryption keys."""


# --- Caller errors (no fallback) ----------------------------------------------------------------


class CallerError(LLMError):
    code = "invalid_request"
    status = 400


class InvalidRequest(CallerError):
    """The request is invalid: bad parameters, or the upstream rejected its content."""

    def __init__(self, message: str, *, field: str | None = None, **kwargs):
        super().__init__(message, **kwargs)
        self.field = field

    def as_dict(self) -> dict:
        body = super().as_dict()
        if self.field:
            body["field"] = self.field
        return body


class ContextLengthExceeded(InvalidRequest):
    """The prompt (plus the output asked for) does not fit the model's context window. A caller
    error for that model only: the router moves down the chain, where a larger window may fit."""

    code = "context_length_exceeded"


class ContentPolicyViolation(InvalidRequest):
    """The provider refused the content (its reason is in the message). Stops the request:
    another model would most likely refuse it too, and each try costs."""

    code = "content_policy_violation"


class ModelNotFound(CallerError):
    code = "model_not_found"
    status = 404


class BudgetExceeded(CallerError):
    """A call refused by the user's monthly limits, before any upstream request.

    Says why (SPEC §7): which ``limit`` (``"cost"`` or ``"calls"``) and its ``limit_value``,
    what is ``used`` and ``reserved`` (by calls in flight) this period, what the call
    ``needed``, and ``resets_at`` (ISO time, UTC, when the next period starts). Money is a
    ``Decimal`` here and a decimal string in ``as_dict``.
    """

    code = "budget_exceeded"
    status = 402

    def __init__(
        self,
        message: str,
        *,
        limit: str | None = None,
        limit_value=None,
        used=None,
        reserved=None,
        needed=None,
        resets_at: str | None = None,
        **kwargs,
    ):
        super().__init__(message, **kwargs)
        self.limit = limit
        self.limit_value = limit_value
        self.used = used
        self.reserved = reserved
        self.needed = needed
        self.resets_at = resets_at

    def as_dict(self) -> dict:
        body = super().as_dict()
        if self.limit is not None:
            body |= {
                "limit": self.limit,
                "limit_value": _plain(self.limit_value),
                "used": _plain(self.used),
                "reserved": _plain(self.reserved),
                "needed": _plain(self.needed),
                "resets_at": self.resets_at,
            }
        return body


def _plain(value):
    """Money (``Decimal``) as a decimal string without exponent; counts and None as they are."""
    if isinstance(value, Decimal):
        text = format(value.normalize(), "f")
        return "0" if text in ("-0", "") else text
    return value


# --- Provider failures (fallback) ---------------------------------------------------------------


class ProviderFailure(LLMError):
    code = "provider_error"
    status = 502

    def __init__(self, message: str, *, upstream_status: int | None = None, **kwargs):
        super().__init__(message, **kwargs)
        self.upstream_status = upstream_status


class ProviderUnavailable(ProviderFailure):
    """Network error, 5xx, malformed or truncated body: the provider could not answer."""


class UpstreamTimeout(ProviderUnavailable):
    code = "upstream_timeout"
    status = 504


class StreamInterrupted(ProviderFailure):
    """A stream broke after text reached the client and no entry of the chain could continue
    it: the client must not take the text it has as a complete answer."""

    code = "stream_interrupted"
    status = 502

    def __init__(self, message: str, *, failures: Sequence[FailedAttempt] = (), **kwargs):
        super().__init__(message, **kwargs)
        self.failures = list(failures)

    def as_dict(self) -> dict:
        body = super().as_dict()
        body["attempts"] = [f.as_dict() for f in self.failures]
        return body


class RateLimited(ProviderFailure):
    code = "rate_limited"
    status = 429

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs):
        super().__init__(message, **kwargs)
        self.retry_after = retry_after

    def as_dict(self) -> dict:
        body = super().as_dict()
        if self.retry_after is not None:
            body["retry_after"] = self.retry_after
        return body


class ProviderAuthError(ProviderFailure):
    """The provider rejected the key (invalid, revoked, lacking permission)."""


class InsufficientCredits(ProviderAuthError):
    """The account behind the key has no credit or hit its spending limit (HTTP 402)."""


# --- Output --------------------------------------------------------------------------------------


class InvalidStructuredOutput(LLMError):
    code = "invalid_structured_output"
    status = 502

    def __init__(self, message: str, *, raw_text: str, **kwargs):
        super().__init__(message, **kwargs)
        self.raw_text = raw_text

    def as_dict(self) -> dict:
        body = super().as_dict()
        body["raw_text"] = self.raw_text
        return body


# --- The router's verdict ------------------------------------------------------------------------


@dataclass(frozen=True)
class FailedAttempt:
    """One provider that was tried and failed, as ``AllProvidersFailed`` reports it."""

    provider: str
    model: str
    error: LLMError

    def as_dict(self) -> dict:
        return {
            "provider": self.provider,
            "model": self.model,
            "code": self.error.code,
            "message": self.error.message,
        }


# Codes that keep their own meaning when every attempt failed the same way.
_UNANIMOUS_CODES = {RateLimited.code: RateLimited, UpstreamTimeout.code: UpstreamTimeout}


class AllProvidersFailed(ProviderFailure):
    """Every provider tried failed with a provider-side failure.

    ``code`` is ``rate_limited`` (429) or ``upstream_timeout`` (504) when every attempt failed
    that way, else ``provider_error`` (502); ``retry_after`` is the shortest hint given.
    """

    def __init__(self, failures: Sequence[FailedAttempt]):
        self.failures = list(failures)
        names = ", ".join(f"{f.provider} ({f.error.code}: {f.error.message})" for f in failures)
        super().__init__(f"All providers failed: {names}")
        codes = {f.error.code for f in failures}
        if len(codes) == 1 and (only := codes.pop()) in _UNANIMOUS_CODES:
            self.code = only
            self.status = _UNANIMOUS_CODES[only].status
        hints = [f.error.retry_after for f in failures if f.error.retry_after is not None]
        self.retry_after = min(hints) if hints else None

    def as_dict(self) -> dict:
        body = super().as_dict()
        body["attempts"] = [f.as_dict() for f in self.failures]
        if self.retry_after is not None:
            body["retry_after"] = self.retry_after
        return body
