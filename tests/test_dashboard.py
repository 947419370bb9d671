"""The admin's dashboard (SPEC §14): its figures against the ledger and the summaries they come
from, its chart's geometry, its period form, who may see it, and the links to it (and to the
cost report) in the admin index, the app index and the navigation sidebar.

Ledger rows are written by the real recorder (``ledger.record_call``, ``begin_attempt``, the
sweep). The recorder stamps rows with the current time; a row meant for an earlier day is moved
there afterwards (its ``created_at`` only: the day chart reads the ledger by time).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.db.models import Count, F, Q, Sum
from django.db.models.functions import TruncDate
from django.urls import reverse

from llm_providers import circuits
from llm_providers.accounting import budgets, dashboard, ledger, reports, sweeper
from llm_providers.accounting.money import ZERO
from llm_providers.admin import dashboard as dashboard_admin
from llm_providers.admin.common import usd
from llm_providers.conf import llm_settings
from llm_providers.exceptions import ProviderUnavailable
from llm_providers.forms import DashboardForm
from llm_providers.models import LedgerEntry, UsageBudget, UsageSummary, billing_period
from llm_providers.results import Attempt, Completion, Usage

pytestmark = pytest.mark.django_db

DASHBOARD = "/admin/llm_providers/dashboard/"
REPORT = "/admin/llm_providers/cost-report/"


@pytest.fixture(autouse=True)
def fast_password_hasher(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def today() -> date:
    return datetime.now(UTC).date()


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user("alice")


@pytest.fixture
def bob(django_user_model):
    return django_user_model.objects.create_user("bob")


def record(
    user,
    cost: str = "0.5",
    *,
    provider: str = "openrouter",
    model: str = "openai/gpt-4o",
    tokens: tuple[int, int] = (10, 9),
    ok: bool = True,
    days_ago: int = 0,
) -> LedgerEntry:
    """One attempt through the real recorder, with ``cost`` as the provider reported it; a
    failed one (``ok=False``) was billed its partial usage."""
    used = Usage(tokens[0], tokens[1], sum(tokens), Decimal(cost))
    attempt = Attempt(
        provider=provider,
        model=model,
        is_fallback=False,
        completion=Completion("text", provider, model, used) if ok else None,
        error=None if ok else ProviderUnavailable("upstream failed", provider=provider),
        partial_usage=None if ok else used,
        requests=1,
        requested_model=model,
    )
    request_id = f"req-{LedgerEntry.objects.count()}"
    [entry] = ledger.record_call(request_id, user and user.pk, [attempt])
    if days_ago:
        LedgerEntry.objects.filter(pk=entry.pk).update(
            created_at=F("created_at") - timedelta(days=days_ago)
        )
    return entry


def show(client, start: date | str, end: date | str):
    response = client.get(DASHBOARD, {"start": str(start), "end": str(end)})
    assert response.status_code == 200
    return response


def ledger_by_day(start: date, end: date) -> dict[str, Decimal]:
    """The ledger's own sums per UTC day: what the chart must show."""
    rows = (
        LedgerEntry.objects.filter(created_at__date__gte=start, created_at__date__lte=end)
        .annotate(day=TruncDate("created_at", tzinfo=UTC))
        .values("day")
        .annotate(cost=Sum("cost"))
    )
    return {row["day"].isoformat(): row["cost"] for row in rows}


def html_of(response) -> str:
    return response.content.decode()


def cells(html: str, table_id: str) -> list[list[str]]:
    """The text of each body row's cells of the table ``table_id``."""
    table = re.search(rf'<table id="{table_id}">(.*?)</table>', html, re.S).group(1)
    body = re.search(r"<tbody>(.*?)</tbody>", table, re.S).group(1)
    return [
        [
            " ".join(re.sub(r"<[^>]+>", " ", cell).split())
            for cell in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row, re.S)
        ]
        for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)
    ]


# --- spend per day --------------------------------------------------------------------------------


