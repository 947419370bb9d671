"""The base provider: retry policy, Retry-After and duration parsing, backoff bounds, the total
time bound, error mapping and ``error_text``, decoding, key scrubbing, usage arithmetic.

A minimal OpenAI-compatible provider that keeps the base class's default error mapping is used
where the behaviour belongs to the base, not to one service.
"""

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.utils import format_datetime

import pytest
import requests
import responses

from llm_providers.exceptions import (
    InsufficientCredits,
    InvalidRequest,
    InvalidStructuredOutput,
    ModelNotFound,
    ProviderAuthError,
    ProviderFailure,
    ProviderUnavailable,
    RateLimited,
    UpstreamTimeout,
)
from llm_providers.providers import base as base_provider
from llm_providers.providers.base import (
    RETRYABLE_STATUSES,
    add_usage,
    decimal_or_none,
    error_status,
    error_text,
    parse_duration,
    parse_retry_after,
)
from llm_providers.providers.openai_compat import OpenAICompatibleProvider, schema_name
from llm_providers.results import ChatRequest, Usage
from tests.conftest import FAKE_KEYS, OPENROUTER_URL
from tests.providers import wire

URL = f"{OPENROUTER_URL}/chat/completions"
KEY = "sk-test-0123456789abcdefSECRET"


class PlainProvider(OpenAICompatibleProvider):
    """An OpenAI-compatible provider with the base class's default error mapping."""

    name = "plain"
    label = "Plain"
    key_setting = "OPENROUTER_API_KEY"
    model_setting = "OPENROUTER_MODEL"
    base_url_setting = "OPENROUTER_BASE_URL"
    example_model = "vendor/model"

    def connection_test_call(self):
        return base_provider.HTTPCall("GET", f"{self.base_url}/models", self.auth_headers())


@pytest.fixture
def plain():
    return PlainProvider(KEY)


def ask(schema=None):
    return ChatRequest.from_prompt("Hi", model="vendor/model", json_schema=schema)


def ok(text="Hello!", prompt=9, completion=10, cost=None):
    return wire.or_completion(
        text, model="vendor/model", usage=wire.or_usage(prompt, completion, cost)
    )


def add_error(http, status, body='{"error": {"message": "nope"}}', headers=None, times=1):
    for _ in range(times):
        http.add(responses.POST, URL, body=body, status=status, headers=headers or {})


# --- Retry-After and durations --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("120", 120.0), (" 7 ", 7.0), ("1.5", 1.5), ("0", 0.0), ("-3", 0.0)],
)
def test_parse_retry_after_delta_seconds(value, seconds):
    assert parse_retry_after(value) == seconds


@pytest.mark.parametrize("value", [None, "", "   ", "soon", "nan", "inf", "-inf"])
def test_parse_retry_after_refuses_what_is_no_wait(value):
    assert parse_retry_after(value) is None


def test_parse_retry_after_http_date_in_the_future():
    when = datetime.now(UTC) + timedelta(seconds=30)
    seconds = parse_retry_after(format_datetime(when, usegmt=True))
    # IMF-fixdate has whole seconds: up to one second is lost, plus the test's own run time.
    assert 28.0 < seconds <= 30.0


def test_parse_retry_after_http_date_in_the_past_is_no_wait():
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


@pytest.mark.parametrize(
    "render",
    [
        # RFC 850 and asctime: the obsolete HTTP-date forms recipients must still accept.
        lambda d: d.strftime("%A, %d-%b-%y %H:%M:%S GMT"),
        lambda d: d.strftime("%a %b %d %H:%M:%S %Y"),
        lambda d: d.strftime("%a, %d %b %Y %H:%M:%S -0000"),
    ],
    ids=["rfc850", "asctime", "zone-0000"],
)
def test_parse_retry_after_obsolete_http_dates_are_gmt_whatever_the_local_zone(settings, render):
    # HTTP dates are always GMT; a Django project in another time zone must not shift them.
    settings.TIME_ZONE = "Asia/Tokyo"
    when = datetime.now(UTC) + timedelta(seconds=60)
    seconds = parse_retry_after(render(when))
    assert 58.0 < seconds <= 60.0


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("7s", 7.0), ("2.500s", 2.5), ("600ms", 0.6), ("0s", 0.0), (" 30s ", 30.0)],
)
def test_parse_duration(value, seconds):
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", [None, 7, "7", "7m", "s", "-1s", "1h"])
def test_parse_duration_refuses_other_shapes(value):
    assert parse_duration(value) is None


