"""Budgets: refuse a call that would exceed a user's monthly limits, before any upstream request.

A check-then-call budget lets concurrent requests slip past together (each sees the same spend).
So a call first *reserves* its worst-case cost and one call on the user's summary row, with a
single conditional ``UPDATE … WHERE total + reserved + estimate <= limit``: the database applies
it atomically (SQLite serialises writers; PostgreSQL re-checks the condition on the locked row),
so concurrent reservations can jointly pass a limit by at most one call's reservation. When the
call is recorded, the reservation is released in the same transaction that adds the real cost.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from decimal import Decimal

from django.db import connections
from django.db import router as db_router

from ..conf import llm_settings
from ..exceptions import BudgetExceeded
from .db import write_transaction
from .models import UsageBudget, UsageSummary, billing_period
from .money import ZERO, money_str, to_money


@dataclass(frozen=True)
class Limits:
    cost: Decimal | None  # USD a month; None = unlimited
    calls: int | None  # successful calls a month; None = unlimited

    @property
    def unlimited(self) -> bool:
        return self.cost is None and self.calls is None


@dataclass(frozen=True)
class Reservation:
    """What a call in flight holds on its user's summary row until it is recorded."""

    user_id: int
    period: str
    cost: Decimal
    calls: int = 1


# Set on a user object by the API's token authentication, which loads the user's budget row
# (or its absence) in the same query as the user: ``limits_for`` then needs no query of its own.
PRELOADED_MARK = "_llm_budget_preloaded"
_NOT_LOADED = object()


def mark_preloaded(user) -> None:
    """Say that ``user`` was just loaded with ``select_related("llm_budget")``."""
    setattr(user, PRELOADED_MARK, True)


def _preloaded_budget(user):
    """The budget row loaded with ``user`` by this request's authentication (None when the user
    has none), or ``_NOT_LOADED``. Only a fresh load counts: a budget cached on a long-lived
    user object by an earlier attribute access could be stale."""
    if user is None or not getattr(user, PRELOADED_MARK, False):
        return _NOT_LOADED
    relation = UsageBudget._meta.get_field("user").remote_field
    if not relation.is_cached(user):
        return _NOT_LOADED
    return relation.get_cached_value(user)


def limits_for(user_id: int | None, user=None) -> Limits:
    """The user's monthly limits. ``user``: the user object, when the caller has it (its
    preloaded budget row saves the query)."""
    if user_id is None:
        return Limits(None, None)  # system usage has no budget
    budget = _preloaded_budget(user) if getattr(user, "pk", None) == user_id else _NOT_LOADED
    if budget is _NOT_LOADED:
        found = list(
            UsageBudget.objects.filter(user_id=user_id).values_list(
                "monthly_cost_limit", "monthly_call_limit"
            )
        )
    else:
        found = [] if budget is None else [(budget.monthly_cost_limit, budget.monthly_call_limit)]
    if found:
        cost, calls = found[0]
        return Limits(cost, calls)
    default_cost = llm_settings.LLM_DEFAULT_MONTHLY_COST_LIMIT
    default_calls = llm_settings.LLM_DEFAULT_MONTHLY_CALL_LIMIT
    return Limits(
        Decimal(str(default_cost)) if default_cost not in (None, "") else None,
        int(default_calls) if default_calls not in (None, "") else None,
    )


def summary_row(user_id: int | None, period: str) -> UsageSummary:
    """The summary row of (user, period), created if missing. get_or_create is safe under
    concurrent creation: the loser's INSERT hits the unique constraint and it reads the row."""
    return UsageSummary.objects.get_or_create(user_id=user_id, period=period)[0]


def reserve(user_id: int | None, estimate: Decimal, *, user=None) -> Reservation | None:
    """Reserve ``estimate`` USD and one call, or raise BudgetExceeded. None when unlimited.

    ``user``: the user object, when the caller has it (see ``limits_for``)."""
    limits = limits_for(user_id, user)
    if limits.unlimited:
        return None
    assert user_id is not None
    period = billing_period()
    estimate = to_money(max(estimate, ZERO))
    with write_transaction():
        updated = _reserve_on_row(user_id, period, limits, estimate)
    if updated:
        return Reservation(user_id=user_id, period=period, cost=estimate)
    raise _exceeded(user_id, period, limits, estimate)


