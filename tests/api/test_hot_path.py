"""The generation hot path: how many queries a call makes, and that what it caches per process
(keys, tokens with their users and budgets, valid schemas) never outlives a change.

Transactional tests: the caches are not filled inside a transaction (the rows read there could
still be rolled back), so only outside one do they show.
"""

from __future__ import annotations

import contextlib
import threading
import time
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.authtoken.models import Token

from llm_providers import cache_version, keys, structured
from llm_providers.models import APIKey, LedgerEntry, UsageBudget, UsageSummary
from tests.api.support import API, project_process
from tests.conftest import FAKE_KEYS
from tests.providers.wire import (
    OPENROUTER_CHAT,
    gemini_generate_url,
    gemini_response,
    or_completion,
)

GENERATE = API + "generate/"
GEMINI = gemini_generate_url()
transactional = pytest.mark.django_db(transaction=True)


def generate(client, **body):
    return client.post(GENERATE, {"prompt": "hello", **body}, format="json")


def statements(queries) -> list[str]:
    """The captured SQL, without transaction control (BEGIN/COMMIT/SAVEPOINT)."""
    return [
        q["sql"]
        for q in queries
        if not q["sql"].upper().startswith(("BEGIN", "COMMIT", "SAVEPOINT", "RELEASE"))
    ]


# --- Queries per call ---------------------------------------------------------------------------


@transactional
def test_a_warm_generation_reads_only_its_token_and_makes_three_writes(api, http, use_keys):
    use_keys("gemini")
    http.post(GEMINI, body=gemini_response("hi"))
    assert generate(api).status_code == 200  # fills the caches: keys, prices

    with CaptureQueriesContext(connection) as queries:
        assert generate(api).status_code == 200

    sql = statements(queries.captured_queries)
    # At most the token (with its user and budget, one SELECT); the keys and prices come from
    # this process's copies. The accounting: the attempt's row INSERTed in flight before the
    # upstream request (SPEC §7), then one UPDATE of the summary and one of the row.
    reads = [q for q in sql if q.startswith("SELECT")]
    assert len(reads) <= 1 and all("authtoken_token" in q for q in reads), sql
    writes = [q for q in sql if not q.startswith("SELECT")]
    assert len(writes) == 3, sql
    assert writes[0].startswith("INSERT") and "ledgerentry" in writes[0]
    assert writes[1].startswith("UPDATE") and "usagesummary" in writes[1]
    assert writes[2].startswith("UPDATE") and "ledgerentry" in writes[2]


@transactional
def test_a_cold_generation_reads_the_token_and_keys_once(api, http, use_keys):
    use_keys("gemini")
    http.post(GEMINI, body=gemini_response("hi"))
    with CaptureQueriesContext(connection) as queries:
        assert generate(api).status_code == 200
    sql = statements(queries.captured_queries)
    # token + user + budget in one SELECT; the custom providers; the keys; the price table; the
    # ledger row in flight; the summary row created on the first call of the month (UPDATE,
    # SELECT, INSERT, UPDATE); the ledger row settled.
    assert len(sql) <= 10, sql
    assert sum("authtoken_token" in q for q in sql) == 1
    assert sum("llm_providers_usagebudget" in q for q in sql) == 1  # joined to the token


@pytest.mark.django_db
def test_the_budget_comes_with_the_token(api, user, http, use_keys):
    use_keys("gemini")
    UsageBudget.objects.create(user=user, monthly_call_limit=1)
    http.post(GEMINI, body=gemini_response("hi"))
    with CaptureQueriesContext(connection) as queries:
        assert generate(api).status_code == 200
    budget_reads = [q for q in statements(queries.captured_queries) if "usagebudget" in q]
    assert len(budget_reads) == 1 and "authtoken_token" in budget_reads[0]
    assert generate(api).status_code == 402  # and it is enforced


# --- The caches keep up with changes -----------------------------------------------------------


@transactional
def test_a_key_added_in_the_admin_is_used_by_the_next_call(api, http):
    http.post(GEMINI, body=gemini_response("hi"))
    http.post(OPENROUTER_CHAT, body=or_completion("hi"))
    assert generate(api).status_code == 503  # no key: nothing configured (and cached)

    key = APIKey(provider="openrouter", label="new")
    key.set_secret(FAKE_KEYS["openrouter"])
    key.save()
    response = generate(api)
    assert response.status_code == 200 and response.json()["provider"] == "openrouter"

    key.delete()
    assert generate(api).status_code == 503


@transactional
def test_another_process_s_change_is_seen_at_the_next_call(api, http, settings):
    settings.LLM_KEY_CACHE_SECONDS = 3600  # only the version can tell
    http.post(OPENROUTER_CHAT, body=or_completion("hi"))
    assert generate(api).status_code == 503
    key = APIKey(provider="openrouter", label="elsewhere")
    key.set_secret(FAKE_KEYS["openrouter"])
    # Saved without this process's signals, as by another process ...
    APIKey.objects.bulk_create([key])
    assert generate(api).status_code == 503  # ... so the cached answer still stands,
    cache_version.bump()  # until that process's commit bumps the version in the cache.
    assert generate(api).status_code == 200


def _other_process(code: str, cache_dir) -> str:
    """``code`` in another process of this machine: this test session's cache directory."""
    return project_process(code, CACHE_DIR=str(cache_dir), REDIS_URL=None)


