"""Recording usage: every provider attempt becomes a ledger row, and its user's summary is
updated in the same transaction, by ``F(column) + delta`` in the database.

An attempt is in the ledger from the moment it starts (SPEC §7): ``begin_attempt`` writes its
row ``in_flight`` before the upstream request, ``finish_attempt`` settles it (and hands the
request's budget reservation to the next attempt of the chain, or releases it), and if the
process dies in between, the sweep (``accounting.sweeper``) settles it as ``interrupted``.
``record_call`` writes the rows of attempts that are already over, in one go.

Under any concurrency each summary equals the sum of its ledger rows (plus admins'
adjustments), and its reservations the estimates of its reserved rows in flight, because no
row is read and re-written: the database adds the deltas itself, and a row in flight is
settled by an ``UPDATE … WHERE status = 'in_flight'`` that only one settler can win.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Required, TypedDict

from django.core.exceptions import ValidationError
from django.db import router as db_router
from django.db import transaction
from django.db.models import F, Q, Value
from django.utils import timezone

from ..conf import llm_settings
from ..results import Attempt
from . import alerts, budgets
from .budgets import Reservation
from .models import (
    PROVIDER_NAMES,
    CallStatus,
    KeyOwner,
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
                error_code=attempt.error_code,
                error_message=error.message[:2000] if error else "",
                retries=min(attempt.retries, 32767),
                is_fallback=attempt.is_fallback,
                resumed=attempt.resumed,
            )
        )
    return entries


def summary_deltas(entries: Sequence[LedgerEntry]) -> dict[str, int | Decimal]:
    """What ``entries`` add to a summary row: {column: amount}, only the columns they change.
    The cost of rows made with the user's own key goes to the totals and to ``byok_cost``."""
    totals: dict[str, list] = {}
    byok = ZERO
    for entry in entries:
        if entry.key_owner == KeyOwner.USER:
            byok += entry.cost
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
    if byok:
        deltas["byok_cost"] = byok
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
    if any(entry.cost for entry in entries):
        alerts.check_safely(user_id, period)
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


# --- Attempts in flight -------------------------------------------------------------------------

Change = tuple[int | None, str, Mapping[str, int | Decimal]]  # (user_id, period, deltas)


class NextAttempt(TypedDict, total=False):
    provider: Required[str]
    model: Required[str]
    is_fallback: Required[bool]
    key_owner: str  # KeyOwner; the platform's when left out


class AttemptAlreadySettled(RuntimeError):
    """``finish_attempt`` was called on a row that another ``finish_attempt`` had already
    settled: a bug in the caller. Nothing was written."""


def begin_attempt(
    request_id: str,
    user_id: int | None,
    *,
    provider: str,
    model: str,
    is_fallback: bool,
    estimate: Decimal,
    reservation: Reservation | None,
    key_owner: str = KeyOwner.PLATFORM,
) -> LedgerEntry:
    """INSERT the attempt's row, status ``in_flight``, before its upstream request (one
    statement, in autocommit: the row is visible, and sweepable, even if this process dies).

    ``key_owner``: whose key the attempt is made with (``KeyOwner``; SPEC §12.2).

    ``estimate``: the request's worst-case cost, charged if the attempt is interrupted.
    ``reservation``: the request's budget reservation (``budgets.reserve``), now held by this
    row; its cost must be the estimate. The row's period is the reservation's, so its cost and
    its release land on the summary row the budget was checked on.
    """
    estimate = to_money(max(estimate, ZERO))
    if reservation is not None:
        _check_reservation(user_id, estimate, reservation)
    return LedgerEntry.objects.create(
        request_id=request_id,
        user_id=user_id,
        provider=provider,
        model=model[:200],
        is_fallback=is_fallback,
        key_owner=key_owner,
        status=CallStatus.IN_FLIGHT,
        estimate=estimate,
        reserved=reservation is not None,
        period=reservation.period if reservation is not None else billing_period(),
    )


def _check_reservation(user_id: int | None, estimate: Decimal, reservation: Reservation) -> None:
    if (reservation.user_id, reservation.cost, reservation.calls) != (user_id, estimate, 1):
        raise ValueError(
            f"The reservation ({reservation}) is not one call of the estimate {estimate} for "
            f"user {user_id}: a row in flight holds exactly what the sweep would release."
        )


