"""``/metrics`` (SPEC §14) with the in-process registry: known traffic through the test client
(upstreams mocked with ``responses``) moves each metric by exactly what it should; a scrape is
allowed from loopback without a proxy's headers and to staff, refused to anyone else; a stream
stays in flight until it ends or is closed; the circuits are read at scrape time.

Counters are process-wide and never reset, so every check is a difference: the value after
the traffic minus the value before (``Samples``).
"""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from django.db.models import Sum
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from llm_providers import circuits, metrics
from llm_providers.models import LedgerEntry
from tests.api.test_stream import hang_up_test_client
from tests.providers.wire import (
    OPENROUTER_CHAT,
    OR_ERRORS,
    SSE,
    gemini_generate_url,
    gemini_response,
    gemini_status_error,
    gemini_stream,
    gemini_stream_url,
    or_completion,
    or_error,
)

pytestmark = pytest.mark.django_db

GENERATE = "/api/llm/generate/"
CHAT = "/api/llm/v1/chat/completions"
METRICS = "/metrics"
GEMINI = gemini_generate_url()


# --- Helpers ------------------------------------------------------------------------------------


def value(name: str, **labels: str) -> float:
    """A sample of the process's registry (0 for a series that does not exist yet)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Samples:
    """``Samples()`` remembers the values; ``.delta(name, **labels)`` is what they moved by."""

    def __init__(self):
        self.before = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in REGISTRY.collect()
            if family.name.startswith("llm_")
            for s in family.samples
        }

    def delta(self, name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return value(name, **labels) - self.before.get(key, 0.0)


def scrape(client, **extra) -> dict[str, dict[tuple, float]]:
    """``GET /metrics`` parsed as Prometheus does: {sample name: {sorted labels: value}}."""
    response = client.get(METRICS, **extra)
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    parsed: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for s in family.samples:
            parsed.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return parsed


def generate(client, **body):
    return client.post(GENERATE, body, format="json")


def chat(client, model: str, **extra):
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}
    return client.post(CHAT, body, format="json")


# --- Fixtures -----------------------------------------------------------------------------------


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user("metered")


@pytest.fixture
def token(user) -> str:
    return Token.objects.create(user=user).key


@pytest.fixture
def api(token) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


@pytest.fixture
def bearer_api(token) -> APIClient:
    """The same user, as the ``openai`` SDK authenticates on ``v1/``."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user("watcher", is_staff=True)


REMOTE = {"REMOTE_ADDR": "203.0.113.7"}


# --- Requests, attempts, tokens and cost --------------------------------------------------------


def test_known_traffic_moves_each_counter_by_exactly_its_amount(api, bearer_api, use_keys, http):
    """Two generations on Gemini, one chat completion on OpenRouter, one refused request."""
    use_keys("gemini", "openrouter")
    http.post(GEMINI, body=gemini_response("Red."))
    http.post(OPENROUTER_CHAT, body=or_completion("Hello."))
    before = Samples()

    assert generate(api, prompt="one").status_code == 200
    assert generate(api, prompt="two").status_code == 200
    assert chat(bearer_api, "openai/gpt-4o-mini").status_code == 200
    assert generate(api, prompt="").status_code == 400  # refused: no upstream call
    assert api.get("/api/llm/usage/").status_code == 200

    requests = "llm_api_requests_total"
    assert before.delta(requests, endpoint="generate", method="POST", status="200") == 2
    assert before.delta(requests, endpoint="generate", method="POST", status="400") == 1
    assert before.delta(requests, endpoint="chat-completions", method="POST", status="200") == 1
    assert before.delta(requests, endpoint="usage", method="GET", status="200") == 1

    attempts = "llm_upstream_attempts_total"
    assert (
        before.delta(attempts, provider="gemini", model="gemini-2.5-flash", outcome="success") == 2
    )
    assert (
        before.delta(attempts, provider="openrouter", model="openai/gpt-4o-mini", outcome="success")
        == 1
    )
    duration = "llm_upstream_attempt_duration_seconds_count"
    assert (
        before.delta(duration, provider="gemini", model="gemini-2.5-flash", outcome="success") == 2
    )
    assert (
        before.delta(duration, provider="openrouter", model="openai/gpt-4o-mini", outcome="success")
        == 1
    )

    # Tokens and cost are the ledger's, provider by provider.
    for provider in ("gemini", "openrouter"):
        rows = LedgerEntry.objects.filter(provider=provider)
        sums = rows.aggregate(p=Sum("prompt_tokens"), c=Sum("completion_tokens"), cost=Sum("cost"))
        assert sums["p"] > 0 and sums["c"] > 0 and sums["cost"] > 0
        assert before.delta("llm_tokens_total", provider=provider, type="prompt") == sums["p"]
        assert before.delta("llm_tokens_total", provider=provider, type="completion") == sums["c"]
        cost = before.delta("llm_cost_usd_total", provider=provider)
        assert cost == pytest.approx(float(sums["cost"]), rel=1e-9)

    for endpoint in ("generate", "chat-completions", "usage"):
        assert value("llm_api_requests_in_flight", endpoint=endpoint) == 0


