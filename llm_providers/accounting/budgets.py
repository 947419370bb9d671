"""Budgets: refuse a call that would exceed a user's monthly limits, before any upstream request.

A check-then-call budget lets concurrent requests slip past together (each sees the same spend).
So a call first *reserves* its worst-case cost and one call on the user's summary row, with a
single conditional ``UPDATE … WHERE total + reserved + estimate <= limit``: the database applies
it atomically (SQLite serialises writers; PostgreSQL re-checks the condition on the locked row),
so concurrent reservations can jointly pass a limit by at most one call's reservation. When the
call is recorded, the reservation is released in the same transaction that adds the real cost.

Calls made with a user's own key (SPEC §12.2) are paid by the user to their provider, so by
default they do not count against the user's cost limit (``LLM_BYOK_COUNTS_AGAINST_BUDGET``
turns that off). The summary's totals still hold them, so that each summary equals the sum of
its ledger rows (SPEC §7); their part is kept apart in the ``byok_cost`` column, and the limit
is checked against ``total_cost - byok_cost`` (``counted_cost``). The chain's reservation
leaves out the entries that would use the user's key (the router's estimate), so a request
answered with the user's key holds nothing against the limit either. Call limits count every
call: they bound use, not spend.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from django.db.models import F, Q, Value
from django.db.models.lookups import LessThanOrEqual
from django.utils import timezone

from ..conf import llm_settings
from ..exceptions import BudgetExceeded
from .models import UsageBudget, UsageSummary, billing_period
from .money import MONEY, ZERO, money_str, to_money


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


def counts_byok() -> bool:
    """Whether spend with users' own keys counts against their cost limits."""
    return bool(llm_settings.LLM_BYOK_COUNTS_AGAINST_BUDGET)


def counted_cost(summary) -> Decimal:
    """What of a summary's spend counts against the cost limit (see the module docstring);
    ``summary``: a ``UsageSummary``, or None (nothing spent)."""
    if summary is None:
        return ZERO
    return summary.total_cost if counts_byok() else summary.total_cost - summary.byok_cost


def summary_row(user_id: int | None, period: str) -> UsageSummary:
    """The summary row of (user, period), created if missing. get_or_create is safe under
    concurrent creation: the loser's INSERT hits the unique constraint and it reads the row."""
    return UsageSummary.objects.get_or_create(user_id=user_id, period=period)[0]


def reserve(
    user_id: int | None, estimate: Decimal, *, user=None, limits: Limits | None = None
) -> Reservation | None:
    """Reserve ``estimate`` USD and one call, or raise BudgetExceeded. None when unlimited.

    ``user``: the user object, when the caller has it (see ``limits_for``); ``limits``: the
    user's limits, when the caller has read them already."""
    limits = limits or limits_for(user_id, user)
    if limits.unlimited:
        return None
    assert user_id is not None
    period = billing_period()
    estimate = to_money(max(estimate, ZERO))
    # One statement, atomic on its own: no transaction around it. Creating a missing row and
    # retrying is safe without one too, as the retry is the same conditional UPDATE.
    updated = _reserve_update(user_id, period, limits, estimate)
    if not updated:  # over a limit, or no row yet (the month's first call): create it, retry
        summary_row(user_id, period)
        updated = _reserve_update(user_id, period, limits, estimate)
    if updated:
        return Reservation(user_id=user_id, period=period, cost=estimate)
    raise _exceeded(user_id, period, limits, estimate)


def _reserve_update(user_id: int, period: str, limits: Limits, estimate: Decimal) -> int:
    """Add the estimate and one call to the row's reservations if its totals and reservations
    leave room for them: ``UPDATE … WHERE total + reserved + estimate <= limit``, the condition
    on the row's own columns, so the database checks it on the row it updates (the one it has
    locked), not on a value read before."""
    amount = Value(estimate, output_field=MONEY)
    room = Q(user_id=user_id, period=period)
    if limits.cost is not None:
        spent = F("total_cost") if counts_byok() else F("total_cost") - F("byok_cost")
        room &= LessThanOrEqual(
            spent + F("reserved_cost") + amount,
            Value(to_money(limits.cost), output_field=MONEY),
        )
    if limits.calls is not None:
        room &= LessThanOrEqual(F("total_calls") + F("reserved_calls") + 1, limits.calls)
    return UsageSummary.objects.filter(room).update(
        reserved_cost=F("reserved_cost") + amount,
        reserved_calls=F("reserved_calls") + 1,
        updated_at=timezone.now(),  # update() bypasses auto_now
    )