def _reserve_on_row(user_id: int, period: str, limits: Limits, estimate: Decimal) -> int:
    """Reserve on the (user, period) summary row, created if missing; 0 when over a limit."""
    updated = _reserve_update(user_id, period, limits, estimate)
    if not updated:  # over a limit, or no row yet (the month's first call): create it, retry
        summary_row(user_id, period)
        updated = _reserve_update(user_id, period, limits, estimate)
    return updated


def _reserve_update(user_id: int, period: str, limits: Limits, estimate: Decimal) -> int:
    """The reservation's conditional ``UPDATE``: ``update(reserved_cost=F("reserved_cost") +
    estimate, reserved_calls=F("reserved_calls") + 1)`` of the row, if its totals and
    reservations leave room for the estimate and one call. Written out, and built once per kind
    of limits: the ORM would take more CPU to compile it on every call than the database takes
    to run it."""
    using = db_router.db_for_write(UsageSummary)
    connection = connections[using]
    money = UsageSummary._meta.get_field("reserved_cost")
    amount = money.get_db_prep_value(estimate, connection)
    params = [amount, user_id, period]
    if limits.cost is not None:
        params += [money.get_db_prep_value(to_money(limits.cost), connection), amount]
    if limits.calls is not None:
        params.append(limits.calls - 1)
    sql = _reserve_sql(using, limits.cost is not None, limits.calls is not None)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


@functools.lru_cache(maxsize=16)
def _reserve_sql(using: str, cost_limited: bool, calls_limited: bool) -> str:
    """``_reserve_update``'s statement; its parameters: the estimate, the user, the period, then
    the cost limit and the estimate (``cost_limited``), the call limit less one (``calls_limited``).
    """
    meta = UsageSummary._meta
    quote = connections[using].ops.quote_name

    def column(name: str) -> str:
        return quote(meta.get_field(name).column)

    reserved_cost, reserved_calls = column("reserved_cost"), column("reserved_calls")
    sql = (
        f"UPDATE {quote(meta.db_table)} SET {reserved_cost} = {reserved_cost} + %s, "
        f"{reserved_calls} = {reserved_calls} + 1 "
        f"WHERE {column('user')} = %s AND {column('period')} = %s"
    )
    # total + reserved + estimate <= limit, written with the row's columns so the condition is
    # evaluated on the row being updated, not on a snapshot of it.
    if cost_limited:
        sql += f" AND {column('total_cost')} <= %s - {reserved_cost} - %s"
    if calls_limited:
        sql += f" AND {column('total_calls')} <= %s - {reserved_calls}"
    return sql


def _exceeded(user_id: int, period: str, limits: Limits, estimate: Decimal) -> BudgetExceeded:
    summary = UsageSummary.objects.get(user_id=user_id, period=period)
    if limits.calls is not None and summary.total_calls + summary.reserved_calls + 1 > limits.calls:
        return BudgetExceeded(
            f"Monthly call limit reached: {summary.total_calls} of {limits.calls} calls used in "
            f"{period}."
        )
    return BudgetExceeded(
        f"Monthly budget exceeded: ${money_str(summary.total_cost)} of "
        f"${money_str(limits.cost)} spent in {period}; this call may cost up to "
        f"${money_str(estimate)}."
    )


def release_deltas(reservation: Reservation) -> dict[str, int | Decimal]:
    """What releasing ``reservation`` adds to its summary row: {column: amount} (negative), for
    ``usage.add_to_summary`` — in the recording UPDATE itself when both are in one period."""
    return {"reserved_cost": -reservation.cost, "reserved_calls": -reservation.calls}


def remaining(
    user_id: int | None, summary: UsageSummary | None, limits: Limits | None = None
) -> dict:
    """``{cost_limit, calls_limit, cost_remaining, calls_remaining}`` (None = unlimited).

    ``limits`` saves the query when the caller has them (the admin's budget list)."""
    limits = limits or limits_for(user_id)
    spent_cost = summary.total_cost if summary else ZERO
    spent_calls = summary.total_calls if summary else 0
    return {
        "cost_limit": limits.cost,
        "calls_limit": limits.calls,
        "cost_remaining": None if limits.cost is None else max(limits.cost - spent_cost, ZERO),
        "calls_remaining": None if limits.calls is None else max(limits.calls - spent_calls, 0),
    }
