"""Usage and cost: the ledger, summaries equal to it, cost sources, concurrency."""

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import connection
from django.db.models import Count, Q, Sum

from llm_providers.accounting import budgets, ledger
from llm_providers.accounting.money import ZERO
from llm_providers.exceptions import AllProvidersFailed, InvalidStructuredOutput, StreamInterrupted
from llm_providers.main_text_generation import llm_generate, llm_stream, llm_text_gen
from llm_providers.models import (
    PROVIDER_NAMES,
    CostSource,
    LedgerEntry,
    ModelPrice,
    UsageBudget,
    UsageSummary,
    billing_period,
)
from llm_providers.results import Attempt, Completion, Usage
from tests.conftest import GEMINI_URL, HF_URL, OPENROUTER_URL
from tests.test_router import gemini_chunk, gemini_ok, openai_ok, openrouter_stream, sse

GEMINI_GENERATE = f"{GEMINI_URL}/models/gemini-2.5-flash:generateContent"
GEMINI_STREAM = f"{GEMINI_URL}/models/gemini-2.5-flash:streamGenerateContent"
OPENROUTER_CHAT = f"{OPENROUTER_URL}/chat/completions"
HF_CHAT = f"{HF_URL}/chat/completions"


def assert_summaries_equal_ledger():
    """Every summary column equals the sum of its ledger rows (no adjustments here)."""
    summaries = list(UsageSummary.objects.all())
    assert summaries, "no summary was written"
    for summary in summaries:
        rows = LedgerEntry.objects.filter(user_id=summary.user_id, period=summary.period)
        for name in [*PROVIDER_NAMES, "total"]:
            subset = rows if name == "total" else rows.filter(provider=name)
            sums = subset.aggregate(
                calls=Count("id", filter=Q(status="success")),
                tokens=Sum("total_tokens"),
                cost=Sum("cost"),
            )
            assert getattr(summary, f"{name}_calls") == sums["calls"], name
            assert getattr(summary, f"{name}_tokens") == (sums["tokens"] or 0), name
            assert getattr(summary, f"{name}_cost") == (sums["cost"] or ZERO), name
        assert summary.reserved_calls == 0 and summary.reserved_cost == ZERO


# --- Cost sources --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_openrouter_reported_cost_is_kept_exactly(use_keys, http):
    use_keys("openrouter")
    http.post(OPENROUTER_CHAT, json=openai_ok("hi", "openai/gpt-4o-mini", cost=0.00000735))
    generation = llm_generate("hello", model="openai/gpt-4o-mini")
    [entry] = LedgerEntry.objects.all()
    assert entry.cost == Decimal("0.00000735")
    assert entry.cost_source == CostSource.PROVIDER
    assert generation.cost == Decimal("0.00000735")


@pytest.mark.django_db
def test_price_table_cost_for_gemini(use_keys, http):
    use_keys("gemini")
    http.post(GEMINI_GENERATE, json=gemini_ok("hi"))  # 5 prompt, 3 completion tokens
    llm_generate("hello")
    [entry] = LedgerEntry.objects.all()
    # gemini-2.5-flash: $0.30 / $2.50 per million tokens.
    assert entry.cost == Decimal("0.0000015") + Decimal("0.0000075")
    assert entry.cost_source == CostSource.PRICE_TABLE


@pytest.mark.django_db
def test_hf_price_found_for_lowercased_model_and_provider_suffix(use_keys, http):
    use_keys("huggingface")
    # The router answers with the provider's lower-case id; the request named a :provider.
    http.post(HF_CHAT, json=openai_ok("hi", "meta-llama/llama-3.1-8b-instruct"))
    llm_generate("hello", provider="hf", model="meta-llama/Llama-3.1-8B-Instruct:novita")
    [entry] = LedgerEntry.objects.all()
    # 9 prompt x $0.03/M + 10 completion x $0.05/M
    assert entry.cost == Decimal("0.00000077")
    assert entry.cost_source == CostSource.PRICE_TABLE


@pytest.mark.django_db
def test_unknown_model_is_unpriced_zero_and_flagged(use_keys, http, caplog):
    use_keys("openrouter")
    http.post(OPENROUTER_CHAT, json=openai_ok("hi", "acme/secret-model"))
    llm_generate("hello", model="acme/secret-model")
    [entry] = LedgerEntry.objects.all()
    assert entry.cost == ZERO
    assert entry.cost_source == CostSource.UNPRICED
    assert entry.total_tokens == 19
    assert "No price for openrouter model 'acme/secret-model'" in caplog.text


@pytest.mark.django_db
def test_price_edit_applies_at_once(use_keys, http):
    use_keys("gemini")
    http.post(GEMINI_GENERATE, json=gemini_ok("hi"))
    llm_generate("hello")
    ModelPrice.objects.filter(provider="gemini", model="gemini-2.5-flash").update(
        prompt_per_million=Decimal("1"), completion_per_million=Decimal("1")
    )
    # A queryset update sends no signal; a save (as the admin does) clears the cache.
    price = ModelPrice.objects.get(provider="gemini", model="gemini-2.5-flash")
    price.save()
    llm_generate("hello")
    assert [e.cost for e in LedgerEntry.objects.order_by("id")] == [
        Decimal("0.000009"),
        Decimal("0.000008"),
    ]


