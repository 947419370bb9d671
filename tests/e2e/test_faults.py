"""End to end: each scripted upstream fault, through the production server.

The main server has keys for all three providers (Gemini primary, then OpenRouter, then Hugging
Face), LLM_MAX_RETRIES=1 (two requests per provider), LLM_TIMEOUT=2. After each test the
fixtures also check that the server is still up, that a plain generation works, that every
request the fake saw is in the ledger and that usage equals the ledger.
"""

from __future__ import annotations

import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import jsonschema
import pytest

from tests.e2e.harness import (
    API,
    assert_error,
    ledger_mark,
    rows_since,
    wait_for_rows,
    wait_until,
)
from tests.e2e.test_api import SCHEMA

pytestmark = pytest.mark.e2e

PROVIDERS = ("gemini", "openrouter", "huggingface")
CODES = {429: "rate_limited", 504: "upstream_timeout"}  # else provider_error
# Who answers when a named provider fails: the first other one by priority.
FALLBACK = {"gemini": "openrouter", "openrouter": "gemini", "huggingface": "gemini"}


def shape(rows: list[dict]) -> list[tuple]:
    return [
        (r["provider"], r["status"], r["error_code"], r["retries"], r["is_fallback"]) for r in rows
    ]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_429_then_success_honours_the_wait(api, fake, provider):
    """Retry-After (a header for OpenRouter and Hugging Face, RetryInfo in Gemini's body) is
    waited out: longer than the configured backoff (at most 0.2 s), then the retry succeeds."""
    wait = 0.6
    fake.script(provider, [{"status": 429, "retry_after": wait}])
    mark = ledger_mark(api)
    reply = api.post("generate/", {"prompt": "Patience", "provider": provider})
    assert reply.status == 200, reply
    out = reply.json()
    assert (out["provider"], out["attempts"], out["fallback_from"]) == (provider, 2, [])
    assert wait <= reply.elapsed < wait + 5
    first, second = fake.requests(provider)
    assert first["status"] == 429 and second["status"] == 200
    assert second["time"] - first["time"] >= wait
    assert shape(rows_since(api, mark)) == [(provider, "success", "", 1, False)]


def test_persistent_429_without_fallback(main, accounts, fake):
    """A request whose own chain is empty (``models: []``) does not fall back: 429 with
    Retry-After."""
    client = main.client(accounts["user"])
    fake.script("huggingface", [{"status": 429, "retry_after": 0.3, "times": 2}])
    mark = ledger_mark(client)
    reply = client.post(
        "v1/chat/completions",
        {
            "model": "huggingface/meta-llama/Llama-3.1-8B-Instruct",
            "models": [],
            "messages": [{"role": "user", "content": "Hi"}],
        },
    )
    error = assert_error(reply, 429, "rate_limited")
    assert reply.header("Retry-After") == "1"
    assert error["retry_after"] == 0.3
    assert reply.elapsed >= 0.3
    assert [r["provider"] for r in fake.requests()] == ["huggingface"] * 2
    assert shape(rows_since(client, mark)) == [("huggingface", "error", "rate_limited", 1, False)]


def test_a_named_model_on_v1_falls_back_along_the_chain(main, accounts, fake):
    """SPEC §5.1: the chain applies on v1 whatever ``model`` says (the SDK always names one)."""
    client = main.client(accounts["user"])
    fake.script("huggingface", [{"status": 503, "times": 2}])
    mark = ledger_mark(client)
    reply = client.post(
        "v1/chat/completions",
        {
            "model": "huggingface/meta-llama/Llama-3.1-8B-Instruct",
            "messages": [{"role": "user", "content": "Hi"}],
        },
    )
    assert reply.status == 200, reply
    assert reply.json()["model"] == "gemini/gemini-2.5-flash"
    assert shape(rows_since(client, mark)) == [
        ("huggingface", "error", "provider_error", 1, False),
        ("gemini", "success", "", 0, True),
    ]


