"""Recording usage: every provider attempt becomes a ledger row, and its user's summary is
updated in the same transaction, by ``F(column) + delta`` in the database.

``record_call`` is the one function every path ends in (``llm_text_gen``, the provider
functions, streams — finished, failed or abandoned). Under any concurrency each summary equals
the sum of its ledger rows (plus admins' adjustments), because the row is never read and
re-written: the database adds the deltas itself.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import router as db_router
from django.db import transaction
from django.db.models import F, Q, Value
from django.utils import timezone

from ..conf import llm_settings
from ..results import Attempt
from . import budgets
from .budgets import Reservation
from .models import (
    PROVIDER_NAMES,
    CallStatus,
    LedgerEntry,
    UsageAdjustment,
    UsageSummary,
    billing_period,
)
from .money import MONEY, ZERO, money_str, to_money
from .prices import cost_of

logger = logging.getLogger(__name__)


def ledger_entries(
    request_id: str, user_id: int | None, attempts: Sequence[Attempt]
) -> list[LedgerEntry]:
    """The (unsaved) ledger rows of a request's attempts, priced."""
    entries = []
    for attempt in attempts:
        usage = attempt.usage
        cost, source = cost_of(
            attempt.provider,
            [attempt.model, attempt.requested_model],
            usage,
            estimated=attempt.usage_estimated,
        )
        error = attempt.error
        entries.append(
            LedgerEntry(
                request_id=request_id,
                user_id=user_id,
                provider=attempt.provider,
                model=(attempt.model or attempt.requested_model)[:200],
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                total_tokens=usage.total_tokens,
                cost=cost,
                cost_source=source,
                latency_ms=attempt.latency_ms,
                status=CallStatus.SUCCESS if attempt.succeeded else CallStatus.ERROR,
                error_code=(
                    "client_disconnected" if attempt.abandoned else (error.code if error else "")
                ),
                error_message=error.message[:2000] if error else "",
                retries=min(attempt.retries, 32767),
                is_fallback=attempt.is_fallback,
            )
        )
    return entries


def summary_deltas(entries: Sequence[LedgerEntry]) -> dict[str, int | Decimal]:
    """What ``entries`` add to a summary row: {column: amount}, only the columns they change."""
    totals: dict[str, list] = {}
    for entry in entries:
        calls_tokens_cost = totals.setdefault(entry.provider, [0, 0, ZERO])
        calls_tokens_cost[0] += entry.status == CallStatus.SUCCESS
        calls_tokens_cost[1] += entry.total_tokens
        calls_tokens_cost[2] += entry.cost
    deltas: dict[str, int | Decimal] = {}
    for name, (calls, tokens, cost) in totals.items():
        # Providers without a column group of their own (custom ones) count in the totals only.
        if name in PROVIDER_NAMES and (calls or tokens or cost):
            deltas |= {f"{name}_calls": calls, f"{name}_tokens": tokens, f"{name}_cost": cost}
    calls = sum(t[0] for t in totals.values())
    tokens = sum(t[1] for t in totals.values())
    cost = sum((t[2] for t in totals.values()), ZERO)
    if calls or tokens or cost:
        deltas |= {"total_calls": calls, "total_tokens": tokens, "total_cost": cost}
    return deltas


def add_to_summary(user_id: int | None, period: str, deltas: Mapping[str, int | Decimal]) -> int:
    """Add ``deltas`` ({column: amount}) to the (user, period) summary row with one ``F()``
    update; return the number of rows updated (0 when the row does not exist yet)."""
    updates = {column: F(column) + _amount(column, amount) for column, amount in deltas.items()}
    # update() bypasses save(), so auto_now does not apply: the time is set here.
    return UsageSummary.objects.filter(user_id=user_id, period=period).update(
        **updates, updated_at=timezone.now()
    )


def _amount(column: str, amount: int | Decimal) -> int | Value:
    """``amount`` as the right operand of ``F(column) + …`` (money in its stored unit)."""
    return Value(amount, output_field=MONEY) if column.endswith("_cost") else amount


