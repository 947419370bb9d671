"""Attempts in the ledger from their start (SPEC §7): begin_attempt, finish_attempt, release."""

from decimal import Decimal

import pytest
from django.db import connection

from llm_providers.accounting import budgets, ledger
from llm_providers.accounting.money import ZERO
from llm_providers.models import CallStatus, CostSource, LedgerEntry, UsageBudget, billing_period
from llm_providers.results import Usage

from .support import (
    GEMINI_COST_5_3,
    assert_ledger_invariants,
    gemini_failure,
    gemini_success,
    openrouter_success,
    summary_of,
)

ESTIMATE = Decimal("0.5")


@pytest.fixture
def user(django_user_model):
    user = django_user_model.objects.create_user("writer")
    UsageBudget.objects.create(user=user, monthly_cost_limit=Decimal("1"))
    return user


def begin(user, reservation, provider="gemini", model="gemini-2.5-flash", request_id="req"):
    return ledger.begin_attempt(
        request_id,
        user.pk,
        provider=provider,
        model=model,
        is_fallback=False,
        estimate=ESTIMATE,
        reservation=reservation,
    )


@pytest.mark.django_db
def test_an_attempt_is_in_the_ledger_before_its_request_and_holds_the_reservation(user):
    reservation = budgets.reserve(user.pk, ESTIMATE)
    entry = begin(user, reservation)

    row = LedgerEntry.objects.get()
    assert (row.pk, row.status, row.estimate, row.reserved) == (
        entry.pk,
        CallStatus.IN_FLIGHT,
        ESTIMATE,
        True,
    )
    assert (row.cost, row.total_tokens, row.period) == (ZERO, 0, billing_period())
    summary = summary_of(user)
    assert (summary.reserved_cost, summary.reserved_calls, summary.total_calls) == (ESTIMATE, 1, 0)
    assert_ledger_invariants()


@pytest.mark.django_db(transaction=True)
def test_begin_attempt_commits_at_once(user):
    """The row must survive the process dying right after: it is committed, not pending in
    a transaction (another connection sees it)."""
    from concurrent.futures import ThreadPoolExecutor

    begin(user, budgets.reserve(user.pk, ESTIMATE))

    def seen_elsewhere():
        try:
            return LedgerEntry.objects.filter(status=CallStatus.IN_FLIGHT).count()
        finally:
            connection.close()

    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(seen_elsewhere).result() == 1


@pytest.mark.django_db
def test_success_settles_the_row_and_releases_the_reservation(user):
    reservation = budgets.reserve(user.pk, ESTIMATE)
    entry = begin(user, reservation)

    final, following = ledger.finish_attempt(entry, gemini_success(), reservation=reservation)

    assert following is None
    row = LedgerEntry.objects.get()
    assert row.pk == final.pk == entry.pk
    assert (row.status, row.cost, row.cost_source, row.total_tokens, row.reserved) == (
        CallStatus.SUCCESS,
        GEMINI_COST_5_3,
        CostSource.PRICE_TABLE,
        8,
        False,
    )
    assert (row.latency_ms, row.retries, row.estimate, row.created_at) == (
        120,
        0,
        ESTIMATE,
        entry.created_at,
    )
    assert final.cost == GEMINI_COST_5_3 and final.status == CallStatus.SUCCESS
    summary = summary_of(user)
    assert (summary.total_calls, summary.gemini_calls, summary.total_cost) == (
        1,
        1,
        GEMINI_COST_5_3,
    )
    assert (summary.reserved_cost, summary.reserved_calls) == (ZERO, 0)
    assert_ledger_invariants()


@pytest.mark.django_db
def test_finish_prices_the_row_as_record_call_does(user):
    recorded = ledger.record_call("old", user.pk, [gemini_failure(Usage(4, 2, 6))])[0]
    entry = begin(user, budgets.reserve(user.pk, ESTIMATE))
    final, _ = ledger.finish_attempt(
        entry,
        gemini_failure(Usage(4, 2, 6)),
        reservation=budgets.Reservation(user.pk, billing_period(), ESTIMATE),
    )
    fields = ["cost", "cost_source", "status", "error_code", "error_message", "retries"]
    row = LedgerEntry.objects.get(pk=final.pk)
    assert [getattr(row, f) for f in fields] == [getattr(recorded, f) for f in fields]
    assert row.status == CallStatus.ERROR and row.cost > 0 and row.retries == 2
    assert summary_of(user).total_calls == 0  # failures are not calls, their tokens are paid
    assert_ledger_invariants()


