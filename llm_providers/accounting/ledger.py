"""Recording usage: every provider attempt becomes a ledger row, and its user's summary is
updated in the same transaction, by ``column = column + delta`` in the database.

``record_call`` is the one function every path ends in (``llm_text_gen``, the provider
functions, streams — finished, failed or abandoned). Under any concurrency each summary equals
the sum of its ledger rows (plus admins' adjustments), because the row is never read and
re-written: the database adds the deltas itself.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import connections, transaction
from django.db import router as db_router
from django.db.models import F, Q, Value

from ..conf import llm_settings
from ..results import Attempt
from . import budgets
from .budgets import Reservation
from .db import GroupCommit, insert
from .models import (
    PROVIDER_NAMES,
    CallStatus,
    LedgerEntry,
    UsageAdjustment,
    UsageSummary,
    billing_period,
)
from .money import ZERO, MoneyField, money_str, to_money
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
    totals = {name: [0, 0, ZERO] for name in PROVIDER_NAMES}
    for entry in entries:
        calls_tokens_cost = totals[entry.provider]
        calls_tokens_cost[0] += entry.status == CallStatus.SUCCESS
        calls_tokens_cost[1] += entry.total_tokens
        calls_tokens_cost[2] += entry.cost
    deltas: dict[str, int | Decimal] = {}
    for name, (calls, tokens, cost) in totals.items():
        if calls or tokens or cost:
            deltas |= {f"{name}_calls": calls, f"{name}_tokens": tokens, f"{name}_cost": cost}
    calls = sum(t[0] for t in totals.values())
    tokens = sum(t[1] for t in totals.values())
    cost = sum((t[2] for t in totals.values()), ZERO)
    if calls or tokens or cost:
        deltas |= {"total_calls": calls, "total_tokens": tokens, "total_cost": cost}
    return deltas


def add_to_summary(user_id: int | None, period: str, deltas: Mapping[str, int | Decimal]) -> int:
    """Add ``deltas`` ({column: amount}) to the (user, period) summary row in one ``UPDATE``;
    return the number of rows updated (0 when the row does not exist yet).

    The statement is ``update(column=F(column) + amount, ...)`` written out, and built once per
    set of columns: the database adds the amounts itself, as with ``F()``, but the ORM takes
    about a millisecond of CPU to compile that update, more than the database takes to run it,
    and it runs on every call.
    """
    using = db_router.db_for_write(UsageSummary)
    connection = connections[using]
    sql, fields = _summary_update(using, tuple(deltas), user_id is None)
    params = [
        field.get_db_prep_value(amount, connection)
        for field, amount in zip(fields, deltas.values(), strict=True)
    ]
    params += [period] if user_id is None else [user_id, period]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


@functools.lru_cache(maxsize=256)
def _summary_update(using: str, columns: tuple[str, ...], system: bool) -> tuple[str, list]:
    """``add_to_summary``'s statement for these columns (and their fields): the amounts, then
    the user (unless ``system``) and the period are its parameters."""
    quote = connections[using].ops.quote_name
    meta = UsageSummary._meta
    fields = [meta.get_field(name) for name in columns]
    assignments = ", ".join(f"{quote(f.column)} = {quote(f.column)} + %s" for f in fields)
    user = quote(meta.get_field("user").column)
    where = f"{user} IS NULL" if system else f"{user} = %s"
    where += f" AND {quote('period')} = %s"
    return f"UPDATE {quote(meta.db_table)} SET {assignments} WHERE {where}", fields


@dataclass
class _Record:
    """What one call writes: its ledger rows, and what they add to its summary row."""

    user_id: int | None
    period: str
    entries: list[LedgerEntry]
    deltas: dict[str, int | Decimal]  # summary column → amount (the reservation released too)
    release: Reservation | None  # a reservation made in another period, released on its row


def record_call(
    request_id: str,
    user_id: int | None,
    attempts: Sequence[Attempt],
    reservation: Reservation | None = None,
) -> list[LedgerEntry]:
    """Write the attempts' ledger rows and add them to the user's summary, in one transaction.

    Releases the budget ``reservation`` in the same ``UPDATE``. Returns the saved rows once
    they are committed. Concurrent calls of one process may share the transaction (see
    ``db.GroupCommit``): each summary row is then updated once with the sum of their rows.
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
    if entries or deltas or release:
        _recorder.submit(
            _Record(user_id, period, entries, deltas, release),
            using=db_router.db_for_write(LedgerEntry),
        )
    return entries


def _write_records(records: Sequence[_Record]) -> None:
    """Write ``records`` (inside the caller's transaction): one summary ``UPDATE`` per (user,
    period), then all the ledger rows in one ``INSERT`` (more where SQLite's limit of
    parameters requires it; see ``db.insert``)."""
    totals: dict[tuple[int | None, str], dict[str, int | Decimal]] = {}
    for record in records:
        row = totals.setdefault((record.user_id, record.period), {})
        for column, amount in record.deltas.items():
            row[column] = row.get(column, 0) + amount
    for (user_id, period), deltas in totals.items():
        deltas = {column: amount for column, amount in deltas.items() if amount}
        # UPDATE first: on SQLite it takes the write lock before anything is read.
        if deltas and not add_to_summary(user_id, period, deltas):
            budgets.summary_row(user_id, period)
            add_to_summary(user_id, period, deltas)
    for record in records:
        release = record.release
        if release is not None:  # reserved last month, recorded this month: on last month's row
            add_to_summary(release.user_id, release.period, budgets.release_deltas(release))
    entries = [entry for record in records for entry in record.entries]
    for entry in entries:
        entry.pk = None  # written again after a failed shared transaction: new ids
    insert(entries, using=db_router.db_for_write(LedgerEntry))


_recorder = GroupCommit(_write_records)


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
        amount = Value(delta, output_field=MoneyField()) if field.endswith("_cost") else delta
        updates[field] = F(field) + amount
        updates[total] = updates.get(total, F(total)) + amount
        if delta < 0:
            not_below_zero &= Q(**{f"{field}__gte": -delta})
    with transaction.atomic():
        # UPDATE first (it takes the row's write lock), then read what it left.
        if not UsageSummary.objects.filter(not_below_zero).update(**updates):
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
