"""What every provider shares: retries, error mapping, streaming, JSON output (the HTTP
transport under them is ``http``).

A provider module subclasses ``Provider`` (or ``OpenAICompatibleProvider``) and says only what is
different about its service: how to build the request, how to read the answer, how to read its
errors. See docs/adding-a-provider.md for the checklist.

A provider is pure HTTP: it never touches the database. It is built per call with the key the
router resolved, and the key appears nowhere but in the request's auth header.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import re
import time
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar

import requests
import tenacity

from ..conf import llm_settings
from ..exceptions import (
    ContentPolicyViolation,
    ContextLengthExceeded,
    InsufficientCredits,
    InvalidRequest,
    InvalidStructuredOutput,
    LLMError,
    ModelNotFound,
    ProviderAuthError,
    ProviderUnavailable,
    RateLimited,
    UpstreamTimeout,
)
from ..results import ChatRequest, Completion, TextDelta, Usage
from ..scrubbing import Scrubber
from ..structured import SchemaMismatch, parse_reply
from . import http
from .http import HTTPCall
from .http import http_session as http_session  # where callers have always found it
from .sse import iter_sse_data

# SPEC §5: what is retried. 400/401/403/404 never are.
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})

logger = logging.getLogger(__name__)

# The sleep between retries and the clock deadlines are read from; tests replace them to record
# the waits instead of waiting (both are looked up at each use).
sleep = time.sleep
monotonic = time.monotonic


@dataclass
class StreamState:
    """What a stream has told so far; the provider's ``read_stream_event`` updates it."""

    model: str
    text: list[str] = field(default_factory=list)
    usage: Usage | None = None
    finish_reason: str | None = None
    response_id: str | None = None
    finished: bool = False  # saw the provider's end marker ([DONE] or a finish reason)
    # When the first text arrived (``monotonic()``); None until then. SSE comments, empty
    # events and role-only chunks are not text.
    first_text_at: float | None = None


# --- Retries -------------------------------------------------------------------------------------


class RetryWait(tenacity.wait.wait_base):
    """The wait before the next attempt: exponential backoff with jitter between ``base`` and
    ``maximum`` seconds (tenacity's full jitter), stretched to the failed attempt's
    ``retry_after`` hint when the upstream asked for longer (``Retry-After``, Gemini's
    ``RetryInfo``, Hugging Face's ``estimated_time``, as each provider reads its errors)."""

    def __init__(self, base: float, maximum: float):
        self.backoff = tenacity.wait_random_exponential(multiplier=base, min=base, max=maximum)

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        delay = self.backoff(retry_state)
        hint = getattr(retry_state.outcome.exception(), "retry_after", None)
        return max(delay, hint) if hint else delay


class stop_before_deadline(tenacity.stop.stop_base):
    """Stop when the next wait would end at or after ``deadline`` (a ``monotonic()`` instant):
    sleeping into the deadline would leave no time for the attempt it waits for."""

    def __init__(self, deadline: float | None):
        self.deadline = deadline

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        if self.deadline is None:
            return False
        return monotonic() + retry_state.upcoming_sleep >= self.deadline


def retrying(max_retries: int | None = None, *, deadline: float | None = None) -> tenacity.Retrying:
    """The retry policy of SPEC §5, from the settings as they are now.

    Errors marked ``retryable`` are tried again, at most ``LLM_MAX_RETRIES`` times (or
    ``max_retries``), after a ``RetryWait``; a wait that would end ``LLM_RETRY_TOTAL_TIMEOUT``
    or more after the first attempt began, or at or after ``deadline``, ends the retries
    instead. The last error is raised.
    """
    retries = int(llm_settings.LLM_MAX_RETRIES) if max_retries is None else max_retries
    return tenacity.Retrying(
        retry=tenacity.retry_if_exception(lambda exc: getattr(exc, "retryable", False)),
        stop=(
            tenacity.stop_after_attempt(retries + 1)
            | tenacity.stop_before_delay(float(llm_settings.LLM_RETRY_TOTAL_TIMEOUT))
            | stop_before_deadline(deadline)
        ),
        wait=RetryWait(
            float(llm_settings.LLM_RETRY_BASE_DELAY), float(llm_settings.LLM_RETRY_MAX_DELAY)
        ),
        sleep=lambda seconds: sleep(seconds),  # looked up at each wait: tests replace it
        reraise=True,
    )


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        # "nan"/"inf" parse as floats but are no wait (and would poison JSON and arithmetic).
        return max(seconds, 0.0) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        # HTTP dates are GMT; the asctime and "-0000" forms parse as naive datetimes, which
        # .timestamp() would read in the process's local zone (Django sets it from TIME_ZONE).
        when = when.replace(tzinfo=UTC)
    return max(when.timestamp() - time.time(), 0.0)