def test_a_failed_attempt_is_counted_with_its_outcome(api, use_keys, http):
    """Gemini fails (503 after its retries), OpenRouter answers: one attempt of each, the
    failed one under the ledger's error code; the request itself is a 200."""
    use_keys("gemini", "openrouter")
    http.post(GEMINI, status=503, body=gemini_status_error(503))
    http.post(OPENROUTER_CHAT, body=or_completion("Hello."))
    before = Samples()

    assert generate(api, prompt="hello").status_code == 200

    failed = LedgerEntry.objects.get(provider="gemini")
    assert failed.status == "error" and failed.error_code == "provider_error"
    attempts = "llm_upstream_attempts_total"
    assert (
        before.delta(
            attempts, provider="gemini", model="gemini-2.5-flash", outcome="provider_error"
        )
        == 1
    )
    # The model that answered, as OpenRouter names it (its default was asked for).
    assert (
        before.delta(attempts, provider="openrouter", model="openai/gpt-4o-mini", outcome="success")
        == 1
    )
    duration = "llm_upstream_attempt_duration_seconds_count"
    assert (
        before.delta(
            duration, provider="gemini", model="gemini-2.5-flash", outcome="provider_error"
        )
        == 1
    )
    request = "llm_api_requests_total"
    assert before.delta(request, endpoint="generate", method="POST", status="200") == 1


def test_a_request_no_provider_answers_is_counted_with_its_error_status(api, use_keys, http):
    use_keys("openrouter")
    http.post(OPENROUTER_CHAT, status=401, body=or_error(401, OR_ERRORS[401]))
    before = Samples()

    assert generate(api, prompt="hello").status_code == 502

    requests = "llm_api_requests_total"
    assert before.delta(requests, endpoint="generate", method="POST", status="502") == 1
    assert (
        before.delta(
            "llm_upstream_attempts_total",
            provider="openrouter",
            model="openai/gpt-4-turbo",
            outcome="provider_error",
        )
        == 1
    )
    assert value("llm_api_requests_in_flight", endpoint="generate") == 0


def test_a_model_the_upstream_does_not_know_is_not_a_label(api, use_keys, http):
    """A caller may type any model id: one the upstream refuses is counted as ``other``."""
    use_keys("openrouter")
    http.post(OPENROUTER_CHAT, status=400, body=or_error(400, OR_ERRORS[400]))
    before = Samples()

    assert generate(api, prompt="hi", model="acme/fake-1.0").status_code == 404

    assert (
        before.delta(
            "llm_upstream_attempts_total",
            provider="openrouter",
            model="other",
            outcome="model_not_found",
        )
        == 1
    )
    assert (
        value(
            "llm_upstream_attempts_total",
            provider="openrouter",
            model="acme/fake-1.0",
            outcome="model_not_found",
        )
        == 0
    )


