"""Per-user throttling: a rate for every endpoint, and a lower one for generation."""

import pytest

from llm_providers.models import LedgerEntry
from tests.api.support import API, assert_error
from tests.providers.wire import gemini_generate_url, gemini_response

pytestmark = pytest.mark.django_db


def generate(client):
    return client.post(API + "generate/", {"prompt": "hi"}, format="json")


def assert_throttled(response) -> None:
    error = assert_error(response, 429, "rate_limited")
    wait = int(response["Retry-After"])
    assert 1 <= wait <= 60
    assert error["message"] == f"Request was throttled. Expected available in {wait} seconds."


def test_generation_over_its_rate_is_429_with_retry_after(api, use_keys, http, rates):
    rates("100/min", "2/min")
    use_keys("gemini")
    http.post(gemini_generate_url(), body=gemini_response())

    assert [generate(api).status_code for _ in range(2)] == [200, 200]
    assert_throttled(generate(api))

    assert len(http.calls) == 2  # the throttled request never reached the upstream
    assert LedgerEntry.objects.count() == 2
    assert api.get(API + "usage/").status_code == 200  # other endpoints have their own rate


def test_throttling_is_per_user(api, other_api, use_keys, http, rates):
    rates("100/min", "1/min")
    use_keys("gemini")
    http.post(gemini_generate_url(), body=gemini_response())
    assert generate(api).status_code == 200
    assert_throttled(generate(api))
    assert generate(other_api).status_code == 200


def test_every_endpoint_shares_the_general_rate(api, staff_api, rates):
    rates("3/min", "100/min")
    assert [api.get(API + p).status_code for p in ("usage/", "calls/", "providers/")] == [200] * 3
    assert_throttled(api.get(API + "usage/"))
    assert_throttled(api.get(API + "calls/"))
    assert staff_api.get(API + "usage/").status_code == 200  # another user: their own count


def test_generation_has_its_own_rate_apart_from_the_general_one(api, use_keys, http, rates):
    """Generations count against ``LLM_API_GENERATION_RATE`` only; the other endpoints against
    ``LLM_API_RATE``: neither spends the other's allowance."""
    rates("2/min", "3/min")
    use_keys("gemini")
    http.post(gemini_generate_url(), body=gemini_response())
    assert [generate(api).status_code for _ in range(3)] == [200, 200, 200]
    assert_throttled(generate(api))
    assert [api.get(API + "usage/").status_code for _ in range(2)] == [200, 200]
    assert_throttled(api.get(API + "usage/"))
    assert len(http.calls) == 3


def test_health_is_never_throttled(anon, rates):
    rates("1/min", "1/min")
    assert [anon.get(API + "health/").status_code for _ in range(3)] == [200] * 3


def test_anonymous_requests_are_refused_before_throttling(anon, rates):
    rates("1/min", "1/min")
    for _ in range(3):
        assert_error(anon.get(API + "usage/"), 401, "not_authenticated")


def test_the_rates_come_from_the_apps_settings_not_rest_framework(api, settings):
    """No ``DEFAULT_THROTTLE_RATES`` is needed: the default ``LLM_API_RATE`` applies."""
    settings.REST_FRAMEWORK = {"DEFAULT_THROTTLE_RATES": {}}
    settings.LLM_API_RATE = None  # unset: the default, 600/min
    assert [api.get(API + "usage/").status_code for _ in range(3)] == [200] * 3


def test_the_rates_can_come_from_the_environment(api, settings, monkeypatch):
    from llm_providers.conf import llm_settings

    settings.LLM_API_RATE = None
    monkeypatch.setenv("LLM_API_RATE", "2/min")
    llm_settings.reload()
    try:
        assert [api.get(API + "usage/").status_code for _ in range(2)] == [200, 200]
        assert_throttled(api.get(API + "usage/"))
    finally:
        monkeypatch.delenv("LLM_API_RATE")
        llm_settings.reload()


def test_counts_are_drfs_histories_in_djangos_cache(api, user, rates):
    from django.core.cache import cache

    rates("100/min", "100/min")
    assert api.get(API + "usage/").status_code == 200
    history = cache.get(f"throttle_llm_api_{user.pk}")
    assert isinstance(history, list) and len(history) == 1