def test_money_rounds_to_picodollars():
    from llm_providers.accounting.prices import Price

    price = Price(Decimal("0.03"), Decimal("0.05"))
    assert price.cost(1, 0) == Decimal("0.00000003")
    assert Price(Decimal("0.0000001"), Decimal(0)).cost(1, 0) == Decimal("0.000000000000")


# --- The ledger and the summary ------------------------------------------------------------------


@pytest.mark.django_db
def test_mixed_traffic_summary_equals_ledger(use_keys, http, django_user_model, settings):
    user = django_user_model.objects.create_user("writer")
    other = django_user_model.objects.create_user("editor")
    use_keys("gemini", "openrouter", "huggingface")

    # 1. Plain success on Gemini.
    http.post(GEMINI_GENERATE, json=gemini_ok("one"))
    llm_generate("a", user_id=user)
    # 2. Gemini fails after retries, OpenRouter answers (fallback) with its own cost.
    http.replace(responses_post(), GEMINI_GENERATE, status=503, json={"error": {"code": 503}})
    http.post(OPENROUTER_CHAT, json=openai_ok("two", "openai/gpt-4-turbo", cost=0.00042))
    llm_generate("b", user_id=user)
    # 3. Everything fails: three error rows, no call counted.
    http.replace(responses_post(), OPENROUTER_CHAT, status=500, json={"error": {"code": 500}})
    http.post(HF_CHAT, status=502, json={"error": "bad gateway"})
    with pytest.raises(AllProvidersFailed):
        llm_generate("c", user_id=other)
    # 4. A stream on OpenRouter (reported cost on its last chunk), for the system.
    http.post(OPENROUTER_CHAT, body=openrouter_stream("x", "y"), content_type="text/event-stream")
    list(llm_stream("d", provider="openrouter", fallback=False))
    # 5. Invalid JSON twice: both calls billed, an error row.
    http.replace(responses_post(), GEMINI_GENERATE, json=gemini_ok("not json"))
    with pytest.raises(InvalidStructuredOutput):
        llm_text_gen("e", json_struct={"type": "object"}, user_id=user, provider="gemini")

    entries = LedgerEntry.objects.all()
    assert entries.count() == 1 + 2 + 3 + 1 + 1
    assert entries.filter(status="success").count() == 3
    structured = entries.get(error_code="invalid_structured_output")
    assert structured.total_tokens == 16  # two calls of 8 tokens
    assert structured.retries == 1
    assert_summaries_equal_ledger()
    summary = UsageSummary.objects.get(user=user, period=billing_period())
    assert summary.total_calls == 2
    assert summary.openrouter_cost == Decimal("0.00042")
    assert UsageSummary.objects.get(user=None).openrouter_cost == Decimal("0.5")


def responses_post():
    import responses

    return responses.POST


@pytest.mark.django_db
def test_fallback_rows_are_marked(use_keys, http):
    use_keys("gemini", "openrouter")
    http.post(GEMINI_GENERATE, status=429, json={"error": {"code": 429, "message": "slow"}})
    http.post(OPENROUTER_CHAT, json=openai_ok("ok", "openai/gpt-4-turbo", cost=0.001))
    llm_generate("hi")
    first, second = LedgerEntry.objects.order_by("id")
    assert (first.provider, first.status, first.error_code, first.retries, first.is_fallback) == (
        "gemini",
        "error",
        "rate_limited",
        3,
        False,
    )
    assert (second.provider, second.status, second.is_fallback) == ("openrouter", "success", True)
    assert first.request_id == second.request_id


@pytest.mark.django_db
def test_refused_bad_input_records_nothing(use_keys, http):
    use_keys("gemini")
    with pytest.raises(Exception):  # noqa: B017 - any refusal; what matters is what follows
        llm_generate("hi", temperature=9)
    assert LedgerEntry.objects.count() == 0
    assert UsageSummary.objects.count() == 0


@pytest.mark.django_db
def test_recording_failure_is_raised_in_strict_mode_and_logged(monkeypatch, caplog, settings):
    def broken(*args, **kwargs):
        raise RuntimeError("database is gone")

    monkeypatch.setattr(ledger, "record_call", broken)
    attempt = Attempt(
        provider="gemini",
        model="gemini-2.5-flash",
        is_fallback=False,
        completion=Completion("t", "gemini", "gemini-2.5-flash", Usage(1, 2, 3)),
        requests=1,
    )
    with pytest.raises(RuntimeError):
        ledger.record_call_safely("req1", None, [attempt])
    assert "Could not record LLM usage: request=req1" in caplog.text

    settings.LLM_STRICT_ACCOUNTING = False
    entries = ledger.record_call_safely("req2", None, [attempt])
    assert entries[0].cost == Decimal("0.0000053")  # priced even though it was not saved