def test_persistent_429_everywhere(api, fake):
    for provider in PROVIDERS:
        fake.script(provider, [{"status": 429, "retry_after": 0.1, "times": 2}])
    mark = ledger_mark(api)
    reply = api.post("generate/", {"prompt": "Busy?"})
    error = assert_error(reply, 429, "rate_limited")
    assert int(reply.header("Retry-After")) >= 1
    assert [a["provider"] for a in error["attempts"]] == list(PROVIDERS)
    assert shape(rows_since(api, mark)) == [
        ("gemini", "error", "rate_limited", 1, False),
        ("openrouter", "error", "rate_limited", 1, True),
        ("huggingface", "error", "rate_limited", 1, True),
    ]


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_retries_then_falls_back(api, fake, status):
    fake.script("gemini", [{"status": status, "times": 2}])
    mark = ledger_mark(api)
    reply = api.post("generate/", {"prompt": "Fall back"})
    assert reply.status == 200, reply
    out = reply.json()
    assert out["provider"] == "openrouter"
    assert out["fallback_from"] == ["gemini"]
    assert out["attempts"] == 3  # two to Gemini, one to OpenRouter
    assert out["text"].startswith("Echo: Fall back")
    assert [r["provider"] for r in fake.requests()] == ["gemini", "gemini", "openrouter"]
    assert shape(rows_since(api, mark)) == [
        ("gemini", "error", CODES.get(status, "provider_error"), 1, False),
        ("openrouter", "success", "", 0, True),
    ]


@pytest.mark.parametrize(
    ("status", "code"),
    [(500, "provider_error"), (503, "provider_error"), (504, "upstream_timeout")],
)
def test_every_provider_fails(api, fake, status, code):
    for provider in PROVIDERS:
        fake.script(provider, [{"status": status, "times": 2}])
    mark = ledger_mark(api)
    reply = api.post("generate/", {"prompt": "Anyone?"})
    error = assert_error(reply, 504 if code == "upstream_timeout" else 502, code)
    assert [(a["provider"], a["code"]) for a in error["attempts"]] == [(p, code) for p in PROVIDERS]
    assert len(fake.requests()) == 6
    assert shape(rows_since(api, mark)) == [
        ("gemini", "error", code, 1, False),
        ("openrouter", "error", code, 1, True),
        ("huggingface", "error", code, 1, True),
    ]


@pytest.mark.parametrize("fault", ["reset", "truncate"])
def test_broken_connection_is_retried(api, fake, fault):
    """A reset connection, or a body cut short under its Content-Length: retried."""
    fake.script("gemini", [fault])
    mark = ledger_mark(api)
    reply = api.post("generate/", {"prompt": "Again"})
    assert reply.status == 200, reply
    assert (reply.json()["provider"], reply.json()["attempts"]) == ("gemini", 2)
    assert shape(rows_since(api, mark)) == [("gemini", "success", "", 1, False)]


@pytest.mark.parametrize("fault", ["reset", "truncate"])
def test_broken_connection_twice_falls_back(api, fake, fault):
    fake.script("gemini", [fault, fault])
    mark = ledger_mark(api)
    reply = api.post("generate/", {"prompt": "Again"})
    assert reply.status == 200, reply
    assert reply.json()["fallback_from"] == ["gemini"]
    assert shape(rows_since(api, mark)) == [
        ("gemini", "error", "provider_error", 1, False),
        ("openrouter", "success", "", 0, True),
    ]


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize(
    "fault", ["malformed", "midstream_error", {"status": 401}, {"status": 402}]
)
def test_bad_answer_falls_back_at_once(api, fake, fault, provider):
    """A 200 whose body is not JSON or carries an error, a rejected key, no credit: not
    retried; the next provider (by priority) answers."""
    fake.script(provider, [fault])
    mark = ledger_mark(api)
    reply = api.post("generate/", {"prompt": "Garbled", "provider": provider})
    assert reply.status == 200, reply
    out = reply.json()
    assert (out["provider"], out["attempts"]) == (FALLBACK[provider], 2)
    assert out["fallback_from"] == [provider]
    assert shape(rows_since(api, mark)) == [
        (provider, "error", "provider_error", 0, False),
        (FALLBACK[provider], "success", "", 0, True),
    ]


@pytest.mark.parametrize(("status", "code"), [(400, "invalid_request"), (404, "model_not_found")])
def test_caller_errors_do_not_fall_back(api, fake, status, code):
    fake.script("gemini", [{"status": status}])
    mark = ledger_mark(api)
    assert_error(api.post("generate/", {"prompt": "Wrong"}), status, code)
    assert [r["provider"] for r in fake.requests()] == ["gemini"]  # neither retried nor passed on
    assert shape(rows_since(api, mark)) == [("gemini", "error", code, 0, False)]