# --- Retry policy ---------------------------------------------------------------------------------


def test_retryable_statuses_are_the_specs():
    assert frozenset({408, 429, 500, 502, 503, 504}) == RETRYABLE_STATUSES


@pytest.mark.parametrize(
    ("status", "exc_class"),
    [
        (408, UpstreamTimeout),
        (429, RateLimited),
        (500, ProviderUnavailable),
        (502, ProviderUnavailable),
        (503, ProviderUnavailable),
        (504, UpstreamTimeout),
    ],
)
def test_retryable_status_is_retried_max_retries_times_then_mapped(
    http, plain, sleeps, status, exc_class
):
    add_error(http, status)
    with pytest.raises(exc_class) as caught:
        plain.complete(ask())
    assert len(http.calls) == 4  # LLM_MAX_RETRIES = 3
    assert caught.value.requests == 4
    assert caught.value.upstream_status == status
    assert caught.value.provider == "plain"
    assert len(sleeps) == 3


@pytest.mark.parametrize(
    ("status", "exc_class"),
    [
        (400, InvalidRequest),
        (401, ProviderAuthError),
        (402, InsufficientCredits),
        (403, ProviderAuthError),
        (404, ModelNotFound),
        (409, InvalidRequest),
        (413, InvalidRequest),
        (422, InvalidRequest),
    ],
)
def test_other_client_statuses_are_not_retried(http, plain, sleeps, status, exc_class):
    add_error(http, status)
    with pytest.raises(exc_class) as caught:
        plain.complete(ask())
    assert len(http.calls) == 1
    assert caught.value.requests == 1
    assert sleeps == []


def test_default_mapping_messages(http, plain):
    add_error(http, 401, body='{"error": {"message": "User not found.", "code": 401}}')
    with pytest.raises(ProviderAuthError) as caught:
        plain.complete(ask())
    assert caught.value.message == (
        "Plain rejected the key from the environment variable OPENROUTER_API_KEY "
        "(HTTP 401: User not found.)"
    )


@pytest.mark.parametrize("status", [501, 505, 520, 524, 529])
def test_other_server_statuses_are_unavailable_and_not_retried(http, plain, status):
    add_error(http, status)
    with pytest.raises(ProviderUnavailable) as caught:
        plain.complete(ask())
    assert len(http.calls) == 1
    assert caught.value.requests == 1


def test_success_after_retries_counts_every_request(http, plain, sleeps):
    add_error(http, 503, times=2)
    http.add(responses.POST, URL, body=ok())
    completion = plain.complete(ask())
    assert completion.text == "Hello!"
    assert completion.requests == 3
    assert len(http.calls) == 3
    assert sleeps == [0.0, 0.0]


def test_max_retries_setting_is_read(http, plain, settings):
    settings.LLM_MAX_RETRIES = 1
    add_error(http, 500)
    with pytest.raises(ProviderUnavailable) as caught:
        plain.complete(ask())
    assert len(http.calls) == 2
    assert caught.value.requests == 2


def test_zero_retries(http, plain, settings, sleeps):
    settings.LLM_MAX_RETRIES = 0
    add_error(http, 429)
    with pytest.raises(RateLimited):
        plain.complete(ask())
    assert len(http.calls) == 1
    assert sleeps == []


def test_connection_error_is_retried_then_unavailable(http, plain):
    http.add(
        responses.POST, URL, body=requests.exceptions.ConnectionError("Connection reset by peer")
    )
    with pytest.raises(ProviderUnavailable) as caught:
        plain.complete(ask())
    assert not isinstance(caught.value, UpstreamTimeout)
    assert caught.value.requests == 4
    assert len(http.calls) == 4
    assert caught.value.message == "Could not reach Plain: ConnectionError"


def test_timeout_is_not_retried(http, plain):
    # SPEC §5.1: a silent provider is not asked again; the router moves down the chain.
    http.add(responses.POST, URL, body=requests.exceptions.ReadTimeout("read timed out"))
    with pytest.raises(UpstreamTimeout) as caught:
        plain.complete(ask())
    assert caught.value.retryable is False
    assert caught.value.requests == 1
    assert len(http.calls) == 1
    assert caught.value.message == "Plain did not answer within 5s"