# --- Writing the ledger and the summary ---------------------------------------------------------


def _gemini_attempt(tokens=(1, 2, 3)):
    return Attempt(
        provider="gemini",
        model="gemini-2.5-flash",
        is_fallback=False,
        completion=Completion("t", "gemini", "gemini-2.5-flash", Usage(*tokens)),
        requests=1,
    )


@pytest.mark.django_db
def test_recorded_rows_come_back_saved_with_their_ids():
    entries = ledger.record_call("req", None, [_gemini_attempt(), _gemini_attempt((4, 5, 9))])
    assert [e.pk for e in entries] == list(
        LedgerEntry.objects.filter(request_id="req").order_by("pk").values_list("pk", flat=True)
    )
    assert [e.total_tokens for e in entries] == [3, 9]


@pytest.mark.django_db
def test_every_summary_update_moves_updated_at(django_user_model):
    """Summaries change only by ``F()`` updates, which bypass ``auto_now``: recording a call,
    reserving a budget and an admin's correction each set the time themselves."""
    user = django_user_model.objects.create_user("timed")
    UsageBudget.objects.create(user=user, monthly_call_limit=10)
    ledger.record_call("first", user.pk, [_gemini_attempt()])
    summary = UsageSummary.objects.filter(user=user)
    long_ago = datetime(2001, 1, 1, tzinfo=UTC)

    def moves(change):
        summary.update(updated_at=long_ago)
        change()
        return summary.get().updated_at > long_ago

    assert moves(lambda: ledger.record_call("again", user.pk, [_gemini_attempt()]))
    assert moves(lambda: budgets.reserve(user.pk, Decimal("0.01")))
    summary_id = summary.get().pk
    assert moves(lambda: ledger.adjust_summary(summary_id, {"gemini_calls": 1}, reason="test"))


# --- Concurrency -----------------------------------------------------------------------------


def _run_concurrently(count, fn):
    def task(i):
        try:
            return fn(i)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=10) as pool:
        return list(pool.map(task, range(count)))


@pytest.mark.django_db(transaction=True)
def test_fifty_concurrent_calls_are_counted_exactly(use_keys, http, django_user_model):
    users = [django_user_model.objects.create_user(f"user{i}") for i in range(3)]
    use_keys("openrouter", "gemini")
    http.post(OPENROUTER_CHAT, json=openai_ok("hi", "openai/gpt-4o-mini", cost=0.00001305))
    http.post(GEMINI_GENERATE, json=gemini_ok("hi"))

    def call(i):
        provider = "openrouter" if i % 2 else "gemini"
        return llm_generate("hello", user_id=users[i % 3], provider=provider).cost

    costs = _run_concurrently(50, call)

    assert LedgerEntry.objects.count() == 50
    assert_summaries_equal_ledger()
    total = UsageSummary.objects.aggregate(
        calls=Sum("total_calls"), tokens=Sum("total_tokens"), cost=Sum("total_cost")
    )
    assert total["calls"] == 50
    assert total["tokens"] == 25 * 19 + 25 * 8
    assert total["cost"] == sum(costs, ZERO)
    assert total["cost"] == 25 * Decimal("0.00001305") + 25 * Decimal("0.000009")
    assert UsageSummary.objects.count() == 3


@pytest.mark.django_db(transaction=True)
def test_concurrent_first_calls_create_one_summary_row(use_keys, http, django_user_model):
    user = django_user_model.objects.create_user("newcomer")
    use_keys("gemini")
    http.post(GEMINI_GENERATE, json=gemini_ok("hi"))
    _run_concurrently(20, lambda i: llm_generate("x", user_id=user.pk))
    [summary] = UsageSummary.objects.filter(user=user)
    assert summary.gemini_calls == 20
    assert LedgerEntry.objects.filter(user=user).count() == 20


@pytest.mark.django_db
def test_request_body_is_unchanged_by_accounting(use_keys, http):
    # Accounting happens after the call: the upstream sees exactly the caller's request.
    use_keys("gemini")
    http.post(GEMINI_GENERATE, json=gemini_ok("hi"))
    llm_generate("hello", temperature=0.5, max_tokens=10)
    sent = json.loads(http.calls[0].request.body)
    assert sent["generationConfig"] == {"temperature": 0.5, "maxOutputTokens": 10}


@pytest.mark.django_db
def test_stream_error_after_text_keeps_partial_usage(use_keys, http):
    use_keys("gemini")
    body = sse(gemini_chunk("partial", completion_tokens=3)) + sse(
        {"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}}
    )
    http.post(GEMINI_STREAM, body=body, content_type="text/event-stream")
    stream = llm_stream("hi")
    next(stream)
    with pytest.raises(StreamInterrupted):  # no other provider to continue it
        next(stream)
    [entry] = LedgerEntry.objects.all()
    assert (entry.status, entry.error_code, entry.completion_tokens) == (
        "error",
        "provider_error",
        3,
    )
    assert entry.cost > 0
    assert_summaries_equal_ledger()