def test_hang_times_out_and_moves_on_without_a_retry(api, fake):
    """A silent provider is not retried (SPEC §5.1): the chain moves on after one timeout."""
    fake.script("gemini", ["hang"])
    mark = ledger_mark(api)
    reply = api.post("generate/", {"prompt": "Wake up"})
    assert reply.status == 200, reply
    out = reply.json()
    assert (out["provider"], out["attempts"], out["fallback_from"]) == (
        "openrouter",
        2,
        ["gemini"],
    )
    assert 2 <= reply.elapsed < 6  # LLM_TIMEOUT=2, once
    assert shape(rows_since(api, mark)) == [
        ("gemini", "error", "upstream_timeout", 0, False),
        ("openrouter", "success", "", 0, True),
    ]


def test_hang_without_fallback_is_a_timeout(main, accounts, fake):
    client = main.client(accounts["user"])
    fake.script("gemini", ["hang"])
    mark = ledger_mark(client)
    started = time.monotonic()
    reply = client.post(
        "v1/chat/completions",
        {
            "model": "gemini/gemini-2.5-flash",
            "models": [],
            "messages": [{"role": "user", "content": "Hello?"}],
        },
    )
    assert_error(reply, 504, "upstream_timeout")
    assert 2 <= time.monotonic() - started < 6  # one request of LLM_TIMEOUT=2, not retried
    assert shape(rows_since(client, mark)) == [("gemini", "error", "upstream_timeout", 0, False)]


def test_client_hangs_up_before_the_answer(api, fake):
    """The caller leaves while the upstream is still working: the call is accounted anyway."""
    fake.configure(delay_ms=600)
    mark = ledger_mark(api)
    payload = json.dumps({"prompt": "Never mind"}).encode()
    with socket.create_connection((api.host, api.port), timeout=5) as sock:
        sock.sendall(
            f"POST {API}generate/ HTTP/1.1\r\nHost: {api.host}\r\n"
            f"Authorization: Token {api.token}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n".encode()
            + payload
        )
        wait_until(lambda: len(fake.requests()) == 1, timeout=5, what="the upstream request")
    rows = wait_for_rows(api, mark, 1, timeout=10)
    assert shape(rows) == [("gemini", "success", "", 0, False)]
    assert rows[0]["latency_ms"] >= 600


def test_invalid_json_is_retried_once(api, fake):
    fake.script("gemini", ["invalid_json"])
    mark = ledger_mark(api)
    reply = api.post("generate/", {"prompt": "Describe a paper", "json_schema": SCHEMA})
    assert reply.status == 200, reply
    out = reply.json()
    jsonschema.validate(out["data"], SCHEMA)
    assert (out["provider"], out["attempts"]) == ("gemini", 2)
    [row] = rows_since(api, mark)
    assert shape([row]) == [("gemini", "success", "", 1, False)]
    # Both answers were paid for: the row has the tokens of both.
    assert row["total_tokens"] == out["usage"]["total_tokens"]
    assert len(fake.requests()) == 2
    assert row["prompt_tokens"] == 2 * 3  # "Describe a paper", sent twice


def test_invalid_json_twice_is_an_error(api, fake):
    fake.script("gemini", ["invalid_json", "invalid_json"])
    mark = ledger_mark(api)
    reply = api.post("generate/", {"prompt": "Describe a paper", "json_schema": SCHEMA})
    error = assert_error(reply, 502, "invalid_structured_output")
    assert error["raw_text"] and not error["raw_text"].lstrip().startswith("{")
    # Not a provider failure: no fallback, and never an error disguised as data.
    assert [r["provider"] for r in fake.requests()] == ["gemini", "gemini"]
    [row] = rows_since(api, mark)
    assert shape([row]) == [("gemini", "error", "invalid_structured_output", 1, False)]
    assert row["total_tokens"] > 0  # the two answers were billed


def test_concurrent_calls_with_faults(api, other_api, fake):
    """Two users, 48 calls at once, with faults among them: every call is answered, and the
    checks after the test find every attempt in the ledger and usage equal to it."""
    fake.configure(delay_ms=100)
    fake.script("gemini", ["reset", {"status": 503, "times": 3}, "malformed", "truncate"])
    fake.script("openrouter", [{"status": 429, "retry_after": 0.1}, "reset"])
    bodies = [
        {"prompt": f"Call number {i}", **({"provider": PROVIDERS[i % 3]} if i % 2 else {})}
        for i in range(48)
    ]

    def call(i: int):
        client = api if i % 4 else other_api
        return client.post("generate/", bodies[i])

    with ThreadPoolExecutor(max_workers=24) as pool:
        replies = list(pool.map(call, range(48)))
    assert [r.status for r in replies] == [200] * 48, [r for r in replies if r.status != 200]
    assert {r.json()["text"].split()[3] for r in replies} == {str(i) for i in range(48)}
