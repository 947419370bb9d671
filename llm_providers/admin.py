"""Django admin of llm_providers: custom providers, keys, the ledger (read-only), usage
summaries (spend corrected through adjustments), prices, budgets, and the cost report page at
``/admin/llm_providers/cost-report/``."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC
from decimal import Decimal
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from . import registry
from .accounting import budgets, ledger, reports
from .accounting.budgets import Limits
from .accounting.money import ZERO, MoneyField, money_str
from .exceptions import LLMError
from .forms import (
    APIKeyForm,
    CostReportForm,
    CustomProviderForm,
    ModelPriceForm,
    UsageSummaryForm,
)
from .keys import stored_key
from .models import (
    PROVIDER_NAMES,
    APIKey,
    CustomProvider,
    LedgerEntry,
    ModelPrice,
    PriceSource,
    UsageAdjustment,
    UsageBudget,
    UsageSummary,
    billing_period,
)

USERNAME_LOOKUP = "user__" + get_user_model().USERNAME_FIELD


class ProviderFilter(admin.ChoicesFieldListFilter):
    """The registry's providers (custom ones included), though the field has no choices."""

    def choices(self, changelist):
        yield {
            "selected": self.lookup_val is None,
            "query_string": changelist.get_query_string(remove=[self.lookup_kwarg]),
            "display": "All",
        }
        selected = set(self.lookup_val or ())
        for name, label in registry.as_choices():
            yield {
                "selected": name in selected,
                "query_string": changelist.get_query_string({self.lookup_kwarg: name}),
                "display": label,
            }


@admin.register(CustomProvider)
class CustomProviderAdmin(admin.ModelAdmin):
    """Custom OpenAI-compatible providers (SPEC §12.1). A change takes effect at the next call in
    every process sharing the cache (``cache_version``); a key for one is added under API keys."""

    form = CustomProviderForm
    list_display = [
        "name",
        "label",
        "base_url",
        "default_model",
        "requires_key",
        "priority",
        "active",
    ]
    list_filter = ["active", "requires_key"]
    search_fields = ["name", "label", "base_url"]
    readonly_fields = ["created_at", "updated_at"]


@admin.register(APIKey)
class APIKeyAdmin(admin.ModelAdmin):
    """Keys are shown only by their mask; the secret input is write-only (see ``APIKeyForm``)."""

    form = APIKeyForm
    list_display = ["provider", "label", "mask", "active", "created_at", "last_used_at"]
    list_filter = [("provider", ProviderFilter), "active"]
    search_fields = ["label"]
    readonly_fields = ["mask", "created_at", "last_used_at"]
    actions = ["test_connection", "activate", "deactivate"]

    def get_fields(self, request: HttpRequest, obj: APIKey | None = None) -> list[str]:
        if obj is None:
            return ["provider", "label", "secret", "active"]
        return ["provider", "label", "mask", "secret", "active", "created_at", "last_used_at"]

    @admin.display(description="Key")
    def mask(self, obj: APIKey) -> str:
        return obj.mask

    @admin.action(description="Test connection")
    def test_connection(self, request: HttpRequest, queryset: QuerySet[APIKey]) -> None:
        for key in queryset:
            try:
                message, level = self._test_key(key), messages.SUCCESS
            except LLMError as exc:
                # Providers scrub their key from errors; decryption errors never held it.
                message, level = str(exc), messages.ERROR
            self.message_user(request, f"{key}: {message}", level)

    @staticmethod
    def _test_key(key: APIKey) -> str:
        resolved = stored_key(key)
        provider = registry.provider_class(key.provider)(
            resolved.secret, key_source=resolved.source
        )
        return provider.test_connection()

    @admin.action(description="Activate (deactivates the provider's other keys)")
    def activate(self, request: HttpRequest, queryset: QuerySet[APIKey]) -> None:
        by_provider: dict[str, list[APIKey]] = defaultdict(list)
        for key in queryset:
            by_provider[key.provider].append(key)
        for provider, keys in by_provider.items():
            if len(keys) > 1:
                self.message_user(
                    request,
                    f"Only one {registry.provider_class(provider).label} key can be active: "
                    f"select one of {', '.join(k.mask for k in keys)}.",
                    messages.ERROR,
                )
                continue
            key = keys[0]
            if not key.active:
                key.active = True
                key.save(update_fields=["active"])  # save() deactivates the others
                self.log_change(request, key, "Activated.")
            self.message_user(request, f"{key} is the active key.", messages.SUCCESS)

    @admin.action(description="Deactivate")
    def deactivate(self, request: HttpRequest, queryset: QuerySet[APIKey]) -> None:
        keys = list(queryset.filter(active=True))
        for key in keys:
            key.active = False
            key.save(update_fields=["active"])
            self.log_change(request, key, "Deactivated.")
        self.message_user(request, f"Deactivated {len(keys)} key(s).", messages.SUCCESS)