def test_connect_timeout_is_not_retried(http, plain):
    http.add(responses.POST, URL, body=requests.exceptions.ConnectTimeout("connect timed out"))
    with pytest.raises(UpstreamTimeout) as caught:
        plain.complete(ask())
    assert caught.value.retryable is False
    assert len(http.calls) == 1
    assert caught.value.message == "Plain did not accept the connection within 5s"


def test_body_read_that_times_out_is_an_upstream_timeout(http, plain):
    # requests reports a timeout while reading the body as ConnectionError(ReadTimeoutError).
    http.add(
        responses.POST,
        URL,
        body=wire.CutConnection(b'{"id": ', TimeoutError("timed out"), sse_padding=False),
    )
    with pytest.raises(UpstreamTimeout) as caught:
        plain.complete(ask())
    assert caught.value.message == "Plain did not answer within 5s"
    assert caught.value.requests == 1


def test_body_read_reset_is_unavailable(http, plain):
    http.add(
        responses.POST,
        URL,
        body=wire.CutConnection(b'{"id": ', ConnectionResetError(104, "reset"), sse_padding=False),
    )
    with pytest.raises(ProviderUnavailable) as caught:
        plain.complete(ask())
    assert not isinstance(caught.value, UpstreamTimeout)
    assert caught.value.requests == 4


def test_connection_error_then_success(http, plain):
    http.add(responses.POST, URL, body=requests.exceptions.ConnectionError("refused"))
    http.add(responses.POST, URL, body=ok("after a refused connection"))
    completion = plain.complete(ask())
    assert completion.text == "after a refused connection"
    assert completion.requests == 2


def test_request_uses_the_timeout_setting(http, settings):
    settings.LLM_TIMEOUT = 42.5
    http.add(responses.POST, URL, body=ok())
    settings.LLM_CONNECT_TIMEOUT = 3.5
    PlainProvider(KEY).complete(ask())
    assert http.calls[0].request.req_kwargs["timeout"] == (3.5, 42.5)


# --- Waits: Retry-After, backoff bounds, the total time bound -------------------------------------


def test_retry_after_header_is_the_wait(http, plain, sleeps):
    add_error(http, 429, headers={"Retry-After": "17"})
    http.add(responses.POST, URL, body=ok())
    plain.complete(ask())
    assert sleeps == [17.0]


def test_retry_after_on_503_is_honoured(http, plain, sleeps):
    # OpenRouter (and proxies) send Retry-After on 503 too.
    add_error(http, 503, headers={"Retry-After": "3"})
    http.add(responses.POST, URL, body=ok())
    plain.complete(ask())
    assert sleeps == [3.0]


def test_retry_after_http_date_is_the_wait(http, plain, sleeps):
    when = datetime.now(UTC) + timedelta(seconds=20)
    add_error(http, 429, headers={"Retry-After": format_datetime(when, usegmt=True)})
    http.add(responses.POST, URL, body=ok())
    plain.complete(ask())
    assert len(sleeps) == 1
    assert 18.0 < sleeps[0] <= 20.0


def test_rate_limited_carries_the_last_retry_after(http, plain, settings):
    settings.LLM_MAX_RETRIES = 1
    add_error(http, 429, headers={"Retry-After": "2"})
    add_error(http, 429, headers={"Retry-After": "9"})
    with pytest.raises(RateLimited) as caught:
        plain.complete(ask())
    assert caught.value.retry_after == 9.0
    assert caught.value.as_dict()["retry_after"] == 9.0


def test_backoff_grows_exponentially_up_to_the_max_delay(
    http, plain, settings, sleeps, monkeypatch
):
    settings.LLM_RETRY_BASE_DELAY = 1.0
    settings.LLM_RETRY_MAX_DELAY = 3.0
    settings.LLM_MAX_RETRIES = 4
    # The jitter picks in [base, ceiling]: take the ceiling to see the bound.
    monkeypatch.setattr(random, "uniform", lambda low, high: high)
    add_error(http, 500)
    with pytest.raises(ProviderUnavailable):
        plain.complete(ask())
    assert sleeps == [1.0, 2.0, 3.0, 3.0]


