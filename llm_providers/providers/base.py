"""What every provider shares: the HTTP session, retries, error mapping, streaming, JSON output.

A provider module subclasses ``Provider`` (or ``OpenAICompatibleProvider``) and says only what is
different about its service: how to build the request, how to read the answer, how to read its
errors. See "Adding a provider" in the README for the checklist.

A provider is pure HTTP: it never touches the database. It is built per call with the key the
router resolved, and the key appears nowhere but in the request's auth header.
"""

from __future__ import annotations

import functools
import json
import math
import random
import re
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, timedelta
from decimal import Decimal
from email.utils import parsedate_to_datetime
from http.cookiejar import DefaultCookiePolicy
from typing import Any, ClassVar

import requests
from requests.adapters import HTTPAdapter
from requests.cookies import RequestsCookieJar
from requests.utils import get_auth_from_url, resolve_proxies
from urllib3.connectionpool import HTTPConnectionPool
from urllib3.exceptions import ReadTimeoutError

from ..conf import llm_settings
from ..exceptions import (
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
from ..structured import SchemaMismatch, parse_reply
from .sse import iter_sse_data

# SPEC §5: what is retried. 400/401/403/404 never are.
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})

# The retry loop's clock and the sleep between its attempts; tests replace them to record the
# waits instead of waiting.
clock = time.monotonic
sleep = time.sleep


@dataclass(frozen=True)
class HTTPCall:
    """One upstream request as a provider builds it; the base class sends it."""

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    json: Any = None
    params: Mapping[str, str] | None = None


@dataclass
class StreamState:
    """What a stream has told so far; the provider's ``read_stream_event`` updates it."""

    model: str
    text: list[str] = field(default_factory=list)
    usage: Usage | None = None
    finish_reason: str | None = None
    response_id: str | None = None
    finished: bool = False  # saw the provider's end marker ([DONE] or a finish reason)


# --- HTTP session ---------------------------------------------------------------------------------

_session_lock = threading.Lock()
_session: requests.Session | None = None


class UpstreamAdapter(HTTPAdapter):
    """requests' adapter, less parsing the same URL again for every request to an upstream.

    Without a proxy, ``send`` works out the connection pool and the request target from the URL
    anew for each request, to the same answer for every call to one endpoint; here that answer
    is kept per URL. ``send`` itself stays requests' own, so ``responses`` (which patches
    ``HTTPAdapter.send``) still intercepts every request in the tests.
    """

    def get_connection_with_tls_context(
        self,
        request: requests.PreparedRequest,
        verify: bool | str | None,
        proxies: dict[str, str] | None = None,
        cert: str | tuple[str, str] | None = None,
    ) -> HTTPConnectionPool:
        if proxies or verify is not True or cert is not None:
            return super().get_connection_with_tls_context(request, verify, proxies, cert)
        try:
            host_params, pool_kwargs = _pool_key_attributes(self, request.url)
        except ValueError:
            # A URL urllib3 cannot place (a bad port): requests raises the error it always has.
            return super().get_connection_with_tls_context(request, verify, proxies, cert)
        # A copy: urllib3 only reads it today, and the cached one must stay as it is.
        return self.poolmanager.connection_from_host(**host_params, pool_kwargs=dict(pool_kwargs))

    def request_url(self, request: requests.PreparedRequest, proxies: dict[str, str] | None) -> str:
        if proxies:
            return super().request_url(request, proxies)
        return _path_url(request.url)


# The answers worked out once per URL (here and in _prepared_url) are kept in bounded caches: an
# upstream has few endpoints (one per model), and the bound stops odd model names growing them.
@functools.lru_cache(maxsize=256)
def _pool_key_attributes(adapter: HTTPAdapter, url: str) -> tuple[dict, dict]:
    """The pool key of ``url`` (scheme, host, port; TLS settings) with verify=True, no cert."""
    return adapter.build_connection_pool_key_attributes(_bare_request(url), True, None)


@functools.lru_cache(maxsize=256)
def _path_url(url: str) -> str:
    """The request target of ``url`` (path and query) as requests sends it without a proxy."""
    return _bare_request(url).path_url


