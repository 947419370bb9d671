"""Management commands: llm_usage_report and sync_model_prices."""

import json
from decimal import Decimal
from io import StringIO

import pytest
import requests
from django.core.management import call_command
from django.core.management.base import CommandError
from responses import matchers

from llm_providers.accounting import ledger
from llm_providers.accounting import prices as price_table
from llm_providers.models import ModelPrice, UsageSummary, billing_period
from tests.conftest import OPENROUTER_URL

MODELS_URL = f"{OPENROUTER_URL}/models"


def run(*args, **options) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO(), **options)
    return out.getvalue()


# --- llm_usage_report -----------------------------------------------------------------------------


@pytest.fixture
def november(django_user_model):
    """Summaries of 2026-11 with known values (and one of another month)."""
    alice = django_user_model.objects.create_user("alice")
    bob = django_user_model.objects.create_user("bob")
    UsageSummary.objects.create(
        user=alice,
        period="2026-11",
        gemini_calls=1,
        gemini_tokens=100,
        gemini_cost=Decimal("0.000125"),
        openrouter_calls=2,
        openrouter_tokens=300,
        openrouter_cost=Decimal("0.5"),
        total_calls=3,
        total_tokens=400,
        total_cost=Decimal("0.500125"),
    )
    UsageSummary.objects.create(
        user=bob,
        period="2026-11",
        huggingface_calls=4,
        huggingface_tokens=1000,
        huggingface_cost=Decimal("0.00004"),
        total_calls=4,
        total_tokens=1000,
        total_cost=Decimal("0.00004"),
    )
    UsageSummary.objects.create(
        user=None,
        period="2026-11",
        gemini_calls=1,
        gemini_tokens=10,
        gemini_cost=Decimal("0.000001"),
        total_calls=1,
        total_tokens=10,
        total_cost=Decimal("0.000001"),
    )
    UsageSummary.objects.create(
        user=alice, period="2026-10", total_calls=9, total_cost=Decimal("9"), gemini_calls=9
    )
    return alice, bob


CSV_HEADER = (
    "user,period,gemini_calls,gemini_tokens,gemini_cost,openrouter_calls,openrouter_tokens,"
    "openrouter_cost,huggingface_calls,huggingface_tokens,huggingface_cost,total_calls,"
    "total_tokens,total_cost\n"
)


@pytest.mark.django_db
@pytest.mark.usefixtures("november")
def test_usage_report_csv():
    out = run("llm_usage_report", "--period", "2026-11", "--format", "csv")
    assert out == (
        CSV_HEADER + "alice,2026-11,1,100,0.000125,2,300,0.5,0,0,0,3,400,0.500125\n"
        "bob,2026-11,0,0,0,0,0,0,4,1000,0.00004,4,1000,0.00004\n"
        "(system),2026-11,1,10,0.000001,0,0,0,0,0,0,1,10,0.000001\n"
    )


@pytest.mark.django_db
@pytest.mark.usefixtures("november")
def test_usage_report_json():
    rows = json.loads(run("llm_usage_report", "--period", "2026-11", "--format", "json"))
    assert isinstance(rows, list)
    assert [r["user"] for r in rows] == ["alice", "bob", "(system)"]
    assert rows[0] == {
        "user": "alice",
        "period": "2026-11",
        "gemini_calls": 1,
        "gemini_tokens": 100,
        "gemini_cost": "0.000125",
        "openrouter_calls": 2,
        "openrouter_tokens": 300,
        "openrouter_cost": "0.5",
        "huggingface_calls": 0,
        "huggingface_tokens": 0,
        "huggingface_cost": "0",
        "total_calls": 3,
        "total_tokens": 400,
        "total_cost": "0.500125",
    }


