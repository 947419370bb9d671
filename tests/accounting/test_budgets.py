"""Budgets: refused before any upstream call, exact under concurrency, reservations settled."""

from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from django.db import connection

from llm_providers.accounting import budgets
from llm_providers.accounting.budgets import Reservation
from llm_providers.accounting.ledger import record_call
from llm_providers.accounting.money import ZERO
from llm_providers.exceptions import AllProvidersFailed, BudgetExceeded
from llm_providers.main_text_generation import llm_generate, llm_stream
from llm_providers.models import LedgerEntry, UsageBudget, UsageSummary, billing_period
from llm_providers.results import Attempt, Completion, Usage
from tests.conftest import GEMINI_URL
from tests.test_router import gemini_chunk, gemini_ok, sse

GEMINI_GENERATE = f"{GEMINI_URL}/models/gemini-2.5-flash:generateContent"
GEMINI_STREAM = f"{GEMINI_URL}/models/gemini-2.5-flash:streamGenerateContent"
# gemini_ok(): 5 prompt + 3 completion tokens at $0.30 / $2.50 per million.
CALL_COST = Decimal("0.000009")


@pytest.fixture
def writer(django_user_model):
    return django_user_model.objects.create_user("writer")


def summary_of(user):
    return UsageSummary.objects.get(user=user, period=billing_period())


@pytest.mark.django_db
def test_call_limit_refuses_before_any_upstream_request(use_keys, http, writer):
    use_keys("gemini")
    UsageBudget.objects.create(user=writer, monthly_call_limit=2)
    http.post(GEMINI_GENERATE, json=gemini_ok())
    llm_generate("a", user_id=writer)
    llm_generate("b", user_id=writer)
    with pytest.raises(BudgetExceeded, match="call limit reached: 2 of 2"):
        llm_generate("c", user_id=writer)
    assert len(http.calls) == 2
    assert LedgerEntry.objects.count() == 2
    assert summary_of(writer).reserved_calls == 0


@pytest.mark.django_db
def test_cost_limit_counts_the_worst_case_of_the_call(use_keys, http, writer):
    use_keys("gemini")
    # One call may cost up to (1 + 16) prompt tokens x $0.30/M + 100 x $2.50/M = $0.0002551:
    # the first fits ($0 + $0.0002551), the second does not ($0.000009 + $0.0002551).
    UsageBudget.objects.create(user=writer, monthly_cost_limit=Decimal("0.00026"))
    http.post(GEMINI_GENERATE, json=gemini_ok())
    llm_generate("a", user_id=writer, max_tokens=100)
    assert summary_of(writer).total_cost == CALL_COST
    with pytest.raises(BudgetExceeded) as err:
        llm_generate("b", user_id=writer, max_tokens=100)
    assert "Monthly budget exceeded: $0.000009 of $0.00026" in str(err.value)
    assert err.value.code == "budget_exceeded" and err.value.status == 402
    assert len(http.calls) == 1
    # A smaller call still fits.
    llm_generate("c", user_id=writer, max_tokens=10)
    assert len(http.calls) == 2


@pytest.mark.django_db
def test_budget_refusal_does_not_fall_back(use_keys, http, writer):
    use_keys("gemini", "openrouter", "huggingface")
    UsageBudget.objects.create(user=writer, monthly_call_limit=0)
    with pytest.raises(BudgetExceeded):
        llm_generate("a", user_id=writer)
    assert len(http.calls) == 0


@pytest.mark.django_db
def test_global_default_applies_to_users_without_a_budget(use_keys, http, writer, settings):
    use_keys("gemini")
    settings.LLM_DEFAULT_MONTHLY_CALL_LIMIT = 1
    http.post(GEMINI_GENERATE, json=gemini_ok())
    llm_generate("a", user_id=writer)
    with pytest.raises(BudgetExceeded):
        llm_generate("b", user_id=writer)
    # A budget row overrides the default; empty limits mean unlimited.
    UsageBudget.objects.create(user=writer, monthly_call_limit=None, monthly_cost_limit=None)
    llm_generate("c", user_id=writer)
    # System usage has no budget.
    llm_generate("d")
    assert len(http.calls) == 3


@pytest.mark.django_db
def test_reservation_is_released_after_failures_and_streams(use_keys, http, writer, settings):
    settings.LLM_MAX_RETRIES = 0
    use_keys("gemini")
    UsageBudget.objects.create(user=writer, monthly_cost_limit=Decimal("1"))
    http.post(GEMINI_GENERATE, status=500, json={"error": {"code": 500, "message": "x"}})
    with pytest.raises(AllProvidersFailed):
        llm_generate("a", user_id=writer)
    http.post(
        GEMINI_STREAM,
        body=sse(gemini_chunk("hi"), gemini_chunk(finish="STOP", completion_tokens=3)),
        content_type="text/event-stream",
    )
    list(llm_stream("b", user_id=writer))
    summary = summary_of(writer)
    assert (summary.reserved_calls, summary.reserved_cost) == (0, ZERO)
    assert summary.total_calls == 1