def _bare_request(url: str) -> requests.PreparedRequest:
    request = requests.PreparedRequest()
    request.url = url
    return request


def http_session() -> requests.Session:
    """The process's pooled session: one TLS handshake per upstream host, not per call."""
    global _session
    if _session is None:
        with _session_lock:
            if _session is None:
                session = requests.Session()
                pool = int(llm_settings.LLM_HTTP_POOL_SIZE)
                adapter = UpstreamAdapter(pool_connections=8, pool_maxsize=pool, max_retries=0)
                session.mount("https://", adapter)
                session.mount("http://", adapter)
                # Requests of all users share this session: keep no cookies between them.
                session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
                # Settings are the only proxy configuration; HTTP(S)_PROXY is not consulted.
                session.trust_env = False
                _session = session
    return _session


def prepare_request(session: requests.Session, call: HTTPCall) -> requests.PreparedRequest:
    """The request ``PreparedRequest.prepare`` builds for ``call``, identical on the wire.

    What ``prepare`` would do anew for every call is done once per URL (the URL's normalizing
    and the search for credentials in it), or skipped where it cannot add anything: no cookies
    are sent (the call has none), no hooks are registered. The session's headers come first, the
    call's win.
    """
    prepared = requests.PreparedRequest()
    prepared.prepare_method(call.method)
    params = tuple(call.params.items()) if call.params else ()
    if all(isinstance(part, str) for pair in params for part in pair):
        prepared.url, url_has_auth = _prepared_url(call.url, params)
    else:
        # Not a cache key: 1, 1.0 and True are equal keys but not the same text in a URL.
        prepared.prepare_url(call.url, call.params)
        url_has_auth = any(get_auth_from_url(prepared.url))
    prepared.prepare_headers({**session.headers, **call.headers})
    # prepare_cookies(None) would make this empty jar and add no Cookie header from it. The jar
    # is still needed: a redirect collects the response's cookies into it.
    prepared._cookies = RequestsCookieJar()
    prepared.prepare_body(None, None, call.json)
    if url_has_auth:  # user:password@host becomes Basic auth, as prepare() does
        prepared.prepare_auth(None, prepared.url)
    return prepared


@functools.lru_cache(maxsize=256)
def _prepared_url(url: str, params: tuple[tuple[str, str], ...]) -> tuple[str, bool]:
    """``url`` with ``params`` as ``prepare_url`` makes it, and whether it carries credentials.

    An invalid URL raises, as ``prepare_url`` does, each time (exceptions are not cached).
    """
    request = requests.PreparedRequest()
    request.prepare_url(url, dict(params))
    return request.url, any(get_auth_from_url(request.url))


def transmit(
    session: requests.Session, prepared: requests.PreparedRequest, *, timeout: float, stream: bool
) -> requests.Response:
    """``session.send(prepared, timeout=..., stream=...)``, less what this session never needs.

    Skipped: response hooks (none are registered), and keeping the response's cookies in the
    session's jar (its policy refuses them all). Redirects are followed by requests' own code,
    as ``send`` does; the adapter gets the same arguments.
    """
    kwargs: dict[str, Any] = {
        "timeout": timeout,
        "stream": stream,
        "verify": session.verify,
        "cert": session.cert,
        # What resolve_proxies() gives when the environment is not consulted: the session's
        # own proxies (none), without parsing the URL again.
        "proxies": (
            resolve_proxies(prepared, session.proxies, session.trust_env)
            if session.trust_env
            else dict(session.proxies)
        ),
    }
    adapter = session.get_adapter(url=prepared.url)
    started = time.perf_counter()
    response = adapter.send(prepared, **kwargs)
    response.elapsed = timedelta(seconds=time.perf_counter() - started)
    if response.is_redirect:
        history = list(session.resolve_redirects(response, prepared, **kwargs))
        if history:
            history.insert(0, response)
            response = history.pop()
            response.history = history
    if not stream:
        response.content  # noqa: B018  (reads the body now, as send does)
    return response


