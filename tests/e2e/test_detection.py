"""End to end: GPT_PROVIDER and missing keys, on a second production server (``solo``):
``GPT_PROVIDER=huggingface`` with keys for Hugging Face and OpenRouter, none for Gemini. By
priority alone OpenRouter would be its primary; GPT_PROVIDER must win. (Detection by priority,
with every key present, is ``test_api.test_detection_by_available_keys`` on the main server.)"""

from __future__ import annotations

import time

import pytest

from llm_providers.conf import DEFAULTS
from tests.conftest import FAKE_KEYS
from tests.e2e.harness import assert_error, ledger_mark, rows_since
from tests.e2e.test_faults import shape

pytestmark = pytest.mark.e2e

# How long a worker may keep using the keys it resolved (0 when the app keeps none).
KEY_CACHE_SECONDS = float(DEFAULTS.get("LLM_KEY_CACHE_SECONDS") or 0)


def test_gpt_provider_is_the_primary(solo_api, fake):
    providers = solo_api.get("providers/").json()
    assert [(p["name"], p["available"], p["primary"], p["priority"]) for p in providers] == [
        ("gemini", False, False, 1),
        ("openrouter", True, False, 2),
        ("huggingface", True, True, 3),
    ]
    mark = ledger_mark(solo_api)
    reply = solo_api.post("generate/", {"prompt": "Who answers?"})
    assert reply.status == 200, reply
    out = reply.json()
    assert (out["provider"], out["model"]) == ("huggingface", "meta-llama/Llama-3.1-8B-Instruct")
    assert [r["path"] for r in fake.requests()] == ["/hf/v1/chat/completions"]
    assert shape(rows_since(solo_api, mark)) == [("huggingface", "success", "", 0, False)]


def test_named_provider_without_a_key(solo_api, fake):
    reply = solo_api.post("generate/", {"prompt": "Hi", "provider": "gemini"})
    error = assert_error(reply, 503, "provider_not_configured")
    assert "GEMINI_API_KEY not found" in error["message"]
    assert ".env" in error["message"]
    assert fake.requests() == []  # refused before any upstream call, nothing recorded


def test_fallback_goes_to_the_other_available_provider(solo_api, fake):
    fake.script("huggingface", [{"status": 503, "times": 2}])
    mark = ledger_mark(solo_api)
    reply = solo_api.post("generate/", {"prompt": "Next please"})
    assert reply.status == 200, reply
    out = reply.json()
    assert (out["provider"], out["fallback_from"], out["attempts"]) == (
        "openrouter",
        ["huggingface"],
        3,
    )
    assert shape(rows_since(solo_api, mark)) == [
        ("huggingface", "error", "provider_error", 1, False),
        ("openrouter", "success", "", 0, True),
    ]


def test_a_key_added_through_the_api_is_used(main, solo, accounts, fake):
    """Staff add a Gemini key with POST keys/: the server uses it, responses show only its
    mask; deleted, Gemini is unavailable again.

    Each worker process caches the resolved keys for LLM_KEY_CACHE_SECONDS: the worker that
    saved (or deleted) the key knows at once, the others within that time, so the checks that
    must hold on every worker come after it."""
    staff, user = solo.client(accounts["staff"]), solo.client(accounts["user"])
    secret = "AIzaSyE2E-stored-gemini-key-00000000wxyz"

    def gemini_available() -> bool:
        providers = user.get("providers/").json()
        return next(p["available"] for p in providers if p["name"] == "gemini")

    def settle(since: float) -> None:  # bounded: the cache's lifetime
        time.sleep(max(0.0, since + KEY_CACHE_SECONDS + 0.1 - time.monotonic()))

    forbidden = user.post("keys/", {"provider": "gemini", "key": secret})
    assert_error(forbidden, 403, "permission_denied")
    created = staff.post("keys/", {"provider": "gemini", "key": secret, "label": "e2e"})
    saved = time.monotonic()
    assert created.status == 201, created
    key = created.json()
    try:
        assert secret not in created.text
        assert key["mask"].endswith("wxyz") and key["active"] is True
        listing = staff.get("keys/")
        assert listing.status == 200 and secret not in listing.text
        settle(saved)
        for _ in range(8):
            assert gemini_available(), "a worker does not see the new key"
        reply = user.post("generate/", {"prompt": "With the stored key", "provider": "gemini"})
        assert reply.status == 200, reply
        assert reply.json()["provider"] == "gemini"
        # The main server (same database) has GEMINI_API_KEY in its environment too: the
        # stored key wins over it.
        main_reply = main.client(accounts["user"]).post("generate/", {"prompt": "And here"})
        assert main_reply.status == 200, main_reply
        assert main_reply.json()["provider"] == "gemini"
        assert [(r["auth"]["prefix"], r["auth"]["last4"]) for r in fake.requests()] == [
            ("AIza", "wxyz"),
            ("AIza", "wxyz"),
        ]
    finally:
        deleted = staff.request("DELETE", f"keys/{key['id']}/")
        gone = time.monotonic()
        assert deleted.status == 204, deleted
    settle(gone)
    for _ in range(8):
        assert not gemini_available(), "a worker still uses the deleted key"
    missing = user.post("generate/", {"prompt": "Hi", "provider": "gemini"})
    error = assert_error(missing, 503, "provider_not_configured")
    assert "GEMINI_API_KEY not found" in error["message"]
    # The main server is back on its environment key.
    assert main.client(accounts["user"]).post("generate/", {"prompt": "Env"}).status == 200
    assert fake.requests()[-1]["auth"]["last4"] == FAKE_KEYS["gemini"][-4:]
