"""Helpers of the accounting tests: attempts to record, and the ledger's invariants."""

from decimal import Decimal

from django.db.models import Count, Q, Sum

from llm_providers.accounting.money import ZERO
from llm_providers.exceptions import ProviderUnavailable
from llm_providers.models import PROVIDER_NAMES, CallStatus, LedgerEntry, UsageSummary
from llm_providers.results import Attempt, Completion, Usage

# gemini-2.5-flash: $0.30 / $2.50 per million tokens (the seeded price table).
GEMINI_COST_5_3 = Decimal("0.000009")  # 5 prompt + 3 completion tokens


def gemini_success(prompt=5, completion=3) -> Attempt:
    return Attempt(
        provider="gemini",
        model="gemini-2.5-flash",
        is_fallback=False,
        completion=Completion(
            "t", "gemini", "gemini-2.5-flash", Usage(prompt, completion, prompt + completion)
        ),
        requests=1,
        latency_ms=120,
    )


def gemini_failure(partial: Usage | None = None, requests=3) -> Attempt:
    error = ProviderUnavailable("Gemini is overloaded", provider="gemini")
    return Attempt(
        provider="gemini",
        model="gemini-2.5-flash",
        is_fallback=False,
        error=error,
        requests=requests,
        partial_usage=partial,
        latency_ms=900,
    )


def openrouter_success(cost="0.00042", is_fallback=True) -> Attempt:
    return Attempt(
        provider="openrouter",
        model="openai/gpt-4o-mini",
        is_fallback=is_fallback,
        completion=Completion(
            "t", "openrouter", "openai/gpt-4o-mini", Usage(10, 9, 19, Decimal(cost))
        ),
        requests=1,
    )


def _adjusted(summary: UsageSummary, field: str):
    """What admins' corrections added to ``field`` (a provider column or a total)."""
    group, _, metric = field.rpartition("_")
    fields = [f"{name}_{metric}" for name in PROVIDER_NAMES] if group == "total" else [field]
    parse = Decimal if metric == "cost" else int
    return sum((parse(a.delta) for a in summary.adjustments.filter(field__in=fields)), parse(0))


def assert_ledger_invariants():
    """Every summary equals the sum of its ledger rows plus admins' adjustments; its
    reservations equal the estimates of its reserved rows in flight; only rows in flight hold a
    reservation."""
    assert not LedgerEntry.objects.filter(reserved=True).exclude(status=CallStatus.IN_FLIGHT)
    for summary in UsageSummary.objects.all():
        rows = LedgerEntry.objects.filter(user_id=summary.user_id, period=summary.period)
        for name in [*PROVIDER_NAMES, "total"]:
            subset = rows if name == "total" else rows.filter(provider=name)
            sums = subset.aggregate(
                calls=Count("id", filter=Q(status=CallStatus.SUCCESS)),
                tokens=Sum("total_tokens"),
                cost=Sum("cost"),
            )
            for metric, value in sums.items():
                column = f"{name}_{metric}"
                expected = (value or (ZERO if metric == "cost" else 0)) + _adjusted(summary, column)
                assert getattr(summary, column) == expected, (summary, column)
        held = rows.filter(status=CallStatus.IN_FLIGHT, reserved=True).aggregate(
            calls=Count("id"), cost=Sum("estimate")
        )
        assert summary.reserved_calls == held["calls"], summary
        assert summary.reserved_cost == (held["cost"] or ZERO), summary


def summary_of(user) -> UsageSummary:
    return UsageSummary.objects.get(user=user)
