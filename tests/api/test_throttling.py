"""Per-user throttling: a rate for every endpoint, and a lower one for generation."""

import pytest

from llm_providers.api.throttling import UserRateThrottle
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
    assert staff_api.get(API + "keys/").status_code == 200


def test_generation_counts_against_the_general_rate_too(api, use_keys, http, rates):
    rates("2/min", "100/min")
    use_keys("gemini")
    http.post(gemini_generate_url(), body=gemini_response())
    assert generate(api).status_code == 200
    assert api.get(API + "usage/").status_code == 200
    assert_throttled(generate(api))
    assert len(http.calls) == 1


def test_health_is_never_throttled(anon, rates):
    rates("1/min", "1/min")
    assert [anon.get(API + "health/").status_code for _ in range(3)] == [200] * 3


def test_anonymous_requests_are_refused_before_throttling(anon, rates):
    rates("1/min", "1/min")
    for _ in range(3):
        assert_error(anon.get(API + "usage/"), 401, "not_authenticated")


# --- The packed history: DRF's throttle to the letter ---------------------------------------------


class _User:
    pk = 7
    is_authenticated = True


class _Request:
    user = _User()
    META = {"REMOTE_ADDR": "127.0.0.1"}


def _drive(throttle_class, times: list[float], rate: str) -> list[tuple[bool, float | None]]:
    """(allowed, wait) for a request at each of ``times``, one throttle instance per request
    as DRF makes them, with the clock at that time."""
    answers = []
    for now in times:
        throttle = throttle_class()
        throttle.rate = rate
        throttle.num_requests, throttle.duration = throttle.parse_rate(rate)
        throttle.timer = lambda now=now: now
        allowed = throttle.allow_request(_Request(), None)
        answers.append((allowed, None if allowed else throttle.wait()))
    return answers


def test_the_packed_history_answers_as_drfs_list(settings):
    from django.core.cache import cache
    from rest_framework import throttling as drf

    class DRFThrottle(drf.UserRateThrottle):
        scope = "llm_api"

    timelines = [
        [0, 1, 2, 3, 4, 5, 59.9, 60, 60.5, 61, 119, 200],  # a burst, the window sliding past
        [0, 0, 0, 0, 0.5, 30, 60, 60, 60.0001],  # ties at the window's edge
        [10, 5, 11, 4, 70, 64.5, 71, 130],  # a clock stepping back
        [float(t) / 7 for t in range(60)],
    ]
    for rate in ("3/min", "1/s", "5/m", "2/h"):
        for times in timelines:
            cache.clear()
            expected = _drive(DRFThrottle, times, rate)
            cache.clear()
            assert _drive(UserRateThrottle, times, rate) == expected, (rate, times)


def test_the_history_is_stored_packed_under_its_own_key(api, user, rates):
    from array import array

    from django.core.cache import cache

    rates("100/min", "100/min")
    assert api.get(API + "usage/").status_code == 200
    assert cache.get(f"throttle_llm_api_{user.pk}") is None  # DRF's key: never this format
    packed = cache.get(f"throttle_llm_api_{user.pk}_packed")
    assert isinstance(packed, bytes) and len(array("d", packed)) == 1