def test_backoff_never_waits_less_than_the_base_delay(http, plain, settings, sleeps, monkeypatch):
    settings.LLM_RETRY_BASE_DELAY = 0.5
    settings.LLM_RETRY_MAX_DELAY = 30.0
    monkeypatch.setattr(random, "uniform", lambda low, high: low)
    add_error(http, 502)
    with pytest.raises(ProviderUnavailable):
        plain.complete(ask())
    assert sleeps == [0.5, 0.5, 0.5]


def test_backoff_with_jitter_stays_within_the_bounds(http, plain, settings, sleeps):
    settings.LLM_RETRY_BASE_DELAY = 1.0
    settings.LLM_RETRY_MAX_DELAY = 4.0
    settings.LLM_MAX_RETRIES = 6
    add_error(http, 503)
    with pytest.raises(ProviderUnavailable):
        plain.complete(ask())
    ceilings = [1.0, 2.0, 4.0, 4.0, 4.0, 4.0]
    assert len(sleeps) == 6
    assert all(1.0 <= wait <= ceiling for wait, ceiling in zip(sleeps, ceilings, strict=True))


def test_retry_after_beyond_the_max_delay_still_wins(http, plain, settings, sleeps):
    settings.LLM_RETRY_BASE_DELAY = 1.0
    settings.LLM_RETRY_MAX_DELAY = 2.0
    add_error(http, 429, headers={"Retry-After": "25"})
    http.add(responses.POST, URL, body=ok())
    plain.complete(ask())
    assert sleeps == [25.0]


def test_backoff_wins_over_a_shorter_retry_after(http, plain, settings, sleeps, monkeypatch):
    settings.LLM_RETRY_BASE_DELAY = 4.0
    settings.LLM_RETRY_MAX_DELAY = 8.0
    monkeypatch.setattr(random, "uniform", lambda low, high: low)
    add_error(http, 429, headers={"Retry-After": "1"})
    http.add(responses.POST, URL, body=ok())
    plain.complete(ask())
    assert sleeps == [4.0]


def test_retry_after_beyond_the_total_timeout_stops_at_once(http, plain, settings, sleeps):
    settings.LLM_RETRY_TOTAL_TIMEOUT = 60.0
    add_error(http, 429, headers={"Retry-After": "3600"})
    with pytest.raises(RateLimited) as caught:
        plain.complete(ask())
    assert len(http.calls) == 1
    assert caught.value.requests == 1
    assert caught.value.retry_after == 3600.0
    assert sleeps == []


def test_total_timeout_counts_the_waits_already_made(http, plain, settings, sleeps, clock):
    settings.LLM_RETRY_TOTAL_TIMEOUT = 100.0
    add_error(http, 429, headers={"Retry-After": "40"})
    with pytest.raises(RateLimited) as caught:
        plain.complete(ask())
    # 0+40 < 100 and 40+40 < 100 wait; 80+40 would cross the bound: no third wait.
    assert sleeps == [40.0, 40.0]
    assert caught.value.requests == 3
    assert len(http.calls) == 3


def test_total_timeout_lets_retries_run_when_there_is_time(http, plain, settings, sleeps, clock):
    settings.LLM_RETRY_TOTAL_TIMEOUT = 100.0
    add_error(http, 503, headers={"Retry-After": "10"})
    with pytest.raises(ProviderUnavailable) as caught:
        plain.complete(ask())
    assert sleeps == [10.0, 10.0, 10.0]
    assert caught.value.requests == 4


# --- Bodies ---------------------------------------------------------------------------------------


def test_non_json_200_body_is_unavailable_and_not_retried(http, plain, sleeps):
    http.add(responses.POST, URL, body="<html><body>Bad gateway</body></html>", status=200)
    with pytest.raises(ProviderUnavailable) as caught:
        plain.complete(ask())
    assert len(http.calls) == 1
    assert caught.value.requests == 1
    assert caught.value.message == "Plain sent a body that is not JSON (HTTP 200)"
    assert sleeps == []


