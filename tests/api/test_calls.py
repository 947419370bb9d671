"""``GET calls/``: the caller's own ledger, paginated and filtered."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from llm_providers.models import LedgerEntry, billing_period
from tests.api.support import API, LEDGER_FIELDS, assert_error

pytestmark = pytest.mark.django_db

CALLS = API + "calls/"
MODELS = {
    "gemini": "gemini-2.5-flash",
    "openrouter": "openai/gpt-4o-mini",
    "huggingface": "meta-llama/Llama-3.1-8B-Instruct",
}


def at(day: int, hour: int = 12) -> datetime:
    return datetime(2025, 3, day, hour, tzinfo=UTC)


def entry(user, provider="gemini", *, when=None, status="success", **fields) -> LedgerEntry:
    when = when or at(1)
    values = {
        "request_id": f"req{LedgerEntry.objects.count():029d}",
        "user": user,
        "provider": provider,
        "model": MODELS[provider],
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "total_tokens": 15,
        "cost": Decimal("0.001"),
        "cost_source": "price_table",
        "status": status,
        "period": billing_period(when),
        "created_at": when,
        **fields,
    }
    return LedgerEntry.objects.create(**values)


def ids(response) -> list[int]:
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["results"]]


def test_row_has_exactly_the_spec_fields(api, user):
    row = entry(
        user,
        "openrouter",
        when=datetime(2025, 3, 4, 10, 30, 15, tzinfo=UTC),
        request_id="0123456789abcdef0123456789abcdef",
        status="error",
        error_code="rate_limited",
        prompt_tokens=9,
        completion_tokens=10,
        total_tokens=19,
        cost=Decimal("0.00000735"),
        cost_source="provider",
        latency_ms=812,
        retries=2,
        is_fallback=True,
        error_message="Rate limit exceeded: free-models-per-min.",
    )

    body = api.get(CALLS).json()

    assert body == {
        "count": 1,
        "next": None,
        "previous": None,
        "results": [
            {
                "id": row.pk,
                "request_id": "0123456789abcdef0123456789abcdef",
                "provider": "openrouter",
                "model": "openai/gpt-4o-mini",
                "status": "error",
                "error_code": "rate_limited",
                "prompt_tokens": 9,
                "completion_tokens": 10,
                "total_tokens": 19,
                "cost": "0.00000735",
                "cost_source": "provider",
                "latency_ms": 812,
                "retries": 2,
                "is_fallback": True,
                "resumed": False,
                "key_owner": "platform",
                "created_at": "2025-03-04T10:30:15Z",
            }
        ],
    }
    assert list(body["results"][0]) == LEDGER_FIELDS


def test_newest_first(api, user):
    old, new, middle = entry(user, when=at(1)), entry(user, when=at(3)), entry(user, when=at(2))
    assert ids(api.get(CALLS)) == [new.pk, middle.pk, old.pk]


def test_paginated_with_results_and_next(api, user, settings):
    rows = [entry(user, when=at(1 + i // 24, i % 24)) for i in range(51)]  # PAGE_SIZE is 50
    newest_first = [r.pk for r in reversed(rows)]

    first = api.get(CALLS).json()

    assert first["count"] == 51
    assert [r["id"] for r in first["results"]] == newest_first[:50]
    assert first["next"] == "http://testserver/api/llm/calls/?page=2"
    assert first["previous"] is None
    second = api.get(first["next"]).json()
    assert [r["id"] for r in second["results"]] == newest_first[50:]
    assert second["next"] is None
    assert second["previous"] == "http://testserver/api/llm/calls/"


def test_page_past_the_end_is_404(api, user):
    entry(user)
    error = assert_error(api.get(CALLS, {"page": 2}), 404, "not_found")
    assert error["message"] == "Invalid page."


def test_a_user_never_sees_another_users_rows(api, other_api, user, other_user):
    mine = [entry(user, when=at(1)), entry(user, "openrouter", when=at(2))]
    theirs = [entry(other_user, when=at(1)), entry(other_user, "huggingface", when=at(3))]
    entry(None, when=at(2))  # system usage belongs to nobody

    assert ids(api.get(CALLS)) == [mine[1].pk, mine[0].pk]
    assert ids(other_api.get(CALLS)) == [theirs[1].pk, theirs[0].pk]
    assert api.get(CALLS).json()["count"] == 2
    # Not through a filter either.
    assert ids(api.get(CALLS, {"provider": "huggingface"})) == []


def test_calls_made_through_the_api_appear(api, user, use_keys, http):
    from tests.providers.wire import gemini_generate_url, gemini_response

    use_keys("gemini")
    http.post(gemini_generate_url(), body=gemini_response())
    generated = api.post(API + "generate/", {"prompt": "hi"}, format="json").json()

    [row] = api.get(CALLS).json()["results"]

    assert row["request_id"] == generated["id"]
    assert (row["provider"], row["model"], row["status"], row["error_code"]) == (
        "gemini",
        "gemini-2.5-flash",
        "success",
        "",
    )
    assert (row["total_tokens"], row["cost"], row["cost_source"]) == (
        35,
        "0.0000413",
        "price_table",
    )


@pytest.fixture
def ledger(user):
    return {
        "gemini_ok": entry(user, "gemini", when=at(1, 0)),
        "gemini_error": entry(user, "gemini", when=at(2, 23), status="error"),
        "openrouter_ok": entry(user, "openrouter", when=at(3, 0)),
        "hf_error": entry(user, "huggingface", when=at(4, 23), status="error"),
    }


def names(ledger, response) -> set[str]:
    by_id = {row.pk: name for name, row in ledger.items()}
    return {by_id[i] for i in ids(response)}


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"provider": "gemini"}, {"gemini_ok", "gemini_error"}),
        ({"provider": "google"}, {"gemini_ok", "gemini_error"}),
        ({"provider": "OpenRouter"}, {"openrouter_ok"}),
        ({"provider": "hf"}, {"hf_error"}),
        ({"status": "success"}, {"gemini_ok", "openrouter_ok"}),
        ({"status": "error"}, {"gemini_error", "hf_error"}),
        ({"since": "2025-03-02"}, {"gemini_error", "openrouter_ok", "hf_error"}),
        ({"until": "2025-03-02"}, {"gemini_ok", "gemini_error"}),
        ({"since": "2025-03-02", "until": "2025-03-03"}, {"gemini_error", "openrouter_ok"}),
        ({"since": "2025-03-03", "until": "2025-03-03"}, {"openrouter_ok"}),
        ({"since": "2025-03-05"}, set()),
        ({"until": "2025-02-28"}, set()),
        ({"provider": "gemini", "status": "error", "since": "2025-03-02"}, {"gemini_error"}),
        ({"provider": "", "status": "", "since": "", "until": ""}, None),  # empty = no filter
    ],
)
def test_filters(api, ledger, params, expected):
    assert names(ledger, api.get(CALLS, params)) == (set(ledger) if expected is None else expected)


def test_filters_are_kept_in_the_next_link(api, user):
    for i in range(51):
        entry(user, "gemini", when=at(1 + i // 24, i % 24))
    entry(user, "openrouter")
    body = api.get(CALLS, {"provider": "gemini"}).json()
    assert body["count"] == 51
    assert body["next"] == "http://testserver/api/llm/calls/?page=2&provider=gemini"


@pytest.mark.parametrize(
    ("params", "fields"),
    [
        (
            {"provider": "anthropic"},
            {"provider": ["Choose one of gemini, openrouter, huggingface."]},
        ),
        ({"status": "failed"}, {"status": ["Choose success or error."]}),
        ({"status": "SUCCESS"}, {"status": ["Choose success or error."]}),
        ({"since": "yesterday"}, {"since": ["Use an ISO date, e.g. 2026-11-24."]}),
        ({"since": "2025-02-30"}, {"since": ["Use an ISO date, e.g. 2026-11-24."]}),
        ({"until": "03/04/2025"}, {"until": ["Use an ISO date, e.g. 2026-11-24."]}),
        ({"until": "2025-13-01"}, {"until": ["Use an ISO date, e.g. 2026-11-24."]}),
    ],
)
def test_malformed_filter_is_400(api, ledger, params, fields):
    error = assert_error(api.get(CALLS, params), 400, "invalid_request")
    assert error["fields"] == fields


def test_a_call_with_the_users_own_key_says_so(api, user):
    mine = entry(user, when=at(1))
    LedgerEntry.objects.filter(pk=mine.pk).update(key_owner="user")
    entry(user, when=at(2))

    rows = api.get(CALLS).json()["results"]

    assert [row["key_owner"] for row in rows] == ["platform", "user"]
