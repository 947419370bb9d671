"""Nothing slips past a cost limit (SPEC §7): unpriced models priced on demand or refused, usage
without a reported cost charged from the price table, and refusals that say why."""

import json
from decimal import Decimal

import pytest
from responses import matchers

from llm_providers.accounting import budgets
from llm_providers.accounting.ledger import ledger_entries
from llm_providers.exceptions import BudgetExceeded, ContentPolicyViolation
from llm_providers.main_text_generation import llm_generate
from llm_providers.models import (
    CostSource,
    LedgerEntry,
    ModelPrice,
    PriceSource,
    UsageBudget,
    UsageSummary,
    billing_period,
)
from llm_providers.results import Attempt, Usage
from tests.api.support import assert_error, token_client
from tests.conftest import GEMINI_URL, HF_URL, OPENROUTER_URL
from tests.test_router import gemini_ok, openai_ok

pytestmark = pytest.mark.django_db

OPENROUTER_CHAT = f"{OPENROUTER_URL}/chat/completions"
OPENROUTER_MODELS = f"{OPENROUTER_URL}/models"
HF_CHAT = f"{HF_URL}/chat/completions"
# A model OpenRouter lists but the seeded table does not: $1 / $2 per million tokens.
NEW_MODEL = "acme/new-model"
LISTING = {
    "data": [
        {"id": NEW_MODEL, "pricing": {"prompt": "0.000001", "completion": "0.000002"}},
        {"id": "openrouter/auto", "pricing": {"prompt": "-1", "completion": "-1"}},
    ]
}


@pytest.fixture
def writer(django_user_model):
    return django_user_model.objects.create_user("writer")


@pytest.fixture
def limited(writer):
    UsageBudget.objects.create(user=writer, monthly_cost_limit=Decimal("1"))
    return writer


def summary_of(user):
    return UsageSummary.objects.get(user=user, period=billing_period())


# --- Priced on demand ----------------------------------------------------------------------


def test_an_openrouter_model_missing_from_the_table_is_priced_from_its_listing(
    use_keys, http, limited
):
    use_keys("openrouter")
    http.get(OPENROUTER_MODELS, json=LISTING)
    chat = http.post(OPENROUTER_CHAT, json=openai_ok("hi", NEW_MODEL, cost=0.00003))

    llm_generate("a", user_id=limited, provider="openrouter", model=NEW_MODEL, max_tokens=1000)
    llm_generate("b", user_id=limited, provider="openrouter", model=NEW_MODEL, max_tokens=1000)

    price = ModelPrice.objects.get(provider="openrouter", model=NEW_MODEL)
    assert (price.prompt_per_million, price.completion_per_million, price.source) == (
        Decimal(1),
        Decimal(2),
        PriceSource.OPENROUTER,
    )
    assert len([c for c in http.calls if c.request.url == OPENROUTER_MODELS]) == 1
    assert chat.call_count == 2
    # Reserved at the real price: (1 + 16) prompt tokens x $1/M + 1000 x $2/M.
    rows = LedgerEntry.objects.order_by("id")
    assert {row.estimate for row in rows} == {Decimal("0.002017")}
    assert summary_of(limited).reserved_cost == 0


def test_on_demand_pricing_reserves_enough_to_keep_spend_under_the_limit(use_keys, http, writer):
    """The reproduction: a limit of $0.005 and a model absent from the table that costs about
    $0.002 a call. Priced at 0, every call was let through; at a real price, two are."""
    use_keys("openrouter")
    UsageBudget.objects.create(user=writer, monthly_cost_limit=Decimal("0.005"))
    http.get(OPENROUTER_MODELS, json=LISTING)
    http.post(OPENROUTER_CHAT, json=openai_ok("hi", NEW_MODEL, cost=0.002))
    done = 0
    with pytest.raises(BudgetExceeded):
        for _ in range(10):
            llm_generate(
                "a", user_id=writer, provider="openrouter", model=NEW_MODEL, max_tokens=1000
            )
            done += 1
    assert done == 2
    assert summary_of(writer).total_cost <= Decimal("0.005")


# --- Refused, or allowed and flagged -------------------------------------------------------