@pytest.mark.parametrize(
    "body", ["[]", "null", '"text"', '{"choices": []}', '{"choices": [null]}', '{"id": 1}']
)
def test_json_200_body_of_the_wrong_shape_is_unavailable(http, plain, body):
    http.add(responses.POST, URL, body=body)
    with pytest.raises(ProviderUnavailable) as caught:
        plain.complete(ask())
    assert caught.value.message == "Plain sent an answer in an unexpected shape"
    assert caught.value.requests == 1
    assert len(http.calls) == 1


def test_non_json_error_body_keeps_the_text(http, plain):
    add_error(http, 502, body="<html><h1>502 Bad Gateway</h1></html>")
    with pytest.raises(ProviderUnavailable) as caught:
        plain.complete(ask())
    assert caught.value.message == (
        "Plain answered HTTP 502: <html><h1>502 Bad Gateway</h1></html>"
    )


def test_costs_are_decoded_as_exact_decimals(http, plain):
    http.add(responses.POST, URL, body=ok(cost=Decimal("0.00000735")))
    response, _ = plain.send(plain.build_call(ask(), stream=False))
    body = plain.decode(response)
    assert body["usage"]["cost"] == Decimal("0.00000735")
    assert isinstance(body["usage"]["cost"], Decimal)


# --- The key never leaks --------------------------------------------------------------------------


def test_an_echoed_key_is_scrubbed_from_error_messages(http, plain):
    add_error(http, 401, body=f'{{"error": "Invalid key {KEY} for this account"}}')
    with pytest.raises(ProviderAuthError) as caught:
        plain.complete(ask())
    assert KEY not in str(caught.value)
    assert KEY not in repr(caught.value.args)
    assert "Invalid key [key] for this account" in caught.value.message


def test_an_echoed_key_is_scrubbed_from_a_text_error_body(http, plain):
    add_error(http, 500, body=f"upstream failed for Authorization: Bearer {KEY}")
    with pytest.raises(ProviderUnavailable) as caught:
        plain.complete(ask())
    assert KEY not in caught.value.message
    assert "Bearer [key]" in caught.value.message


def test_an_echoed_key_is_scrubbed_before_a_long_text_body_is_cut(http, plain):
    # error_text keeps 500 characters: the cut must not leave a piece of the key behind.
    add_error(http, 500, body="x" * 480 + KEY + " and more")
    with pytest.raises(ProviderUnavailable) as caught:
        plain.complete(ask())
    assert KEY[:12] not in caught.value.message
    assert caught.value.message.endswith("x[key] and more")


def test_an_echoed_key_is_scrubbed_from_a_200_error(http, plain):
    http.add(responses.POST, URL, body=f'{{"error": {{"code": 401, "message": "bad key {KEY}"}}}}')
    with pytest.raises(ProviderAuthError) as caught:
        plain.complete(ask())
    assert KEY not in caught.value.message


def test_repr_of_a_provider_hides_the_key(plain):
    assert KEY not in repr(plain)
    assert repr(plain) == "<PlainProvider key from the environment variable OPENROUTER_API_KEY>"


def test_a_provider_needs_a_key():
    with pytest.raises(ValueError, match="needs a key"):
        PlainProvider("")


def test_key_source_defaults_to_the_environment_variable():
    assert PlainProvider(KEY).key_source == "the environment variable OPENROUTER_API_KEY"
    assert PlainProvider(KEY, key_source="the admin key manager").key_source == (
        "the admin key manager"
    )


# --- Structured output (shared by the OpenAI-compatible providers) --------------------------------

SCHEMA = {
    "type": "object",
    "properties": {"title": {"type": "string"}},
    "required": ["title"],
}


def test_structured_retry_failing_upstream_keeps_the_first_calls_usage(http, plain, settings):
    settings.LLM_MAX_RETRIES = 1
    http.add(responses.POST, URL, body=ok("not json", prompt=30, completion=5))
    add_error(http, 503, times=2)
    with pytest.raises(ProviderUnavailable) as caught:
        plain.complete(ask(SCHEMA))
    # 1 (invalid answer) + 2 (the JSON retry, itself retried once)
    assert caught.value.requests == 3
    assert len(http.calls) == 3
    assert caught.value.partial_usage == Usage(30, 5, 35)


