"""The dashboard at ``/admin/llm_providers/dashboard/``: a period's spend per day (a chart drawn
here as SVG, and its table), each provider's failures and circuit, the models that cost most,
and each user's budget use this month. The figures are ``accounting.dashboard``'s."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from urllib.parse import urlencode

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse

from .. import circuits, registry
from ..accounting import budgets, dashboard, reports
from ..accounting.models import billing_period
from ..accounting.money import ZERO, money_str
from ..forms import DashboardForm
from ..models import LedgerEntry
from .common import LEDGER_VIEW_PERMISSION, add_page, days_filter, provider_labels, usd

# Column chart geometry, in SVG user units (pixels at 1:1; the chart scales to its box).
CHART_WIDTH = 1000
PLOT_HEIGHT = 200
PLOT_LEFT = 72  # the axis' amounts
PLOT_RIGHT = 8
PLOT_BOTTOM = 24  # the days
BAR_FILL = 0.72  # of a day's slot; the rest is the gap between bars
CHAR_WIDTH = 6.6  # an 11 px label's character, about
DAY_LABEL_WIDTH = 50  # room one day's label ("30 Nov") needs
# A day narrower than this gets no amount over its bar (its tooltip and the table have it).
MIN_LABELLED_SLOT = 13
AXIS_INTERVALS = 4

TOP_MODELS = 10
CIRCUIT_LABELS = {
    circuits.CLOSED: "closed",
    circuits.OPEN: "open",
    circuits.HALF_OPEN: "half open",
}


@dataclass(frozen=True)
class Preset:
    label: str
    start: date
    end: date


def presets(today: date) -> list[Preset]:
    """The periods one click away: the default, and the weeks and months a bill is read by."""
    month_start = today.replace(day=1)
    last_month_end = month_start - timedelta(days=1)
    week_start = today - timedelta(days=today.weekday())  # Monday
    return [
        Preset("Last 7 days", today - timedelta(days=6), today),
        Preset("Last 30 days", *DashboardForm.default_range(today)),
        Preset("Last week", week_start - timedelta(days=7), week_start - timedelta(days=1)),
        Preset("This month", month_start, today),
        Preset("Last month", last_month_end.replace(day=1), last_month_end),
    ]


def chart_money(value: Decimal) -> str:
    """A chart label's amount: to the cent from a dollar up, else to three significant
    figures (the table beside the chart has the exact amounts)."""
    if value == 0:
        return "$0"
    if value >= 1:
        return f"${value.quantize(Decimal('0.01'), rounding=ROUND_HALF_UP):,}"
    quantum = Decimal(1).scaleb(value.adjusted() - 2)
    return "$" + money_str(value.quantize(quantum, rounding=ROUND_HALF_UP))


def axis_ticks(top: Decimal, intervals: int = AXIS_INTERVALS) -> list[Decimal]:
    """Round amounts from 0 to at least ``top``, at most ``intervals`` steps of 1, 2 or 5 times
    a power of ten; ``[0]`` when ``top`` is 0."""
    if top <= 0:
        return [ZERO]
    magnitude = Decimal(1).scaleb((top / intervals).adjusted())
    step = next(magnitude * f for f in (1, 2, 5, 10) if magnitude * f * intervals >= top)
    return [step * n for n in range(math.ceil(top / step) + 1)]


def daily_chart(days: list[reports.ReportRow]) -> dict:
    """Positions of a column chart of ``days``' cost (one bar a day, zero days included), with
    a value axis, the days along the bottom and each day's amount over its bar (written
    upwards when it does not fit across), for the template to draw."""
    plot_width = CHART_WIDTH - PLOT_LEFT - PLOT_RIGHT
    slot = plot_width / len(days)
    bar_width = max(slot * BAR_FILL, 1.0)
    ticks = axis_ticks(max(row.cost for row in days))
    scale_top = ticks[-1] if ticks[-1] > 0 else Decimal(1)
    labels = [chart_money(row.cost) for row in days]
    widest = (
        max((len(t) for t, r in zip(labels, days, strict=True) if r.cost > 0), default=0)
        * CHAR_WIDTH
    )
    if slot < MIN_LABELLED_SLOT or not widest:
        values, top_room = "none", 12
    elif widest <= slot - 2:
        values, top_room = "across", 20
    else:
        values, top_room = "up", math.ceil(widest) + 10
    baseline = top_room + PLOT_HEIGHT
    label_every = max(1, math.ceil(DAY_LABEL_WIDTH / slot))

    bars = []
    for index, (row, label) in enumerate(zip(days, labels, strict=True)):
        day = date.fromisoformat(row.key)
        height = float(row.cost / scale_top) * PLOT_HEIGHT
        if row.cost > 0:
            height = max(height, 1.0)  # a tiny cost still shows
        x = PLOT_LEFT + index * slot + (slot - bar_width) / 2
        centre = x + bar_width / 2
        top = baseline - height
        bar = {
            "day": row.key,
            "title": f"{day:%a} {day.day} {day:%b %Y}: {usd(row.cost)}, "
            f"{row.calls} call{'' if row.calls == 1 else 's'}",
            "cost": money_str(row.cost),
            "x": f"{x:.2f}",
            "y": f"{top:.2f}",
            "width": f"{bar_width:.2f}",
            "height": f"{height:.2f}",
            "day_label": f"{day.day} {day:%b}" if index % label_every == 0 else "",
            "day_x": f"{centre:.2f}",
            "value": label if row.cost > 0 and values != "none" else "",
        }
        if values == "across":
            bar |= {"value_x": f"{centre:.2f}", "value_y": f"{top - 5:.2f}", "value_turn": ""}
        elif values == "up":
            x_text, y_text = centre + 4, top - 5  # the text's baseline runs up the bar's axis
            bar |= {
                "value_x": f"{x_text:.2f}",
                "value_y": f"{y_text:.2f}",
                "value_turn": f"rotate(-90 {x_text:.2f} {y_text:.2f})",
            }
        bars.append(bar)
    return {
        "width": str(CHART_WIDTH),
        "height": str(baseline + PLOT_BOTTOM),
        "plot_left": str(PLOT_LEFT),
        "axis_x": str(PLOT_LEFT - 6),
        "empty": all(row.cost == 0 for row in days),
        "plot_right": str(CHART_WIDTH - PLOT_RIGHT),
        "baseline": str(baseline),
        "day_label_y": str(baseline + 16),
        "values": values,
        "ticks": [
            {
                "y": f"{baseline - float(tick / scale_top) * PLOT_HEIGHT:.2f}",
                "label": usd(tick),
            }
            for tick in ticks
        ],
        "bars": bars,
    }


def _percent(share: Decimal | None) -> str:
    return "-" if share is None else f"{share * 100:.1f}%"


def _meter(share: Decimal | None) -> str:
    """The width of a share's bar, as a CSS percentage (full at 100% and over)."""
    return "0" if share is None else f"{min(share, Decimal(1)) * 100:.1f}"