def test_spend_per_day_has_every_day_of_the_range_and_the_ledgers_sums(
    admin_client, alice, bob, today
):
    record(alice, "0.5")
    record(bob, "0.25", provider="gemini", model="gemini-2.5-flash")
    record(alice, "1.125", days_ago=2)
    record(bob, "0.000123456789", ok=False, days_ago=6)  # failed, yet billed
    record(alice, "7", days_ago=7)  # the day before the range
    start = today - timedelta(days=6)

    response = show(admin_client, start, today)

    expected = ledger_by_day(start, today)
    daily = response.context["daily"]
    assert [row["day"] for row in daily] == dashboard.days(start, today)
    assert len(daily) == 7
    for row in daily:
        day = row["day"].isoformat()
        assert row["cost"] == usd(expected.get(day, ZERO)), day
    assert [row["cost"] for row in daily] == [
        "$0.000123456789",
        "$0",
        "$0",
        "$0",
        "$1.125",
        "$0",
        "$0.75",
    ]
    assert [row["zero"] for row in daily] == [False, True, True, True, False, True, False]
    # The total is the ledger's, to the last digit.
    total = sum(expected.values(), ZERO)
    assert total == Decimal("1.875123456789")
    assert response.context["total"] == {"calls": 3, "tokens": 76, "cost": "$1.875123456789"}
    html = html_of(response)
    assert '<span class="stat-value" id="total-spend">$1.875123456789</span>' in html
    rows = cells(html, "daily-table")
    assert [r[3] for r in rows] == [row["cost"] for row in daily]
    assert rows[0][0] == f"{start:%a} {start.day} {start:%b %Y}"
    # The chart: one bar per day, zero days included, as tall as their cost.
    bars = response.context["chart"]["bars"]
    assert [bar["day"] for bar in bars] == [d.isoformat() for d in dashboard.days(start, today)]
    assert html.count('<g class="day"') == 7
    heights = [float(bar["height"]) for bar in bars]
    assert heights[1:4] == [0.0, 0.0, 0.0] and heights[5] == 0.0
    assert heights[4] / heights[6] == pytest.approx(1.125 / 0.75, rel=1e-3)
    assert heights[0] == 1.0  # a tiny cost still shows
    assert f'data-day="{(today - timedelta(days=2)).isoformat()}" data-cost="1.125"' in html
    # The period before (the 7 days up to the range's start) holds the 7 dollars.
    assert response.context["previous"]["cost"] == "$7"


def test_the_default_period_is_the_last_30_days_up_to_today(admin_client, alice, today):
    record(alice, "0.5", days_ago=29)
    record(alice, "0.25", days_ago=30)  # one day too old

    response = admin_client.get(DASHBOARD)

    assert response.status_code == 200
    form = response.context["form"]
    assert (form.cleaned_data["start"], form.cleaned_data["end"]) == (
        today - timedelta(days=29),
        today,
    )
    assert len(response.context["daily"]) == 30
    assert response.context["total"]["cost"] == "$0.5"
    # The preset for the default period is marked as the one shown.
    current = [p["label"] for p in response.context["presets"] if p["current"]]
    assert current == ["Last 30 days"]


def test_presets_cover_the_weeks_and_months_a_bill_is_read_by():
    monday = date(2026, 12, 7)
    found = {p.label: (p.start, p.end) for p in dashboard_admin.presets(monday)}
    assert found == {
        "Last 7 days": (date(2026, 12, 1), monday),
        "Last 30 days": (date(2026, 11, 8), monday),
        "Last week": (date(2026, 11, 30), date(2026, 12, 6)),
        "This month": (date(2026, 12, 1), monday),
        "Last month": (date(2026, 11, 1), date(2026, 11, 30)),
    }
    # January's last month is December of the year before.
    january = {p.label: (p.start, p.end) for p in dashboard_admin.presets(date(2027, 1, 15))}
    assert january["Last month"] == (date(2026, 12, 1), date(2026, 12, 31))


# --- providers, failures, circuits ----------------------------------------------------------------