@pytest.mark.django_db
@pytest.mark.usefixtures("november")
def test_usage_report_table_is_aligned_with_a_total_row():
    out = run("llm_usage_report", "--period", "2026-11")
    lines = out.rstrip("\n").split("\n")

    groups, header, rule = lines[0], lines[1], lines[2]
    for name in ("gemini", "openrouter", "huggingface", "total"):
        assert name in groups
    assert header.split() == ["user", *["calls", "tokens", "cost"] * 4]
    body = {line.split()[0]: line.split()[1:] for line in lines[3:] if not line.startswith("-")}
    assert body["alice"] == [
        "1",
        "100",
        "0.000125",
        "2",
        "300",
        "0.5",
        "0",
        "0",
        "0",
        "3",
        "400",
        "0.500125",
    ]
    assert body["(system)"][-3:] == ["1", "10", "0.000001"]
    assert body["TOTAL"] == [
        "2",
        "110",
        "0.000126",
        "2",
        "300",
        "0.5",
        "4",
        "1000",
        "0.00004",
        "8",
        "1410",
        "0.500166",
    ]
    assert lines[-2] == rule  # a rule above the total row
    # Columns line up: every row's cells end where the header's do, and the decimal points
    # of the last (cost) column share one position.
    calls_end = header.index("calls") + len("calls")
    for line in lines[3:]:
        if not line.startswith("-"):
            assert line[calls_end - 1] != " " and line[calls_end] == " ", line
    points = {line.rindex(".") for line in lines[3:] if not line.startswith("-")}
    assert len(points) == 1


@pytest.mark.django_db
@pytest.mark.usefixtures("november")
def test_usage_report_for_one_user():
    out = run("llm_usage_report", "--period", "2026-11", "--user", "bob", "--format", "csv")
    assert out == CSV_HEADER + "bob,2026-11,0,0,0,0,0,0,4,1000,0.00004,4,1000,0.00004\n"


@pytest.mark.django_db
def test_usage_report_includes_adjustments_and_defaults_to_this_month(django_user_model):
    from tests.test_usage_admin import record

    carol = django_user_model.objects.create_user("carol")
    record(carol, cost=Decimal("0.5"))
    summary = UsageSummary.objects.get(user=carol)
    ledger.adjust_summary(summary.pk, {"openrouter_cost": Decimal("-0.2")}, reason="refund")

    [row] = json.loads(run("llm_usage_report", "--format", "json"))
    assert (row["user"], row["period"]) == ("carol", billing_period())
    assert (row["openrouter_cost"], row["total_cost"], row["openrouter_calls"]) == ("0.3", "0.3", 1)


@pytest.mark.django_db
def test_usage_report_of_an_empty_period(django_user_model):
    django_user_model.objects.create_user("dave")
    assert run("llm_usage_report", "--period", "1999-01") == "No usage recorded in 1999-01.\n"
    assert run("llm_usage_report", "--period", "1999-01", "--format", "json").strip() == "[]"
    assert run("llm_usage_report", "--period", "1999-01", "--user", "dave", "--format", "csv") == (
        CSV_HEADER
    )


@pytest.mark.django_db
@pytest.mark.parametrize("period", ["2026-13", "2026-1", "26-11", "november", "2026-11-01"])
def test_usage_report_refuses_a_malformed_period(period):
    with pytest.raises(CommandError, match=r"--period must be a month as YYYY-MM"):
        run("llm_usage_report", "--period", period)


@pytest.mark.django_db
def test_usage_report_refuses_an_unknown_user():
    with pytest.raises(CommandError, match="No user named 'nobody'"):
        run("llm_usage_report", "--user", "nobody")


def test_usage_report_refuses_an_unknown_format():
    with pytest.raises(CommandError, match="invalid choice: 'xml'"):
        run("llm_usage_report", "--format", "xml")


# --- sync_model_prices ----------------------------------------------------------------------------


def model(model_id: str, prompt, completion) -> dict:
    pricing_ = {"request": "0", "image": "0"}
    if prompt is not None:
        pricing_["prompt"] = prompt
    if completion is not None:
        pricing_["completion"] = completion
    return {"id": model_id, "name": model_id, "context_length": 128000, "pricing": pricing_}


MODELS = [
    model("openai/gpt-4o", "0.0000025", "0.00001"),  # seeded at 2.5 / 10: unchanged
    model("openai/gpt-4o-mini", "0.0000002", "0.0000008"),  # seeded at 0.15 / 0.6: updated
    model("Acme/New-Model", "0.000000125", "0.000000375"),  # new
    model("anthropic/claude-3-opus", "0.000015", "0.000075"),  # an admin's price: kept
    model("openrouter/auto", "-1", "-1"),  # variable price router: skipped
    model("acme/no-completion-price", "0.000001", None),  # skipped
    {"id": "acme/no-pricing", "name": "no pricing"},  # skipped
    model("meta-llama/llama-3.1-8b-instruct:free", "0", "0"),  # new, free
]


@pytest.fixture
def admin_price():
    price = ModelPrice.objects.get(provider="openrouter", model="anthropic/claude-3-opus")
    price.prompt_per_million, price.completion_per_million = Decimal("14"), Decimal("70")
    price.source = "admin"
    price.save()
    return price