def _ledger_link(site: admin.AdminSite, start: date, end: date, **filters: str) -> str:
    """The ledger's list for the period, narrowed by ``filters``."""
    url = reverse("admin:llm_providers_ledgerentry_changelist", current_app=site.name)
    return f"{url}?{urlencode({**days_filter(start, end), **filters})}"


def period_context(site: admin.AdminSite, start: date, end: date) -> dict:
    """What the page shows of a (valid) period: totals, the chart and its table, the
    providers and the top models."""
    days = dashboard.daily_spend(start, end)
    total = reports.totals(days)
    models = dashboard.attempts_by_model(start, end)
    providers = _provider_rows(
        site, start, end, dashboard.provider_activity(start, end, models=models)
    )
    failures = sum(p["failures"] for p in providers)
    ended = sum(p["calls"] + p["failures"] for p in providers)
    labels = provider_labels()
    return {
        "period": {"start": start, "end": end, "days": len(days)},
        "total": {"calls": total.calls, "tokens": total.tokens, "cost": usd(total.cost)},
        "failures": {
            "count": failures,
            "rate": _percent(Decimal(failures) / ended if ended else None),
        },
        "previous": _previous(start, end, total.cost),
        "chart": daily_chart(days),
        "daily": [
            {
                "day": date.fromisoformat(row.key),
                "calls": row.calls,
                "tokens": row.tokens,
                "cost": usd(row.cost),
                "zero": not (row.calls or row.tokens or row.cost),
            }
            for row in days
        ],
        "providers": providers,
        "top_models": [
            {
                "provider": labels.get(row.provider, row.provider),
                "model": row.model,
                "calls": row.calls,
                "tokens": row.tokens,
                "cost": usd(row.cost),
                "share": _percent(row.cost / total.cost if total.cost > 0 else None),
            }
            for row in models[:TOP_MODELS]
        ],
        "more_models": max(len(models) - TOP_MODELS, 0),
        "report_url": reverse("admin:llm_providers_cost_report", current_app=site.name)
        + "?"
        + urlencode({"start": start.isoformat(), "end": end.isoformat(), "group_by": "model"}),
        "ledger_url": _ledger_link(site, start, end),
    }


