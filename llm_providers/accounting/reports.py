"""Cost reports, shared by the admin report page, ``manage.py llm_usage_report`` and the API.

Two views of the same money:
- ``cost_report``: from the ledger, for any date range, grouped by user, provider, model, day
  or whose key paid (``key_owner``: the platform's or the user's own, SPEC §12.2), optionally
  for one key owner only;
- ``period_report``: from the monthly summaries, which also carry admins' adjustments.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.db.models import Count, F, Q, Sum
from django.db.models.functions import Coalesce, TruncDate

from .models import PROVIDER_NAMES, CallStatus, KeyOwner, LedgerEntry, UsageSummary
from .money import ZERO, money_str

SYSTEM_KEY = "(system)"
GROUPINGS = ("user", "provider", "model", "day", "key_owner")


@dataclass(frozen=True)
class ReportRow:
    key: str
    calls: int
    tokens: int
    cost: Decimal

    def as_dict(self) -> dict:
        return {
            "key": self.key,
            "calls": self.calls,
            "tokens": self.tokens,
            "cost": money_str(self.cost),
        }


def month_bounds(today: date | None = None) -> tuple[date, date]:
    """The first and last day of ``today``'s month (UTC)."""
    today = today or datetime.now(UTC).date()
    first = today.replace(day=1)
    next_first = (first + timedelta(days=32)).replace(day=1)
    return first, next_first - timedelta(days=1)


#: The longest range a report covers, in years: more ledger rows in one query is a mistake
#: (and an end near ``date.max`` would overflow the day after it).
MAX_YEARS = 10
_MAX_DAYS = MAX_YEARS * 365 + MAX_YEARS // 4 + 1  # with their leap days, at most


class BadRange(ValueError):
    """A report's date range that cannot be reported; ``field`` is the date at fault."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def check_range(start: date, end: date) -> None:
    """Raise ``BadRange`` unless ``start`` ≤ ``end``, the range spans at most ``MAX_YEARS``
    years (of days) and it ends before ``date.max``, whose next day does not exist."""
    if end < start:
        raise BadRange("end", "The end is before the start.")
    if (end - start).days >= _MAX_DAYS:
        raise BadRange("end", f"A report covers at most {MAX_YEARS} years.")
    if end >= date.max:
        raise BadRange("end", f"The end must be before {date.max.isoformat()}.")


def day_bounds(start: date, end: date) -> tuple[datetime, datetime]:
    """The days from ``start`` to ``end``, both included, as UTC times ``[since, until)``."""
    since = datetime.combine(start, time.min, tzinfo=UTC)
    until = datetime.combine(end + timedelta(days=1), time.min, tzinfo=UTC)
    return since, until


def range_filter(start: date, end: date) -> Q:
    """The ledger rows of the days from ``start`` to ``end``, both included (UTC days)."""
    since, until = day_bounds(start, end)
    return Q(created_at__gte=since, created_at__lt=until)


def cost_report(
    start: date,
    end: date,
    group_by: str = "user",
    *,
    user_id: int | None = None,
    key_owner: str | None = None,
) -> list[ReportRow]:
    """Ledger totals between two inclusive dates, grouped; biggest cost first.

    ``calls`` counts successful provider calls; tokens and cost count every attempt (a failed
    attempt can still have been billed). A range ``check_range`` refuses raises ``BadRange``.
    ``key_owner`` (``"platform"`` or ``"user"``): only the calls made with such keys.
    """
    if group_by not in GROUPINGS:
        raise ValueError(f"group_by must be one of {', '.join(GROUPINGS)}")
    if key_owner is not None and key_owner not in KeyOwner.values:
        raise ValueError(f"key_owner must be one of {', '.join(KeyOwner.values)}")
    check_range(start, end)
    entries = LedgerEntry.objects.filter(range_filter(start, end))
    if user_id is not None:
        entries = entries.filter(user_id=user_id)
    if key_owner is not None:
        entries = entries.filter(key_owner=key_owner)
    key_expr = {
        "user": F("user__" + get_user_model().USERNAME_FIELD),
        "provider": F("provider"),
        "model": F("model"),
        "day": TruncDate("created_at", tzinfo=UTC),
        "key_owner": F("key_owner"),
    }[group_by]
    rows = (
        entries.annotate(key=key_expr)
        .values("key")
        .annotate(
            calls=Count("id", filter=Q(status=CallStatus.SUCCESS)),
            tokens=Coalesce(Sum("total_tokens"), 0),
            cost=Sum("cost"),
        )
        .order_by()
    )
    report = [
        ReportRow(
            key=_key(row["key"]),
            calls=row["calls"],
            tokens=row["tokens"],
            cost=row["cost"] if row["cost"] is not None else ZERO,
        )
        for row in rows
    ]
    if group_by == "day":
        return sorted(report, key=lambda r: r.key)
    return sorted(report, key=lambda r: (-r.cost, r.key))


def period_usage_by_provider(
    user_id: int | None, period: str, *, exclude: Iterable[str] = PROVIDER_NAMES
) -> dict[str, ReportRow]:
    """One user's ledger totals of a billing period per provider (``{name: row}``), for the
    providers without a column group in ``UsageSummary`` (custom ones): counted as
    ``cost_report`` counts."""
    rows = (
        LedgerEntry.objects.filter(user_id=user_id, period=period)
        .exclude(provider__in=list(exclude))
        .values("provider")
        .annotate(
            calls=Count("id", filter=Q(status=CallStatus.SUCCESS)),
            tokens=Coalesce(Sum("total_tokens"), 0),
            cost=Sum("cost"),
        )
        .order_by()
    )
    return {
        row["provider"]: ReportRow(
            row["provider"], row["calls"], row["tokens"], row["cost"] or ZERO
        )
        for row in rows
    }


def _key(value) -> str:
    if value is None:
        return SYSTEM_KEY
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def totals(rows: Iterable[ReportRow]) -> ReportRow:
    rows = list(rows)
    return ReportRow(
        key="total",
        calls=sum(r.calls for r in rows),
        tokens=sum(r.tokens for r in rows),
        cost=sum((r.cost for r in rows), ZERO),
    )


def period_report(period: str, *, username: str | None = None) -> list[dict]:
    """The summaries of a billing period (``YYYY-MM``), one dict per user, adjustments included."""
    summaries = UsageSummary.objects.filter(period=period).select_related("user")
    if username is not None:
        summaries = summaries.filter(**{"user__" + get_user_model().USERNAME_FIELD: username})
    result = []
    for summary in summaries:
        row = {
            "user": summary.user.get_username() if summary.user else SYSTEM_KEY,
            "period": summary.period,
        }
        for name in [*PROVIDER_NAMES, "total"]:
            row[f"{name}_calls"] = getattr(summary, f"{name}_calls")
            row[f"{name}_tokens"] = getattr(summary, f"{name}_tokens")
            row[f"{name}_cost"] = money_str(getattr(summary, f"{name}_cost"))
        result.append(row)
    return sorted(result, key=lambda r: (-Decimal(r["total_cost"]), r["user"]))


def to_csv(rows: Iterable[ReportRow]) -> str:
    """``key,calls,tokens,cost`` CSV (SPEC §8)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["key", "calls", "tokens", "cost"])
    for row in rows:
        writer.writerow([row.key, row.calls, row.tokens, money_str(row.cost)])
    return out.getvalue()
