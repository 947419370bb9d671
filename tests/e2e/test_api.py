"""End to end: authentication, detection, generation, structured JSON, the OpenAI-compatible
endpoint, and the accounting endpoints (usage, calls, cost reports) of the production server."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import jsonschema
import pytest

from tests.api.support import GENERATION_FIELDS, LEDGER_FIELDS
from tests.e2e.harness import assert_error, ledger_mark, money, rows_since, totals

pytestmark = pytest.mark.e2e

SCHEMA = {
    "title": "paper",
    "type": "object",
    "properties": {
        "title": {"type": "string", "minLength": 3},
        "year": {"type": "integer", "minimum": 1900},
        "kind": {"enum": ["article", "book"]},
        "authors": {
            "type": "array",
            "items": {"type": "object", "properties": {"name": {"type": "string"}}},
        },
    },
    "required": ["title", "year", "kind", "authors"],
    "additionalProperties": False,
}
PATHS = {
    "gemini": "/gemini/v1beta/models/gemini-2.5-flash:generateContent",
    "openrouter": "/openrouter/api/v1/chat/completions",
    "huggingface": "/hf/v1/chat/completions",
}


def test_health_and_authentication(main, api, fake):
    anon = main.client()
    health = anon.get("health/")
    assert health.status == 200, health
    assert health.json() == {"status": "ok", "database": "ok"}
    assert_error(anon.post("generate/", {"prompt": "Hi"}), 401, "not_authenticated")
    assert_error(anon.get("usage/"), 401, "not_authenticated")
    stranger = main.client("0" * 40)
    assert_error(stranger.post("generate/", {"prompt": "Hi"}), 401, "authentication_failed")
    # Bad input is refused before any upstream call, and records nothing (checked after the
    # test: the fake saw no request, and the ledger has no new row).
    error = assert_error(
        api.post("generate/", {"prompt": "Hi", "temperature": 3}), 400, "invalid_request"
    )
    assert "temperature" in error["fields"]
    assert_error(api.post("generate/", {"prompt": "Hi", "colour": "red"}), 400, "invalid_request")
    assert_error(api.post("generate/", {"prompt": "   "}), 400, "invalid_request")
    malformed = api.post("generate/", {"prompt": "Hi", "provider": "openrouter", "model": "gpt-4"})
    assert "openai/gpt-4-turbo" in assert_error(malformed, 400, "invalid_request")["message"]
    assert fake.requests() == []


def test_production_pages_and_static_files(main, fake):
    """DEBUG is off: the docs, the admin and their static files are served all the same."""
    anon = main.client()
    docs = anon.get("/api/docs/")
    assert docs.status == 200 and "swagger" in docs.text.lower(), docs
    schema = anon.get("/api/schema/")
    assert schema.status == 200 and "/api/llm/generate/" in schema.text, schema
    login = anon.get("/admin/login/")
    assert login.status == 200 and "csrfmiddlewaretoken" in login.text, login
    css = anon.get("/static/admin/css/base.css")
    assert css.status == 200 and css.header("Content-Type").startswith("text/css"), css
    assert_error(anon.get("/api/llm/nothing-here/"), 404, "not_found")


def test_detection_by_available_keys(api, fake):
    reply = api.get("providers/")
    assert reply.status == 200, reply
    assert reply.json() == [
        {
            "name": "gemini",
            "available": True,
            "default_model": "gemini-2.5-flash",
            "priority": 1,
            "primary": True,
            "circuit": "closed",
        },
        {
            "name": "openrouter",
            "available": True,
            "default_model": "openai/gpt-4-turbo",
            "priority": 2,
            "primary": False,
            "circuit": "closed",
        },
        {
            "name": "huggingface",
            "available": True,
            "default_model": "meta-llama/Llama-3.1-8B-Instruct",
            "priority": 3,
            "primary": False,
            "circuit": "closed",
        },
    ]


@pytest.mark.parametrize(
    ("named", "expected"),
    [(None, "gemini"), ("openrouter", "openrouter"), ("hf", "huggingface"), ("google", "gemini")],
)
def test_generate_with_the_primary_or_a_named_provider(api, fake, named, expected):
    mark = ledger_mark(api)
    body = {"prompt": "Write a haiku about the sea", "system_prompt": "Be brief."}
    if named:
        body["provider"] = named
    reply = api.post("generate/", body)
    assert reply.status == 200, reply
    out = reply.json()
    assert set(out) == set(GENERATION_FIELDS)
    assert out["provider"] == expected
    assert out["text"].startswith("Echo: Write a haiku about the sea")
    assert out["data"] is None
    assert out["attempts"] == 1 and out["fallback_from"] == []
    usage = out["usage"]
    # The fake counts words: six in the prompt, two in the system prompt, twenty in the answer.
    assert usage == {"prompt_tokens": 8, "completion_tokens": 20, "total_tokens": 28}
    assert money(out["cost"]) > 0
    [request] = fake.requests()
    assert request["provider"] == expected and request["path"] == PATHS[expected]
    [row] = rows_since(api, mark)
    assert set(row) == set(LEDGER_FIELDS)
    assert row["request_id"] == out["id"]
    assert (row["provider"], row["model"], row["status"]) == (expected, out["model"], "success")
    assert (row["retries"], row["is_fallback"], row["error_code"]) == (0, False, "")
    assert row["total_tokens"] == usage["total_tokens"]
    assert row["prompt_tokens"] == usage["prompt_tokens"]
    assert money(row["cost"]) == money(out["cost"])
    # OpenRouter reports its own cost (usage.cost); the others are priced from the table.
    assert row["cost_source"] == ("provider" if expected == "openrouter" else "price_table")


@pytest.mark.parametrize("provider", ["gemini", "openrouter", "huggingface"])
def test_structured_json(api, fake, provider):
    reply = api.post(
        "generate/", {"prompt": "Describe a paper", "json_schema": SCHEMA, "provider": provider}
    )
    assert reply.status == 200, reply
    out = reply.json()
    jsonschema.validate(out["data"], SCHEMA)
    assert json.loads(out["text"]) == out["data"]
    assert out["attempts"] == 1
    [request] = fake.requests()
    if provider == "gemini":  # each provider gets the schema its own way
        assert request["json"]["generationConfig"]["responseJsonSchema"] == SCHEMA
        assert request["json"]["generationConfig"]["responseMimeType"] == "application/json"
    else:
        assert request["json"]["response_format"]["json_schema"]["schema"] == SCHEMA


def test_openai_compatible_endpoint(main, accounts, fake):
    client = main.client(accounts["user"]).with_token(accounts["user"], "Bearer")
    mark = ledger_mark(client)
    reply = client.post(
        "v1/chat/completions",
        {
            "model": "openai/gpt-4o-mini",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Say hello to the world"},
            ],
            "temperature": 0.3,
        },
    )
    assert reply.status == 200, reply
    out = reply.json()
    assert out["object"] == "chat.completion"
    assert out["model"] == "openai/gpt-4o-mini"
    assert out["choices"][0]["message"]["role"] == "assistant"
    assert out["choices"][0]["message"]["content"].startswith("Echo: Say hello to the world")
    assert out["choices"][0]["finish_reason"] == "stop"
    assert out["usage"]["total_tokens"] == out["usage"]["prompt_tokens"] + 20
    [request] = fake.requests()
    assert request["path"] == PATHS["openrouter"]
    assert request["json"]["messages"][0] == {"role": "system", "content": "Be brief."}
    [row] = rows_since(client, mark)
    assert (row["provider"], row["model"], row["status"]) == (
        "openrouter",
        "openai/gpt-4o-mini",
        "success",
    )
    assert row["total_tokens"] == out["usage"]["total_tokens"]


def _today() -> datetime:
    return datetime.now(UTC)


def test_usage_calls_and_reports(api, other_api, staff_api, fake):
    # Some traffic of two users, with a failed attempt among it.
    fake.script("openrouter", [{"status": 503, "times": 2}])
    fell_back = api.post("generate/", {"prompt": "One", "provider": "openrouter"})
    assert fell_back.status == 200, fell_back
    assert fell_back.json()["fallback_from"] == ["openrouter"]
    assert api.post("generate/", {"prompt": "Two", "provider": "huggingface"}).status == 200
    theirs = other_api.post("generate/", {"prompt": "Three"})
    assert theirs.status == 200, theirs

    # usage/: the caller's own figures, costs as decimal strings, no budget set.
    usage = api.get("usage/").json()
    period = usage["period"]
    assert period == _today().strftime("%Y-%m")
    assert set(usage["providers"]) == {"gemini", "openrouter", "huggingface"}
    assert usage["budget"] == {
        "cost_limit": None,
        "calls_limit": None,
        "cost_remaining": None,
        "calls_remaining": None,
        "reserved": {"cost": "0", "calls": 0},
    }
    mine = [r for r in api.pages("calls/") if r["created_at"].startswith(period)]
    expected = totals(mine)
    assert usage["total"]["calls"] == expected["calls"]
    assert usage["total"]["tokens"] == expected["tokens"]
    assert money(usage["total"]["cost"]) == expected["cost"]
    assert_error(api.get("usage/", period="2026-13"), 400, "invalid_request")
    assert_error(api.get("usage/", period="last month"), 400, "invalid_request")

    # calls/: own rows only, paginated, filterable.
    page = api.get("calls/").json()
    assert {"count", "next", "previous", "results"} <= set(page)
    everything = api.pages("calls/")
    assert page["count"] == len(everything) == len({r["id"] for r in everything})
    assert all(set(r) == set(LEDGER_FIELDS) for r in everything)
    others = other_api.pages("calls/")
    assert others and not {r["id"] for r in others} & {r["id"] for r in everything}
    assert theirs.json()["id"] in {r["request_id"] for r in others}
    assert theirs.json()["id"] not in {r["request_id"] for r in everything}
    by_openrouter = api.pages("calls/", provider="openrouter")
    assert by_openrouter and all(r["provider"] == "openrouter" for r in by_openrouter)
    errors = api.pages("calls/", status="error")
    assert errors and all(r["status"] == "error" for r in errors)
    assert len(api.pages("calls/", status="success")) + len(errors) == len(everything)
    today = _today().date()
    assert len(api.pages("calls/", since=today.isoformat(), until=today.isoformat())) == len(
        [r for r in everything if r["created_at"].startswith(today.isoformat())]
    )
    assert api.pages("calls/", since=(today + timedelta(days=1)).isoformat()) == []
    assert_error(api.get("calls/", provider="nobody"), 400, "invalid_request")
    assert_error(api.get("calls/", since="yesterday"), 400, "invalid_request")
    if page["count"] > 50:
        assert page["next"]

    # reports/costs/: staff only; rows {key, calls, tokens, cost} from the ledger.
    assert_error(api.get("reports/costs/"), 403, "permission_denied")
    reply = staff_api.get("reports/costs/")
    assert reply.status == 200, reply
    rows = reply.json()
    assert isinstance(rows, list) and rows
    assert all(set(r) == {"key", "calls", "tokens", "cost"} for r in rows)
    by_user = {r["key"]: r for r in rows}
    for name, client in (("e2e-user", api), ("e2e-other", other_api)):
        ledger = [r for r in client.pages("calls/") if r["created_at"].startswith(period)]
        want = totals(ledger)
        row = by_user[name]
        assert (row["calls"], row["tokens"], money(row["cost"])) == (
            want["calls"],
            want["tokens"],
            want["cost"],
        ), f"report row of {name}: {row}, ledger: {want}"
    all_rows = [
        r
        for client in (api, other_api, staff_api)
        for r in client.pages("calls/")
        if r["created_at"].startswith(period)
    ]
    by_provider = staff_api.get("reports/costs/", group_by="provider").json()
    for row in by_provider:
        want = totals([r for r in all_rows if r["provider"] == row["key"]])
        assert (row["calls"], row["tokens"], money(row["cost"])) == (
            want["calls"],
            want["tokens"],
            want["cost"],
        )
    assert sum(r["calls"] for r in by_provider) == totals(all_rows)["calls"]
    by_day = staff_api.get("reports/costs/", group_by="day").json()
    assert today.isoformat() in {r["key"] for r in by_day}

    # The same report as CSV.
    as_csv = staff_api.get("reports/costs/", format="csv")
    assert as_csv.status == 200, as_csv
    assert as_csv.header("Content-Type").startswith("text/csv")
    assert "attachment" in as_csv.header("Content-Disposition")
    parsed = list(csv.reader(io.StringIO(as_csv.text)))
    assert parsed[0] == ["key", "calls", "tokens", "cost"]
    assert [
        {"key": k, "calls": int(c), "tokens": int(t), "cost": Decimal(x)}
        for k, c, t, x in parsed[1:]
    ] == [{**r, "cost": Decimal(r["cost"])} for r in rows]
    bad = staff_api.get("reports/costs/", group_by="colour", format="csv")
    assert_error(bad, 400, "invalid_request")