def test_providers_show_failures_spend_and_the_circuit_now(admin_client, alice, today):
    for _ in range(3):
        record(alice, "0.5")
    record(alice, "0.01", ok=False)
    record(alice, "0.25", provider="gemini", model="gemini-2.5-flash", ok=False)
    # An attempt whose process died mid-call (interrupted, charged its estimate), and one
    # still in flight: an attempt each, neither a success.
    dead = ledger.begin_attempt(
        "req-dead",
        alice.pk,
        provider="openrouter",
        model="openai/gpt-4o",
        is_fallback=False,
        estimate=Decimal("0.2"),
        reservation=None,
    )
    assert sweeper.sweep(older_than=0) == 1
    dead.refresh_from_db()
    assert (dead.status, dead.cost) == ("interrupted", Decimal("0.2"))
    ledger.begin_attempt(
        "req-live",
        alice.pk,
        provider="openrouter",
        model="openai/gpt-4o",
        is_fallback=False,
        estimate=Decimal("0.3"),
        reservation=None,
    )
    for _ in range(int(llm_settings.LLM_CIRCUIT_FAILURES)):
        circuits.record_failure("gemini")
    assert circuits.state("gemini") == circuits.OPEN

    response = show(admin_client, today, today)

    rows = {row["name"]: row for row in response.context["providers"]}
    # Every registered provider is listed, those without attempts too.
    assert list(rows) == ["openrouter", "gemini", "huggingface"]
    openrouter = rows["openrouter"]
    assert openrouter["label"] == "OpenRouter"
    assert (openrouter["attempts"], openrouter["calls"], openrouter["failures"]) == (6, 3, 2)
    assert openrouter["in_flight"] == 1
    assert openrouter["failure_rate"] == "40.0%"  # 2 of the 5 that ended
    assert openrouter["cost"] == "$1.71"  # 3 x 0.5 + 0.01 + the interrupted one's 0.2
    assert openrouter["circuit"] == circuits.CLOSED
    assert (rows["gemini"]["label"], rows["gemini"]["failure_rate"]) == ("Google Gemini", "100.0%")
    assert (rows["gemini"]["circuit"], rows["gemini"]["circuit_label"]) == ("open", "open")
    assert (rows["huggingface"]["attempts"], rows["huggingface"]["failure_rate"]) == (0, "-")
    # Spend and calls are the cost report's, and the ledger's.
    report = {r.key: r for r in reports.cost_report(today, today, "provider")}
    for name in ("openrouter", "gemini"):
        assert rows[name]["cost"] == usd(report[name].cost)
        assert rows[name]["calls"] == report[name].calls
        ledger_rows = LedgerEntry.objects.filter(provider=name).aggregate(
            n=Count("id"), failed=Count("id", filter=Q(status__in=["error", "interrupted"]))
        )
        assert (rows[name]["attempts"], rows[name]["failures"]) == (
            ledger_rows["n"],
            ledger_rows["failed"],
        )
    assert response.context["failures"] == {"count": 3, "rate": "50.0%"}  # 3 of 6 ended
    html = html_of(response)
    table = {row[0]: row for row in cells(html, "provider-table")}
    assert table["OpenRouter"] == [
        "OpenRouter",
        "6 (1 in flight)",
        "3",
        "2",
        "40.0%",
        "$1.71",
        "closed",
    ]
    assert table["Google Gemini"][-1] == "open"
    assert "openrouter" not in [row[0] for row in cells(html, "provider-table")]
    # The failures link to the ledger, filtered: the page answers with those rows.
    listed = admin_client.get(openrouter["failures_url"])
    assert listed.status_code == 200
    assert listed.context["cl"].result_count == 2


def test_a_provider_no_longer_registered_is_listed_by_its_name(admin_client, alice, today):
    record(alice, "0.5", provider="retired", model="m1")

    rows = {r["name"]: r for r in show(admin_client, today, today).context["providers"]}

    assert (rows["retired"]["label"], rows["retired"]["circuit_label"]) == (
        "retired",
        "not configured",
    )
    assert rows["retired"]["cost"] == "$0.5"


# --- top models -----------------------------------------------------------------------------------


def test_top_models_by_spend_name_the_provider_and_match_the_ledger(
    admin_client, alice, bob, today
):
    record(alice, "0.5", model="openai/gpt-4o", tokens=(100, 50))
    record(bob, "0.5", model="openai/gpt-4o", tokens=(100, 50))
    record(alice, "0.25", provider="gemini", model="gemini-2.5-flash", tokens=(10, 5))
    # The same model id through another provider is another row.
    record(alice, "2", provider="huggingface", model="openai/gpt-4o", tokens=(1, 1))
    record(alice, "0.125", model="openai/gpt-4o", ok=False, tokens=(3, 0))

    response = show(admin_client, today, today)

    top = response.context["top_models"]
    assert [(r["provider"], r["model"], r["calls"], r["tokens"], r["cost"]) for r in top] == [
        ("Hugging Face", "openai/gpt-4o", 1, 2, "$2"),
        ("OpenRouter", "openai/gpt-4o", 2, 303, "$1.125"),
        ("Google Gemini", "gemini-2.5-flash", 1, 15, "$0.25"),
    ]
    assert [r["share"] for r in top] == ["59.3%", "33.3%", "7.4%"]
    # Summed per model, they are the cost report's by model.
    by_model: dict[str, Decimal] = {}
    for row in dashboard.attempts_by_model(today, today):
        by_model[row.model] = by_model.get(row.model, ZERO) + row.cost
    assert by_model == {r.key: r.cost for r in reports.cost_report(today, today, "model")}
    assert cells(html_of(response), "model-table")[0] == [
        "Hugging Face",
        "openai/gpt-4o",
        "1",
        "2",
        "$2",
        "59.3%",
    ]