def test_an_unpriced_model_is_refused_for_a_user_with_a_cost_limit(use_keys, http, limited):
    use_keys("huggingface")
    chat = http.post(HF_CHAT, json=openai_ok("hi", "acme/secret-model"))

    with pytest.raises(BudgetExceeded) as err:
        llm_generate("a", user_id=limited, provider="huggingface", model="acme/secret-model")

    message = str(err.value)
    assert "huggingface/acme/secret-model" in message
    assert "Model prices" in message and "sync_model_prices" in message
    assert chat.call_count == 0 and len(http.calls) == 0  # HF publishes no prices
    assert LedgerEntry.objects.count() == 0
    body = err.value.as_dict()
    assert body["code"] == "budget_exceeded" and body["limit"] == "cost"
    assert body["limit_value"] == "1" and body["used"] == "0" and body["reserved"] == "0"
    assert body["resets_at"] == budgets.resets_at(billing_period())


def test_an_unpriced_fallback_counts_too(use_keys, http, limited):
    use_keys("gemini", "huggingface")
    http.post(
        f"{GEMINI_URL}/models/gemini-2.5-flash:generateContent", json=gemini_ok()
    )  # priced, but the chain's fallback is not

    with pytest.raises(BudgetExceeded, match="huggingface/acme/unpriced"):
        llm_generate(
            "a",
            user_id=limited,
            provider="gemini",
            model="gemini-2.5-flash",
            fallback_models=["huggingface/acme/unpriced"],
        )
    assert len(http.calls) == 0


def test_an_openrouter_model_it_does_not_list_is_refused(use_keys, http, limited):
    use_keys("openrouter")
    http.get(OPENROUTER_MODELS, json=LISTING)
    chat = http.post(OPENROUTER_CHAT, json=openai_ok("hi", "acme/unlisted"))
    with pytest.raises(BudgetExceeded, match="openrouter/acme/unlisted"):
        llm_generate("a", user_id=limited, provider="openrouter", model="acme/unlisted")
    assert chat.call_count == 0


def test_a_failed_listing_refuses_rather_than_guesses(use_keys, http, limited):
    use_keys("openrouter")
    http.get(OPENROUTER_MODELS, status=503, body="down")
    chat = http.post(OPENROUTER_CHAT, json=openai_ok("hi", NEW_MODEL))
    with pytest.raises(BudgetExceeded, match=NEW_MODEL):
        llm_generate("a", user_id=limited, provider="openrouter", model=NEW_MODEL)
    assert chat.call_count == 0
    assert not ModelPrice.objects.filter(model=NEW_MODEL).exists()


def test_allow_lets_an_unpriced_model_through_flagged(use_keys, http, limited, settings):
    settings.LLM_UNPRICED_MODELS = "allow"
    use_keys("huggingface")
    http.post(HF_CHAT, json=openai_ok("hi", "acme/secret-model"))

    llm_generate("a", user_id=limited, provider="huggingface", model="acme/secret-model")

    row = LedgerEntry.objects.get()
    assert (row.cost, row.cost_source, row.status) == (0, CostSource.UNPRICED, "success")


def test_users_without_a_cost_limit_are_never_refused_for_it(use_keys, http, writer):
    use_keys("huggingface")
    UsageBudget.objects.create(user=writer, monthly_call_limit=10)
    http.post(HF_CHAT, json=openai_ok("hi", "acme/secret-model"))
    llm_generate("a", user_id=writer, provider="huggingface", model="acme/secret-model")
    llm_generate("b", provider="huggingface", model="acme/secret-model")  # system usage
    assert LedgerEntry.objects.filter(cost_source=CostSource.UNPRICED).count() == 2


# --- Usage without a reported cost ---------------------------------------------------------


def test_hugging_face_usage_is_charged_from_the_price_table(use_keys, http, limited):
    use_keys("huggingface")
    model = "meta-llama/llama-3.1-8b-instruct"  # seeded: $0.03 / $0.05 per million
    http.post(HF_CHAT, json=openai_ok("hi", model))  # 9 + 10 tokens, no cost reported
    llm_generate("a", user_id=limited, provider="huggingface", model=model)
    row = LedgerEntry.objects.get()
    assert (row.cost, row.cost_source) == (Decimal("0.00000077"), CostSource.PRICE_TABLE)
    assert summary_of(limited).total_cost == Decimal("0.00000077")


