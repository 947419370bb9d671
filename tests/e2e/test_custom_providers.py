"""End to end: custom OpenAI-compatible providers (SPEC §12.1) on the production server, against
the fake upstream's keyless OpenAI-compatible route.

``local`` has one provider only, ``ollama`` from LLM_CUSTOM_PROVIDERS, keyless: it is detected,
primary, streams, answers structured output, shows in ``usage/``, ``providers/`` and the cost
report, is priced and held by a budget, and ``v1/chat/completions`` routes ``ollama/<model>`` to
it. ``local_primary`` has ``GPT_PROVIDER=ollama`` beside a Hugging Face key: ollama is the
primary, and the fallback of a failing Hugging Face. A provider defined in the admin (a
``CustomProvider`` row, saved by another process) is used without a restart.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.e2e.harness import (
    assert_error,
    ledger_mark,
    manage,
    money,
    read_events,
    rows_since,
    wait_until,
)
from tests.e2e.test_faults import shape

pytestmark = pytest.mark.e2e

OLLAMA_PATH = "/openai/ollama/v1/chat/completions"


def paths(fake) -> list[str]:
    return [r["path"] for r in fake.requests()]


def test_a_keyless_custom_provider_is_detected_when_it_is_the_only_one(local_api, fake):
    providers = local_api.get("providers/").json()
    assert [(p["name"], p["available"], p["primary"], p["priority"]) for p in providers] == [
        ("gemini", False, False, 1),
        ("openrouter", False, False, 2),
        ("huggingface", False, False, 3),
        ("ollama", True, True, 4),
    ]
    assert providers[3]["default_model"] == "llama3.2"

    mark = ledger_mark(local_api)
    reply = local_api.post("generate/", {"prompt": "Who answers?"})
    assert reply.status == 200, reply
    out = reply.json()
    assert (out["provider"], out["model"], out["fallback_from"]) == ("ollama", "llama3.2", [])
    assert paths(fake) == [OLLAMA_PATH]
    assert fake.requests()[0]["auth"]["present"] is False  # keyless: no key sent
    assert shape(rows_since(local_api, mark)) == [("ollama", "success", "", 0, False)]


def test_it_streams(local_api, fake):
    conn, response = local_api.stream("generate/", {"prompt": "Stream it", "stream": True})
    try:
        assert response.status == 200
        events = list(read_events(response))
    finally:
        response.close()
        conn.close()
    text = "".join(e.json()["delta"] for e in events if e.event is None)
    done = events[-1]
    assert done.event == "done", events
    assert done.json()["provider"] == "ollama"
    assert done.json()["usage"]["completion_tokens"] == len(text.split()) > 0
    sent = fake.requests()[0]["json"]
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}


def test_it_answers_structured_output(local_api, fake):
    schema = {
        "type": "object",
        "properties": {"title": {"type": "string"}, "words": {"type": "integer"}},
        "required": ["title", "words"],
    }
    reply = local_api.post("generate/", {"prompt": "A title, please", "json_schema": schema})
    assert reply.status == 200, reply
    data = reply.json()["data"]
    assert isinstance(data["title"], str) and isinstance(data["words"], int)
    sent = fake.requests()[0]["json"]
    assert sent["response_format"]["type"] == "json_schema"
    assert sent["response_format"]["json_schema"]["schema"] == schema


def test_v1_routes_name_slash_model_to_it(local, accounts, fake):
    """The official ``openai`` SDK over real HTTP, with ``model="ollama/llama3.2"``."""
    openai = pytest.importorskip("openai")
    sdk = openai.OpenAI(
        base_url=f"{local.url}/api/llm/v1", api_key=accounts["user"], max_retries=0, timeout=20
    )
    try:
        answer = sdk.chat.completions.create(
            model="ollama/llama3.2", messages=[{"role": "user", "content": "Hello"}]
        )
    finally:
        sdk.close()
    assert answer.model == "ollama/llama3.2"
    assert answer.usage.total_tokens > 0
    assert paths(fake) == [OLLAMA_PATH]
    assert fake.requests()[0]["json"]["model"] == "llama3.2"


def test_usage_providers_and_the_cost_report_list_it(local, accounts, fake):
    user, staff = local.client(accounts["user"]), local.client(accounts["staff"])
    assert user.post("generate/", {"prompt": "Count me"}).status == 200

    usage = user.get("usage/").json()
    assert usage["providers"]["ollama"]["calls"] >= 1
    assert set(usage["providers"]) >= {"gemini", "openrouter", "huggingface", "ollama"}
    report = staff.get("reports/costs/", group_by="provider").json()
    assert "ollama" in {row["key"] for row in report}


def test_a_price_makes_it_cost_and_a_budget_holds_it(local, main, accounts, fake):
    """A price and a budget saved by another process (manage.py shell) count at once."""
    user = local.client(accounts["user"])
    spent = money(user.get("usage/").json()["total"]["cost"])
    # 1000 USD per million completion tokens: the fake's 20-word answer costs 0.02; a call's
    # worst case with max_tokens 20 is 0.02 too. The budget leaves room for one such call.
    limit = spent + Decimal("0.03")
    manage(
        main.full_env(),
        f"""