def test_top_models_stop_at_ten_and_point_to_the_cost_report(admin_client, alice, today):
    for n in range(12):
        record(alice, str(n + 1), model=f"model-{n:02}")

    response = show(admin_client, today, today)

    assert [r["model"] for r in response.context["top_models"]] == [
        f"model-{n:02}" for n in range(11, 1, -1)
    ]
    assert response.context["more_models"] == 2
    assert "2 more models in the" in html_of(response)


# --- budget use -----------------------------------------------------------------------------------


def test_budget_use_shows_spent_reserved_and_limits_nearest_first(
    admin_client, django_user_model, alice, bob, settings, today
):
    carol = django_user_model.objects.create_user("carol")
    dave = django_user_model.objects.create_user("dave")
    settings.LLM_DEFAULT_MONTHLY_COST_LIMIT = "1.00"  # bob's: he has no budget row
    UsageBudget.objects.create(user=alice, monthly_cost_limit=Decimal("4"), monthly_call_limit=10)
    UsageBudget.objects.create(user=carol, monthly_cost_limit=Decimal("2"))  # never called
    UsageBudget.objects.create(user=dave)  # explicitly unlimited
    record(alice, "0.5")
    record(alice, "0.5")
    reservation = budgets.reserve(alice.pk, Decimal("0.25"))  # a call in flight
    assert reservation is not None
    record(bob, "0.75")
    record(dave, "3")
    record(None, "0.125")  # system usage: no budget

    response = show(admin_client, today, today)

    rows = response.context["budgets"]
    got = [
        (
            r["user"],
            r["spent"],
            r["reserved_cost"],
            r["cost_limit"],
            r["cost_share"],
            r["calls"],
            r["reserved_calls"],
            r["calls_limit"],
            r["calls_share"],
        )
        for r in rows
    ]
    assert got == [
        ("bob", "$0.75", "$0", "$1", "75.0%", 1, 0, "unlimited", "-"),
        ("alice", "$1", "$0.25", "$4", "25.0%", 2, 1, 10, "20.0%"),
        ("carol", "$0", "$0", "$2", "0.0%", 0, 0, "unlimited", "-"),
        ("dave", "$3", "$0", "unlimited", "-", 1, 0, "unlimited", "-"),
        ("(system)", "$0.125", "$0", "unlimited", "-", 1, 0, "unlimited", "-"),
    ]
    # Spent is the month's summary, which equals the ledger.
    period = billing_period()
    for user in (alice, bob, dave):
        summary = UsageSummary.objects.get(user=user, period=period)
        ledger_sum = LedgerEntry.objects.filter(user=user, period=period).aggregate(c=Sum("cost"))
        assert summary.total_cost == ledger_sum["c"]
    table = cells(html_of(response), "budget-table")
    assert table[1] == ["alice", "$1", "$0.25", "$4", "25.0%", "2", "1", "10", "20.0%"]
    assert table[3][3] == "unlimited"


def test_a_user_over_a_limit_is_first_and_marked(admin_client, alice, bob, today):
    UsageBudget.objects.create(user=alice, monthly_call_limit=1)
    UsageBudget.objects.create(user=bob, monthly_cost_limit=Decimal("10"))
    record(alice, "0.01")
    record(bob, "9")

    response = show(admin_client, today, today)

    rows = response.context["budgets"]
    assert [(r["user"], r["over"]) for r in rows] == [("alice", True), ("bob", False)]
    assert rows[0]["calls_share"] == "100.0%"
    assert '<tr class="over">' in html_of(response)