# --- Retries -------------------------------------------------------------------------------------


def backoff_delay(attempt: int, error: LLMError, base: float, maximum: float) -> float:
    """The wait after failed attempt number ``attempt`` (1, 2, …): exponential backoff with
    jitter between the base and maximum delays, stretched to the error's Retry-After."""
    ceiling = min(max(maximum, base), base * 2 ** (attempt - 1))
    delay = random.uniform(base, ceiling)
    hint = getattr(error, "retry_after", None)
    # The server's own hint wins over our guess; the total bound still applies.
    return max(delay, hint) if hint else delay


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

    def __init__(self, api_key: str, *, key_source: str | None = None):
        if not api_key:
            raise ValueError("A provider needs a key; resolve one with llm_providers.keys.")
        self._api_key = api_key
        self.key_source = key_source or f"the environment variable {self.key_setting}"
        self.base_url = str(getattr(llm_settings, self.base_url_setting)).rstrip("/")
        self.timeout = float(llm_settings.LLM_TIMEOUT)

    def __repr__(self) -> str:  # never the key
        return f"<{type(self).__name__} key from {self.key_source}>"

    @classmethod
    def default_model(cls) -> str:
        return str(getattr(llm_settings, cls.model_setting))

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
        """Read one SSE ``data`` payload; update ``state``; return the text delta, if any."""
        raise NotImplementedError

    def read_error(self, status: int, body: Any, headers: Mapping[str, str]) -> LLMError:
        """Map an HTTP error (or an error object inside a 200/stream) to an exception."""
        return self.error_for_status(status, error_text(body), headers=headers)

    def connection_test_call(self) -> HTTPCall:
        """The cheapest authenticated request, for the admin's "test connection"."""
        raise NotImplementedError

    # --- public operations -------------------------------------------------------------------

    def complete(self, request: ChatRequest) -> Completion:
        """Generate a completion; with a JSON schema, parse and validate it (one retry)."""
        started = time.monotonic()
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
        started = time.monotonic()
        response, requests_made = self.send(self.build_call(request, stream=True), stream=True)
        return ProviderStream(self, response, requests_made, request.model, started)

    def test_connection(self) -> str:
        """Check the key with the provider's cheapest endpoint; raise the mapped error if not."""
        started = time.monotonic()
        response, _ = self.send(self.connection_test_call(), max_retries=0)
        response.close()
        return f"{self.label} accepted the key ({_ms_since(started)} ms)."

    # --- HTTP ----------------------------------------------------------------------------------

    def send(
        self, call: HTTPCall, *, stream: bool = False, max_retries: int | None = None
    ) -> tuple[requests.Response, int]:
        """Send ``call`` with retries (SPEC §5); return the 2xx response and requests made.

        A retryable failure is tried again after ``backoff_delay``, unless it was the last
        attempt allowed or the wait would end ``LLM_RETRY_TOTAL_TIMEOUT`` or more after the first
        attempt began. Raises the mapped LLMError, with ``requests`` set, once retries are
        exhausted. (A plain loop rather than tenacity, whose policy objects, built and run for
        every call, took about 7% of the CPU of a successful call.)
        """
        retries = int(llm_settings.LLM_MAX_RETRIES) if max_retries is None else max_retries
        total = float(llm_settings.LLM_RETRY_TOTAL_TIMEOUT)
        base = float(llm_settings.LLM_RETRY_BASE_DELAY)
        maximum = float(llm_settings.LLM_RETRY_MAX_DELAY)
        started = clock()
        made = 0
        while True:
            made += 1
            try:
                return self._send_once(call, stream=stream), made
            except LLMError as exc:
                exc.requests = made
                if not exc.retryable:
                    raise
                elapsed = clock() - started
                # The wait is drawn first, as the total bound counts it; so also after the last
                # attempt allowed, as the tenacity-based loop did (the same jitter sequence).
                delay = backoff_delay(made, exc, base, maximum)
                if made > retries or elapsed + delay >= total:
                    raise
            sleep(delay)

    def _send_once(self, call: HTTPCall, *, stream: bool) -> requests.Response:
        session = http_session()
        try:
            # What Session.request() does, less the merging of per-call cookies, auth, hooks,
            # proxies and environment settings that this session never has, and less the
            # per-request work whose answer does not change (see prepare_request, transmit).
            prepared = prepare_request(session, call)
            response = transmit(session, prepared, timeout=self.timeout, stream=stream)
        except requests.exceptions.RequestException as exc:
            raise self._retryable(
                network_error(
                    self,
                    exc,
                    timed_out=f"{self.label} did not answer within {self.timeout:g}s",
                    broken=f"Could not reach {self.label}: {type(exc).__name__}",
                )
            ) from None
        if response.status_code < 400:
            return response
        try:
            body = self.decode(response)
        except ProviderUnavailable:
            # Scrubbed before error_text cuts it to length, which could leave part of an echoed key.
            body = response.text.replace(self._api_key, "[key]") if not stream else None
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
        self, status: int, message: str, *, headers: Mapping[str, str] | None = None
    ) -> LLMError:
        """The default mapping of an HTTP status to the hierarchy; providers refine it."""
        detail = f"{self.label} answered HTTP {status}: {message}"
        if status == 429:
            retry_after = parse_retry_after((headers or {}).get("Retry-After"))
            return RateLimited(detail, retry_after=retry_after, provider=self.name)
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
            return ModelNotFound(f"Model not found: {detail}", provider=self.name)
        if status in (408, 504):
            return UpstreamTimeout(detail, provider=self.name)
        if 400 <= status < 500:
            return InvalidRequest(detail, provider=self.name)
        return ProviderUnavailable(detail, provider=self.name)

    def scrub(self, error: LLMError) -> LLMError:
        """Remove the key from an error's message, wherever an upstream may have echoed it."""
        if self._api_key in error.message:
            error.message = error.message.replace(self._api_key, "[key]")
            error.args = (error.message,)
        return error

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._api_key}"}

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
        except SchemaMismatch:
            pass
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
    if _timed_out(exc):
        return UpstreamTimeout(timed_out, provider=provider.name)
    return ProviderUnavailable(broken, provider=provider.name)