def _exceeded(user_id: int, period: str, limits: Limits, estimate: Decimal) -> BudgetExceeded:
    summary = UsageSummary.objects.get(user_id=user_id, period=period)
    resets = resets_at(period)
    if limits.calls is not None and summary.total_calls + summary.reserved_calls + 1 > limits.calls:
        return BudgetExceeded(
            f"Monthly call limit reached: {summary.total_calls} of {limits.calls} calls used "
            f"in {period}, {summary.reserved_calls} held by calls in flight; the limit resets "
            f"at {resets}.",
            limit="calls",
            limit_value=limits.calls,
            used=summary.total_calls,
            reserved=summary.reserved_calls,
            needed=1,
            resets_at=resets,
        )
    spent = counted_cost(summary)
    return BudgetExceeded(
        f"Monthly budget exceeded: ${money_str(spent)} of "
        f"${money_str(limits.cost)} spent in {period} and "
        f"${money_str(summary.reserved_cost)} reserved by calls in flight; this call may cost "
        f"up to ${money_str(estimate)}. The budget resets at {resets}.",
        limit="cost",
        limit_value=to_money(limits.cost),
        used=spent,
        reserved=summary.reserved_cost,
        needed=estimate,
        resets_at=resets,
    )


def unpriced_refusal(
    user_id: int, limits: Limits, unpriced: list[tuple[str, str]]
) -> BudgetExceeded:
    """The refusal of a call to models with no known price, for a user with a cost limit
    (``LLM_UNPRICED_MODELS = "refuse"``): its cost could not be reserved, so it could overrun
    the limit by any amount."""
    period = billing_period()
    summary = UsageSummary.objects.filter(user_id=user_id, period=period).first()
    used, reserved = counted_cost(summary), summary.reserved_cost if summary else ZERO
    names = ", ".join(f"{provider}/{model}" for provider, model in unpriced)
    return BudgetExceeded(
        f"No price is known for {names}, so its cost cannot be held against your monthly "
        f"budget of ${money_str(limits.cost)}. An administrator can price it under Model "
        "prices in the admin (USD per million tokens) or, for OpenRouter models, with "
        "`manage.py sync_model_prices`.",
        limit="cost",
        limit_value=to_money(limits.cost),
        used=used,
        reserved=reserved,
        needed=None,
        resets_at=resets_at(period),
    )


def resets_at(period: str) -> str:
    """When the period after ``period`` (``YYYY-MM``) starts: ISO time, UTC."""
    year, month = (int(part) for part in period.split("-"))
    year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return datetime(year, month, 1, tzinfo=UTC).isoformat().replace("+00:00", "Z")


def release_deltas(reservation: Reservation) -> dict[str, int | Decimal]:
    """What releasing ``reservation`` adds to its summary row: {column: amount} (negative), for
    ``ledger.add_to_summary`` — in the recording UPDATE itself when both are in one period."""
    return {"reserved_cost": -reservation.cost, "reserved_calls": -reservation.calls}


def remaining(
    user_id: int | None, summary: UsageSummary | None, limits: Limits | None = None
) -> dict:
    """``{cost_limit, calls_limit, cost_remaining, calls_remaining, reserved_cost,
    reserved_calls}`` (None = unlimited). What remains is what a new call may still reserve:
    the limit less what was spent and what calls in flight hold.

    ``limits`` saves the query when the caller has them (the admin's budget list)."""
    limits = limits or limits_for(user_id)
    spent_cost = counted_cost(summary)
    spent_calls = summary.total_calls if summary else 0
    held_cost = summary.reserved_cost if summary else ZERO
    held_calls = summary.reserved_calls if summary else 0
    return {
        "cost_limit": limits.cost,
        "calls_limit": limits.calls,
        "cost_remaining": (
            None if limits.cost is None else max(limits.cost - spent_cost - held_cost, ZERO)
        ),
        "calls_remaining": (
            None if limits.calls is None else max(limits.calls - spent_calls - held_calls, 0)
        ),
        "reserved_cost": held_cost,
        "reserved_calls": held_calls,
    }