def prices() -> dict[str, tuple[Decimal, Decimal, str]]:
    return {
        p.model: (p.prompt_per_million, p.completion_per_million, p.source)
        for p in ModelPrice.objects.filter(provider="openrouter")
    }


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body",
    [
        {"data": MODELS, "total_count": len(MODELS), "links": {"next": None}},
        {"data": MODELS},  # the older shape
    ],
)
def test_sync_model_prices(http, settings, admin_price, body):
    http.get(
        MODELS_URL,
        json=body,
        match=[matchers.request_kwargs_matcher({"timeout": settings.LLM_TIMEOUT})],
    )
    before = prices()

    out = run("sync_model_prices")

    after = prices()
    assert after["acme/new-model"] == (Decimal("0.125"), Decimal("0.375"), "openrouter")
    assert after["openai/gpt-4o-mini"] == (Decimal("0.2"), Decimal("0.8"), "openrouter")
    assert after["openai/gpt-4o"] == (Decimal("2.5"), Decimal("10"), "seed")
    assert after["anthropic/claude-3-opus"] == (Decimal("14"), Decimal("70"), "admin")
    assert after["meta-llama/llama-3.1-8b-instruct:free"] == (Decimal(0), Decimal(0), "openrouter")
    assert "openrouter/auto" not in after
    assert "acme/no-completion-price" not in after
    assert set(after) - set(before) == {"acme/new-model", "meta-llama/llama-3.1-8b-instruct:free"}
    assert "created 2, updated 1, unchanged 1, skipped 3" in out
    assert "kept (admin) 1" in out
    assert "an admin's price wins" in out and "anthropic/claude-3-opus" in out
    # The price cache is dropped: the next call is priced with the new price.
    assert price_table.price_for("openrouter", "acme/new-model").prompt_per_million == Decimal(
        "0.125"
    )


@pytest.mark.parametrize(
    ("per_token", "per_million"),
    [
        ("0.0000025", Decimal("2.5")),
        ("0.00000015", Decimal("0.15")),
        ("0.000000000001", Decimal("0.000001")),
        ("0.00003", Decimal("30")),
        ("0", Decimal("0")),
        ("-1", None),
        ("", None),
        ("NaN", None),
        ("abc", None),
        (None, None),
    ],
)
def test_per_token_prices_convert_exactly(per_token, per_million):
    from llm_providers.management.commands.sync_model_prices import read_prices

    listed, skipped = read_prices({"data": [model("a/b", per_token, "0.000001")]})
    if per_million is None:
        assert (listed, skipped) == ({}, 1)
    else:
        assert listed == {"a/b": (per_million, Decimal("1"))}
        assert str(listed["a/b"][0].normalize()) == str(per_million.normalize())


@pytest.mark.django_db
def test_sync_dry_run_changes_nothing(http, admin_price):
    http.get(MODELS_URL, json={"data": MODELS})
    before = prices()

    out = run("sync_model_prices", "--dry-run")

    assert prices() == before
    assert "would create acme/new-model: $0.125/M / $0.375/M" in out
    assert "would update openai/gpt-4o-mini: $0.15/M / $0.6/M -> $0.2/M / $0.8/M" in out
    assert "Dry run, nothing changed: would have created 2, updated 1, unchanged 1" in out


@pytest.mark.django_db
def test_sync_twice_is_unchanged_the_second_time(http):
    http.get(MODELS_URL, json={"data": MODELS[:3]})
    run("sync_model_prices")
    assert "created 0, updated 0, unchanged 3, skipped 0" in run("sync_model_prices")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("response", "message"),
    [
        ({"status": 500, "json": {"error": {"code": 500}}}, "answered HTTP 500"),
        ({"status": 429, "body": "slow down"}, "answered HTTP 429"),
        ({"body": "<html>oops</html>"}, "did not answer JSON"),
        ({"json": [{"id": "a/b"}]}, "Malformed /models answer"),
        ({"json": {"models": []}}, "Malformed /models answer"),
        ({"json": {"data": "nope"}}, "Malformed /models answer"),
        ({"body": requests.ConnectionError("connection refused")}, "Could not reach"),
    ],
)
def test_sync_fails_clearly_and_changes_nothing(http, response, message):
    http.get(MODELS_URL, **response)
    before = prices()
    with pytest.raises(CommandError, match=message):
        run("sync_model_prices")
    assert prices() == before