def finish_attempt(
    entry: LedgerEntry,
    attempt: Attempt,
    *,
    reservation: Reservation | None,
    next_attempt: NextAttempt | None = None,
    cost_limit: Decimal | None = None,
) -> tuple[LedgerEntry, LedgerEntry | None]:
    """Settle ``entry`` (from ``begin_attempt``, or the in-flight row returned by an earlier
    ``finish_attempt``) with the attempt's outcome, in one transaction:

    - the row becomes the attempt's final row (``success``/``error``, priced as
      ``ledger_entries`` prices it) and its summary (the row's period) gets its deltas;
    - ``next_attempt`` is None: the reservation the row holds is released (in the same
      ``UPDATE`` when it is of the row's period);
    - ``next_attempt`` (``{"provider", "model", "is_fallback"}``): a new ``in_flight`` row of the
      same request is inserted and takes the reservation over (it is not released).

    ``cost_limit``: the user's monthly cost limit, when they have one: the budget alerts
    (``alerts``) are checked against it once the row is settled; without it, none are.

    Returns (final row, new in-flight row or None). When the sweep interrupted the row
    meanwhile (the call outlived ``LLM_REQUEST_DEADLINE`` + ``LLM_SWEEP_GRACE``), its charge is
    replaced by the real one in the same transaction; the sweep has released the reservation,
    so the new row, if any, holds none. Raises ``AttemptAlreadySettled`` if the row was
    already finished, ``ValueError`` if it holds a reservation and none is given, and
    database errors as they come (nothing is written then: the row stays in flight).
    """
    if entry.reserved and reservation is None:
        raise ValueError(f"Ledger row {entry.pk} holds a reservation: pass it to finish_attempt.")
    held = reservation if entry.reserved else None
    [final] = ledger_entries(entry.request_id, entry.user_id, [attempt])
    final.pk, final.period, final.created_at = entry.pk, entry.period, entry.created_at
    final.estimate, final.reserved = entry.estimate, False
    final.key_owner = entry.key_owner  # set when the attempt began, with its key
    released = held if next_attempt is None else None
    changes: list[Change] = [(entry.user_id, entry.period, summary_deltas([final]))]
    if released is not None:
        changes.append((released.user_id, released.period, budgets.release_deltas(released)))
    following = None
    with transaction.atomic(using=db_router.db_for_write(LedgerEntry)):
        add_to_summaries(changes)  # first: on PostgreSQL it takes the summary's row lock
        settled = LedgerEntry.objects.filter(pk=entry.pk, status=CallStatus.IN_FLIGHT).update(
            **_settled_fields(final, since=entry)
        )
        swept = not settled
        if swept:
            _replace_sweep_charge(entry, final, released)
        if next_attempt is not None:
            following = begin_attempt(
                entry.request_id,
                entry.user_id,
                **next_attempt,
                estimate=entry.estimate,
                reservation=None if swept else held,
            )
    if cost_limit is not None and final.cost:
        alerts.check_safely(entry.user_id, entry.period, cost_limit=cost_limit)
    return final, following


# The columns an attempt's outcome sets on its row (request, user, period, time stay).
SETTLED_FIELDS = (
    "provider",
    "model",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cost",
    "cost_source",
    "latency_ms",
    "status",
    "error_code",
    "error_message",
    "retries",
    "is_fallback",
    "resumed",
    "reserved",
)


def _settled_fields(entry: LedgerEntry, since: LedgerEntry | None = None) -> dict:
    """The outcome's columns; with ``since`` (the row as it was inserted), only those that
    differ from it: the statement is built per call, and most columns keep their defaults."""
    fields = {name: getattr(entry, name) for name in SETTLED_FIELDS}
    if since is None:
        return fields
    return {name: value for name, value in fields.items() if getattr(since, name) != value}