def _previous(start: date, end: date, cost: Decimal) -> dict | None:
    """The spend of the period of the same length just before, and the change to this one."""
    length = end - start + timedelta(days=1)
    try:
        before_start, before_end = start - length, start - timedelta(days=1)
    except OverflowError:  # a period that starts in the year 1
        return None
    before = dashboard.period_total(before_start, before_end).cost
    change = None if before <= 0 else f"{(cost - before) / before * 100:+.0f}%"
    return {"start": before_start, "end": before_end, "cost": usd(before), "change": change}


def _provider_rows(
    site: admin.AdminSite, start: date, end: date, activity: list[dashboard.ProviderRow]
) -> list[dict]:
    """Every registered provider (those without attempts too: their circuit still matters),
    and any other provider the ledger names (a custom provider since removed)."""
    registered = registry.as_choices()
    found = {row.provider: row for row in activity}
    empty = {name: dashboard.ProviderRow(name, 0, 0, 0, 0, 0, ZERO) for name, _ in registered}
    rows = [
        (name, label, found.get(name, empty[name]), circuits.state(name))
        for name, label in registered
    ]
    rows += [
        (row.provider, row.provider, row, None) for row in activity if row.provider not in empty
    ]
    rows.sort(key=lambda r: (-r[2].cost, -r[2].attempts, r[1].lower()))
    return [
        {
            "name": name,
            "label": label,
            "attempts": row.attempts,
            "calls": row.calls,
            "failures": row.failures,
            "in_flight": row.in_flight,
            "failure_rate": _percent(row.failure_rate),
            "tokens": row.tokens,
            "cost": usd(row.cost),
            "circuit": state,
            "circuit_label": CIRCUIT_LABELS.get(state, "not configured"),
            "failures_url": _ledger_link(
                site, start, end, provider__exact=name, status__in=",".join(dashboard.FAILED)
            ),
        }
        for name, label, row, state in rows
    ]


def budget_context() -> dict:
    """Each user's budget use this month."""
    period = billing_period()
    uses = dashboard.budget_use(period)
    return {
        "budget_period": datetime.strptime(period, "%Y-%m").strftime("%B %Y"),
        "budget_resets_at": datetime.fromisoformat(budgets.resets_at(period)),
        "budgets": [
            {
                "user": use.username,
                "spent": usd(use.spent),
                "reserved_cost": usd(use.reserved_cost),
                "cost_limit": "unlimited" if use.cost_limit is None else usd(use.cost_limit),
                "cost_share": _percent(use.cost_share),
                "cost_meter": _meter(use.cost_share),
                "calls": use.calls,
                "reserved_calls": use.reserved_calls,
                "calls_limit": "unlimited" if use.calls_limit is None else use.calls_limit,
                "calls_share": _percent(use.calls_share),
                "calls_meter": _meter(use.calls_share),
                "over": use.share is not None and use.share >= 1,
            }
            for use in uses
        ],
    }


def dashboard_view(request: HttpRequest, site: admin.AdminSite) -> HttpResponse:
    """The dashboard, for staff who may view the ledger."""
    if not request.user.has_perm(LEDGER_VIEW_PERMISSION):
        raise PermissionDenied
    today = datetime.now(UTC).date()
    form = DashboardForm.from_query(request.GET, today)
    context = {
        **site.each_context(request),
        "title": "Dashboard",
        "opts": LedgerEntry._meta,
        "app_label": LedgerEntry._meta.app_label,
        "form": form,
        "presets": [
            {
                "label": preset.label,
                "url": "?" + urlencode({"start": preset.start, "end": preset.end}),
                "current": form.is_valid()
                and (form.cleaned_data["start"], form.cleaned_data["end"])
                == (preset.start, preset.end),
            }
            for preset in presets(today)
        ],
        **budget_context(),
    }
    if form.is_valid():
        context |= period_context(site, form.cleaned_data["start"], form.cleaned_data["end"])
    return TemplateResponse(request, "admin/llm_providers/dashboard.html", context)


add_page(admin.site, "llm_providers/dashboard/", "llm_providers_dashboard", dashboard_view)
