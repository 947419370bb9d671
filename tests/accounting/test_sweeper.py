"""The sweep of attempts left in flight by dead processes (SPEC §7)."""

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from llm_providers.accounting import budgets, ledger, sweeper
from llm_providers.accounting.money import ZERO
from llm_providers.exceptions import BudgetExceeded
from llm_providers.models import CallStatus, CostSource, LedgerEntry, UsageBudget

from .support import GEMINI_COST_5_3, assert_ledger_invariants, gemini_success, summary_of

ESTIMATE = Decimal("0.4")
NEXT = {"provider": "openrouter", "model": "openai/gpt-4o-mini", "is_fallback": True}


@pytest.fixture
def user(django_user_model):
    user = django_user_model.objects.create_user("writer")
    UsageBudget.objects.create(user=user, monthly_cost_limit=Decimal("1"))
    return user


def in_flight(user, *, age: float = 0, request_id="req"):
    """A reserved attempt in flight, begun ``age`` seconds ago."""
    reservation = budgets.reserve(user.pk, ESTIMATE)
    entry = ledger.begin_attempt(
        request_id,
        user.pk,
        provider="gemini",
        model="gemini-2.5-flash",
        is_fallback=False,
        estimate=ESTIMATE,
        reservation=reservation,
    )
    if age:
        entry.created_at -= timedelta(seconds=age)
        LedgerEntry.objects.filter(pk=entry.pk).update(created_at=entry.created_at)
    return entry, reservation


def stale_age() -> float:
    return sweeper.default_age() + 1


@pytest.mark.django_db
def test_a_stale_row_is_charged_its_estimate_and_its_reservation_released(user, caplog):
    entry, _ = in_flight(user, age=stale_age())
    in_flight(user, request_id="recent")  # alive: left alone

    with caplog.at_level(logging.WARNING, logger="llm_providers.accounting.sweeper"):
        assert sweeper.sweep() == 1

    row = LedgerEntry.objects.get(pk=entry.pk)
    assert (row.status, row.cost, row.cost_source, row.error_code, row.reserved) == (
        CallStatus.INTERRUPTED,
        ESTIMATE,
        CostSource.ESTIMATED,
        "interrupted",
        False,
    )
    assert "died mid-call" in row.error_message
    assert "Interrupted 1 LLM attempt" in caplog.text
    summary = summary_of(user)
    assert (summary.total_cost, summary.gemini_cost, summary.total_calls) == (
        ESTIMATE,
        ESTIMATE,
        0,
    )
    assert (summary.reserved_cost, summary.reserved_calls) == (ESTIMATE, 1)  # the recent one
    assert_ledger_invariants()


@pytest.mark.django_db
def test_after_a_sweep_the_user_can_spend_exactly_what_is_left(user):
    in_flight(user, age=stale_age())
    sweeper.sweep()
    rest = budgets.reserve(user.pk, Decimal("1") - ESTIMATE)
    with pytest.raises(BudgetExceeded):
        budgets.reserve(user.pk, Decimal("0.000000000001"))
    ledger.release(rest)
    assert_ledger_invariants()


@pytest.mark.django_db
def test_rows_younger_than_the_deadline_and_grace_are_left(user, settings):
    settings.LLM_REQUEST_DEADLINE = 10.0
    settings.LLM_SWEEP_GRACE = 5.0
    in_flight(user, age=14)
    assert sweeper.sweep() == 0
    assert sweeper.sweep(now=timezone.now() + timedelta(seconds=2)) == 1
    assert_ledger_invariants()


@pytest.mark.django_db
def test_a_second_sweep_finds_nothing(user):
    in_flight(user, age=stale_age())
    assert sweeper.sweep() == 1
    assert sweeper.sweep() == 0
    assert summary_of(user).total_cost == ESTIMATE
    assert_ledger_invariants()


@pytest.mark.django_db
@pytest.mark.parametrize("next_attempt", [None, NEXT])
def test_a_late_finish_replaces_the_sweeps_charge(user, next_attempt):
    """A call that outlived the deadline and was swept, then finished: its real outcome wins,
    the sweep's charge is taken back, and the reservation is not released twice."""
    entry, reservation = in_flight(user, age=stale_age())
    in_flight(user, request_id="other")  # its reservation must stay whole
    assert sweeper.sweep() == 1

    _, following = ledger.finish_attempt(
        entry, gemini_success(), reservation=reservation, next_attempt=next_attempt
    )

    row = LedgerEntry.objects.get(pk=entry.pk)
    assert (row.status, row.cost, row.error_code) == (CallStatus.SUCCESS, GEMINI_COST_5_3, "")
    summary = summary_of(user)
    assert (summary.total_cost, summary.total_calls) == (GEMINI_COST_5_3, 1)
    assert (summary.reserved_cost, summary.reserved_calls) == (ESTIMATE, 1)  # "other" only
    if next_attempt:
        assert following.status == CallStatus.IN_FLIGHT and following.reserved is False
        ledger.finish_attempt(following, gemini_success(), reservation=reservation)
    assert_ledger_invariants()


@pytest.mark.django_db
def test_a_sweep_after_the_finish_changes_nothing(user):
    entry, reservation = in_flight(user, age=stale_age())
    ledger.finish_attempt(entry, gemini_success(), reservation=reservation)
    assert sweeper.sweep() == 0
    assert summary_of(user).total_cost == GEMINI_COST_5_3
    assert_ledger_invariants()