def record_call(
    request_id: str,
    user_id: int | None,
    attempts: Sequence[Attempt],
    reservation: Reservation | None = None,
) -> list[LedgerEntry]:
    """Write the attempts' ledger rows and add them to the user's summary, in one transaction.

    Releases the budget ``reservation`` in the same ``UPDATE`` (or, when it was made in an
    earlier period, on that period's row in the same transaction). Returns the saved rows.
    """
    entries = ledger_entries(request_id, user_id, attempts)
    period = billing_period()
    for entry in entries:
        entry.period = period
    deltas = summary_deltas(entries)
    release = reservation
    if reservation is not None and reservation.period == period:
        deltas |= budgets.release_deltas(reservation)
        release = None
    if not (entries or deltas or release):
        return entries
    with transaction.atomic(using=db_router.db_for_write(LedgerEntry)):
        # The UPDATE first: on PostgreSQL it takes the row lock before anything else is done.
        if deltas and not add_to_summary(user_id, period, deltas):
            budgets.summary_row(user_id, period)  # the period's first call: create, retry
            add_to_summary(user_id, period, deltas)
        if release is not None:  # reserved last month, recorded this month: on last month's row
            add_to_summary(release.user_id, release.period, budgets.release_deltas(release))
        LedgerEntry.objects.bulk_create(entries)
    return entries


def record_call_safely(
    request_id: str,
    user_id: int | None,
    attempts: Sequence[Attempt],
    reservation: Reservation | None = None,
) -> list[LedgerEntry]:
    """``record_call``, never failing silently: a failure is logged with everything needed to
    reconstruct the spend, and raised when ``LLM_STRICT_ACCOUNTING`` is on (as in the tests)."""
    try:
        return record_call(request_id, user_id, attempts, reservation)
    except Exception:
        logger.exception(
            "Could not record LLM usage: request=%s user=%s attempts=%s",
            request_id,
            user_id,
            [
                (
                    a.provider,
                    a.model,
                    a.usage.prompt_tokens,
                    a.usage.completion_tokens,
                    str(a.usage.reported_cost),
                    a.succeeded,
                )
                for a in attempts
            ],
        )
        if llm_settings.LLM_STRICT_ACCOUNTING:
            raise
        return ledger_entries(request_id, user_id, attempts)


# --- Admins' corrections -------------------------------------------------------------------------

# The summary columns an admin may correct; each total follows its provider column.
ADJUSTABLE_FIELDS = [
    f"{name}_{metric}" for name in PROVIDER_NAMES for metric in ("calls", "tokens", "cost")
]


def adjust_summary(
    summary_id: int,
    deltas: Mapping[str, int | Decimal],
    *,
    reason: str,
    created_by_id: int | None = None,
) -> list[UsageAdjustment]:
    """Add ``deltas`` (``{"openrouter_cost": Decimal("-0.2"), ...}``) to a summary, and to the
    totals, with one ``F()`` update; write one ``UsageAdjustment`` per changed column.

    Deltas, not new values: a call recorded while the admin was editing is kept. A change
    that would take a column below zero is refused (``ValidationError``) and nothing is written.
    """
    deltas = {
        field: to_money(delta) if field.endswith("_cost") else int(delta)
        for field, delta in deltas.items()
    }
    deltas = {field: delta for field, delta in deltas.items() if delta}
    unknown = set(deltas) - set(ADJUSTABLE_FIELDS)
    if unknown:
        raise ValueError(f"Not adjustable: {', '.join(sorted(unknown))}")
    if not deltas:
        return []
    updates: dict = {}
    not_below_zero = Q(pk=summary_id)
    for field, delta in deltas.items():
        total = "total_" + field.rpartition("_")[2]
        amount = _amount(field, delta)
        updates[field] = F(field) + amount
        updates[total] = updates.get(total, F(total)) + amount
        if delta < 0:
            not_below_zero &= Q(**{f"{field}__gte": -delta})
    with transaction.atomic():
        # UPDATE first (it takes the row's write lock), then read what it left.
        if not UsageSummary.objects.filter(not_below_zero).update(
            **updates, updated_at=timezone.now()
        ):
            raise ValidationError(
                "The summary changed meanwhile: this correction would take a column below zero. "
                "Reload the page and enter the correction again."
            )
        after = UsageSummary.objects.filter(pk=summary_id).values(*deltas).get()
        adjustments = [
            UsageAdjustment(
                summary_id=summary_id,
                field=field,
                old_value=_as_text(after[field] - delta),
                new_value=_as_text(after[field]),
                delta=_as_text(delta),
                reason=reason,
                created_by_id=created_by_id,
            )
            for field, delta in deltas.items()
        ]
        UsageAdjustment.objects.bulk_create(adjustments)
    return adjustments


def _as_text(value: int | Decimal) -> str:
    return money_str(value) if isinstance(value, Decimal) else str(value)
