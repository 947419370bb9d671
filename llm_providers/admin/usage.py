"""The ledger (read-only) and usage summaries (spend corrected through adjustments)."""

from __future__ import annotations

from datetime import UTC

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.utils.html import format_html

from .. import registry
from ..accounting import ledger
from ..forms import UsageSummaryForm
from ..models import PROVIDER_NAMES, LedgerEntry, UsageAdjustment, UsageSummary
from .common import USERNAME_LOOKUP, ProviderFilter, UserFilter, usd, user_or_system


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


class UsageSummaryAdminForm(UsageSummaryForm):
    """The correction form, plus the release of reservations no call in flight holds."""

    release_reservations = forms.BooleanField(
        required=False,
        label="Release reservations",
        help_text=(
            "Release what the reservations hold beyond the calls now in flight (left by a "
            "process that died, for instance); those calls release their own when they end. "
            "Kept under Adjustments with the reason."
        ),
    )

    def clean(self) -> dict:
        try:
            return super().clean()
        except forms.ValidationError as exc:
            # Releasing is a change of its own: no column needs editing beside it.
            if exc.code == "unchanged" and self.cleaned_data.get("release_reservations"):
                return self.cleaned_data
            raise


@admin.register(UsageSummary)
class UsageSummaryAdmin(admin.ModelAdmin):
    """Monthly usage per user. Spend is corrected by editing the per-provider columns: the change
    is applied as a delta with ``F()`` (``ledger.adjust_summary``), never by saving the row,
    so calls recorded meanwhile are kept, and each correction is kept as an adjustment."""

    form = UsageSummaryAdminForm
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
                        "fields": ["release_reservations", "reason"],
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
        reason = form.cleaned_data["reason"]
        try:
            ledger.adjust_summary(obj.pk, form.deltas, reason=reason, created_by_id=request.user.pk)
            if form.cleaned_data.get("release_reservations"):
                self._release(request, obj, reason)
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

    def _release(self, request: HttpRequest, obj: UsageSummary, reason: str) -> None:
        released = ledger.release_reservations(obj.pk, reason=reason, created_by_id=request.user.pk)
        if released:
            what = ", ".join(f"{a.field} {a.old_value} → {a.new_value}" for a in released)
            self.message_user(request, f"Reservations released: {what}.", messages.SUCCESS)
        else:
            self.message_user(
                request,
                "Nothing to release: the reservations are held by calls in flight.",
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
