"""Model prices and users' budgets."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import HttpRequest

from ..accounting import budgets
from ..accounting.budgets import Limits
from ..accounting.money import ZERO, MoneyField
from ..forms import ModelPriceForm
from ..models import ModelPrice, PriceSource, UsageBudget, UsageSummary, billing_period
from .common import (
    USERNAME_LOOKUP,
    ListMedia,
    ProviderFilter,
    clipped,
    provider_label,
    short_time,
    usd,
    with_note,
)


@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):
    """Prices in USD per million tokens. A price saved here is marked ``admin``, and
    ``sync_model_prices`` leaves it alone."""

    Media = ListMedia
    form = ModelPriceForm
    list_display = [
        "provider_display",
        "model_display",
        "prompt_display",
        "completion_display",
        "source",
        "updated",
    ]
    list_filter = [("provider", ProviderFilter), "source"]
    search_fields = ["model"]
    readonly_fields = ["source", "updated_at"]

    def get_fields(self, request: HttpRequest, obj=None) -> list[str]:
        fields = ["provider", "model", "prompt_per_million", "completion_per_million"]
        return fields if obj is None else [*fields, "source", "updated_at"]

    @admin.display(description="provider", ordering="provider")
    def provider_display(self, obj: ModelPrice) -> str:
        return provider_label(obj.provider)

    @admin.display(description="model", ordering="model")
    def model_display(self, obj: ModelPrice) -> str:
        return clipped(obj.model)

    @admin.display(description="prompt, $ / 1M tokens", ordering="prompt_per_million")
    def prompt_display(self, obj: ModelPrice) -> str:
        return usd(obj.prompt_per_million)

    @admin.display(description="completion, $ / 1M tokens", ordering="completion_per_million")
    def completion_display(self, obj: ModelPrice) -> str:
        return usd(obj.completion_per_million)

    @admin.display(description="updated (UTC)", ordering="updated_at")
    def updated(self, obj: ModelPrice) -> str:
        return short_time(obj.updated_at)

    def save_model(self, request: HttpRequest, obj: ModelPrice, form, change: bool) -> None:
        obj.source = PriceSource.ADMIN
        super().save_model(request, obj, form, change)  # save() clears the price cache


@admin.register(UsageBudget)
class UsageBudgetAdmin(admin.ModelAdmin):
    """Users' monthly limits, listed with this month's use of them (spent of the limit, and
    what is left)."""

    Media = ListMedia
    list_display = [
        "user",
        "cost_use",
        "calls_use",
        "cost_limit_display",
        "call_limit_display",
        "updated",
    ]
    list_select_related = ["user"]
    search_fields = [USERNAME_LOOKUP]
    autocomplete_fields = ["user"]
    fields = ["user", "monthly_cost_limit", "monthly_call_limit", "this_month"]
    readonly_fields = ["this_month"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[UsageBudget]:
        current = UsageSummary.objects.filter(user_id=OuterRef("user_id"), period=billing_period())
        return (
            super()
            .get_queryset(request)
            .annotate(
                period_cost=Subquery(current.values("total_cost"), output_field=MoneyField()),
                period_calls=Subquery(current.values("total_calls")),
                period_byok=Subquery(current.values("byok_cost"), output_field=MoneyField()),
            )
        )

    def _remaining(self, obj: UsageBudget) -> dict:
        summary = UsageSummary(
            total_cost=obj.period_cost or ZERO,
            total_calls=obj.period_calls or 0,
            byok_cost=obj.period_byok or ZERO,
        )
        limits = Limits(obj.monthly_cost_limit, obj.monthly_call_limit)
        return budgets.remaining(obj.user_id, summary, limits)

    @admin.display(description="monthly cost limit", ordering="monthly_cost_limit")
    def cost_limit_display(self, obj: UsageBudget) -> str:
        limit = obj.monthly_cost_limit
        return "unlimited" if limit is None else usd(limit)

    @admin.display(description="monthly call limit", ordering="monthly_call_limit")
    def call_limit_display(self, obj: UsageBudget) -> str:
        limit = obj.monthly_call_limit
        return "unlimited" if limit is None else str(limit)

    @admin.display(description="spent this month", ordering="period_cost")
    def spent_display(self, obj: UsageBudget) -> str:
        return usd(obj.period_cost or ZERO)

    @admin.display(description="calls this month", ordering="period_calls")
    def calls_display(self, obj: UsageBudget) -> int:
        return obj.period_calls or 0

    @admin.display(description="cost remaining")
    def cost_remaining_display(self, obj: UsageBudget) -> str:
        left = self._remaining(obj)["cost_remaining"]
        return "unlimited" if left is None else usd(left)

    @admin.display(description="calls remaining")
    def calls_remaining_display(self, obj: UsageBudget) -> str:
        left = self._remaining(obj)["calls_remaining"]
        return "unlimited" if left is None else str(left)

    @admin.display(description="cost this month", ordering="period_cost")
    def cost_use(self, obj: UsageBudget) -> str:
        return with_note(self.spent_display(obj), f"{self.cost_remaining_display(obj)} left")

    @admin.display(description="calls this month", ordering="period_calls")
    def calls_use(self, obj: UsageBudget) -> str:
        return with_note(str(self.calls_display(obj)), f"{self.calls_remaining_display(obj)} left")

    @admin.display(description="updated (UTC)", ordering="updated_at")
    def updated(self, obj: UsageBudget) -> str:
        return short_time(obj.updated_at)

    @admin.display(description="this month")
    def this_month(self, obj: UsageBudget | None) -> str:
        if obj is None or obj.pk is None:
            return "-"
        period = billing_period()
        summary = UsageSummary.objects.filter(user_id=obj.user_id, period=period).first()
        left = budgets.remaining(obj.user_id, summary)
        spent_cost = summary.total_cost if summary else ZERO
        spent_calls = summary.total_calls if summary else 0
        cost = (
            f"{usd(spent_cost)} spent, no cost limit"
            if left["cost_limit"] is None
            else f"{usd(spent_cost)} of {usd(left['cost_limit'])} spent, "
            f"{usd(left['cost_remaining'])} left"
        )
        calls = (
            f"{spent_calls} calls, no call limit"
            if left["calls_limit"] is None
            else f"{spent_calls} of {left['calls_limit']} calls, {left['calls_remaining']} left"
        )
        return f"{period}: {cost}; {calls}."
