"""The ledger (read-only) and usage summaries (spend corrected through adjustments)."""

from __future__ import annotations

from datetime import UTC

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.defaultfilters import pluralize
from django.utils.html import format_html

from ..accounting import ledger
from ..forms import UsageSummaryForm
from ..models import PROVIDER_NAMES, CallStatus, LedgerEntry, UsageAdjustment, UsageSummary
from .common import (
    USERNAME_LOOKUP,
    ListMedia,
    ProviderFilter,
    UserFilter,
    clipped,
    provider_label,
    short_time,
    usd,
    user_or_system,
    with_note,
)


class FallbackFilter(admin.SimpleListFilter):
    """Whether the attempt was a fallback (a provider after the chain's first), in words; the
    parameter is the one Django's boolean filter would use."""

    title = "fallback"
    parameter_name = "is_fallback__exact"

    def lookups(self, request: HttpRequest, model_admin) -> list[tuple[str, str]]:
        return [("1", "fallback"), ("0", "first choice")]

    def queryset(self, request: HttpRequest, queryset):
        if self.value() in ("1", "0"):
            return queryset.filter(is_fallback=self.value() == "1")
        return queryset


@admin.register(LedgerEntry)
class LedgerEntryAdmin(admin.ModelAdmin):
    """The ledger as written by ``ledger.record_call``: viewable, never added, edited or deleted
    (spend is corrected on the usage summary, as an adjustment).

    The list shows what an admin reads at 1366 px beside the filters: time, user, provider,
    model, status, tokens and cost; the rest of a row (error, key owner, latency, retries,
    prompt and completion tokens, cost source) is in the cells' titles and on its page."""

    Media = ListMedia
    change_list_template = "admin/llm_providers/change_list_with_report.html"
    list_display = [
        "time",
        "user_display",
        "provider_display",
        "model_display",
        "status_display",
        "tokens_display",
        "cost_display",
    ]
    list_filter = [
        ("provider", ProviderFilter),
        "status",
        ("user", UserFilter),
        "model",
        FallbackFilter,
        "key_owner",
        "cost_source",
        "created_at",
    ]
    list_select_related = ["user"]
    date_hierarchy = "created_at"
    search_fields = ["request_id", "model", USERNAME_LOOKUP]
    readonly_fields = ["provider_name", "fallback_word", "latency", "cost_display"]

    def get_fieldsets(self, request: HttpRequest, obj: LedgerEntry | None = None):
        fieldsets = [
            (None, {"fields": ["request_id", "created_at", "period", "user", "status"]}),
            (
                "Provider",
                {
                    "fields": [
                        "provider_name",
                        "model",
                        "fallback_word",
                        "key_owner",
                        "retries",
                        "latency",
                    ]
                },
            ),
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
        if obj is not None and has_error(obj):
            fieldsets.insert(1, ("Error", {"fields": ["error_code", "error_message"]}))
        return fieldsets

    def render_change_form(self, request: HttpRequest, context, *args, obj=None, **kwargs):
        if obj is not None:
            # The page's heading names the provider as people know it (str() leaves it out).
            context["subtitle"] = entry_heading(obj)
        return super().render_change_form(request, context, *args, obj=obj, **kwargs)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.display(description="time (UTC)", ordering="created_at")
    def time(self, obj: LedgerEntry) -> str:
        return short_time(obj.created_at)

    @admin.display(description="user", ordering=USERNAME_LOOKUP)
    def user_display(self, obj: LedgerEntry) -> str:
        return clipped(user_or_system(obj))

    @admin.display(description="provider", ordering="provider")
    def provider_display(self, obj: LedgerEntry) -> str:
        return with_note(
            provider_label(obj.provider),
            "fallback" if obj.is_fallback else "",
            title="A fallback: an earlier provider of the chain failed.",
        )

    @admin.display(description="model", ordering="model")
    def model_display(self, obj: LedgerEntry) -> str:
        # "anthropic/claude-3.5-sonnet" → "claude-3.5-sonnet": the vendor is the part a
        # narrow column can lose; the whole id is the title.
        return clipped(obj.model.rpartition("/")[2] or obj.model, obj.model)

    @admin.display(description="status", ordering="status")
    def status_display(self, obj: LedgerEntry) -> str:
        status = obj.get_status_display()
        if not obj.error_code:
            return status
        # In words ("rate limited"), so that a long code wraps rather than widening the column.
        code = obj.error_code.replace("_", " ")
        return with_note(status, code, title=obj.error_message or obj.error_code)

    @admin.display(description="tokens", ordering="total_tokens")
    def tokens_display(self, obj: LedgerEntry) -> str:
        return format_html(
            '<span title="{} prompt + {} completion">{}</span>',
            obj.prompt_tokens,
            obj.completion_tokens,
            obj.total_tokens,
        )

    @admin.display(description="cost (USD)", ordering="cost")
    def cost_display(self, obj: LedgerEntry) -> str:
        return format_html(
            '<span title="{}">{}</span>', obj.get_cost_source_display(), usd(obj.cost)
        )

    @admin.display(description="provider")
    def provider_name(self, obj: LedgerEntry) -> str:
        return provider_label(obj.provider)

    @admin.display(description="latency")
    def latency(self, obj: LedgerEntry) -> str:
        return f"{obj.latency_ms} ms"

    @admin.display(description="fallback")
    def fallback_word(self, obj: LedgerEntry) -> str:
        if obj.is_fallback:
            return "yes: an earlier provider of the chain failed"
        return "no: the first provider tried"


def entry_heading(entry: LedgerEntry) -> str:
    """ "OpenRouter · openai/gpt-4o · success · 2026-03-05 12:00:00 UTC"."""
    when = entry.created_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    parts = [provider_label(entry.provider), entry.model, entry.get_status_display(), when]
    return " · ".join(parts)


def has_error(entry: LedgerEntry) -> bool:
    """Whether a ledger row has an error to show (a success has none)."""
    failed = entry.status in (CallStatus.ERROR, CallStatus.INTERRUPTED)
    return failed or bool(entry.error_code or entry.error_message)


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
    """A changelist column with one provider's (or the total) cost, and its calls and tokens
    under it: twelve columns would not fit beside the filters."""

    def show(self, obj: UsageSummary) -> str:
        calls, tokens, cost = (getattr(obj, f"{name}_{m}") for m in ("calls", "tokens", "cost"))
        return format_html(
            '{}<span class="llm-note">{} call{}</span><span class="llm-note">{} tokens</span>',
            usd(cost),
            calls,
            pluralize(calls),
            tokens,
        )

    show.__name__ = name + "_column"
    title = "Total" if name == "total" else provider_label(name)
    return admin.display(description=title, ordering=f"{name}_cost")(show)


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

    Media = ListMedia
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
                    provider_label(name),
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
        return clipped(user_or_system(obj))

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