@pytest.mark.django_db
def test_reservation_made_last_month_is_released_there(writer):
    period = billing_period()
    UsageSummary.objects.create(
        user=writer, period="1999-12", reserved_cost=Decimal("0.5"), reserved_calls=1
    )
    attempt = Attempt(
        provider="gemini",
        model="gemini-2.5-flash",
        is_fallback=False,
        completion=Completion("t", "gemini", "gemini-2.5-flash", Usage(5, 3, 8)),
        requests=1,
    )
    record_call("r", writer.pk, [attempt], Reservation(writer.pk, "1999-12", Decimal("0.5")))
    old = UsageSummary.objects.get(user=writer, period="1999-12")
    assert (old.reserved_calls, old.reserved_cost, old.total_calls) == (0, ZERO, 0)
    assert UsageSummary.objects.get(user=writer, period=period).total_cost == CALL_COST


@pytest.mark.django_db
def test_reservations_hold_exactly_what_both_limits_allow(writer):
    UsageBudget.objects.create(user=writer, monthly_cost_limit=Decimal("1"), monthly_call_limit=3)
    budgets.reserve(writer.pk, Decimal("0.4"))  # the month's first call: creates the row
    budgets.reserve(writer.pk, Decimal("0.6"))  # exactly at the cost limit
    with pytest.raises(BudgetExceeded, match="budget exceeded"):
        budgets.reserve(writer.pk, Decimal("0.000000000001"))  # one picodollar over it
    budgets.reserve(writer.pk, ZERO)  # a free third call
    with pytest.raises(BudgetExceeded, match="call limit reached"):
        budgets.reserve(writer.pk, ZERO)
    summary = summary_of(writer)
    assert (summary.reserved_cost, summary.reserved_calls) == (Decimal("1"), 3)
    assert UsageSummary.objects.count() == 1


@pytest.mark.django_db
def test_remaining(writer):
    UsageBudget.objects.create(user=writer, monthly_cost_limit=Decimal("2"), monthly_call_limit=10)
    summary = UsageSummary.objects.create(
        user=writer,
        period=billing_period(),
        total_cost=Decimal("0.5"),
        total_calls=3,
        reserved_cost=Decimal("0.25"),
        reserved_calls=1,
    )
    # What calls in flight hold is not left to spend (a 402 would say so).
    assert budgets.remaining(writer.pk, summary) == {
        "cost_limit": Decimal("2"),
        "calls_limit": 10,
        "cost_remaining": Decimal("1.25"),
        "calls_remaining": 6,
        "reserved_cost": Decimal("0.25"),
        "reserved_calls": 1,
    }
    assert budgets.remaining(None, None)["cost_limit"] is None


# --- Concurrency -----------------------------------------------------------------------------


def _concurrently(count, fn):
    def task(i):
        try:
            return fn(i)
        except BudgetExceeded:
            return None
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=10) as pool:
        return list(pool.map(task, range(count)))


@pytest.mark.django_db(transaction=True)
def test_concurrent_calls_cannot_pass_a_call_limit(use_keys, http, writer):
    use_keys("gemini")
    UsageBudget.objects.create(user=writer, monthly_call_limit=7)
    http.post(GEMINI_GENERATE, json=gemini_ok())
    results = _concurrently(30, lambda i: llm_generate("x", user_id=writer.pk))
    assert sum(r is not None for r in results) == 7
    assert len(http.calls) == 7
    summary = summary_of(writer)
    assert (summary.total_calls, summary.reserved_calls) == (7, 0)


@pytest.mark.django_db(transaction=True)
def test_concurrent_calls_overrun_a_cost_limit_by_at_most_one_reservation(use_keys, http, writer):
    use_keys("gemini")
    limit = Decimal("0.0001")
    UsageBudget.objects.create(user=writer, monthly_cost_limit=limit)
    http.post(GEMINI_GENERATE, json=gemini_ok())
    # Each call reserves (1 + 16) x $0.30/M + 4 x $2.50/M = $0.0000151 and costs $0.000009.
    reservation = Decimal("0.0000151")
    results = _concurrently(40, lambda i: llm_generate("x", user_id=writer.pk, max_tokens=4))
    succeeded = sum(r is not None for r in results)
    summary = summary_of(writer)
    assert summary.total_cost == succeeded * CALL_COST
    assert summary.total_cost <= limit + reservation
    assert 0 < succeeded < 40  # the limit did bite
    assert len(http.calls) == succeeded
    assert (summary.reserved_calls, summary.reserved_cost) == (0, ZERO)