def test_budget_use_counts_users_own_keys_as_budgets_do(alice, settings):
    record(alice, "1")
    LedgerEntry.objects.update(key_owner="user")
    UsageSummary.objects.filter(user=alice).update(byok_cost=Decimal("1"))
    UsageBudget.objects.create(user=alice, monthly_cost_limit=Decimal("2"))

    [use] = dashboard.budget_use()
    assert use.spent == ZERO  # paid by alice to her provider: not against her limit

    settings.LLM_BYOK_COUNTS_AGAINST_BUDGET = True
    [use] = dashboard.budget_use()
    assert use.spent == Decimal("1")
    assert use.cost_share == Decimal("0.5")


def test_budget_use_reads_limits_without_a_query_per_user(
    django_assert_max_num_queries, django_user_model
):
    for n in range(5):
        user = django_user_model.objects.create_user(f"user{n}")
        record(user, "0.1")
        if n % 2:
            UsageBudget.objects.create(user=user, monthly_cost_limit=Decimal("1"))
    with django_assert_max_num_queries(2):
        assert len(dashboard.budget_use()) == 5


# --- the period form ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ({"start": "2026-02-30", "end": "2026-03-01"}, "start", "Enter a valid date."),
        ({"start": "March", "end": "2026-03-01"}, "start", "Enter a valid date."),
        ({"start": "2026-03-31", "end": "2026-03-01"}, "end", "before the start date"),
        ({"start": "2025-01-01", "end": "2026-03-01"}, "end", "at most 366 days"),
        ({"start": "9999-12-30", "end": "9999-12-31"}, "end", "must be before 9999-12-31"),
        ({"start": "0001-01-01", "end": "0001-01-31"}, None, None),  # valid, no period before
    ],
)
def test_dates_the_dashboard_cannot_show_are_form_errors(admin_client, query, field, message):
    response = admin_client.get(DASHBOARD, query)

    assert response.status_code == 200
    form = response.context["form"]
    if field is None:
        assert form.is_valid()
        assert response.context["previous"] is None
        return
    assert message in " ".join(form.errors[field])
    assert "Please correct the errors above." in html_of(response)
    assert "period" not in response.context  # no figures for a period it could not read
    # The month's budget use does not depend on the period.
    assert "budgets" in response.context


def test_a_whole_year_is_shown():
    form = DashboardForm({"start": "2024-01-01", "end": "2024-12-31"})
    assert form.is_valid(), form.errors


# --- chart geometry -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("top", "ticks"),
    [
        ("0", ["0"]),
        ("1.875", ["0", "0.5", "1", "1.5", "2"]),
        ("0.000123", ["0", "0.00005", "0.0001", "0.00015"]),
        ("7", ["0", "2", "4", "6", "8"]),
        ("10", ["0", "5", "10"]),
        ("120", ["0", "50", "100", "150"]),
    ],
)
def test_axis_ticks_are_round_and_reach_the_top(top, ticks):
    found = dashboard_admin.axis_ticks(Decimal(top))
    assert [Decimal(t) for t in ticks] == found
    assert found[-1] >= Decimal(top)
    assert len(found) - 1 <= dashboard_admin.AXIS_INTERVALS


@pytest.mark.parametrize(
    ("value", "label"),
    [
        ("0", "$0"),
        ("1.125", "$1.13"),
        ("1234.5", "$1,234.50"),
        ("0.125", "$0.125"),
        ("0.000123456789", "$0.000123"),
        ("0.5", "$0.5"),
    ],
)
def test_chart_labels_are_short(value, label):
    assert dashboard_admin.chart_money(Decimal(value)) == label


def rows_of(costs: list[str]) -> list[reports.ReportRow]:
    start = date(2026, 11, 1)
    return [
        reports.ReportRow((start + timedelta(days=n)).isoformat(), 1, 1, Decimal(cost))
        for n, cost in enumerate(costs)
    ]


def test_few_days_have_their_amounts_across_many_upwards_and_a_year_none():
    week = dashboard_admin.daily_chart(rows_of(["0.5", "0", "1.25", "0", "0", "0", "2"]))
    assert week["values"] == "across"
    assert [b["value"] for b in week["bars"]] == ["$0.5", "", "$1.25", "", "", "", "$2.00"]
    assert all(b["day_label"] for b in week["bars"])  # room for every day's label

    month = dashboard_admin.daily_chart(rows_of(["0.123456"] * 30))
    assert month["values"] == "up"
    assert month["bars"][0]["value_turn"].startswith("rotate(-90 ")

    year = dashboard_admin.daily_chart(rows_of(["1"] * 366))
    assert year["values"] == "none"
    labelled = [b for b in year["bars"] if b["day_label"]]
    assert 10 <= len(labelled) <= 20  # one label every few days, not 366 on top of each other
    # Bars stay inside the plot.
    right = float(year["bars"][-1]["x"]) + float(year["bars"][-1]["width"])
    assert right <= float(year["plot_right"]) + 0.01