def _timed_out(exc: BaseException) -> bool:
    """Whether a requests error is a timeout.

    A read that times out while the body is read (every read of a stream, and the body of a
    non-streamed answer) reaches us as ``ConnectionError(ReadTimeoutError)``, not as ``Timeout``.
    """
    return isinstance(exc, requests.exceptions.Timeout) or any(
        isinstance(arg, ReadTimeoutError) for arg in exc.args
    )


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


class ProviderStream:
    """An open upstream stream: iterate it for ``TextDelta``; then read ``.completion``.

    ``state`` says what has arrived so far, so a stream the caller abandons can still be
    accounted; ``drain()`` reads the rest without yielding, to learn the final usage.
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

    def _read(self) -> Iterator[TextDelta]:
        provider, state = self.provider, self.state
        try:
            for data in iter_sse_data(self._response.iter_lines()):
                try:
                    delta = provider.read_stream_event(data, state)
                except (KeyError, IndexError, TypeError, AttributeError, ValueError):
                    # JSON of a shape the provider does not send: a fault, not a crash.
                    raise ProviderUnavailable(
                        f"{provider.label} sent a stream event in an unexpected shape",
                        provider=provider.name,
                    ) from None
                if delta:
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
                        f"{provider.label} stream stalled for more than {provider.timeout:g}s"
                    ),
                    broken=f"{provider.label} stream broke off: {type(exc).__name__}",
                )
            ) from None
        finally:
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
        error.partial_usage = self.state.usage
        error.partial_text = "".join(self.state.text)
        return self.provider.scrub(error)


def error_status(body: Mapping[str, Any], default: int) -> int:
    """The HTTP status an in-body error object carries (``error.code``: int or numeric str)."""
    err = body.get("error")
    code = err.get("code") if isinstance(err, Mapping) else None
    try:
        status = int(code)
    except (TypeError, ValueError):
        return default
    return status if 400 <= status < 600 else default