@pytest.mark.django_db
def test_handover_moves_the_reservation_to_the_next_attempt(user):
    reservation = budgets.reserve(user.pk, ESTIMATE)
    first = begin(user, reservation)

    failed, second = ledger.finish_attempt(
        first,
        gemini_failure(),
        reservation=reservation,
        next_attempt={"provider": "openrouter", "model": "openai/gpt-4o-mini", "is_fallback": True},
    )

    assert failed.status == CallStatus.ERROR
    assert (second.status, second.provider, second.is_fallback) == (
        CallStatus.IN_FLIGHT,
        "openrouter",
        True,
    )
    assert (second.request_id, second.estimate, second.reserved) == ("req", ESTIMATE, True)
    summary = summary_of(user)
    assert (summary.reserved_cost, summary.reserved_calls) == (ESTIMATE, 1)  # held, not twice
    assert_ledger_invariants()

    done, after = ledger.finish_attempt(second, openrouter_success(), reservation=reservation)

    assert after is None and done.cost == Decimal("0.00042")
    summary = summary_of(user)
    assert (summary.total_calls, summary.openrouter_calls, summary.reserved_calls) == (1, 1, 0)
    assert summary.reserved_cost == ZERO
    assert LedgerEntry.objects.filter(request_id="req").count() == 2
    assert_ledger_invariants()


@pytest.mark.django_db
def test_abandoned_stream_is_settled_as_record_call_settles_it(user):
    reservation = budgets.reserve(user.pk, ESTIMATE)
    entry = begin(user, reservation)
    attempt = gemini_failure(Usage(5, 40, 45), requests=1)
    attempt.error, attempt.abandoned, attempt.usage_estimated = None, True, True

    final, _ = ledger.finish_attempt(entry, attempt, reservation=reservation)

    row = LedgerEntry.objects.get(pk=final.pk)
    assert (row.status, row.error_code, row.cost_source, row.total_tokens) == (
        CallStatus.ERROR,
        "client_disconnected",
        CostSource.ESTIMATED,
        45,
    )
    assert row.cost == Decimal("0.0001015")  # 5 x 0.30 + 40 x 2.50 per million
    assert_ledger_invariants()


@pytest.mark.django_db
def test_system_usage_without_reservation(user):
    entry = ledger.begin_attempt(
        "sys",
        None,
        provider="gemini",
        model="gemini-2.5-flash",
        is_fallback=False,
        estimate=ESTIMATE,
        reservation=None,
    )
    assert entry.reserved is False and entry.estimate == ESTIMATE
    ledger.finish_attempt(entry, gemini_success(), reservation=None)
    assert_ledger_invariants()


@pytest.mark.django_db
def test_release_gives_back_a_reservation_no_attempt_holds(user):
    reservation = budgets.reserve(user.pk, ESTIMATE)
    ledger.release(reservation)
    ledger.release(None)
    summary = summary_of(user)
    assert (summary.reserved_cost, summary.reserved_calls) == (ZERO, 0)
    assert_ledger_invariants()
    budgets.reserve(user.pk, Decimal("1"))  # the whole budget is free again


@pytest.mark.django_db
def test_finishing_twice_is_refused_and_changes_nothing(user):
    reservation = budgets.reserve(user.pk, ESTIMATE)
    entry = begin(user, reservation)
    ledger.finish_attempt(entry, gemini_success(), reservation=reservation)

    with pytest.raises(ledger.AttemptAlreadySettled):
        ledger.finish_attempt(entry, gemini_success(), reservation=reservation)

    assert summary_of(user).total_calls == 1
    assert_ledger_invariants()


@pytest.mark.django_db
def test_a_reservation_must_match_the_row(user):
    reservation = budgets.reserve(user.pk, ESTIMATE)
    with pytest.raises(ValueError):
        ledger.begin_attempt(
            "r",
            user.pk,
            provider="gemini",
            model="m",
            is_fallback=False,
            estimate=Decimal("0.1"),
            reservation=reservation,
        )
    entry = begin(user, reservation)
    with pytest.raises(ValueError):
        ledger.finish_attempt(entry, gemini_success(), reservation=None)
    assert LedgerEntry.objects.get().status == CallStatus.IN_FLIGHT
    assert_ledger_invariants()


@pytest.mark.django_db
def test_invariants_hold_with_admin_adjustments(user):
    reservation = budgets.reserve(user.pk, ESTIMATE)
    entry = begin(user, reservation)
    ledger.finish_attempt(entry, gemini_success(), reservation=reservation)
    ledger.adjust_summary(
        summary_of(user).pk, {"gemini_cost": Decimal("-0.000001"), "gemini_calls": 2}, reason="t"
    )
    assert_ledger_invariants()
    with pytest.raises(AssertionError):  # the check does see a summary off its ledger
        LedgerEntry.objects.filter(pk=entry.pk).update(cost=Decimal("1"))
        assert_ledger_invariants()