def test_a_blocked_gemini_prompt_is_charged_its_prompt_tokens(use_keys, http, limited):
    use_keys("gemini")
    blocked = {
        "promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
        "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9},
        "modelVersion": "gemini-2.5-flash",
    }
    http.post(f"{GEMINI_URL}/models/gemini-2.5-flash:generateContent", json=blocked)
    with pytest.raises(ContentPolicyViolation):
        llm_generate("a", user_id=limited, provider="gemini", model="gemini-2.5-flash")
    row = LedgerEntry.objects.get()
    # 9 prompt tokens at $0.30 per million.
    assert (row.status, row.prompt_tokens, row.cost) == ("error", 9, Decimal("0.0000027"))
    assert row.cost_source == CostSource.PRICE_TABLE
    assert summary_of(limited).total_cost == Decimal("0.0000027")
    assert summary_of(limited).reserved_cost == 0


def test_failed_attempts_with_usage_are_priced():
    error = ContentPolicyViolation("withheld (SAFETY)", provider="gemini")
    attempt = Attempt(
        provider="gemini",
        model="gemini-2.5-flash",
        is_fallback=False,
        error=error,
        partial_usage=Usage(14, 0, 14),
    )
    [row] = ledger_entries("r", None, [attempt])
    assert (row.cost, row.cost_source) == (Decimal("0.0000042"), CostSource.PRICE_TABLE)


# --- Why blocked ---------------------------------------------------------------------------


def test_a_cost_refusal_says_what_is_used_reserved_needed_and_when_it_resets(
    use_keys, http, writer
):
    use_keys("gemini")
    UsageBudget.objects.create(user=writer, monthly_cost_limit=Decimal("0.0003"))
    http.post(f"{GEMINI_URL}/models/gemini-2.5-flash:generateContent", json=gemini_ok())
    held = budgets.reserve(writer.pk, Decimal("0.0001"))  # a call in flight elsewhere
    assert held is not None

    with pytest.raises(BudgetExceeded) as err:
        llm_generate("a", user_id=writer, max_tokens=100)  # may cost up to $0.0002551

    body = json.loads(json.dumps(err.value.as_dict()))
    assert body == {
        "code": "budget_exceeded",
        "message": err.value.message,
        "limit": "cost",
        "limit_value": "0.0003",
        "used": "0",
        "reserved": "0.0001",
        "needed": "0.0002551",
        "resets_at": budgets.resets_at(billing_period()),
    }
    assert "$0.0001 reserved" in err.value.message
    assert f"resets at {body['resets_at']}" in err.value.message
    assert len(http.calls) == 0


def test_a_call_refusal_says_why(use_keys, http, writer):
    use_keys("gemini")
    UsageBudget.objects.create(user=writer, monthly_call_limit=1)
    budgets.reserve(writer.pk, Decimal(0))
    with pytest.raises(BudgetExceeded) as err:
        llm_generate("a", user_id=writer)
    body = err.value.as_dict()
    assert (body["limit"], body["limit_value"], body["used"], body["reserved"]) == (
        "calls",
        1,
        0,
        1,
    )
    assert body["needed"] == 1


@pytest.mark.parametrize(
    ("period", "expected"),
    [("2026-01", "2026-02-01T00:00:00Z"), ("2026-12", "2027-01-01T00:00:00Z")],
)
def test_resets_at_is_the_next_periods_start(period, expected):
    assert budgets.resets_at(period) == expected


def test_the_listing_request_has_the_configured_timeout(use_keys, http, limited, settings):
    use_keys("openrouter")
    http.get(
        OPENROUTER_MODELS,
        json=LISTING,
        match=[matchers.request_kwargs_matcher({"timeout": settings.LLM_TIMEOUT})],
    )
    http.post(OPENROUTER_CHAT, json=openai_ok("hi", NEW_MODEL, cost=0.00003))
    llm_generate("a", user_id=limited, provider="openrouter", model=NEW_MODEL)


def test_the_apis_402_carries_why(use_keys, http, limited):
    use_keys("huggingface")
    budgets.reserve(limited.pk, Decimal("0.25"))  # a call in flight
    response = token_client(limited).post(
        "/api/llm/generate/",
        {"prompt": "hi", "provider": "huggingface", "model": "acme/secret-model"},
        format="json",
    )
    error = assert_error(response, 402, "budget_exceeded")
    assert {k: error[k] for k in ("limit", "limit_value", "used", "reserved", "needed")} == {
        "limit": "cost",
        "limit_value": "1",
        "used": "0",
        "reserved": "0.25",
        "needed": None,
    }
    assert error["resets_at"] == budgets.resets_at(billing_period())
    assert "huggingface/acme/secret-model" in error["message"]
    assert len(http.calls) == 0
