"""``x-should-retry`` on error responses (``api.errors.should_retry``): ``false`` where a retry
cannot help, so the ``openai`` SDK (which obeys it) does not repeat a hopeless request;
``true`` on the failures that pass (429, timeouts, providers down)."""

from __future__ import annotations

import openai
import pytest
from rest_framework.authtoken.models import Token

from llm_providers.api.errors import FINAL_CODES, RETRYABLE_CODES, should_retry
from llm_providers.exceptions import (
    AllProvidersFailed,
    ContextLengthExceeded,
    FailedAttempt,
    InsufficientCredits,
    ProviderAuthError,
    ProviderUnavailable,
    RateLimited,
    UpstreamTimeout,
)
from llm_providers.models import UsageBudget
from tests.api.fake_support import fake_upstream, requests_served, sdk_client
from tests.api.support import API, assert_error

CHAT = "/api/llm/v1/chat/completions"


def failed(*errors) -> AllProvidersFailed:
    return AllProvidersFailed([FailedAttempt("gemini", "m", error) for error in errors])


# --- The decision ---------------------------------------------------------------------------------


def test_the_two_lists_are_disjoint_and_name_the_spec_s_codes():
    assert not FINAL_CODES & RETRYABLE_CODES
    for code in (
        "invalid_request",
        "not_authenticated",
        "authentication_failed",
        "permission_denied",
        "model_not_found",
        "budget_exceeded",
        "provider_not_configured",
        "context_length_exceeded",
        "invalid_structured_output",
    ):
        assert should_retry(code) is False, code
    for code in ("rate_limited", "upstream_timeout", "provider_error", "stream_interrupted"):
        assert should_retry(code) is True, code
    assert should_retry("server_error") is None  # no opinion: the SDK retries 5xx itself


@pytest.mark.parametrize(
    ("error", "verdict"),
    [
        (failed(ProviderUnavailable("down")), True),
        (failed(RateLimited("slow down")), True),
        (failed(UpstreamTimeout("silent")), True),
        (failed(ProviderAuthError("bad key")), False),
        (failed(InsufficientCredits("no credit"), ProviderAuthError("bad key")), False),
        (failed(ProviderAuthError("bad key"), ProviderUnavailable("down")), True),
        (failed(ContextLengthExceeded("too long"), ProviderAuthError("bad key")), False),
        (ProviderAuthError("a user's own key, refused"), False),
        (ProviderUnavailable("down"), True),
    ],
)
def test_provider_failures_are_retryable_unless_nothing_could_pass(error, verdict):
    assert should_retry(error.code, error) is verdict


# --- On the API's responses -----------------------------------------------------------------------


@pytest.mark.django_db
def test_the_envelope_carries_the_verdict(api, anon, user, use_keys):
    no_provider = api.post(API + "generate/", {"prompt": "hi"}, format="json")
    assert_error(no_provider, 503, "provider_not_configured")
    assert no_provider["x-should-retry"] == "false"

    invalid = api.post(API + "generate/", {"prompt": ""}, format="json")
    assert_error(invalid, 400, "invalid_request")
    assert invalid["x-should-retry"] == "false"

    anonymous = anon.get(API + "usage/")
    assert_error(anonymous, 401, "not_authenticated")
    assert anonymous["x-should-retry"] == "false"

    use_keys("gemini")
    UsageBudget.objects.create(user=user, monthly_call_limit=0)
    spent = api.post(API + "generate/", {"prompt": "hi"}, format="json")
    assert_error(spent, 402, "budget_exceeded")
    assert spent["x-should-retry"] == "false"

    missing = api.get(API + "no-such-endpoint/")
    assert missing.status_code == 404 and missing["x-should-retry"] == "false"


@pytest.mark.django_db
def test_a_throttled_request_may_be_retried(api, rates):
    rates("1/min", "1/min")
    api.get(API + "providers/")

    throttled = api.get(API + "providers/")

    assert_error(throttled, 429, "rate_limited")
    assert throttled["x-should-retry"] == "true"
    assert int(throttled["Retry-After"]) >= 1


# --- What the SDK does with it (its default max_retries=2) --------------------------------------


@pytest.fixture
def token(django_user_model) -> str:
    return Token.objects.create(user=django_user_model.objects.create_user("sdk-retry")).key


def ask(client):
    return client.chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "Colours?"}]
    )


@pytest.mark.django_db(transaction=True)
def test_the_sdk_asks_once_when_no_key_is_configured(live_server, token):
    with (
        sdk_client(live_server, token) as client,
        requests_served(CHAT) as served,
        pytest.raises(openai.InternalServerError) as raised,
    ):
        assert client.max_retries == 2
        ask(client)

    assert raised.value.status_code == 503
    assert raised.value.body["code"] == "provider_not_configured"
    assert raised.value.response.headers["x-should-retry"] == "false"
    assert served == ["POST"]


@pytest.mark.django_db(transaction=True)
def test_the_sdk_asks_once_when_every_provider_refuses_its_key(live_server, token, settings, http):
    with fake_upstream(settings, http, "gemini") as fake:
        fake.script("gemini", [{"status": 401}])
        with (
            sdk_client(live_server, token) as client,
            requests_served(CHAT) as served,
            pytest.raises(openai.APIStatusError) as raised,
        ):
            ask(client)
        assert len(fake.requests("gemini")) == 1  # a rejected key is not retried upstream

    assert (raised.value.status_code, raised.value.body["code"]) == (502, "provider_error")
    assert served == ["POST"]


@pytest.mark.django_db(transaction=True)
def test_the_sdk_still_retries_a_429(live_server, token, settings, http):
    settings.LLM_MAX_RETRIES = 0  # one upstream request per API request: the fake's 429 is ours
    with fake_upstream(settings, http, "gemini") as fake:
        fake.script("gemini", [{"status": 429, "retry_after": 1}] * 2)
        with sdk_client(live_server, token) as client, requests_served(CHAT) as served:
            completion = ask(client)
        assert fake.pending()["gemini"] == []

    assert served == ["POST", "POST", "POST"]  # two 429s retried, the third answered
    assert completion.choices[0].message.content
    assert completion.model == "gemini/gemini-2.5-flash"