from llm_providers.models import ModelPrice, UsageBudget
from django.contrib.auth import get_user_model
ModelPrice.objects.create(provider="ollama", model="llama3.2", prompt_per_million=0,
                          completion_per_million=1000)
UsageBudget.objects.update_or_create(
    user=get_user_model().objects.get(username="e2e-user"),
    defaults={{"monthly_cost_limit": "{limit}"}},
)
""",
    )
    try:
        first = user.post("generate/", {"prompt": "Priced", "max_tokens": 20})
        assert first.status == 200, first
        assert first.json()["cost"] == "0.02"
        second = user.post("generate/", {"prompt": "Over budget", "max_tokens": 20})
        assert_error(second, 402, "budget_exceeded")
        assert len(fake.requests()) == 1  # the refused call reached no upstream
    finally:
        manage(
            main.full_env(),
            """
from llm_providers.models import ModelPrice, UsageBudget
ModelPrice.objects.filter(provider="ollama").delete()
UsageBudget.objects.filter(user__username="e2e-user").delete()
""",
        )


def test_gpt_provider_names_it_and_it_is_a_fallback(local_primary, accounts, fake):
    api = local_primary.client(accounts["user"])
    providers = api.get("providers/").json()
    assert [(p["name"], p["available"], p["primary"]) for p in providers][2:] == [
        ("huggingface", True, False),
        ("ollama", True, True),
    ]
    reply = api.post("generate/", {"prompt": "Primary?"})
    assert reply.status == 200 and reply.json()["provider"] == "ollama", reply

    seen = len(fake.requests())
    fake.script("huggingface", [{"status": 503, "times": 2}])
    mark = ledger_mark(api)
    reply = api.post("generate/", {"prompt": "Fall back", "provider": "huggingface"})
    assert reply.status == 200, reply
    out = reply.json()
    assert (out["provider"], out["fallback_from"], out["attempts"]) == (
        "ollama",
        ["huggingface"],
        3,
    )
    assert paths(fake)[seen:] == ["/hf/v1/chat/completions"] * 2 + [OLLAMA_PATH]
    assert shape(rows_since(api, mark)) == [
        ("huggingface", "error", "provider_error", 1, False),
        ("ollama", "success", "", 0, True),
    ]


def test_a_provider_defined_in_the_admin_is_used_without_a_restart(local, main, accounts, fake):
    api = local.client(accounts["user"])
    base_url = fake.openai_base_url("lab")
    manage(
        main.full_env(),
        f"""
from llm_providers.models import CustomProvider
CustomProvider.objects.create(name="lab", label="Lab vLLM", base_url="{base_url}",
                              default_model="qwen2.5", requires_key=False)
""",
    )
    try:
        # Every worker sees it at its next call: the row's save moved the shared cache version.
        wait_until(
            lambda: "lab" in {p["name"] for p in api.get("providers/").json()},
            consecutive=4,
            what="the admin's provider in providers/",
        )
        reply = api.post("generate/", {"prompt": "Lab?", "provider": "lab"})
        assert reply.status == 200, reply
        assert (reply.json()["provider"], reply.json()["model"]) == ("lab", "qwen2.5")
        assert paths(fake)[-1] == "/openai/lab/v1/chat/completions"
    finally:
        manage(
            main.full_env(),
            "from llm_providers.models import CustomProvider\n"
            'CustomProvider.objects.filter(name="lab").delete()\n',
        )
    wait_until(
        lambda: "lab" not in {p["name"] for p in api.get("providers/").json()},
        consecutive=4,
        what="the deleted provider gone from providers/",
    )
