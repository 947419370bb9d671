"""``GET reports/costs/`` (staff): cost per user, provider, model or day; JSON or CSV."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from llm_providers.accounting import reports
from llm_providers.accounting.reports import month_bounds
from llm_providers.models import LedgerEntry, billing_period
from tests.api.support import API, assert_error
from tests.providers.wire import gemini_generate_url, gemini_response

pytestmark = pytest.mark.django_db

REPORT = API + "reports/costs/"
MARCH = {"start": "2025-03-01", "end": "2025-03-31"}


def entry(user, provider, model, when, *, tokens, cost, status="success") -> LedgerEntry:
    return LedgerEntry.objects.create(
        request_id=f"req{LedgerEntry.objects.count():029d}",
        user=user,
        provider=provider,
        model=model,
        total_tokens=tokens,
        cost=Decimal(cost),
        cost_source="price_table",
        status=status,
        period=billing_period(when),
        created_at=when,
    )


@pytest.fixture
def march(user, other_user):
    """Known ledger rows in March 2025, and two just outside it."""
    utc = UTC
    entry(
        user,
        "gemini",
        "gemini-2.5-flash",
        datetime(2025, 3, 1, 0, 0, tzinfo=utc),
        tokens=100,
        cost="0.01",
    )
    entry(
        user,
        "openrouter",
        "openai/gpt-4o-mini",
        datetime(2025, 3, 2, 9, tzinfo=utc),
        tokens=50,
        cost="0.002",
    )
    # A failed attempt: its tokens and cost count, it is not a call.
    entry(
        user,
        "openrouter",
        "openai/gpt-4o-mini",
        datetime(2025, 3, 2, 9, tzinfo=utc),
        tokens=5,
        cost="0.0001",
        status="error",
    )
    entry(
        None,
        "gemini",
        "gemini-2.5-flash",
        datetime(2025, 3, 15, 12, tzinfo=utc),
        tokens=20,
        cost="0.003",
    )
    entry(
        other_user,
        "huggingface",
        "meta-llama/Llama-3.1-8B-Instruct",
        datetime(2025, 3, 31, 23, 59, 59, tzinfo=utc),
        tokens=30,
        cost="0",
    )
    # Outside the month, on either side.
    entry(
        user,
        "gemini",
        "gemini-2.5-flash",
        datetime(2025, 2, 28, 23, 59, 59, tzinfo=utc),
        tokens=1000,
        cost="1",
    )
    entry(
        other_user,
        "gemini",
        "gemini-2.5-flash",
        datetime(2025, 4, 1, 0, 0, tzinfo=utc),
        tokens=1000,
        cost="1",
    )


def row(key, calls, tokens, cost):
    return {"key": key, "calls": calls, "tokens": tokens, "cost": cost}


@pytest.mark.parametrize(
    ("group_by", "rows", "total"),
    [
        (
            "user",
            [
                row("alice", 2, 155, "0.0121"),
                row("(system)", 1, 20, "0.003"),
                row("bob", 1, 30, "0"),
            ],
            row("total", 4, 205, "0.0151"),
        ),
        (
            "provider",
            [
                row("gemini", 2, 120, "0.013"),
                row("openrouter", 1, 55, "0.0021"),
                row("huggingface", 1, 30, "0"),
            ],
            row("total", 4, 205, "0.0151"),
        ),
        (
            "model",
            [
                row("gemini-2.5-flash", 2, 120, "0.013"),
                row("openai/gpt-4o-mini", 1, 55, "0.0021"),
                row("meta-llama/Llama-3.1-8B-Instruct", 1, 30, "0"),
            ],
            row("total", 4, 205, "0.0151"),
        ),
        (
            "day",
            [
                row("2025-03-01", 1, 100, "0.01"),
                row("2025-03-02", 1, 55, "0.0021"),
                row("2025-03-15", 1, 20, "0.003"),
                row("2025-03-31", 1, 30, "0"),
            ],
            row("total", 4, 205, "0.0151"),
        ),
    ],
)
def test_grouped_rows(staff_api, march, group_by, rows, total):
    response = staff_api.get(REPORT, {**MARCH, "group_by": group_by})
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json() == rows
    assert (
        reports.totals(
            reports.ReportRow(**{**r, "cost": Decimal(r["cost"])}) for r in rows
        ).as_dict()
        == total
    )


def test_group_by_defaults_to_user(staff_api, march):
    body = staff_api.get(REPORT, MARCH).json()
    assert [r["key"] for r in body] == ["alice", "(system)", "bob"]


@pytest.mark.parametrize(
    ("start", "end", "days"),
    [
        ("2025-03-02", "2025-03-15", ["2025-03-02", "2025-03-15"]),
        ("2025-03-31", "2025-03-31", ["2025-03-31"]),
        ("2025-03-01", "2025-03-01", ["2025-03-01"]),
        ("2025-02-28", "2025-03-01", ["2025-02-28", "2025-03-01"]),
        ("2025-03-16", "2025-03-30", []),
    ],
)
def test_start_and_end_are_inclusive_days(staff_api, march, start, end, days):
    body = staff_api.get(REPORT, {"start": start, "end": end, "group_by": "day"}).json()
    assert [r["key"] for r in body] == days


def test_default_range_is_this_month(staff_api, user):
    now = datetime.now(UTC)
    first, last = month_bounds()
    before = datetime(first.year, first.month, first.day, tzinfo=UTC) - timedelta(seconds=1)
    after = datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=1)
    entry(user, "gemini", "gemini-2.5-flash", now, tokens=7, cost="0.07")
    entry(user, "gemini", "gemini-2.5-flash", before, tokens=1000, cost="1")
    entry(user, "gemini", "gemini-2.5-flash", after, tokens=1000, cost="1")

    body = staff_api.get(REPORT).json()

    assert body == [row("alice", 1, 7, "0.07")]


def test_start_alone_runs_to_the_end_of_this_month(staff_api, march):
    body = staff_api.get(REPORT, {"start": "2025-03-31", "group_by": "day"}).json()
    assert [r["key"] for r in body] == ["2025-03-31", "2025-04-01"]


def test_end_alone_runs_from_the_start_of_this_month(staff_api, march):
    _, last = month_bounds()
    body = staff_api.get(REPORT, {"end": last.isoformat()}).json()
    assert body == []
    error = assert_error(staff_api.get(REPORT, {"end": "2025-03-31"}), 400, "invalid_request")
    assert error["fields"] == {"end": ["The end is before the start."]}


def test_calls_made_through_the_api_are_reported_under_the_username(api, staff_api, use_keys, http):
    use_keys("gemini")
    http.post(gemini_generate_url(), body=gemini_response())
    assert api.post(API + "generate/", {"prompt": "hi"}, format="json").status_code == 200
    from llm_providers.main_text_generation import llm_text_gen

    llm_text_gen("system call")  # no user

    body = staff_api.get(REPORT, {"group_by": "user"}).json()

    # Equal costs: by key, and "(" sorts before letters.
    assert body == [row("(system)", 1, 35, "0.0000413"), row("alice", 1, 35, "0.0000413")]


def test_csv(staff_api, march):
    response = staff_api.get(REPORT, {**MARCH, "group_by": "user", "format": "csv"})
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == (
        'attachment; filename="costs-user-2025-03-01-2025-03-31.csv"'
    )
    assert response.content.decode() == (
        "key,calls,tokens,cost\nalice,2,155,0.0121\n(system),1,20,0.003\nbob,1,30,0\n"
    )


def test_csv_by_model_and_empty_csv(staff_api, march):
    response = staff_api.get(REPORT, {**MARCH, "group_by": "model", "format": "csv"})
    assert response.content.decode().splitlines() == [
        "key,calls,tokens,cost",
        "gemini-2.5-flash,2,120,0.013",
        "openai/gpt-4o-mini,1,55,0.0021",
        "meta-llama/Llama-3.1-8B-Instruct,1,30,0",
    ]
    empty = staff_api.get(REPORT, {"start": "2020-01-01", "end": "2020-01-31", "format": "csv"})
    assert empty.content.decode() == "key,calls,tokens,cost\n"


CHOOSE_GROUPING = "Choose one of user, provider, model, day, key_owner."


@pytest.mark.parametrize(
    ("params", "fields"),
    [
        ({"start": "2025-3-1"}, {"start": ["Use an ISO date, e.g. 2026-11-24."]}),
        ({"start": "march"}, {"start": ["Use an ISO date, e.g. 2026-11-24."]}),
        ({"end": "2025-02-29"}, {"end": ["Use an ISO date, e.g. 2026-11-24."]}),
        ({"start": "2025-03-02", "end": "2025-03-01"}, {"end": ["The end is before the start."]}),
        ({"group_by": "week"}, {"group_by": [CHOOSE_GROUPING]}),
        ({"group_by": "USER"}, {"group_by": [CHOOSE_GROUPING]}),
        ({"key_owner": "admin"}, {"key_owner": ["Choose one of platform, user."]}),
        # Ranges no report covers: the last day (whose next day overflows) was a 500.
        ({"end": "9999-12-31"}, {"end": ["A report covers at most 10 years."]}),
        ({"start": "0001-01-01"}, {"end": ["A report covers at most 10 years."]}),
        (
            {"start": "9999-12-01", "end": "9999-12-31"},
            {"end": ["The end must be before 9999-12-31."]},
        ),
        (
            {"start": "2016-01-01", "end": "2026-01-01"},
            {"end": ["A report covers at most 10 years."]},
        ),
    ],
)
@pytest.mark.parametrize("fmt", [None, "csv"])
def test_bad_parameters_are_400_with_the_json_error_body(staff_api, params, fields, fmt):
    if fmt:
        params = {**params, "format": fmt}
    error = assert_error(staff_api.get(REPORT, params), 400, "invalid_request")
    assert error["fields"] == fields


def test_ten_years_to_the_day_and_the_day_before_the_last_are_reported(staff_api):
    assert staff_api.get(REPORT, {"start": "2016-01-01", "end": "2025-12-31"}).status_code == 200
    assert staff_api.get(REPORT, {"start": "9999-12-01", "end": "9999-12-30"}).status_code == 200


@pytest.mark.parametrize("fmt", [None, "csv"])
def test_refusals_are_the_json_error_body_also_for_csv(api, anon, fmt):
    params = {"format": fmt} if fmt else {}
    assert_error(api.get(REPORT, params), 403, "permission_denied")
    assert_error(anon.get(REPORT, params), 401, "not_authenticated")


def test_csv_is_given_even_when_the_client_accepts_json(staff_api, march):
    response = staff_api.get(
        REPORT, {**MARCH, "group_by": "provider", "format": "csv"}, HTTP_ACCEPT="application/json"
    )
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response.content.decode().splitlines()[0] == "key,calls,tokens,cost"


def test_calls_with_users_own_keys_are_separable(staff_api, march, user):
    mine = entry(
        user, "openrouter", "openai/gpt-4o", datetime(2025, 3, 9, tzinfo=UTC), tokens=5, cost="2"
    )
    LedgerEntry.objects.filter(pk=mine.pk).update(key_owner="user")
    march_range = {"start": "2025-03-01", "end": "2025-03-31"}

    by_owner = staff_api.get(REPORT, {**march_range, "group_by": "key_owner"}).json()
    only_own = staff_api.get(REPORT, {**march_range, "key_owner": "user"}).json()

    assert [row["key"] for row in by_owner] == ["user", "platform"]
    assert by_owner[0] == {"key": "user", "calls": 1, "tokens": 5, "cost": "2"}
    assert only_own == [{"key": user.get_username(), "calls": 1, "tokens": 5, "cost": "2"}]