def test_an_attempt_the_ledger_could_not_record_is_counted_without_a_cost(
    api, use_keys, http, settings, monkeypatch, caplog
):
    """The database refuses the attempt's row (logged, the call still answered): the metrics
    count the attempt and its tokens, and no cost, since nothing priced it."""
    from llm_providers.accounting import ledger

    def database_gone(*args, **kwargs):
        raise RuntimeError("database is gone")

    settings.LLM_STRICT_ACCOUNTING = False
    monkeypatch.setattr(ledger, "finish_attempt", database_gone)
    use_keys("gemini")
    http.post(GEMINI, body=gemini_response("Red."))
    before = Samples()

    assert generate(api, prompt="one").status_code == 200

    assert "Could not record LLM usage" in caplog.text
    assert (
        before.delta(
            "llm_upstream_attempts_total",
            provider="gemini",
            model="gemini-2.5-flash",
            outcome="success",
        )
        == 1
    )
    assert before.delta("llm_tokens_total", provider="gemini", type="prompt") > 0
    assert before.delta("llm_cost_usd_total", provider="gemini") == 0


def test_model_labels_are_bounded_per_process(monkeypatch):
    monkeypatch.setattr(metrics, "_model_labels", {"seen-1", "seen-2"})
    monkeypatch.setattr(metrics, "MODEL_LABELS_LIMIT", 2)
    assert metrics._model_label("seen-1", "success") == "seen-1"
    assert metrics._model_label("new-model", "success") == "other"
    assert metrics._model_label("", "provider_error") == "other"
    # The counter and the latency histogram take the same bounded label.
    before = Samples()
    metrics.record_attempt("acme", "yet-another", "success", 0.2, 1, 1, Decimal("0"))
    assert (
        before.delta(
            "llm_upstream_attempts_total", provider="acme", model="other", outcome="success"
        )
        == 1
    )
    duration = "llm_upstream_attempt_duration_seconds_count"
    assert before.delta(duration, provider="acme", model="other", outcome="success") == 1
    assert value(duration, provider="acme", model="yet-another", outcome="success") == 0


def test_an_unknown_method_is_counted_as_other(api):
    before = Samples()
    response = api.generic("BREW", "/api/llm/usage/")
    assert response.status_code == 405
    assert before.delta("llm_api_requests_total", endpoint="usage", method="other", status="405")
    assert value("llm_api_requests_total", endpoint="usage", method="BREW", status="405") == 0


# --- Streams in flight --------------------------------------------------------------------------


def test_a_stream_is_in_flight_until_it_ends(api, use_keys, http):
    use_keys("gemini")
    http.post(gemini_stream_url(), body=gemini_stream(["Hel", "lo"]), content_type=SSE)
    before = Samples()

    response = generate(api, prompt="hi", stream=True)

    assert response.status_code == 200 and response.streaming
    assert before.delta("llm_api_requests_in_flight", endpoint="generate") == 1
    body = b"".join(response.streaming_content)  # the test client closes it at the end
    assert b"event: done" in body
    assert before.delta("llm_api_requests_in_flight", endpoint="generate") == 0
    assert before.delta("llm_api_requests_total", endpoint="generate", method="POST", status="200")
    assert (
        before.delta(
            "llm_upstream_attempts_total",
            provider="gemini",
            model="gemini-2.5-flash",
            outcome="success",
        )
        == 1
    )


def test_a_stream_closed_early_leaves_flight(api, use_keys, http):
    """The server closes the response when its client goes away, before reading it all."""
    use_keys("gemini")
    http.post(gemini_stream_url(), body=gemini_stream(["a", "b", "c"]), content_type=SSE)
    before = Samples()

    response = generate(api, prompt="hi", stream=True)
    assert before.delta("llm_api_requests_in_flight", endpoint="generate") == 1
    next(iter(response.streaming_content))
    hang_up_test_client(response)

    assert before.delta("llm_api_requests_in_flight", endpoint="generate") == 0


# --- Circuits -----------------------------------------------------------------------------------


def test_the_circuit_gauge_shows_an_opened_circuit(client, settings):
    settings.LLM_CIRCUIT_FAILURES = 2
    for _ in range(2):
        circuits.record_failure("gemini")
    assert circuits.state("gemini") == circuits.OPEN

    states = scrape(client)["llm_provider_circuit_state"]

    def state(provider: str, name: str) -> float:
        return states[(("provider", provider), ("state", name))]

    assert (state("gemini", "open"), state("gemini", "closed"), state("gemini", "half_open")) == (
        1,
        0,
        0,
    )
    for provider in ("openrouter", "huggingface"):
        assert (state(provider, "closed"), state(provider, "open")) == (1, 0)


# --- The scrape ---------------------------------------------------------------------------------