@pytest.mark.django_db
def test_a_row_settled_between_the_sweeps_query_and_its_update_is_left(user):
    """The sweep reads its candidates, then settles each: one finished in between is skipped
    (its transaction rolled back, nothing charged)."""
    entry, reservation = in_flight(user, age=stale_age())
    candidate = LedgerEntry.objects.get(pk=entry.pk)
    ledger.finish_attempt(entry, gemini_success(), reservation=reservation)
    assert sweeper.interrupt(candidate, stale_age()) is False
    assert LedgerEntry.objects.get(pk=entry.pk).status == CallStatus.SUCCESS
    assert summary_of(user).total_cost == GEMINI_COST_5_3
    assert_ledger_invariants()


def _in_threads(count, fn):
    def task(i):
        try:
            return fn(i)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(task, range(count)))


@pytest.mark.django_db(transaction=True)
def test_concurrent_sweeps_and_finishes_never_double_count(django_user_model):
    user = django_user_model.objects.create_user("racer")
    UsageBudget.objects.create(user=user, monthly_cost_limit=Decimal("100"))
    entries = [in_flight(user, age=stale_age(), request_id=f"r{i}") for i in range(30)]
    finished_with_next = {}

    def work(i):
        if i < 3:  # three sweepers
            return ("sweep", sweeper.sweep())
        entry, reservation = entries[i - 3] if i - 3 < len(entries) else (None, None)
        if entry is None:
            return ("idle", 0)
        next_attempt = NEXT if i % 2 else None
        _, following = ledger.finish_attempt(
            entry, gemini_success(), reservation=reservation, next_attempt=next_attempt
        )
        if following is not None:
            finished_with_next[i] = (following, reservation)
        return ("finish", 1)

    outcomes = _in_threads(len(entries) + 3, work)
    for following, reservation in finished_with_next.values():
        ledger.finish_attempt(following, gemini_success(), reservation=reservation)

    swept = sum(n for kind, n in outcomes if kind == "sweep")
    assert swept <= len(entries)
    assert not LedgerEntry.objects.filter(status__in=[CallStatus.IN_FLIGHT])
    assert not LedgerEntry.objects.filter(status=CallStatus.INTERRUPTED)  # all finished
    summary = summary_of(user)
    assert summary.total_calls == len(entries) + len(finished_with_next)
    assert summary.total_cost == GEMINI_COST_5_3 * summary.total_calls
    assert (summary.reserved_cost, summary.reserved_calls) == (ZERO, 0)
    assert_ledger_invariants()


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_sweepers_interrupt_each_row_once(django_user_model):
    user = django_user_model.objects.create_user("sleeper")
    UsageBudget.objects.create(user=user, monthly_cost_limit=Decimal("100"))
    for i in range(20):
        in_flight(user, age=stale_age(), request_id=f"r{i}")

    counts = _in_threads(4, lambda i: sweeper.sweep())

    assert sum(counts) == 20
    assert summary_of(user).total_cost == ESTIMATE * 20
    assert_ledger_invariants()


# --- The sweeper thread ---------------------------------------------------------------------------


@pytest.fixture
def locmem_cache(settings):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "sweeper-test",
        }
    }


@pytest.mark.django_db(transaction=True)
def test_sweeper_threads_sweep_once_per_interval_between_them(
    django_user_model, monkeypatch, locmem_cache
):
    """Two sweepers (two worker processes sharing a cache): one sweep per interval, not two."""
    user = django_user_model.objects.create_user("forgotten")
    UsageBudget.objects.create(user=user, monthly_cost_limit=Decimal("1"))
    in_flight(user, age=stale_age())
    real_sweep = sweeper.sweep
    sweeps: list[int] = []
    monkeypatch.setattr(sweeper, "sweep", lambda **kw: sweeps.append(real_sweep(**kw)) or 0)
    interval, duration = 0.1, 1.05
    stop = threading.Event()

    threads = [sweeper.start_sweeper(interval=interval, stop=stop) for _ in range(2)]
    time.sleep(duration)
    stop.set()
    for thread in threads:
        thread.join(5)

    assert all(thread.daemon and not thread.is_alive() for thread in threads)
    # Without the lock two threads would sweep about 2 x 10 times.
    assert 5 <= len(sweeps) <= duration / interval + 1, sweeps
    assert sweeps.count(1) == 1  # the forgotten row, swept with no one asking
    assert LedgerEntry.objects.get().status == CallStatus.INTERRUPTED
    assert_ledger_invariants()


@pytest.mark.django_db(transaction=True)
def test_the_sweeper_thread_survives_errors(monkeypatch, locmem_cache, caplog):
    calls = []

    def broken(**kwargs):
        calls.append(1)
        raise RuntimeError("database is gone")

    monkeypatch.setattr(sweeper, "sweep", broken)
    stop = threading.Event()
    thread = sweeper.start_sweeper(interval=0.05, stop=stop)
    time.sleep(0.5)
    assert thread.is_alive()
    stop.set()
    thread.join(5)
    assert len(calls) >= 2
    assert "The LLM ledger sweep failed" in caplog.text