def test_structured_second_slip_reports_both_calls(http, plain):
    http.add(responses.POST, URL, body=ok("nope", prompt=10, completion=2))
    http.add(responses.POST, URL, body=ok('{"x": 1}', prompt=11, completion=3))
    with pytest.raises(InvalidStructuredOutput) as caught:
        plain.complete(ask(SCHEMA))
    assert caught.value.raw_text == '{"x": 1}'
    assert caught.value.requests == 2
    assert caught.value.partial_usage == Usage(21, 5, 26)
    assert "after one retry" in caught.value.message
    assert "'title' is a required property" in caught.value.message


# --- test_connection ------------------------------------------------------------------------------


def test_test_connection_is_not_retried(http, plain, sleeps):
    http.add(responses.GET, f"{OPENROUTER_URL}/models", status=503, json={"error": "down"})
    with pytest.raises(ProviderUnavailable) as caught:
        plain.test_connection()
    assert len(http.calls) == 1
    assert caught.value.requests == 1
    assert sleeps == []


def test_test_connection_success_message(http, plain):
    http.add(responses.GET, f"{OPENROUTER_URL}/models", json={"data": []})
    assert plain.test_connection().startswith("Plain accepted the key (")


# --- Helpers --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "text"),
    [
        ({"error": {"message": "m", "code": 400}}, "m"),
        ({"error": {"code": 400, "message": "m", "status": "INVALID_ARGUMENT"}}, "m"),
        (
            {"error": "Invalid credentials in Authorization header"},
            "Invalid credentials in Authorization header",
        ),
        ({"error": ["first", "second"]}, "first; second"),
        ({"errors": [{"message": "a"}, {"message": "b"}]}, "a; b"),
        ({"errors": ["a", {"x": 1}]}, "a; {'x': 1}"),
        ({"error": {"error": "nested"}}, "nested"),
        ({"error": {"code": 500}}, '{"code": 500}'),
        ({"message": "top-level"}, "top-level"),
        ({"detail": "Not found."}, "Not found."),
        ({}, "no error message"),
        ({"error": None, "message": "m2"}, "m2"),
        ("  Bad Gateway\n", "Bad Gateway"),
        ("", "no error message"),
        (None, "no error message"),
        ([{"error": {"message": "in a list"}}], "no error message"),
    ],
)
def test_error_text_shapes(body, text):
    assert error_text(body) == text


def test_error_text_cuts_long_text_bodies():
    assert error_text("x" * 2000) == "x" * 500


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"error": {"code": 429}}, 429),
        ({"error": {"code": "503"}}, 503),
        ({"error": {"code": "server_error"}}, 502),
        ({"error": {"code": 200}}, 502),
        ({"error": {"code": None}}, 502),
        ({"error": "text"}, 502),
        ({}, 502),
    ],
)
def test_error_status(body, status):
    assert error_status(body, 502) == status


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Decimal("0.00000735"), Decimal("0.00000735")),
        ("0.001", Decimal("0.001")),
        (0, Decimal(0)),
        (None, None),
        (True, None),
        ("n/a", None),
    ],
)
def test_decimal_or_none(value, expected):
    assert decimal_or_none(value) == expected


def test_add_usage_sums_tokens_and_costs():
    a = Usage(1, 2, 3, Decimal("0.1"))
    b = Usage(10, 20, 30, Decimal("0.25"))
    assert add_usage(a, b) == Usage(11, 22, 33, Decimal("0.35"))
    assert add_usage(a, Usage(1, 1, 2)) == Usage(2, 3, 5, None)


@pytest.mark.parametrize(
    ("schema", "name"),
    [
        ({"title": "Paper Analysis"}, "Paper_Analysis"),
        ({"title": "weather"}, "weather"),
        ({"title": "  ***  "}, "response"),
        ({}, "response"),
        ({"title": "x" * 80}, "x" * 64),
    ],
)
def test_schema_name(schema, name):
    assert schema_name(schema) == name


def test_errors_are_provider_failures_or_not():
    # The router falls back on the first family only.
    assert issubclass(RateLimited, ProviderFailure)
    assert issubclass(UpstreamTimeout, ProviderFailure)
    assert issubclass(InsufficientCredits, ProviderAuthError)
    assert not issubclass(ModelNotFound, ProviderFailure)
    assert not issubclass(InvalidStructuredOutput, ProviderFailure)


def test_fake_keys_are_not_the_plain_key():
    # Guard: the scrub tests above use a key no fixture shares.
    assert KEY not in FAKE_KEYS.values()
