"""``GET usage/``: the caller's own summary of a billing period, and what is left of the budget."""

from decimal import Decimal

import pytest

from llm_providers.models import UsageBudget, UsageSummary, billing_period
from tests.api.support import API, assert_error
from tests.providers.wire import (
    OPENROUTER_CHAT,
    gemini_generate_url,
    gemini_response,
    or_completion,
)

pytestmark = pytest.mark.django_db

USAGE = API + "usage/"
ZERO = {"calls": 0, "tokens": 0, "cost": "0"}
UNLIMITED = {
    "cost_limit": None,
    "calls_limit": None,
    "cost_remaining": None,
    "calls_remaining": None,
    "reserved": {"cost": "0", "calls": 0},
}


def summary(user, period, **columns):
    """A summary row whose totals are the sums of its provider columns."""
    row = {"calls": 0, "tokens": 0, "cost": Decimal(0)}
    for name in ("gemini", "openrouter", "huggingface"):
        for metric in row:
            row[metric] += columns.get(f"{name}_{metric}", 0)
    totals = {f"total_{metric}": value for metric, value in row.items()}
    return UsageSummary.objects.create(user=user, period=period, **columns, **totals)


def test_no_usage_yet(api):
    response = api.get(USAGE)
    assert response.status_code == 200
    assert response.json() == {
        "period": billing_period(),
        "providers": {"gemini": ZERO, "openrouter": ZERO, "huggingface": ZERO},
        "total": ZERO,
        "budget": UNLIMITED,
    }


def test_own_summary_of_the_current_period_with_costs_as_decimal_strings(api, user, other_user):
    period = billing_period()
    summary(
        user,
        period,
        gemini_calls=2,
        gemini_tokens=300,
        gemini_cost=Decimal("0.0125"),
        openrouter_calls=1,
        openrouter_tokens=19,
        openrouter_cost=Decimal("0.00000735"),
    )
    summary(other_user, period, huggingface_calls=9, huggingface_tokens=999)
    summary(None, period, gemini_calls=50, gemini_tokens=5000, gemini_cost=Decimal("3"))
    summary(user, "2020-01", gemini_calls=7, gemini_tokens=70, gemini_cost=Decimal("1"))

    response = api.get(USAGE)

    assert response.json() == {
        "period": period,
        "providers": {
            "gemini": {"calls": 2, "tokens": 300, "cost": "0.0125"},
            "openrouter": {"calls": 1, "tokens": 19, "cost": "0.00000735"},
            "huggingface": ZERO,
        },
        "total": {"calls": 3, "tokens": 319, "cost": "0.01250735"},
        "budget": UNLIMITED,
    }


def test_another_user_sees_only_their_own(other_api, user, other_user):
    period = billing_period()
    summary(user, period, gemini_calls=2, gemini_tokens=300, gemini_cost=Decimal("0.0125"))
    summary(other_user, period, huggingface_calls=9, huggingface_tokens=999)
    body = other_api.get(USAGE).json()
    assert body["providers"] == {
        "gemini": ZERO,
        "openrouter": ZERO,
        "huggingface": {"calls": 9, "tokens": 999, "cost": "0"},
    }
    assert body["total"] == {"calls": 9, "tokens": 999, "cost": "0"}


def test_explicit_period(api, user):
    summary(user, billing_period(), gemini_calls=1, gemini_tokens=10)
    summary(
        user, "2025-02", openrouter_calls=4, openrouter_tokens=40, openrouter_cost=Decimal("2.5")
    )

    body = api.get(USAGE, {"period": "2025-02"}).json()

    assert body["period"] == "2025-02"
    assert body["providers"]["gemini"] == ZERO
    assert body["providers"]["openrouter"] == {"calls": 4, "tokens": 40, "cost": "2.5"}
    assert body["total"] == {"calls": 4, "tokens": 40, "cost": "2.5"}
    assert api.get(USAGE, {"period": "1999-12"}).json()["total"] == ZERO


@pytest.mark.parametrize(
    "period", ["2025-13", "2025-00", "2025-1", "25-01", "2025-01-01", "abc", ""]
)
def test_malformed_period_is_400(api, period):
    error = assert_error(api.get(USAGE, {"period": period}), 400, "invalid_request")
    assert error["fields"] == {"period": ["Use the form YYYY-MM, e.g. 2026-11."]}


def test_budget_shows_limits_and_what_remains(api, user):
    summary(user, billing_period(), gemini_calls=3, gemini_tokens=30, gemini_cost=Decimal("0.25"))
    UsageBudget.objects.create(user=user, monthly_cost_limit=Decimal("1.50"), monthly_call_limit=10)
    assert api.get(USAGE).json()["budget"] == {
        "cost_limit": "1.5",
        "calls_limit": 10,
        "cost_remaining": "1.25",
        "calls_remaining": 7,
        "reserved": {"cost": "0", "calls": 0},
    }


def test_budget_with_one_limit_leaves_the_other_unlimited(api, user):
    summary(user, billing_period(), gemini_calls=3, gemini_tokens=30, gemini_cost=Decimal("0.25"))
    UsageBudget.objects.create(user=user, monthly_call_limit=5)
    assert api.get(USAGE).json()["budget"] == {
        "cost_limit": None,
        "calls_limit": 5,
        "cost_remaining": None,
        "calls_remaining": 2,
        "reserved": {"cost": "0", "calls": 0},
    }


def test_overspent_budget_remains_zero_not_negative(api, user):
    summary(user, billing_period(), gemini_calls=4, gemini_tokens=40, gemini_cost=Decimal("2"))
    UsageBudget.objects.create(user=user, monthly_cost_limit=Decimal("1"), monthly_call_limit=3)
    assert api.get(USAGE).json()["budget"] == {
        "cost_limit": "1",
        "calls_limit": 3,
        "cost_remaining": "0",
        "calls_remaining": 0,
        "reserved": {"cost": "0", "calls": 0},
    }


def test_global_default_budget_applies_to_users_without_one(api, user, settings):
    settings.LLM_DEFAULT_MONTHLY_COST_LIMIT = "5"
    settings.LLM_DEFAULT_MONTHLY_CALL_LIMIT = 100
    summary(user, billing_period(), gemini_calls=1, gemini_tokens=10, gemini_cost=Decimal("0.5"))
    assert api.get(USAGE).json()["budget"] == {
        "cost_limit": "5",
        "calls_limit": 100,
        "cost_remaining": "4.5",
        "calls_remaining": 99,
        "reserved": {"cost": "0", "calls": 0},
    }


def test_usage_follows_calls_made_through_the_api(api, use_keys, http):
    use_keys("gemini", "openrouter")
    http.post(gemini_generate_url(), body=gemini_response())
    http.post(OPENROUTER_CHAT, body=or_completion())
    assert api.post(API + "generate/", {"prompt": "a"}, format="json").status_code == 200
    assert (
        api.post(API + "generate/", {"prompt": "b", "provider": "openrouter"}, format="json")
    ).status_code == 200

    body = api.get(USAGE).json()

    assert body["providers"] == {
        "gemini": {"calls": 1, "tokens": 35, "cost": "0.0000413"},
        "openrouter": {"calls": 1, "tokens": 19, "cost": "0.00000735"},
        "huggingface": ZERO,
    }
    assert body["total"] == {"calls": 2, "tokens": 54, "cost": "0.00004865"}
