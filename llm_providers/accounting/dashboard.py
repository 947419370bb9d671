"""The figures of the admin's dashboard (SPEC §14): spend per day over a period, each provider's
attempts and failures, the models that cost most, and each user's budget use this month.

Money is counted as ``reports.cost_report`` counts it, with its own function wherever it can
answer: *calls* are successful attempts; *tokens* and *cost* are every attempt's (a failed
attempt can still have been billed, and an interrupted one is charged its reservation, SPEC
§7). Failures are the attempts that ended in an error or were interrupted (their process died
mid-call); attempts still in flight have not ended, so they are neither a success nor a
failure yet.

Budget use is read from the month's summaries (what budgets are checked against), with each
user's limits as ``budgets.limits_for`` gives them (the user's budget row, else the defaults).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal

from django.db.models import Count, Q, Sum
from django.db.models.functions import Coalesce

from . import budgets, reports
from .models import CallStatus, LedgerEntry, UsageBudget, UsageSummary, billing_period
from .money import ZERO

FAILED = (CallStatus.ERROR, CallStatus.INTERRUPTED)


def days(start: date, end: date) -> list[date]:
    """Every day from ``start`` to ``end``, both included."""
    return [start + timedelta(days=n) for n in range((end - start).days + 1)]


def daily_spend(start: date, end: date) -> list[reports.ReportRow]:
    """``cost_report(start, end, "day")`` with every day of the range, the days without calls
    as zero rows: one row per day, oldest first, keyed by the ISO date."""
    found = {row.key: row for row in reports.cost_report(start, end, "day")}
    return [
        found.get(day.isoformat(), reports.ReportRow(day.isoformat(), 0, 0, ZERO))
        for day in days(start, end)
    ]


def period_total(start: date, end: date) -> reports.ReportRow:
    """The range's calls, tokens and cost, as ``cost_report`` counts them."""
    return reports.totals(reports.cost_report(start, end, "key_owner"))


@dataclass(frozen=True)
class ModelRow:
    """One (provider, model)'s attempts in a period."""

    provider: str
    model: str
    attempts: int  # every ledger row
    calls: int  # successful attempts
    failures: int  # ended in an error or interrupted
    in_flight: int
    tokens: int
    cost: Decimal


@dataclass(frozen=True)
class ProviderRow:
    """One provider's attempts in a period: ``calls``, ``tokens`` and ``cost`` are
    ``cost_report``'s, the failures are counted from the same rows."""

    provider: str
    attempts: int
    calls: int
    failures: int
    in_flight: int
    tokens: int
    cost: Decimal

    @property
    def failure_rate(self) -> Decimal | None:
        """Failed attempts over ended ones (success or failure); None when none ended."""
        return _rate(self.failures, self.calls + self.failures)


def _rate(part: int, whole: int) -> Decimal | None:
    return Decimal(part) / whole if whole else None


def attempts_by_model(start: date, end: date) -> list[ModelRow]:
    """The range's attempts per (provider, model), biggest cost first.

    ``cost_report`` groups by one key only; this is its count (same range, same sums) by both,
    with the attempts counted by outcome."""
    reports.check_range(start, end)
    rows = (
        LedgerEntry.objects.filter(reports.range_filter(start, end))
        .values("provider", "model")
        .annotate(
            attempts=Count("id"),
            calls=Count("id", filter=Q(status=CallStatus.SUCCESS)),
            failures=Count("id", filter=Q(status__in=FAILED)),
            in_flight=Count("id", filter=Q(status=CallStatus.IN_FLIGHT)),
            tokens=Coalesce(Sum("total_tokens"), 0),
            cost=Sum("cost"),
        )
        .order_by()
    )
    found = [
        ModelRow(**{**row, "cost": row["cost"] if row["cost"] is not None else ZERO})
        for row in rows
    ]
    return sorted(found, key=lambda r: (-r.cost, -r.attempts, r.provider, r.model))


def provider_activity(
    start: date, end: date, *, models: Iterable[ModelRow] | None = None
) -> list[ProviderRow]:
    """Each provider with attempts in the range, biggest cost first: ``cost_report``'s
    provider rows, with the attempts by outcome summed from ``models`` (``attempts_by_model``
    of the same range, when the caller has it)."""
    models = attempts_by_model(start, end) if models is None else models
    outcomes: dict[str, tuple[int, int, int]] = {}
    for row in models:
        attempts, failures, in_flight = outcomes.get(row.provider, (0, 0, 0))
        outcomes[row.provider] = (
            attempts + row.attempts,
            failures + row.failures,
            in_flight + row.in_flight,
        )
    providers = []
    for row in reports.cost_report(start, end, "provider"):
        attempts, failures, in_flight = outcomes.get(row.key, (0, 0, 0))
        providers.append(
            ProviderRow(row.key, attempts, row.calls, failures, in_flight, row.tokens, row.cost)
        )
    return providers


@dataclass(frozen=True)
class BudgetUse:
    """A user's use of their monthly budget: what counts against the limits (``counted_cost``,
    successful calls), what calls in flight hold, and the limits (None = unlimited)."""

    user_id: int | None
    username: str
    spent: Decimal
    reserved_cost: Decimal
    cost_limit: Decimal | None
    calls: int
    reserved_calls: int
    calls_limit: int | None

    @property
    def cost_share(self) -> Decimal | None:
        """The part of the cost limit spent (1 = all of it); None when unlimited."""
        return _share(self.spent, self.cost_limit)

    @property
    def calls_share(self) -> Decimal | None:
        return _share(Decimal(self.calls), self.calls_limit)

    @property
    def share(self) -> Decimal | None:
        """The larger of the two shares: how near the user is to being refused."""
        shares = [s for s in (self.cost_share, self.calls_share) if s is not None]
        return max(shares, default=None)


def _share(used: Decimal, limit: Decimal | int | None) -> Decimal | None:
    if limit is None:
        return None
    if limit <= 0:  # a limit of nothing is used up
        return Decimal(1)
    return used / Decimal(limit)


def budget_use(period: str | None = None) -> list[BudgetUse]:
    """Each user's budget use in ``period`` (``YYYY-MM``; this month by default): every user
    with a summary of the period or a budget row, and system usage (no budget) when it has a
    summary. Nearest to a limit first, then the unlimited by spend."""
    period = period or billing_period()
    summaries = list(UsageSummary.objects.filter(period=period).select_related("user__llm_budget"))
    with_summary = {s.user_id for s in summaries}
    uses = [_use(s.user_id, s.user, s) for s in summaries]
    others = UsageBudget.objects.exclude(user_id__in=[u for u in with_summary if u is not None])
    uses += [_use(b.user_id, b.user, None) for b in others.select_related("user")]
    return sorted(uses, key=_nearest_first)


def _use(user_id: int | None, user, summary: UsageSummary | None) -> BudgetUse:
    if user is not None:
        # Loaded with its budget row (or its absence) just now: limits_for reads no more.
        budgets.mark_preloaded(user)
    limits = budgets.limits_for(user_id, user)
    return BudgetUse(
        user_id=user_id,
        username=user.get_username() if user is not None else reports.SYSTEM_KEY,
        spent=budgets.counted_cost(summary),
        reserved_cost=summary.reserved_cost if summary else ZERO,
        cost_limit=limits.cost,
        calls=summary.total_calls if summary else 0,
        reserved_calls=summary.reserved_calls if summary else 0,
        calls_limit=limits.calls,
    )


def _nearest_first(use: BudgetUse) -> tuple:
    share = use.share
    return (share is None, -(share or 0), -use.spent, use.username)