def test_an_empty_period_draws_an_empty_chart(admin_client, today):
    response = show(admin_client, today - timedelta(days=6), today)

    chart = response.context["chart"]
    assert chart["empty"] and chart["values"] == "none"
    assert [float(b["height"]) for b in chart["bars"]] == [0.0] * 7
    html = html_of(response)
    assert "Nothing was spent in this period." in html
    assert "No calls in this period." in html


# --- who may see it, and where it is linked -------------------------------------------------------


@pytest.fixture
def login_staff(client, django_user_model):
    def _login(*codenames: str):
        user = django_user_model.objects.create_user("staffer", is_staff=True)
        user.user_permissions.set(
            Permission.objects.filter(
                content_type__app_label="llm_providers", codename__in=codenames
            )
        )
        client.force_login(user)
        return client

    return _login


def test_the_url_name():
    assert reverse("admin:llm_providers_dashboard") == DASHBOARD


def test_anonymous_users_are_sent_to_log_in(client):
    response = client.get(DASHBOARD)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_staff_without_the_ledger_permission_are_refused(login_staff):
    client = login_staff("view_apikey")
    assert client.get(DASHBOARD).status_code == 403


def test_staff_who_may_view_the_ledger_see_it(login_staff):
    client = login_staff("view_ledgerentry")
    response = client.get(DASHBOARD)
    assert response.status_code == 200
    assert response.context["title"] == "Dashboard"


def app_entries(response, app_label: str = "llm_providers") -> list[str]:
    [app] = [a for a in response.context["app_list"] if a["app_label"] == app_label]
    return [model["name"] for model in app["models"]]


def test_the_index_lists_the_dashboard_and_the_report_first_with_the_permission(login_staff):
    client = login_staff("view_ledgerentry")

    response = client.get(reverse("admin:index"))

    entries = app_entries(response)
    assert entries[:2] == ["Dashboard", "Cost report"]
    html = html_of(response)
    assert f'<a href="{DASHBOARD}">Dashboard</a>' in html
    assert f'<a href="{REPORT}">Cost report</a>' in html
    assert f'<a href="{DASHBOARD}" class="viewlink"' in html  # "View", not "Change"


def test_without_the_permission_neither_page_is_listed(login_staff):
    client = login_staff("view_apikey")  # sees the app, for its keys

    for url in (reverse("admin:index"), reverse("admin:app_list", args=["llm_providers"])):
        response = client.get(url)
        assert response.status_code == 200
        assert app_entries(response) == ["API keys"]
        assert DASHBOARD not in html_of(response)
        assert REPORT not in html_of(response)


def test_the_app_index_lists_and_describes_both_pages(login_staff):
    client = login_staff("view_ledgerentry", "view_usagesummary")

    html = html_of(client.get(reverse("admin:app_list", args=["llm_providers"])))

    model_list = html.split('id="content-related"')[0]
    assert f'<a href="{DASHBOARD}">Dashboard</a>' in model_list
    sidebar = html.split('id="content-related"')[1]
    assert f'<a href="{DASHBOARD}" class="viewlink">Dashboard</a>' in sidebar
    assert f'<a href="{REPORT}" class="viewlink">Cost report</a>' in sidebar


def test_the_navigation_sidebar_links_both_and_marks_the_page_shown(admin_client):
    html = html_of(admin_client.get(DASHBOARD))

    sidebar = re.search(r'<nav class="sticky" id="nav-sidebar"[^>]*>(.*?)</nav>', html, re.S).group(
        1
    )
    assert f'<a href="{DASHBOARD}" aria-current="page">Dashboard</a>' in sidebar
    assert f'<a href="{REPORT}">Cost report</a>' in sidebar
    # Elsewhere (the ledger's list) the links are there, not marked.
    ledger_html = html_of(admin_client.get(reverse("admin:llm_providers_ledgerentry_changelist")))
    assert f'<a href="{DASHBOARD}">Dashboard</a>' in ledger_html