# --- Usage ----------------------------------------------------------------------------------------


def usd(value: Decimal | None) -> str:
    return f"${money_str(value)}"


def user_or_system(obj: LedgerEntry | UsageSummary) -> str:
    return obj.user.get_username() if obj.user_id else reports.SYSTEM_KEY


class UserFilter(admin.RelatedOnlyFieldListFilter):
    """The users who have rows; rows without a user (system usage) as ``(system)``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.empty_value_display = reports.SYSTEM_KEY


@admin.register(LedgerEntry)
class LedgerEntryAdmin(admin.ModelAdmin):
    """The ledger as written by ``ledger.record_call``: viewable, never added, edited or deleted
    (spend is corrected on the usage summary, as an adjustment)."""

    change_list_template = "admin/llm_providers/change_list_with_report.html"
    list_display = [
        "created",
        "user_display",
        "provider_code",
        "model",
        "status",
        "error_code",
        "total_tokens",
        "cost_display",
        "cost_source_code",
        "latency_ms",
        "retries",
        "is_fallback",
    ]
    list_filter = [
        ("provider", ProviderFilter),
        "status",
        "cost_source",
        "is_fallback",
        ("user", UserFilter),
        "model",
        "created_at",
    ]
    list_select_related = ["user"]
    date_hierarchy = "created_at"
    search_fields = ["request_id", "model", USERNAME_LOOKUP]
    fieldsets = [
        (None, {"fields": ["request_id", "created_at", "period", "user", "status"]}),
        ("Error", {"fields": ["error_code", "error_message"]}),
        ("Provider", {"fields": ["provider", "model", "is_fallback", "retries", "latency_ms"]}),
        (
            "Usage and cost",
            {
                "fields": [
                    ("prompt_tokens", "completion_tokens", "total_tokens"),
                    ("cost_display", "cost_source"),
                ]
            },
        ),
    ]
    readonly_fields = ["cost_display"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.display(description="created at (UTC)", ordering="created_at")
    def created(self, obj: LedgerEntry) -> str:
        return obj.created_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")

    @admin.display(description="user", ordering=USERNAME_LOOKUP)
    def user_display(self, obj: LedgerEntry) -> str:
        return user_or_system(obj)

    @admin.display(description="provider", ordering="provider")
    def provider_code(self, obj: LedgerEntry) -> str:
        return obj.provider

    @admin.display(description="cost (USD)", ordering="cost")
    def cost_display(self, obj: LedgerEntry) -> str:
        return usd(obj.cost)

    @admin.display(description="cost source", ordering="cost_source")
    def cost_source_code(self, obj: LedgerEntry) -> str:
        return obj.cost_source  # the code: the labels are too long for a column


class UsageAdjustmentInline(admin.TabularInline):
    model = UsageAdjustment
    fields = ["created_at", "created_by", "field", "old_value", "new_value", "delta", "reason"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name_plural = "adjustments (corrections by admins, newest first)"

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


def _provider_column(name: str):
    """A changelist column with one provider's (or the total) calls, tokens and cost."""

    def show(self, obj: UsageSummary) -> str:
        calls, tokens, cost = (getattr(obj, f"{name}_{m}") for m in ("calls", "tokens", "cost"))
        return f"{calls} · {tokens} · {usd(cost)}"

    show.__name__ = name + "_column"
    # Three values in one cell: twelve columns would not fit beside the filters.
    title = "Total" if name == "total" else registry.provider_class(name).label
    label = format_html("{}<br>calls · tokens · cost", title)
    return admin.display(description=label, ordering=f"{name}_cost")(show)