def test_a_scrape_holds_every_metric_and_is_not_counted_itself(client, api, use_keys, http):
    use_keys("gemini")
    http.post(GEMINI, body=gemini_response("Red."))
    assert generate(api, prompt="one").status_code == 200
    before = Samples()

    parsed = scrape(client)

    for name in (
        "llm_api_requests_total",
        "llm_api_requests_in_flight",
        "llm_upstream_attempts_total",
        "llm_upstream_attempt_duration_seconds_bucket",
        "llm_tokens_total",
        "llm_cost_usd_total",
        "llm_provider_circuit_state",
    ):
        assert parsed.get(name), name
    key = (("endpoint", "generate"), ("method", "POST"), ("status", "200"))
    assert parsed["llm_api_requests_total"][key] == value("llm_api_requests_total", **dict(key))
    # The scrape is not in its own figures (it would always see itself in flight).
    counted = {dict(labels)["endpoint"] for labels in parsed["llm_api_requests_total"]}
    counted |= {dict(labels)["endpoint"] for labels in parsed["llm_api_requests_in_flight"]}
    assert not counted & {"metrics", "MetricsView"}
    assert before.delta("llm_api_requests_in_flight", endpoint="generate") == 0


@pytest.mark.parametrize("remote", ["127.0.0.1", "::1", "127.0.0.2", "::ffff:127.0.0.1"])
def test_loopback_without_a_proxy_may_scrape(client, remote):
    response = client.get(METRICS, REMOTE_ADDR=remote)
    assert response.status_code == 200
    assert b"llm_provider_circuit_state" in response.content


@pytest.mark.parametrize(
    "header",
    [
        {"HTTP_X_FORWARDED_FOR": "198.51.100.4"},
        {"HTTP_FORWARDED": "for=198.51.100.4"},
        {"HTTP_X_REAL_IP": "198.51.100.4"},
    ],
)
def test_loopback_through_a_proxy_is_refused(client, header):
    """A reverse proxy on the same host connects from loopback for every client."""
    response = client.get(METRICS, REMOTE_ADDR="127.0.0.1", **header)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


def test_an_anonymous_remote_caller_is_refused(client):
    response = client.get(METRICS, **REMOTE)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    assert b"llm_" not in response.content


def test_a_user_who_is_not_staff_is_refused(api):
    response = api.get(METRICS, **REMOTE)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"


def test_staff_may_scrape_with_a_token(staff):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=staff).key}")
    response = client.get(METRICS, **REMOTE)
    assert response.status_code == 200
    assert b"llm_provider_circuit_state" in response.content


def test_staff_may_scrape_with_a_session(client, staff):
    client.force_login(staff)
    assert client.get(METRICS, **REMOTE).status_code == 200


def test_refusals_are_json_whatever_the_scraper_accepts(client):
    response = client.get(METRICS, HTTP_ACCEPT="text/plain;version=0.0.4", **REMOTE)
    assert response.status_code == 401
    assert json.loads(response.content)["error"]["code"] == "not_authenticated"


def test_recording_never_fails_on_a_count_a_counter_cannot_take():
    before = Samples()
    metrics.record_attempt("acme", "m-1", "success", 0.2, -3, 4, Decimal("-0.5"))
    assert (
        before.delta("llm_upstream_attempts_total", provider="acme", model="m-1", outcome="success")
        == 1
    )
    assert before.delta("llm_tokens_total", provider="acme", type="prompt") == 0
    assert before.delta("llm_cost_usd_total", provider="acme") == 0


def test_the_cost_counter_is_a_float_of_the_ledger_decimal():
    before = Samples()
    metrics.record_attempt("acme", "m-1", "success", 0.2, 3, 4, Decimal("0.00000735"))
    assert before.delta("llm_cost_usd_total", provider="acme") == pytest.approx(7.35e-6)
    assert before.delta("llm_tokens_total", provider="acme", type="prompt") == 3
    assert before.delta("llm_tokens_total", provider="acme", type="completion") == 4
    bucket = "llm_upstream_attempt_duration_seconds_bucket"
    assert before.delta(bucket, provider="acme", model="m-1", outcome="success", le="0.1") == 0
    assert before.delta(bucket, provider="acme", model="m-1", outcome="success", le="0.25") == 1