_DURATION = re.compile(r"^\s*(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>ms|s)\s*$")


def parse_duration(value: Any) -> float | None:
    """Seconds from a protobuf Duration string as Google sends it: ``"7s"``, ``"600ms"``."""
    if not isinstance(value, str):
        return None
    match = _DURATION.match(value)
    if not match:
        return None
    seconds = float(match.group("n"))
    return seconds / 1000 if match.group("unit") == "ms" else seconds


def decimal_or_none(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return Decimal(str(value))
    except ArithmeticError:
        return None


# --- The base provider ---------------------------------------------------------------------------


class Provider:
    """Base of a provider client. Extension point: subclass and fill in the class attributes
    and the four hooks (``build_call``, ``read_completion``, ``read_stream_event``,
    ``read_error``); optionally ``check_model`` and ``connection_test_call``.
    """

    name: ClassVar[str]  # "gemini": the id used in settings, the database and the API
    label: ClassVar[str]  # "Google Gemini": for people
    key_setting: ClassVar[str]  # "GEMINI_API_KEY": the environment variable holding the key
    model_setting: ClassVar[str]  # "GEMINI_MODEL"
    base_url_setting: ClassVar[str]  # "GEMINI_BASE_URL"
    key_prefix: ClassVar[str] = ""  # the public prefix of its keys ("AIza"), shown in masks
    example_model: ClassVar[str]  # for error messages about malformed model ids
    # Whether the provider bills a streamed generation in full even when the client disconnects
    # (then an abandoned stream is read to the end, for its exact usage). OpenRouter stops
    # billing on disconnect for most of its upstreams; Google and Hugging Face do not.
    bills_abandoned_streams: ClassVar[bool] = True
    # Other names accepted for it (GPT_PROVIDER, the API's ``provider``, ``v1`` model prefixes).
    aliases: ClassVar[tuple[str, ...]] = ()
    # Where people create a key (linked from the admin's key form).
    key_page: ClassVar[str] = ""
    # False for a server that takes no key (a local one): it is available without one.
    requires_key: ClassVar[bool] = True
    # Shorter input is a paste gone wrong (every built-in provider's keys are far longer).
    min_key_length: ClassVar[int] = 16

    def __init__(
        self, api_key: str = "", *, key_source: str | None = None, deadline: float | None = None
    ):
        """``deadline``: a ``time.monotonic()`` instant by which the whole call, retries
        included, must end; every wait (connect, read, retry sleep) is capped by the time left.
        """
        if not api_key and self.requires_key:
            raise ValueError("A provider needs a key; resolve one with llm_providers.keys.")
        self._api_key = api_key
        self.key_source = key_source or (
            f"the environment variable {self.key_setting}" if api_key else "no key"
        )
        self.base_url = self.configured_base_url().rstrip("/")
        self.deadline = deadline
        # SPEC §5.1's bounds, read once per call.
        self.connect_timeout = float(llm_settings.LLM_CONNECT_TIMEOUT)
        self.timeout = float(llm_settings.LLM_TIMEOUT)
        self.first_token_timeout = float(llm_settings.LLM_FIRST_TOKEN_TIMEOUT)
        self.stream_idle_timeout = float(llm_settings.LLM_STREAM_IDLE_TIMEOUT)

    def __repr__(self) -> str:  # never the key
        return f"<{type(self).__name__} key from {self.key_source}>"

    @classmethod
    def default_model(cls) -> str:
        return str(getattr(llm_settings, cls.model_setting))

    @classmethod
    def configured_base_url(cls) -> str:
        return str(getattr(llm_settings, cls.base_url_setting))

    @classmethod
    def configured_key(cls) -> str | None:
        """The key from the Django setting or environment variable ``key_setting``, if any."""
        value = getattr(llm_settings, cls.key_setting)
        return str(value) if value else None

    @classmethod
    def check_model(cls, model: str) -> None:
        """Refuse a malformed model id before any upstream call (raise ModelNotFound)."""

    # --- hooks --------------------------------------------------------------------------------

    def build_call(self, request: ChatRequest, *, stream: bool) -> HTTPCall:
        raise NotImplementedError

    def read_completion(self, body: Any, request: ChatRequest) -> Completion:
        """Turn a 200 body into a Completion (latency and request count are filled in later)."""
        raise NotImplementedError

    def read_stream_event(self, data: str, state: StreamState) -> str | None:
        """Read one SSE ``data`` payload; update ``state``; return the text delta, if any.

        Data that is not JSON, or JSON of a shape the provider does not send, may raise what
        reading it raises (``ValueError``, ``KeyError``, ``TypeError``…): the stream logs and
        skips that event. An error the provider reports in the stream is raised as the mapped
        ``LLMError``, after reading any usage the event carries (``state.usage``)."""
        raise NotImplementedError

    def read_error(self, status: int, body: Any, headers: Mapping[str, str]) -> LLMError:
        """Map an HTTP error (or an error object inside a 200/stream) to an exception."""
        return self.error_for_status(
            status, error_text(body), headers=headers, codes=error_codes(body)
        )

    def connection_test_call(self) -> HTTPCall:
        """The cheapest authenticated request, for the admin's "test connection"."""
        raise NotImplementedError

    # --- public operations -------------------------------------------------------------------

    def complete(self, request: ChatRequest) -> Completion:
        """Generate a completion; with a JSON schema, parse and validate it (one retry)."""
        started = monotonic()
        first = self._complete_once(request)
        if request.json_schema is not None:
            first = self._with_structured_data(first, request)
        first.latency_ms = _ms_since(started)
        return first

    def stream(self, request: ChatRequest) -> ProviderStream:
        """Open a stream: the request is sent (and retried) now, before the first byte.

        Iterate the result for ``TextDelta`` items; once exhausted, ``.completion`` holds the
        final text and usage. An error after the first byte raises with ``partial_usage``.
        """
        started = monotonic()
        response, requests_made = self.send(self.build_call(request, stream=True), stream=True)
        return ProviderStream(self, response, requests_made, request.model, started)

    def test_connection(self) -> str:
        """Check the key with the provider's cheapest endpoint; raise the mapped error if not."""
        started = monotonic()
        response, _ = self.send(self.connection_test_call(), max_retries=0)
        response.close()
        return f"{self.label} accepted the key ({_ms_since(started)} ms)."

    # --- HTTP ----------------------------------------------------------------------------------

    def send(
        self, call: HTTPCall, *, stream: bool = False, max_retries: int | None = None
    ) -> tuple[requests.Response, int]:
        """Send ``call`` with retries (see ``retrying``); return the 2xx response and the
        number of requests made. A failure raises the mapped LLMError with ``requests`` set."""
        made = 0

        def attempt() -> requests.Response:
            nonlocal made
            try:
                # A stream's first read waits for its first text (headers included).
                read = self.first_token_timeout if stream else self.timeout
                timeouts = (self.capped(self.connect_timeout), self.capped(read))
                made += 1
                return self._send_once(call, stream=stream, timeouts=timeouts)
            except LLMError as exc:
                exc.requests = made
                raise

        return retrying(max_retries, deadline=self.deadline)(attempt), made

    def time_left(self) -> float | None:
        """Seconds until the call's deadline (negative once passed); None without one."""
        return None if self.deadline is None else self.deadline - monotonic()

    def capped(self, seconds: float) -> float:
        """``seconds``, or the time left before the deadline when that is shorter. No time
        left is an ``UpstreamTimeout`` (not retried: there is no time for it)."""
        left = self.time_left()
        if left is None:
            return seconds
        if left <= 0:
            raise UpstreamTimeout(
                f"{self.label}: the request's deadline passed before an answer came",
                provider=self.name,
            )
        return min(seconds, left)

    def _send_once(
        self, call: HTTPCall, *, stream: bool, timeouts: tuple[float, float]
    ) -> requests.Response:
        try:
            response = http.send(call, timeout=timeouts, stream=stream)
        except requests.exceptions.RequestException as exc:
            connect, read = timeouts
            error = network_error(
                self,
                exc,
                timed_out=(
                    f"{self.label} did not accept the connection within {connect:g}s"
                    if isinstance(exc, requests.exceptions.ConnectTimeout)
                    else f"{self.label} did not answer within {read:g}s"
                ),
                broken=f"Could not reach {self.label}: {type(exc).__name__}",
            )
            # A silent provider is not asked again (SPEC §5.1: the chain moves on); a refused
            # or reset connection is.
            if not isinstance(error, UpstreamTimeout):
                self._retryable(error)
            raise error from None
        if response.status_code < 400:
            return response
        try:
            body = self.decode(response)
        except ProviderUnavailable:
            # Scrubbed before error_text cuts it to length, which could leave part of an echoed key.
            body = self._without_key(response.text) if not stream else None
        finally:
            response.close()
        error = self.scrub(self.read_error(response.status_code, body, response.headers))
        error.upstream_status = response.status_code
        if response.status_code in RETRYABLE_STATUSES:
            if getattr(error, "retry_after", None) is None:
                # Retry-After may come with any retryable status (503 too), not only 429.
                hint = parse_retry_after(response.headers.get("Retry-After"))
                if hint is not None:
                    error.retry_after = hint
            self._retryable(error)
        raise error

    def decode(self, response: requests.Response) -> Any:
        """The JSON body, numbers with a fraction as Decimal (costs stay exact)."""
        try:
            return json.loads(response.content, parse_float=Decimal)
        except (ValueError, UnicodeDecodeError):
            raise ProviderUnavailable(
                f"{self.label} sent a body that is not JSON (HTTP {response.status_code})",
                provider=self.name,
            ) from None

    # --- helpers for subclasses -----------------------------------------------------------------

    def error_for_status(
        self,
        status: int,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        codes: Collection[str] = (),
    ) -> LLMError:
        """The default mapping of an HTTP status to the hierarchy; providers refine it.

        ``codes`` are the machine-readable codes of the error body (``error_codes``); with the
        message they tell a context-length error, a content-policy refusal and a region the
        provider does not serve from other 4xx (see ``refusal_for``).
        """
        detail = f"{self.label} answered HTTP {status}: {message}"
        if status == 429:
            retry_after = parse_retry_after((headers or {}).get("Retry-After"))
            return RateLimited(detail, retry_after=retry_after, provider=self.name)
        refusal = self.refusal_for(status, message, codes)
        if refusal is not None:
            return refusal
        if status in (401, 403):
            return ProviderAuthError(
                f"{self.label} rejected the key from {self.key_source} (HTTP {status}: {message})",
                provider=self.name,
            )
        if status == 402:
            return InsufficientCredits(
                f"{self.label} refused the call for lack of credit on the key from "
                f"{self.key_source} (HTTP 402: {message})",
                provider=self.name,
            )
        if status == 404:
            return ModelNotFound(
                f"Model not found: {detail}. Use a model id such as {self.example_model}.",
                provider=self.name,
            )
        if status in (408, 504):
            return UpstreamTimeout(detail, provider=self.name)
        if 400 <= status < 500:
            return InvalidRequest(detail, provider=self.name)
        return ProviderUnavailable(detail, provider=self.name)

    def refusal_for(
        self, status: int, message: str, codes: Collection[str] = ()
    ) -> LLMError | None:
        """What a 4xx that is not about the key, the credit or the model means, when its code
        or words say: ``ContextLengthExceeded`` (another model may have a larger window),
        ``ContentPolicyViolation`` (the reason is in the message), or ``ProviderUnavailable``
        for a region the provider does not serve (nothing the caller or the key can change).
        None when it is none of these."""
        if not 400 <= status < 500 or status in (401, 402, 404, 408, 429):
            return None
        detail = f"{self.label} answered HTTP {status}: {message}"
        codes = {str(c).lower() for c in codes}
        if codes & CONTEXT_LENGTH_CODES or CONTEXT_LENGTH_WORDS.search(message):
            return ContextLengthExceeded(detail, provider=self.name)
        if codes & CONTENT_POLICY_CODES or CONTENT_POLICY_WORDS.search(message):
            return ContentPolicyViolation(
                f"{self.label} refused the content: {message}", provider=self.name
            )
        if codes & REGION_CODES or REGION_WORDS.search(message):
            return ProviderUnavailable(
                f"{self.label} does not serve the region this server calls from "
                f"(HTTP {status}: {message})",
                provider=self.name,
            )
        return None

    def scrub(self, error: LLMError) -> LLMError:
        """Mask the key in an error's message, wherever an upstream may have echoed it: whole,
        cut short or partly masked (any run of 8 or more of its characters, see ``scrubbing``)."""
        message = self._without_key(error.message)
        if message != error.message:
            error.message = message
            error.args = (message,)
        return error

    def _without_key(self, text: str) -> str:
        return self._scrubber(text)

    @functools.cached_property
    def _scrubber(self) -> Scrubber:
        # Built at the first error only: most calls never need it.
        return Scrubber([self._api_key])

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}

    # --- internals ------------------------------------------------------------------------------

    def _complete_once(self, request: ChatRequest) -> Completion:
        response, made = self.send(self.build_call(request, stream=False))
        try:
            body = self.decode(response)
        except LLMError as exc:
            exc.requests = made
            raise
        finally:
            response.close()
        try:
            completion = self.read_completion(body, request)
        except LLMError as exc:
            exc.requests = made
            raise self.scrub(exc) from None
        except (KeyError, IndexError, TypeError, AttributeError, ValueError):
            err = ProviderUnavailable(
                f"{self.label} sent an answer in an unexpected shape", provider=self.name
            )
            err.requests = made
            raise err from None
        completion.requests = made
        return completion

    def _with_structured_data(self, completion: Completion, request: ChatRequest) -> Completion:
        assert request.json_schema is not None
        try:
            completion.data = parse_reply(completion.text, request.json_schema)
            return completion
        except SchemaMismatch as mismatch:
            first_mismatch = mismatch
        # One retry: models slip now and then; a second slip is reported, never returned.
        try:
            second = self._complete_once(request)
        except LLMError as exc:
            # The first answer was made and paid for: the failure carries it.
            exc.requests += completion.requests
            exc.partial_usage = add_usage(completion.usage, exc.partial_usage or Usage())
            raise
        second.requests += completion.requests
        second.usage = add_usage(completion.usage, second.usage)
        try:
            if second.text == completion.text:
                # The same reply again (a model told to repeat it): its verdict is known, and
                # validating it twice would double what a costly schema takes.
                raise first_mismatch
            second.data = parse_reply(second.text, request.json_schema)
            return second
        except SchemaMismatch as mismatch:
            err = InvalidStructuredOutput(
                f"{self.label} ({second.model}) did not return valid JSON for the schema "
                f"after one retry: {mismatch}",
                raw_text=second.text,
                provider=self.name,
                model=second.model,
            )
            err.requests = second.requests
            err.partial_usage = second.usage
            raise err from None

    @staticmethod
    def _retryable(error: LLMError) -> LLMError:
        error.retryable = True
        return error


