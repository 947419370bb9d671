"""The cost report page at ``/admin/llm_providers/cost-report/``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import date
from decimal import Decimal
from urllib.parse import urlencode

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.text import capfirst

from ..accounting import reports
from ..accounting.money import ZERO
from ..forms import CostReportForm
from ..models import KeyOwner, LedgerEntry
from .common import LEDGER_VIEW_PERMISSION, add_page, days_filter, provider_labels, usd

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


# The tabs that switch the grouping, in this order.
GROUP_TITLES = {
    "user": "User",
    "provider": "Provider",
    "model": "Model",
    "day": "Day",
    "key_owner": "Key owner",
}


def cost_report_view(request: HttpRequest, site: admin.AdminSite) -> HttpResponse:
    """Cost for a date range from the ledger (``reports.cost_report``), grouped by user,
    provider, model, day or key owner (the platform's keys or users' own, SPEC §12.2): the
    chosen grouping's table and bar chart, tabs to switch to the others, a CSV download.

    The page names providers by their labels; the CSV keeps the registry names, as the API's
    report does (a stable key for scripts and spreadsheets; a custom provider's label can
    change)."""
    if not request.user.has_perm(LEDGER_VIEW_PERMISSION):
        raise PermissionDenied
    form = CostReportForm.from_query(request.GET)
    tables = []  # one: the chosen grouping's (none while the form has errors)
    ledger_url = reverse("admin:llm_providers_ledgerentry_changelist", current_app=site.name)
    if _valid_range(form):
        start, end, group_by = (form.cleaned_data[k] for k in ("start", "end", "group_by"))
        if request.GET.get("format") == "csv":
            rows = reports.cost_report(start, end, group_by)
            response = HttpResponse(reports.to_csv(rows), content_type="text/csv; charset=utf-8")
            filename = f"llm-costs-by-{group_by}-{start}-to-{end}.csv"
            response["Content-Disposition"] = f'attachment; filename="{filename}"'
            return response
        tables.append(grouped_report(start, end, group_by, ledger_url=ledger_url))
    context = {
        **site.each_context(request),
        "title": "Cost report",
        "opts": LedgerEntry._meta,
        "app_label": LedgerEntry._meta.app_label,
        "form": form,
        "tables": tables,
        "ledger_url": ledger_url,
    }
    return TemplateResponse(request, "admin/llm_providers/cost_report.html", context)


def grouped_report(start: date, end: date, group_by: str, *, ledger_url: str) -> dict:
    """What the page shows of one grouping: its rows (keys as people read them, each linked to
    its ledger rows), total, chart, CSV link (none without rows), and the tabs to the other
    groupings of the same range."""
    rows = reports.cost_report(start, end, group_by)
    total = reports.totals(rows)
    name_key = key_names(group_by)
    shown = [replace(row, key=name_key(row.key)) for row in rows]
    filters = ledger_filters(group_by, [row.key for row in rows])
    period = days_filter(start, end)
    return {
        "group_by": group_by,
        "title": GROUP_TITLES[group_by],
        "rows": [
            {
                "key": row.key,
                "calls": row.calls,
                "tokens": row.tokens,
                "cost": usd(row.cost),
                "share": _share(row.cost, total.cost),
                "ledger_url": f"{ledger_url}?{urlencode({**period, **filters[raw.key]})}",
            }
            for raw, row in zip(rows, shown, strict=True)
        ],
        "total": {
            "calls": total.calls,
            "tokens": total.tokens,
            "cost": usd(total.cost),
            "share": _share(total.cost, total.cost),
        },
        "chart": bar_chart(shown),
        "csv_url": _query(start, end, group_by, format="csv") if rows else None,
        "tabs": [
            {"title": title, "url": _query(start, end, name), "current": name == group_by}
            for name, title in GROUP_TITLES.items()
        ],
    }


def key_names(group_by: str) -> Callable[[str], str]:
    """How a grouping's keys are shown: providers by their labels ("OpenRouter"), key owners
    in words; users, models and days as they are."""
    if group_by == "provider":
        labels = provider_labels()  # one read of the registry for the whole table
        return lambda key: labels.get(key, key)
    if group_by == "key_owner":
        owners = {value: capfirst(label) for value, label in KeyOwner.choices}
        return lambda key: owners.get(key, key)
    return str


def ledger_filters(group_by: str, keys: list[str]) -> dict[str, dict[str, str]]:
    """The ledger list's filter parameters for each key of a grouping (the date range is added
    by the caller): a row of the report links to the calls it sums."""
    if group_by == "user":
        username = get_user_model().USERNAME_FIELD
        ids = dict(
            get_user_model().objects.filter(**{f"{username}__in": keys}).values_list(username, "pk")
        )
        # A key that is no username is SYSTEM_KEY: the calls made without a user.
        return {
            key: {"user__id__exact": str(ids[key])} if key in ids else {"user__isnull": "True"}
            for key in keys
        }
    if group_by == "day":
        return {key: days_filter(date.fromisoformat(key), date.fromisoformat(key)) for key in keys}
    parameter = {
        "provider": "provider__exact",
        "model": "model",
        "key_owner": "key_owner__exact",
    }[group_by]
    return {key: {parameter: key} for key in keys}


def _query(start: date, end: date, group_by: str, **extra: str) -> str:
    params = {"start": start.isoformat(), "end": end.isoformat(), "group_by": group_by}
    return "?" + urlencode({**params, **extra})


def _valid_range(form: CostReportForm) -> bool:
    """The form is valid and its dates a range a report can cover (else a form error)."""
    if not form.is_valid():
        return False
    try:
        reports.check_range(form.cleaned_data["start"], form.cleaned_data["end"])
    except reports.BadRange as exc:
        form.add_error(exc.field, str(exc))
        return False
    return True


def _share(part: Decimal, whole: Decimal) -> str:
    if whole <= 0:
        return "-"
    return f"{part / whole * 100:.1f}%"


add_page(admin.site, "llm_providers/cost-report/", "llm_providers_cost_report", cost_report_view)
