"""The cost report page at ``/admin/llm_providers/cost-report/``."""

from __future__ import annotations

from decimal import Decimal
from urllib.parse import urlencode

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse

from ..accounting import reports
from ..accounting.money import ZERO
from ..forms import CostReportForm
from ..models import LedgerEntry
from .common import usd

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
    """Cost per user, per provider and per key owner (the platform's keys or users' own, SPEC
    §12.2), and the chosen grouping, for a date range, from the ledger
    (``reports.cost_report``), with a bar chart and CSV downloads."""
    if not request.user.has_perm("llm_providers.view_ledgerentry"):
        raise PermissionDenied
    form = CostReportForm.from_query(request.GET)
    tables = []
    if _valid_range(form):
        start, end, group_by = (form.cleaned_data[k] for k in ("start", "end", "group_by"))
        if request.GET.get("format") == "csv":
            rows = reports.cost_report(start, end, group_by)
            response = HttpResponse(reports.to_csv(rows), content_type="text/csv; charset=utf-8")
            filename = f"llm-costs-by-{group_by}-{start}-to-{end}.csv"
            response["Content-Disposition"] = f'attachment; filename="{filename}"'
            return response
        always = ["user", "provider", "key_owner"]
        groupings = always + ([group_by] if group_by not in always else [])
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


def add_cost_report(site: admin.AdminSite) -> None:
    """Serve the report at ``<admin>/llm_providers/cost-report/`` (url name
    ``admin:llm_providers_cost_report``), for staff who may view the ledger.

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