# What tells a context-length error, a content-policy refusal and an unserved region apart
# from other 4xx: OpenAI-style ``error.code``/``type`` and OpenRouter's ``metadata.error_type``
# (PROVIDERS.md §1.5), else the words each provider uses.
CONTEXT_LENGTH_CODES = frozenset(
    {"context_length_exceeded", "max_tokens_exceeded", "token_limit_exceeded", "string_too_long"}
)
CONTEXT_LENGTH_WORDS = re.compile(
    r"context[ _-]?length|context window|maximum context|too many tokens|prompt is too long"
    r"|input token count.{0,40}exceeds"  # Gemini
    r"|`inputs` tokens \+ `max_new_tokens` must be",  # Hugging Face TGI
    re.IGNORECASE,
)
CONTENT_POLICY_CODES = frozenset({"content_policy_violation", "content_filter", "moderation"})
CONTENT_POLICY_WORDS = re.compile(
    r"content[ _-]?policy|content management policy|moderation|flagged", re.IGNORECASE
)
REGION_CODES = frozenset({"unsupported_country_region_territory"})
REGION_WORDS = re.compile(
    r"\b(country|region|territory|location)\b[^.]{0,30}\bnot supported", re.IGNORECASE
)


def error_codes(body: Any) -> set[str]:
    """The machine-readable codes of an error body: ``error.code`` when it is a word (not an
    HTTP status), ``error.type``, ``error.error_type`` and ``error.metadata.error_type``."""
    err = body.get("error") if isinstance(body, Mapping) else None
    if not isinstance(err, Mapping):
        return set()
    meta = err.get("metadata") if isinstance(err.get("metadata"), Mapping) else {}
    found = (err.get("code"), err.get("type"), err.get("error_type"), meta.get("error_type"))
    return {v for v in found if isinstance(v, str) and v and not v.isdigit()}