@admin.register(UsageSummary)
class UsageSummaryAdmin(admin.ModelAdmin):
    """Monthly usage per user. Spend is corrected by editing the per-provider columns: the change
    is applied as a delta with ``F()`` (``ledger.adjust_summary``), never by saving the row,
    so calls recorded meanwhile are kept, and each correction is kept as an adjustment."""

    form = UsageSummaryForm
    change_list_template = "admin/llm_providers/change_list_with_report.html"
    inlines = [UsageAdjustmentInline]
    list_display = [
        "user_display",
        "period",
        *(f"{name}_column" for name in [*PROVIDER_NAMES, "total"]),
    ]
    list_display_links = ["user_display", "period"]
    list_filter = ["period", ("user", UserFilter)]
    list_select_related = ["user"]
    search_fields = [USERNAME_LOOKUP, "period"]
    readonly_fields = [
        "user_display",
        "period",
        "updated_at",
        "total_calls",
        "total_tokens",
        "total_cost_display",
        "reserved_calls",
        "reserved_cost_display",
    ]

    def get_fieldsets(self, request: HttpRequest, obj=None):
        fieldsets = [
            (None, {"fields": [("user_display", "period"), "updated_at"]}),
            *(
                (
                    registry.provider_class(name).label,
                    {"fields": [(f"{name}_calls", f"{name}_tokens", f"{name}_cost")]},
                )
                for name in PROVIDER_NAMES
            ),
            (
                "Totals",
                {
                    "fields": [("total_calls", "total_tokens", "total_cost_display")],
                    "description": "Follow the provider columns.",
                },
            ),
            (
                "Budget reservations",
                {
                    "fields": [("reserved_calls", "reserved_cost_display")],
                    "description": "Held by calls in flight; released when they are recorded.",
                    "classes": ["collapse"],
                },
            ),
        ]
        if self.has_change_permission(request, obj):
            fieldsets.append(
                (
                    "Correction",
                    {
                        "fields": ["reason"],
                        "description": (
                            "Edit the calls, tokens or cost above and say why. The change is "
                            "added to the current values (calls recorded while this page was "
                            "open are kept) and listed under Adjustments."
                        ),
                    },
                )
            )
        return fieldsets

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # summaries are created by recorded calls

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False  # the ledger would no longer add up to anything

    @admin.display(description="user", ordering=USERNAME_LOOKUP)
    def user_display(self, obj: UsageSummary) -> str:
        return user_or_system(obj)

    @admin.display(description="total cost (USD)", ordering="total_cost")
    def total_cost_display(self, obj: UsageSummary) -> str:
        return usd(obj.total_cost)

    @admin.display(description="reserved cost (USD)")
    def reserved_cost_display(self, obj: UsageSummary) -> str:
        return usd(obj.reserved_cost)

    def save_model(self, request: HttpRequest, obj: UsageSummary, form, change: bool) -> None:
        # Never obj.save(): it would write back columns that calls have moved since.
        try:
            ledger.adjust_summary(
                obj.pk,
                form.deltas,
                reason=form.cleaned_data["reason"],
                created_by_id=request.user.pk,
            )
        except ValidationError as exc:
            # Too late for a form error (the admin saves after validating): flag the request
            # so that nothing is logged and the admin is sent back to the form.
            request._llm_adjustment_refused = True
            self.message_user(request, " ".join(exc.messages), messages.ERROR)
            return
        obj.refresh_from_db()
        if form.moved:
            self.message_user(
                request,
                "Calls were recorded while you edited "
                f"({', '.join(form.moved)}): your change was added to the current values.",
                messages.WARNING,
            )

    def log_change(self, request: HttpRequest, obj, message):
        if getattr(request, "_llm_adjustment_refused", False):
            return None
        return super().log_change(request, obj, message)

    def response_change(self, request: HttpRequest, obj: UsageSummary) -> HttpResponse:
        if getattr(request, "_llm_adjustment_refused", False):
            return HttpResponseRedirect(request.path)
        return super().response_change(request, obj)


for _name in [*PROVIDER_NAMES, "total"]:
    setattr(UsageSummaryAdmin, f"{_name}_column", _provider_column(_name))


# --- Prices and budgets ---------------------------------------------------------------------------


@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):
    """Prices in USD per million tokens. A price saved here is marked ``admin``, and
    ``sync_model_prices`` leaves it alone."""

    form = ModelPriceForm
    list_display = [
        "provider",
        "model",
        "prompt_display",
        "completion_display",
        "source",
        "updated_at",
    ]
    list_filter = [("provider", ProviderFilter), "source"]
    search_fields = ["model"]
    readonly_fields = ["source", "updated_at"]

    def get_fields(self, request: HttpRequest, obj=None) -> list[str]:
        fields = ["provider", "model", "prompt_per_million", "completion_per_million"]
        return fields if obj is None else [*fields, "source", "updated_at"]

    @admin.display(description="prompt (USD / 1M tokens)", ordering="prompt_per_million")
    def prompt_display(self, obj: ModelPrice) -> str:
        return usd(obj.prompt_per_million)

    @admin.display(description="completion (USD / 1M tokens)", ordering="completion_per_million")
    def completion_display(self, obj: ModelPrice) -> str:
        return usd(obj.completion_per_million)

    def save_model(self, request: HttpRequest, obj: ModelPrice, form, change: bool) -> None:
        obj.source = PriceSource.ADMIN
        super().save_model(request, obj, form, change)  # save() clears the price cache


