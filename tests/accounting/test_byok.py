"""Calls made with a user's own key (SPEC §12.2) in the ledger, the summaries, the budgets and
the reports: recorded as ``key_owner = "user"``, summed apart in ``byok_cost``, left out of
the cost limit unless ``LLM_BYOK_COUNTS_AGAINST_BUDGET``, separable in reports."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from llm_providers.accounting import budgets, reports
from llm_providers.exceptions import BudgetExceeded
from llm_providers.main_text_generation import llm_generate
from llm_providers.models import APIKey, LedgerEntry, UsageBudget, UsageSummary, billing_period
from tests.conftest import OPENROUTER_URL
from tests.test_router import openai_ok

pytestmark = pytest.mark.django_db

OPENROUTER_CHAT = f"{OPENROUTER_URL}/chat/completions"
OWN_KEY = "sk-or-v1-q7w3e9r1t5y8u2i6o4p0a3s7d1f9g5h2usr1"


@pytest.fixture
def writer(django_user_model):
    return django_user_model.objects.create_user("writer")


@pytest.fixture
def own_key(writer):
    key = APIKey(provider="openrouter", owner=writer)
    key.set_secret(OWN_KEY)
    key.save()
    return key


@pytest.fixture
def answers(http):
    http.post(OPENROUTER_CHAT, json=openai_ok("hi", "openai/gpt-4o-mini", cost=0.4))
    return http


def summary_of(user):
    return UsageSummary.objects.get(user=user, period=billing_period())


def test_a_call_with_the_users_key_is_recorded_as_theirs(writer, own_key, answers, use_keys):
    use_keys("openrouter")

    llm_generate("hello", user_id=writer)
    llm_generate("hello", user_id=None)

    rows = LedgerEntry.objects.order_by("id")
    assert [(row.user_id, row.key_owner, row.cost) for row in rows] == [
        (writer.pk, "user", Decimal("0.4")),
        (None, "platform", Decimal("0.4")),
    ]
    summary = summary_of(writer)
    # The totals equal the ledger (SPEC §7); the user's own spend is also kept apart.
    assert (summary.total_cost, summary.byok_cost, summary.total_calls) == (
        Decimal("0.4"),
        Decimal("0.4"),
        1,
    )
    assert summary_of(None).byok_cost == 0


def test_spend_with_the_users_key_does_not_count_against_their_cost_limit(writer, own_key, answers):
    UsageBudget.objects.create(user=writer, monthly_cost_limit=Decimal("0.5"))

    for _ in range(3):  # $1.20 with their own key, past the $0.50 limit
        llm_generate("hello", user_id=writer)

    summary = summary_of(writer)
    assert (summary.total_cost, summary.byok_cost, summary.reserved_cost) == (
        Decimal("1.2"),
        Decimal("1.2"),
        Decimal("0"),
    )
    left = budgets.remaining(writer.pk, summary)
    assert left["cost_remaining"] == Decimal("0.5")


def test_spend_with_the_users_key_counts_when_the_setting_says_so(
    writer, own_key, answers, settings
):
    settings.LLM_BYOK_COUNTS_AGAINST_BUDGET = True
    UsageBudget.objects.create(user=writer, monthly_cost_limit=Decimal("0.5"))
    llm_generate("hello", user_id=writer)

    with pytest.raises(BudgetExceeded) as refused:
        for _ in range(3):
            llm_generate("hello", user_id=writer)

    assert refused.value.used >= Decimal("0.4")
    assert summary_of(writer).total_cost <= Decimal("0.8")


def test_a_platform_fallback_is_still_held_against_the_limit(writer, own_key, use_keys, http):
    use_keys("gemini")
    UsageBudget.objects.create(user=writer, monthly_cost_limit=Decimal("0.000001"))
    # The chain: Gemini with the platform's key, then OpenRouter with the user's. Gemini's
    # worst case is reserved; it does not fit in the limit.
    with pytest.raises(BudgetExceeded):
        llm_generate("hello", user_id=writer, provider="gemini")
    # OpenRouter with the user's key, falling back to Gemini: Gemini's worst case is held.
    with pytest.raises(BudgetExceeded):
        llm_generate("hello", user_id=writer, provider="openrouter")
    assert not http.calls
    # OpenRouter alone, with the user's key: nothing reserved against the limit.
    http.post(OPENROUTER_CHAT, json=openai_ok("hi", "openai/gpt-4o-mini", cost=0.4))
    generation = llm_generate("hello", user_id=writer, provider="openrouter", fallback=False)
    assert generation.text == "hi"


def test_reports_separate_the_users_keys(writer, own_key, answers, use_keys):
    use_keys("openrouter")
    llm_generate("hello", user_id=writer)
    llm_generate("hello", user_id=writer, provider="openrouter")
    own_key.delete()
    llm_generate("hello", user_id=writer)
    today = timezone.now().date()
    start, end = today - timedelta(days=1), today + timedelta(days=1)

    by_owner = reports.cost_report(start, end, "key_owner")
    only_users = reports.cost_report(start, end, "user", key_owner="user")

    assert [(r.key, r.calls, r.cost) for r in by_owner] == [
        ("user", 2, Decimal("0.8")),
        ("platform", 1, Decimal("0.4")),
    ]
    assert [(r.key, r.calls, r.cost) for r in only_users] == [("writer", 2, Decimal("0.8"))]
    with pytest.raises(ValueError):
        reports.cost_report(start, end, key_owner="admin")