def add_usage(a: Usage, b: Usage) -> Usage:
    cost = None
    if a.reported_cost is not None and b.reported_cost is not None:
        cost = a.reported_cost + b.reported_cost
    return Usage(
        prompt_tokens=a.prompt_tokens + b.prompt_tokens,
        completion_tokens=a.completion_tokens + b.completion_tokens,
        total_tokens=a.total_tokens + b.total_tokens,
        reported_cost=cost,
    )


def error_text(body: Any) -> str:
    """The human message in an upstream error body, whatever its shape.

    Covers ``{"error": {"message": …}}`` (OpenAI, OpenRouter, Gemini), ``{"error": "…"}`` and
    ``{"error": ["…"]}`` (Hugging Face), ``{"errors": [{"message": …}]}``, and plain text.
    """
    if isinstance(body, Mapping):
        err = body.get("error", body.get("errors"))
        if isinstance(err, Mapping):
            return str(err.get("message") or err.get("error") or json.dumps(err, default=str))
        if isinstance(err, list):
            return "; ".join(
                str(e.get("message", e)) if isinstance(e, Mapping) else str(e) for e in err
            )
        if err is not None:
            return str(err)
        return str(body.get("message") or body.get("detail") or "no error message")
    if isinstance(body, str) and body.strip():
        return body.strip()[:500]
    return "no error message"