@admin.register(UsageBudget)
class UsageBudgetAdmin(admin.ModelAdmin):
    list_display = [
        "user",
        "cost_limit_display",
        "call_limit_display",
        "spent_display",
        "calls_display",
        "cost_remaining_display",
        "calls_remaining_display",
        "updated_at",
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
            )
        )

    def _remaining(self, obj: UsageBudget) -> dict:
        summary = UsageSummary(
            total_cost=obj.period_cost or ZERO, total_calls=obj.period_calls or 0
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


# --- The cost report page -------------------------------------------------------------------------

# Bar chart geometry, in SVG user units (pixels): each row is the key, then its bar with the
# cost written after it.
CHART_WIDTH = 760
CHART_BAR_MAX = 560
CHART_ROW = 38
CHART_BAR_HEIGHT = 14
# More bars than this make a chart nobody can read; the table still lists every row.
CHART_MAX_BARS = 60


def bar_chart(rows: list[reports.ReportRow]) -> dict:
    """Positions of a horizontal bar chart of ``rows``' cost, for the template to draw."""
    if len(rows) > CHART_MAX_BARS:
        biggest = set(map(id, sorted(rows, key=lambda r: r.cost, reverse=True)[:CHART_MAX_BARS]))
        shown = [row for row in rows if id(row) in biggest]
    else:
        shown = rows
    top = max((row.cost for row in shown), default=ZERO)
    bars = []
    for index, row in enumerate(shown):
        width = float(row.cost / top) * CHART_BAR_MAX if top > 0 else 0.0
        if row.cost > 0:
            width = max(width, 1.0)  # a tiny cost still shows
        y = index * CHART_ROW
        bars.append(
            {
                "key": row.key,
                "cost": usd(row.cost),
                "key_y": f"{y + 13}",
                "bar_y": f"{y + 18}",
                "width": f"{width:.1f}",
                "value_x": f"{width + 6:.1f}",
                "value_y": f"{y + 29}",
            }
        )
    return {
        "width": str(CHART_WIDTH),
        "height": str(len(shown) * CHART_ROW + 4),
        "bar_height": str(CHART_BAR_HEIGHT),
        "bars": bars,
        "omitted": len(rows) - len(shown),
    }


def cost_report_view(request: HttpRequest, site: admin.AdminSite) -> HttpResponse:
    """Cost per user and per provider (and the chosen grouping) for a date range, from the
    ledger (``reports.cost_report``), with a bar chart and CSV downloads."""
    if not request.user.has_perm("llm_providers.view_ledgerentry"):
        raise PermissionDenied
    form = CostReportForm.from_query(request.GET)
    tables = []
    if form.is_valid():
        start, end, group_by = (form.cleaned_data[k] for k in ("start", "end", "group_by"))
        if request.GET.get("format") == "csv":
            rows = reports.cost_report(start, end, group_by)
            response = HttpResponse(reports.to_csv(rows), content_type="text/csv; charset=utf-8")
            filename = f"llm-costs-by-{group_by}-{start}-to-{end}.csv"
            response["Content-Disposition"] = f'attachment; filename="{filename}"'
            return response
        groupings = ["user", "provider"] + (
            [group_by] if group_by not in ("user", "provider") else []
        )
        for grouping in groupings:
            rows = reports.cost_report(start, end, grouping)
            total = reports.totals(rows)
            tables.append(
                {
                    "group_by": grouping,
                    "rows": [
                        {
                            "key": row.key,
                            "calls": row.calls,
                            "tokens": row.tokens,
                            "cost": usd(row.cost),
                            "share": _share(row.cost, total.cost),
                        }
                        for row in rows
                    ],
                    "total": {
                        "calls": total.calls,
                        "tokens": total.tokens,
                        "cost": usd(total.cost),
                        "share": _share(total.cost, total.cost),
                    },
                    "chart": bar_chart(rows),
                    "csv_url": "?"
                    + urlencode(
                        {
                            "start": start.isoformat(),
                            "end": end.isoformat(),
                            "group_by": grouping,
                            "format": "csv",
                        }
                    ),
                }
            )
    context = {
        **site.each_context(request),
        "title": "Cost report",
        "opts": LedgerEntry._meta,
        "app_label": LedgerEntry._meta.app_label,
        "form": form,
        "tables": tables,
        "ledger_url": reverse("admin:llm_providers_ledgerentry_changelist", current_app=site.name),
    }
    return TemplateResponse(request, "admin/llm_providers/cost_report.html", context)


def _share(part: Decimal, whole: Decimal) -> str:
    if whole <= 0:
        return "-"
    return f"{part / whole * 100:.1f}%"


def add_cost_report(site: admin.AdminSite) -> None:
    """Serve the report at ``<admin>/llm_providers/cost-report/`` (url name
    ``admin:llm_providers_cost_report``), staff only.

    It belongs to no model, so it cannot come from a ModelAdmin's URLs (those live under
    ``llm_providers/<model>/``): it is put in front of the site's own URLs.
    """
    site_urls = site.get_urls

    def get_urls():
        view = site.admin_view(lambda request: cost_report_view(request, site))
        return [
            path("llm_providers/cost-report/", view, name="llm_providers_cost_report"),
            *site_urls(),
        ]

    site.get_urls = get_urls


add_cost_report(admin.site)
