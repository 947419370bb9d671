"""What the admin's pages share: the provider and user filters, provider labels, money, user
and clipped-text columns, and the stylesheet that fits the lists to a laptop's width."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.utils.html import format_html
from django.utils.safestring import SafeString

from .. import registry
from ..accounting import reports
from ..accounting.money import money_str
from ..models import LedgerEntry, UsageSummary

USERNAME_LOOKUP = "user__" + get_user_model().USERNAME_FIELD
# What the pages that read the ledger (the dashboard, the cost report) need.
LEDGER_VIEW_PERMISSION = "llm_providers.view_ledgerentry"

# The built-in providers' labels need no database read (a custom provider's do).
_BUILTIN_LABELS = {cls.name: cls.label for cls in registry.BUILTIN_PROVIDERS}


class ListMedia:
    """The app's list stylesheet (``ModelAdmin.Media``): narrower filters, clipped cells with
    their whole value on hover, right-aligned numbers."""

    css = {"all": ["llm_providers/admin.css"]}


def provider_labels() -> dict[str, str]:
    """``{name: label}`` of every registered provider, custom ones included."""
    return dict(registry.as_choices())


def provider_label(name: str) -> str:
    """The label a person reads ("OpenRouter") for a registry name; the name itself for a
    provider no longer registered (a custom provider since removed)."""
    if name in _BUILTIN_LABELS:
        return _BUILTIN_LABELS[name]
    return provider_labels().get(name, name)


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


def usd(value: Decimal | None) -> str:
    return f"${money_str(value)}"


def user_or_system(obj: LedgerEntry | UsageSummary) -> str:
    return obj.user.get_username() if obj.user_id else reports.SYSTEM_KEY


def days_filter(start: date, end: date) -> dict[str, str]:
    """The ledger list's parameters for inclusive UTC days, as its date filter writes them
    (aware datetimes: a bare date would be read as a naive one)."""
    since, until = reports.day_bounds(start, end)
    return {"created_at__gte": str(since), "created_at__lt": str(until)}


def clipped(text: str, full: str | None = None) -> SafeString:
    """``text`` cut by the stylesheet to its column's width with an ellipsis; the whole value
    (``full``, else ``text``) is its title, shown on hover."""
    return format_html('<span class="llm-clip" title="{}">{}</span>', full or text, text)


def with_note(main: str, note: str, title: str = "") -> SafeString:
    """``main`` with a small second line (``note``, empty for none) under it."""
    if not note:
        return format_html("{}", main)
    return format_html('{}<span class="llm-note" title="{}">{}</span>', main, title or note, note)


def short_time(moment: datetime | None) -> SafeString | str:
    """A list cell's time in UTC: the date, and the time to the minute under it (the seconds
    are in its title)."""
    if moment is None:
        return "-"
    utc = moment.astimezone(UTC)
    return with_note(
        utc.strftime("%Y-%m-%d"), utc.strftime("%H:%M"), title=utc.strftime("%H:%M:%S UTC")
    )


class UserFilter(admin.RelatedOnlyFieldListFilter):
    """The users who have rows; rows without a user (system usage) as ``(system)``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.empty_value_display = reports.SYSTEM_KEY


def add_page(
    site: admin.AdminSite,
    route: str,
    name: str,
    view: Callable[[HttpRequest, admin.AdminSite], HttpResponse],
) -> None:
    """Serve ``view(request, site)`` at ``<admin>/<route>`` (url name ``admin:<name>``), behind
    the admin's login (``admin_view``; the view checks its own permission).

    A page that belongs to no model (the dashboard, the cost report) cannot come from a
    ModelAdmin's URLs (those live under ``<app>/<model>/``): it is put in front of the site's
    own URLs.
    """
    site_urls = site.get_urls

    def get_urls():
        page = site.admin_view(lambda request: view(request, site))
        return [path(route, page, name=name), *site_urls()]

    site.get_urls = get_urls