def network_error(provider: Provider, exc: BaseException, *, timed_out: str, broken: str):
    """What a transport failure (requests' errors, an undecodable stream) is to the router:
    ``UpstreamTimeout`` with ``timed_out`` when it was a timeout, else ``ProviderUnavailable``
    with ``broken``. The messages name only the provider and the error's type: never the
    exception's text, which can hold the URL and with it a key."""
    if http.timed_out(exc):
        return UpstreamTimeout(timed_out, provider=provider.name)
    return ProviderUnavailable(broken, provider=provider.name)


def _ms_since(started: float) -> int:
    return int((monotonic() - started) * 1000)


class ProviderStream:
    """An open upstream stream: iterate it for ``TextDelta``; then read ``.completion``.

    ``state`` says what has arrived so far, so a stream the caller abandons can still be
    accounted; ``drain()`` reads the rest without yielding, to learn the final usage.

    Two bounds of SPEC §5.1 hold while it is read, both ``UpstreamTimeout`` (not retried):
    the first text must come within ``LLM_FIRST_TOKEN_TIMEOUT`` of sending the request, and
    once text came no read may wait longer than ``LLM_STREAM_IDLE_TIMEOUT``. How: before each
    read the socket's timeout is set to the time left for the first text (until it came), else
    to the idle bound, and never past the deadline, so total silence ends at the right
    instant; and each line received is checked against the first-text instant, so keep-alive
    comments (which reset any socket timeout) cannot hold the stream open without text. A
    response with no socket (a test double) gets only the line checks.
    """

    def __init__(
        self,
        provider: Provider,
        response: requests.Response,
        requests_made: int,
        model: str,
        started: float,
    ):
        self.provider = provider
        self.requests_made = requests_made
        self.state = StreamState(model=model)
        self.completion: Completion | None = None
        self._response = response
        self._started = started
        # The clock of the first-text bound starts when the request was sent: ``elapsed`` is
        # the time requests waited for the headers.
        sent_at = monotonic() - response.elapsed.total_seconds()
        self.first_text_by = sent_at + provider.first_token_timeout
        self._socket = _socket_of(response)
        self._socket_timeout: float | None = None
        # Restored when the stream ends: the connection goes back to the shared pool, and its
        # next request is written before urllib3 sets a timeout of its own.
        self._pool_timeout = self._socket.gettimeout() if self._socket is not None else None
        self._events = self._read()

    def __iter__(self) -> Iterator[TextDelta]:
        return self

    def __next__(self) -> TextDelta:
        return next(self._events)

    def drain(self) -> Completion | None:
        """Consume what is left (discarding text deltas' yield) and return the completion."""
        for _ in self._events:
            pass
        return self.completion

    def close(self) -> None:
        self._events.close()
        self._response.close()

    def _waiting_for_text(self) -> bool:
        # A stream that finished without text (a tool call, an empty answer) waits for none.
        return self.state.first_text_at is None and not self.state.finished

    def _no_text_in_time(self) -> UpstreamTimeout:
        provider = self.provider
        return UpstreamTimeout(
            f"{provider.label} sent no text within {provider.first_token_timeout:g}s",
            provider=provider.name,
        )

    def _next_read_timeout(self) -> float:
        """How long the next read may wait (see the class's docstring)."""
        if self._waiting_for_text():
            timeout = self.first_text_by - monotonic()
            if timeout <= 0:
                raise self._no_text_in_time()
        else:
            timeout = self.provider.stream_idle_timeout
        return self.provider.capped(timeout)

    def _timed_lines(self, lines: Iterable[bytes]) -> Iterator[bytes]:
        """``lines``, with each read's timeout set before it and the first-text bound checked
        after it."""
        self._arm()
        for line in lines:
            if self._waiting_for_text() and monotonic() >= self.first_text_by:
                raise self._no_text_in_time()
            yield line
            self._arm()

    def _arm(self) -> None:
        timeout = self._next_read_timeout()
        if self._socket is not None and timeout != self._socket_timeout:
            self._socket.settimeout(timeout)
            self._socket_timeout = timeout

    def _disarm(self) -> None:
        if self._socket is not None and self._socket_timeout is not None:
            with contextlib.suppress(OSError):  # already closed: nothing to restore
                self._socket.settimeout(self._pool_timeout)

    def _read(self) -> Iterator[TextDelta]:
        provider, state = self.provider, self.state
        try:
            for data in iter_sse_data(self._timed_lines(self._response.iter_lines())):
                try:
                    delta = provider.read_stream_event(data, state)
                except (KeyError, IndexError, TypeError, AttributeError, ValueError):
                    # Not JSON, or JSON of a shape the provider does not send: one bad event
                    # is no reason to lose the answer. Its content may quote the prompt, so
                    # only its size is logged.
                    logger.warning(
                        "%s sent a malformed stream event (%d characters); skipped it",
                        provider.label,
                        len(data),
                    )
                    continue
                if delta:
                    if state.first_text_at is None:
                        state.first_text_at = monotonic()
                    state.text.append(delta)
                    yield TextDelta(delta)
        except LLMError as exc:
            raise self._failed(exc) from None
        except (requests.exceptions.RequestException, UnicodeDecodeError) as exc:
            raise self._failed(
                network_error(
                    provider,
                    exc,
                    timed_out=(
                        f"{provider.label} sent no text within {provider.first_token_timeout:g}s"
                        if self._waiting_for_text()
                        else f"{provider.label} stream was silent for more than "
                        f"{self._socket_timeout or provider.stream_idle_timeout:g}s"
                    ),
                    broken=f"{provider.label} stream broke off: {type(exc).__name__}",
                )
            ) from None
        finally:
            self._disarm()
            self._response.close()
        if not state.finished:
            raise self._failed(
                ProviderUnavailable(
                    f"{provider.label} stream ended before the answer was complete",
                    provider=provider.name,
                )
            )
        self.completion = Completion(
            text="".join(state.text),
            provider=provider.name,
            model=state.model,
            usage=state.usage or Usage(),
            latency_ms=_ms_since(self._started),
            requests=self.requests_made,
            finish_reason=state.finish_reason,
            response_id=state.response_id,
        )

    def _failed(self, error: LLMError) -> LLMError:
        error.requests = self.requests_made
        error.partial_usage = self.state.usage or error.partial_usage
        error.partial_text = "".join(self.state.text)
        return self.provider.scrub(error)


def _socket_of(response: requests.Response) -> Any:
    """The socket under a streamed response (urllib3 2 keeps the connection on it), or None
    for a response that has none (one built by a test double)."""
    connection = getattr(response.raw, "connection", None)
    return getattr(connection, "sock", None)


def error_status(body: Mapping[str, Any], default: int) -> int:
    """The HTTP status an in-body error object carries (``error.code``: int or numeric str)."""
    err = body.get("error")
    code = err.get("code") if isinstance(err, Mapping) else None
    try:
        status = int(code)
    except (TypeError, ValueError):
        return default
    return status if 400 <= status < 600 else default