def test_processes_of_a_machine_share_one_version(cache_dir):
    module = "from llm_providers import cache_version; "
    read = module + "print(cache_version.current())"
    before = cache_version.current()
    assert _other_process(read, cache_dir) == str(before)

    # A change committed in another process (an admin's save) is the version this process
    # reads next, so its copies are stale; and the other way round.
    bumped = int(_other_process(module + "cache_version.bump(); " + read, cache_dir))
    assert cache_version.current() == bumped != before
    cache_version.bump()
    assert int(_other_process(read, cache_dir)) == cache_version.current() != bumped


@transactional
def test_changes_without_signals_are_seen_within_the_time_to_live(api, http, monkeypatch):
    http.post(OPENROUTER_CHAT, body=or_completion("hi"))
    assert generate(api).status_code == 503
    key = APIKey(provider="openrouter")
    key.set_secret(FAKE_KEYS["openrouter"])
    APIKey.objects.bulk_create([key])  # no signal, no marker
    later = time.monotonic() + 2.5
    monkeypatch.setattr(keys.time, "monotonic", lambda: later)
    assert generate(api).status_code == 200


@transactional
def test_a_deleted_token_or_deactivated_user_is_refused_at_once(api, user, http, use_keys):
    use_keys("gemini")
    http.post(GEMINI, body=gemini_response("hi"))
    assert generate(api).status_code == 200  # the token is cached now

    user.is_active = False
    user.save()
    assert generate(api).status_code == 401
    user.is_active = True
    user.save()
    assert generate(api).status_code == 200

    Token.objects.filter(user=user).delete()
    assert generate(api).status_code == 401


@transactional
def test_a_budget_set_after_the_token_was_cached_is_enforced(api, user, http, use_keys):
    use_keys("gemini")
    http.post(GEMINI, body=gemini_response("hi"))
    assert generate(api).status_code == 200
    budget = UsageBudget.objects.create(user=user, monthly_call_limit=1)
    assert generate(api).status_code == 402  # one call this month already
    budget.monthly_call_limit = 5
    budget.save()
    assert generate(api).status_code == 200


@transactional
def test_requests_get_their_own_user_objects(api, user, http, use_keys):
    from llm_providers.api.authentication import TokenAuthentication

    use_keys("gemini")
    http.post(GEMINI, body=gemini_response("hi"))
    generate(api)
    key = Token.objects.get(user=user).key
    first, _ = TokenAuthentication().authenticate_credentials(key)
    second, _ = TokenAuthentication().authenticate_credentials(key)
    assert first == second and first is not second
    first.first_name = "changed by a view"
    assert second.first_name == ""


# --- Concurrency -------------------------------------------------------------------------------


@transactional
def test_concurrent_generations_are_recorded_exactly(http, use_keys, django_user_model):
    use_keys("gemini")
    http.post(GEMINI, body=gemini_response("hi"))
    users = [django_user_model.objects.create_user(f"u{i}") for i in range(3)]
    from llm_providers.main_text_generation import llm_generate

    def call(i):
        try:
            llm_generate("hello", user_id=users[i % 3])
        finally:
            connection.close()

    threads = [threading.Thread(target=call, args=(i,)) for i in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert LedgerEntry.objects.count() == 30
    for user in users:
        summary = UsageSummary.objects.get(user=user)
        entries = LedgerEntry.objects.filter(user=user)
        assert summary.total_calls == entries.count() == 10
        assert summary.total_cost == sum((e.cost for e in entries), Decimal(0))
        assert summary.total_tokens == sum(e.total_tokens for e in entries)


# --- Per-request work done once -----------------------------------------------------------------


def test_valid_schemas_are_checked_once(monkeypatch):
    calls = []
    real = structured._check_schema
    monkeypatch.setattr(structured, "_check_schema", lambda schema: calls.append(1) or real(schema))
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "x-test": id(calls)}
    structured.check_schema(schema)
    structured.check_schema(dict(schema))
    assert len(calls) == 1
    bad = {"type": "nonsense", "x-test": id(calls)}
    for _ in range(2):
        with pytest.raises(Exception, match="not valid"):
            structured.check_schema(bad)
    assert len(calls) == 3  # refusals are never remembered
    odd = {"type": "object", "enum": ({"a": 1},), "x-test": id(calls)}  # a tuple: not JSON
    for _ in range(2):
        with contextlib.suppress(Exception):
            structured.check_schema(odd)
    assert len(calls) == 5  # checked every time


def test_the_upstream_connection_is_reused(settings, http):
    """Calls share the process's pooled session: one connection to the upstream for many calls,
    and a pool as large as a server worker's threads."""
    from fake_upstream import FakeUpstream
    from llm_providers.providers.base import http_session
    from llm_providers.providers.gemini import GeminiProvider
    from llm_providers.results import ChatRequest, Message

    with FakeUpstream() as fake:
        http.add_passthru(fake.url)
        settings.GEMINI_BASE_URL = fake.base_urls["GEMINI_BASE_URL"]
        provider = GeminiProvider(FAKE_KEYS["gemini"])
        request = ChatRequest(messages=(Message("user", "hi"),), model="gemini-2.5-flash")
        for _ in range(5):
            provider.complete(request)
        adapter = http_session().get_adapter(settings.GEMINI_BASE_URL)
        port = int(fake.url.rsplit(":", 1)[1])
        pool_keys = adapter.poolmanager.pools.keys()  # the container is not iterable
        pools = [adapter.poolmanager.pools[key] for key in pool_keys if key.key_port == port]
        assert [(p.num_connections, p.num_requests) for p in pools] == [(1, 5)]
        assert adapter._pool_maxsize >= 256
