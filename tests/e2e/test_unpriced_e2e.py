"""End to end (SPEC §7): a model missing from the price table cannot overrun a budget.

The reproduction of issue 11: two production servers on one database, a user with a $1.00 monthly
limit, a model absent from the price table that OpenRouter prices at about $0.15 a call, and
64 calls from 32 concurrent clients across both servers. Reserved at a zero price, they spent
$5.25; priced on demand from OpenRouter's ``/models``, spend stays within the limit plus one
call's reservation. A model nobody prices is refused (402) before any upstream request.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest

from tests.conftest import FAKE_KEYS
from tests.e2e.conftest import USERS, server_env, start_server, stop_server
from tests.e2e.harness import assert_error, manage, money

pytestmark = pytest.mark.e2e

# Seeded at $15 / $75 per million tokens, and listed by the fake OpenRouter at that price.
MODEL = "anthropic/claude-3-opus"
SEED = ("15", "75")
MAX_TOKENS = 2000  # the fake answers exactly this many words: about $0.15 a call
PROMPT = "Write at length about budgets."
CALLS, CLIENTS = 64, 32


@pytest.fixture(scope="module")
def pair(make_command, upstream, database, main, e2e_dir):
    """Two servers of their own, with every provider's key (like ``main``), reading the price
    table at every call (so the row removed below is missing for them at once) and refusing
    unpriced models."""
    servers = []
    for name in ("money-a", "money-b"):
        env = server_env(
            upstream,
            database,
            e2e_dir,
            GEMINI_API_KEY=FAKE_KEYS["gemini"],
            OPENROUTER_API_KEY=FAKE_KEYS["openrouter"],
            HF_TOKEN=FAKE_KEYS["huggingface"],
            LLM_PRICE_CACHE_SECONDS="0",
            LLM_UNPRICED_MODELS="refuse",
        )
        servers.append(start_server(make_command, name, env, e2e_dir))
    yield servers
    for server in servers:
        stop_server(server)


def _shell(server, code: str) -> str:
    out = manage(server.full_env(), code)
    line = next((x for x in out.splitlines() if x.startswith("RESULT=")), None)
    assert line, f"manage.py shell printed no result:\n{out}"
    return line.removeprefix("RESULT=")


@pytest.fixture
def limited_user(pair, accounts):
    """The ``other`` user with $1.00 more to spend this month, and MODEL out of the price
    table; both restored afterwards (the servers live for the whole session)."""
    spent = Decimal(
        _shell(
            pair[0],
            f"""
from decimal import Decimal
from django.contrib.auth import get_user_model
from llm_providers.models import ModelPrice, UsageBudget, UsageSummary, billing_period
user = get_user_model().objects.get(username={USERS["other"]!r})
row = UsageSummary.objects.filter(user=user, period=billing_period()).first()
spent = row.total_cost if row else Decimal(0)
UsageBudget.objects.update_or_create(
    user=user, defaults={{"monthly_cost_limit": spent + Decimal("1"), "monthly_call_limit": None}}
)
ModelPrice.objects.filter(provider="openrouter", model={MODEL!r}).delete()
print("RESULT=" + str(spent))
""",
        )
    )
    yield accounts["other"], spent
    _shell(
        pair[0],
        f"""
from django.contrib.auth import get_user_model
from llm_providers.models import ModelPrice, PriceSource, UsageBudget
UsageBudget.objects.filter(user__username={USERS["other"]!r}).delete()
ModelPrice.objects.update_or_create(
    provider="openrouter",
    model={MODEL!r},
    defaults={{
        "prompt_per_million": {SEED[0]!r},
        "completion_per_million": {SEED[1]!r},
        "source": PriceSource.SEED,
    }},
)
print("RESULT=ok")
""",
    )


def _price_row(server) -> str:
    return _shell(
        server,
        f"""
from llm_providers.models import ModelPrice
row = ModelPrice.objects.filter(provider="openrouter", model={MODEL!r}).first()
print("RESULT=" + (f"{{row.prompt_per_million:f}}/{{row.completion_per_million:f}}/{{row.source}}"
                   if row else "none"))
""",
    )


def test_concurrent_calls_to_a_model_missing_from_the_table_stay_within_the_budget(
    pair, limited_user, fake
):
    token, spent_before = limited_user
    assert _price_row(pair[0]) == "none"
    fake.configure(completion_words=MAX_TOKENS)
    body = {"prompt": PROMPT, "provider": "openrouter", "model": MODEL, "max_tokens": MAX_TOKENS}

    def call(i: int):
        return pair[i % 2].client(token).post("generate/", body, timeout=60)

    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        replies = list(pool.map(call, range(CALLS)))

    statuses = [r.status for r in replies]
    assert set(statuses) <= {200, 402}, [r for r in replies if r.status not in (200, 402)][:3]
    ok = statuses.count(200)
    assert 0 < ok < CALLS, statuses
    refused = next(r for r in replies if r.status == 402)
    error = assert_error(refused, 402, "budget_exceeded")
    # The limit is stored with 6 decimal places (UsageBudget.monthly_cost_limit).
    assert error["limit"] == "cost"
    assert abs(money(error["limit_value"]) - (spent_before + 1)) < Decimal("0.000001")
    assert {"used", "reserved", "needed", "resets_at"} <= set(error)

    # Spend: at most the limit plus one call's reservation at the real price.
    reservation = (math.ceil(len(PROMPT) / 4) + 16) * Decimal("0.000015") + MAX_TOKENS * Decimal(
        "0.000075"
    )
    usage = pair[1].client(token).get("usage/").json()
    spent = money(usage["total"]["cost"]) - spent_before
    assert spent <= Decimal(1) + reservation, (spent, ok)
    assert spent == sum(money(r.json()["cost"]) for r in replies if r.status == 200)
    assert money(usage["budget"]["reserved"]["cost"]) == 0
    # Each call upstream was an allowed one; the price was read once and is now in the table.
    chats = [r for r in fake.requests() if r["path"].endswith("/chat/completions")]
    assert len(chats) == ok
    assert [r for r in fake.requests() if r["path"].endswith("/models")]
    assert _price_row(pair[0]) == "15.00000000/75.00000000/openrouter"


@pytest.mark.parametrize(
    ("provider", "model"),
    [("openrouter", "nobody/prices-this"), ("huggingface", "nobody/prices-this-either")],
)
def test_a_model_nobody_prices_is_refused_before_any_upstream_request(
    pair, limited_user, fake, provider, model
):
    token, _ = limited_user
    reply = (
        pair[0]
        .client(token)
        .post("generate/", {"prompt": "Hi", "provider": provider, "model": model})
    )
    error = assert_error(reply, 402, "budget_exceeded")
    assert f"{provider}/{model}" in error["message"]
    assert "sync_model_prices" in error["message"] and "Model prices" in error["message"]
    assert [r for r in fake.requests() if not r["path"].endswith("/models")] == []