def _replace_sweep_charge(
    entry: LedgerEntry, final: LedgerEntry, released: Reservation | None
) -> None:
    """The row was interrupted by the sweep while its call went on: take the sweep's charge
    off its summary, give back the release made twice (the sweep released the reservation
    too), and write the real outcome over the interrupted row. Inside ``finish_attempt``'s
    transaction, after its summary update (so in the same lock order)."""
    swept = LedgerEntry.objects.filter(pk=entry.pk, status=CallStatus.INTERRUPTED).first()
    if swept is None:
        raise AttemptAlreadySettled(f"Ledger row {entry.pk} was already finished.")
    logger.warning(
        "LLM attempt %s of request %s finished after the sweep had interrupted it; its "
        "charged estimate is replaced by its real cost %s.",
        entry.pk,
        entry.request_id,
        money_str(final.cost),
    )
    changes: list[Change] = [(swept.user_id, swept.period, _negated(summary_deltas([swept])))]
    if released is not None:
        changes.append(
            (released.user_id, released.period, _negated(budgets.release_deltas(released)))
        )
    add_to_summaries(changes)
    LedgerEntry.objects.filter(pk=entry.pk, status=CallStatus.INTERRUPTED).update(
        **_settled_fields(final)
    )


def _negated(deltas: Mapping[str, int | Decimal]) -> dict[str, int | Decimal]:
    return {column: -amount for column, amount in deltas.items()}


def add_to_summaries(changes: Iterable[Change]) -> None:
    """Apply ``(user_id, period, deltas)`` changes, one ``F()`` update per summary row, in the
    order given; deltas of the same row are summed and zero amounts left out. A missing row
    (the period's first call) is created first. Call inside a transaction."""
    merged: dict[tuple[int | None, str], dict[str, int | Decimal]] = {}
    for user_id, period, deltas in changes:
        row = merged.setdefault((user_id, period), {})
        for column, amount in deltas.items():
            row[column] = row.get(column, 0) + amount
    for (user_id, period), deltas in merged.items():
        deltas = {column: amount for column, amount in deltas.items() if amount}
        if deltas and not add_to_summary(user_id, period, deltas):
            budgets.summary_row(user_id, period)
            add_to_summary(user_id, period, deltas)


def release(reservation: Reservation | None) -> None:
    """Release a reservation that no attempt holds (a request refused, or failed, before its
    first ``begin_attempt``): one ``UPDATE``."""
    if reservation is not None:
        add_to_summary(reservation.user_id, reservation.period, budgets.release_deltas(reservation))


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


def release_reservations(
    summary_id: int, *, reason: str, created_by_id: int | None = None
) -> list[UsageAdjustment]:
    """Release by hand what a summary's reservations hold and no call in flight does (left by
    an old process, or by a bug): one ``F()`` update, never below zero, kept as
    ``UsageAdjustment`` rows (``reserved_cost``, ``reserved_calls``) with the reason.

    What rows in flight hold stays reserved: they release it themselves when they end (or the
    sweep does), and releasing it twice would let calls overrun the budget.
    """
    with transaction.atomic():
        # The row lock holds off calls reserving or releasing while the rows in flight are
        # counted (both update the summary row first).
        current = (
            UsageSummary.objects.select_for_update()
            .filter(pk=summary_id)
            .values("user_id", "period", "reserved_cost", "reserved_calls")
            .get()
        )
        held = list(
            LedgerEntry.objects.filter(
                user_id=current["user_id"],
                period=current["period"],
                status=CallStatus.IN_FLIGHT,
                reserved=True,
            ).values_list("estimate", flat=True)
        )
        cost = max(current["reserved_cost"] - sum(held, ZERO), ZERO)
        calls = max(current["reserved_calls"] - len(held), 0)
        if not (cost or calls):
            return []
        # The condition makes it never go below zero even if a call released meanwhile.
        if not UsageSummary.objects.filter(
            pk=summary_id, reserved_cost__gte=cost, reserved_calls__gte=calls
        ).update(
            reserved_cost=F("reserved_cost") - Value(cost, output_field=MONEY),
            reserved_calls=F("reserved_calls") - calls,
            updated_at=timezone.now(),
        ):
            raise ValidationError("The reservations changed meanwhile: try again.")
        after = (
            UsageSummary.objects.filter(pk=summary_id)
            .values("reserved_cost", "reserved_calls")
            .get()
        )
        adjustments = [
            UsageAdjustment(
                summary_id=summary_id,
                field=field,
                old_value=_as_text(after[field] + delta),
                new_value=_as_text(after[field]),
                delta=_as_text(-delta),
                reason=reason,
                created_by_id=created_by_id,
            )
            for field, delta in (("reserved_cost", cost), ("reserved_calls", calls))
            if delta
        ]
        UsageAdjustment.objects.bulk_create(adjustments)
    return adjustments
