"""The usage admin: the read-only ledger, summaries corrected through adjustments, prices,
budgets, and the cost report page (chart and CSV)."""

import re
from datetime import UTC, datetime
from decimal import Decimal
from html.parser import HTMLParser

import pytest
from django.contrib.auth.models import Permission
from django.db.models import Count, Q, Sum
from django.urls import reverse

from llm_providers.accounting import ledger, prices
from llm_providers.accounting.money import ZERO
from llm_providers.accounting.reports import month_bounds
from llm_providers.admin.common import usd
from llm_providers.models import (
    PROVIDER_NAMES,
    LedgerEntry,
    ModelPrice,
    UsageAdjustment,
    UsageBudget,
    UsageSummary,
    billing_period,
)
from llm_providers.results import Attempt, Completion, Usage

LEDGER = reverse("admin:llm_providers_ledgerentry_changelist")
SUMMARIES = reverse("admin:llm_providers_usagesummary_changelist")
PRICES = reverse("admin:llm_providers_modelprice_changelist")
BUDGETS = reverse("admin:llm_providers_usagebudget_changelist")
REPORT = "/admin/llm_providers/cost-report/"


@pytest.fixture(autouse=True)
def fast_password_hasher(settings):
    # admin_client logs in a freshly created superuser; the default hasher is slow by design.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user("alice")


@pytest.fixture
def bob(django_user_model):
    return django_user_model.objects.create_user("bob")


def record(user, provider="openrouter", model="openai/gpt-4o", tokens=(10, 9), cost=None, ok=True):
    """One call through the real recorder; ``cost`` is the provider-reported cost."""
    prompt, completion = tokens
    used = Usage(prompt, completion, prompt + completion, cost)
    attempt = Attempt(
        provider=provider,
        model=model,
        is_fallback=False,
        completion=Completion("text", provider, model, used) if ok else None,
        partial_usage=None if ok else used,
        requests=1,
        requested_model=model,
    )
    [entry] = ledger.record_call(f"req-{user.pk if user else 'sys'}", user and user.pk, [attempt])
    return entry


def entry(user, provider, model, tokens, cost, when, status="success"):
    """A ledger row written directly, at a chosen moment (for the date-range report)."""
    return LedgerEntry.objects.create(
        request_id=f"r{LedgerEntry.objects.count()}",
        user=user,
        provider=provider,
        model=model,
        total_tokens=tokens,
        cost=Decimal(cost),
        cost_source="provider",
        status=status,
        period=billing_period(when),
        created_at=when,
    )


class FormFields(HTMLParser):
    """The values a browser would submit from a page's form controls."""

    def __init__(self):
        super().__init__()
        self.values: dict[str, str] = {}
        self._textarea: str | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        name = attrs.get("name")
        if tag == "input" and name and attrs.get("type") not in ("submit", "checkbox"):
            self.values[name] = attrs.get("value") or ""
        elif tag == "textarea" and name:
            self._textarea = name
            self.values[name] = ""

    def handle_data(self, data):
        if self._textarea:
            self.values[self._textarea] += data

    def handle_endtag(self, tag):
        if tag == "textarea":
            self._textarea = None


def form_values(response) -> dict[str, str]:
    parser = FormFields()
    parser.feed(response.content.decode())
    return parser.values


def change_url(summary: UsageSummary) -> str:
    return reverse("admin:llm_providers_usagesummary_change", args=[summary.pk])


def assert_summary_explained(summary: UsageSummary) -> None:
    """Each column = the sum of its ledger rows + the sum of its adjustments' deltas."""
    summary.refresh_from_db()
    rows = LedgerEntry.objects.filter(user_id=summary.user_id, period=summary.period)
    adjustments = list(summary.adjustments.all())
    for name in PROVIDER_NAMES:
        sums = rows.filter(provider=name).aggregate(
            calls=Count("id", filter=Q(status="success")),
            tokens=Sum("total_tokens"),
            cost=Sum("cost"),
        )
        for metric, ledger_sum in (
            ("calls", sums["calls"]),
            ("tokens", sums["tokens"] or 0),
            ("cost", sums["cost"] or ZERO),
        ):
            field = f"{name}_{metric}"
            adjusted = sum((Decimal(a.delta) for a in adjustments if a.field == field), Decimal(0))
            assert getattr(summary, field) == ledger_sum + adjusted, field
    for metric in ("calls", "tokens", "cost"):
        assert getattr(summary, f"total_{metric}") == sum(
            getattr(summary, f"{name}_{metric}") for name in PROVIDER_NAMES
        ), metric


# --- The ledger -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_ledger_is_view_only(admin_client, alice):
    row = record(alice, cost=Decimal("0.00042"))
    change = reverse("admin:llm_providers_ledgerentry_change", args=[row.pk])

    changelist = admin_client.get(LEDGER)
    assert changelist.status_code == 200
    html = changelist.content.decode()
    assert "$0.00042" in html
    assert reverse("admin:llm_providers_ledgerentry_add") not in html
    assert 'value="delete_selected"' not in html

    view = admin_client.get(change)
    assert view.status_code == 200
    assert "View ledger entry" in view.content.decode()
    assert 'name="_save"' not in view.content.decode()

    assert admin_client.get(reverse("admin:llm_providers_ledgerentry_add")).status_code == 403
    assert admin_client.post(reverse("admin:llm_providers_ledgerentry_add"), {}).status_code == 403
    refused = admin_client.post(change, {"model": "tampered", "cost": "0"})
    assert refused.status_code == 403
    deleted = admin_client.post(
        reverse("admin:llm_providers_ledgerentry_delete", args=[row.pk]), {"post": "yes"}
    )
    assert deleted.status_code == 403
    row.refresh_from_db()
    assert (row.model, row.cost) == ("openai/gpt-4o", Decimal("0.00042"))
    assert LedgerEntry.objects.count() == 1


@pytest.mark.django_db
def test_ledger_filters_and_search(admin_client, alice, bob):
    march = datetime(2026, 3, 5, 12, tzinfo=UTC)
    april = datetime(2026, 4, 5, 12, tzinfo=UTC)
    a = entry(alice, "gemini", "gemini-2.5-flash", 10, "0.1", march)
    b = entry(bob, "openrouter", "openai/gpt-4o", 20, "0.2", march, status="error")
    c = entry(None, "openrouter", "openai/gpt-4o-mini", 30, "0.3", april)

    def shown(query: str) -> set[int]:
        response = admin_client.get(LEDGER + query)
        assert response.status_code == 200
        return {row.pk for row in response.context["cl"].result_list}

    assert shown("") == {a.pk, b.pk, c.pk}
    assert shown("?provider__exact=openrouter") == {b.pk, c.pk}
    assert shown("?status__exact=error") == {b.pk}
    assert shown(f"?user__id__exact={alice.pk}") == {a.pk}
    assert shown("?user__isnull=True") == {c.pk}
    assert shown("?model=openai/gpt-4o") == {b.pk}
    assert shown("?created_at__year=2026&created_at__month=3") == {a.pk, b.pk}
    assert shown("?q=bob") == {b.pk}
    assert shown(f"?q={c.request_id}") == {c.pk}
    assert shown("?provider__exact=openrouter&created_at__year=2026&created_at__month=4") == {c.pk}
    # The user filter offers the users who have rows, and system usage.
    html = admin_client.get(LEDGER).content.decode()
    assert f"?user__id__exact={alice.pk}" in html
    assert "(system)" in html


@pytest.fixture
def ollama(settings):
    """A custom provider with a label of its own."""
    settings.LLM_CUSTOM_PROVIDERS = [
        {
            "name": "ollama",
            "label": "Local Ollama",
            "base_url": "http://127.0.0.1:11434/v1",
            "default_model": "llama3.2",
            "requires_key": False,
        }
    ]


@pytest.mark.django_db
@pytest.mark.usefixtures("ollama")
def test_ledger_list_shows_the_columns_that_matter_with_provider_labels(admin_client, alice, bob):
    when = datetime(2026, 3, 5, 12, 30, 59, tzinfo=UTC)
    ok = entry(alice, "openrouter", "anthropic/claude-3.5-sonnet", 19, "0.000123", when)
    LedgerEntry.objects.filter(pk=ok.pk).update(prompt_tokens=10, completion_tokens=9)
    fallback = entry(bob, "ollama", "llama3.2", 7, "0", when)
    LedgerEntry.objects.filter(pk=fallback.pk).update(is_fallback=True)
    failed = entry(None, "gone", "m", 3, "0.5", when, status="error")
    LedgerEntry.objects.filter(pk=failed.pk).update(
        error_code="rate_limited", error_message="OpenRouter answered HTTP 429"
    )

    response = admin_client.get(LEDGER)
    rows = {row.pk: row for row in response.context["cl"].result_list}
    assert set(rows) == {ok.pk, fallback.pk, failed.pk}
    model_admin = response.context["cl"].model_admin
    assert list(model_admin.list_display) == [
        "time",
        "user_display",
        "provider_display",
        "model_display",
        "status_display",
        "tokens_display",
        "cost_display",
    ]
    html = response.content.decode()
    # Labels, not registry names; a provider no longer registered keeps its name.
    assert model_admin.provider_display(rows[ok.pk]) == "OpenRouter"
    assert model_admin.provider_display(rows[failed.pk]) == "gone"
    assert model_admin.provider_display(rows[fallback.pk]).startswith("Local Ollama<span")
    # A fallback is a word beside its provider; no row carries a yes/no icon.
    assert 'class="llm-note"' in model_admin.provider_display(rows[fallback.pk])
    assert ">fallback</span>" in model_admin.provider_display(rows[fallback.pk])
    assert "fallback" not in model_admin.provider_display(rows[ok.pk])
    assert "icon-no.svg" not in html and "icon-yes.svg" not in html
    # A shortened model id with the whole id in the title; the time to the minute.
    assert model_admin.model_display(rows[ok.pk]) == (
        '<span class="llm-clip" title="anthropic/claude-3.5-sonnet">claude-3.5-sonnet</span>'
    )
    assert "2026-03-05" in model_admin.time(rows[ok.pk])
    assert ">12:30</span>" in model_admin.time(rows[ok.pk])
    # The error in words under the status, the message in its title.
    status = model_admin.status_display(rows[failed.pk])
    assert status.startswith("error<span") and ">rate limited</span>" in status
    assert 'title="OpenRouter answered HTTP 429"' in status
    assert model_admin.status_display(rows[ok.pk]) == "success"
    # Tokens in one column (prompt and completion in its title), the exact cost.
    assert model_admin.tokens_display(rows[ok.pk]) == (
        '<span title="10 prompt + 9 completion">19</span>'
    )
    assert model_admin.cost_display(rows[ok.pk]) == (
        '<span title="reported by the provider">$0.000123</span>'
    )
    assert "3 ledger entries" in html


@pytest.mark.django_db
def test_ledger_is_named_ledger_entries(admin_client, alice):
    assert LedgerEntry._meta.verbose_name_plural == "ledger entries"
    record(alice)
    html = admin_client.get(LEDGER).content.decode()
    assert "1 ledger entry" in html
    assert "1 ledger<" not in html


@pytest.mark.django_db
def test_ledger_fallback_filter_in_words(admin_client, alice):
    when = datetime(2026, 3, 5, 12, tzinfo=UTC)
    first = entry(alice, "gemini", "gemini-2.5-flash", 10, "0.1", when)
    second = entry(alice, "openrouter", "openai/gpt-4o", 10, "0.1", when)
    LedgerEntry.objects.filter(pk=second.pk).update(is_fallback=True)

    def shown(query: str) -> set[int]:
        return {row.pk for row in admin_client.get(LEDGER + query).context["cl"].result_list}

    assert shown("?is_fallback__exact=1") == {second.pk}
    assert shown("?is_fallback__exact=0") == {first.pk}
    html = admin_client.get(LEDGER).content.decode()
    assert "By fallback" in html
    assert "first choice" in html


@pytest.mark.django_db
def test_ledger_entry_page_shows_an_error_section_only_for_errors(admin_client, alice):
    when = datetime(2026, 3, 5, 12, tzinfo=UTC)
    ok = entry(alice, "openrouter", "openai/gpt-4o", 19, "0.25", when)
    failed = entry(alice, "huggingface", "meta-llama/x", 0, "0", when, status="error")
    LedgerEntry.objects.filter(pk=failed.pk).update(
        error_code="upstream_timeout", error_message="Hugging Face did not answer within 5s"
    )

    def page(row: LedgerEntry) -> str:
        response = admin_client.get(reverse("admin:llm_providers_ledgerentry_change", args=[row]))
        assert response.status_code == 200
        return response.content.decode()

    success, error = page(ok.pk), page(failed.pk)
    assert ">Error</h2>" not in success
    assert "Error code" not in success
    assert ">Error</h2>" in error
    assert "upstream_timeout" in error and "did not answer within 5s" in error
    # The provider by its label, the fallback flag in words, on the page and in its heading.
    assert "OpenRouter · openai/gpt-4o · success · 2026-03-05 12:00:00 UTC" in success
    assert '<div class="readonly">OpenRouter</div>' in success
    assert '<div class="readonly">Hugging Face</div>' in error
    assert "no: the first provider tried" in success
    assert "icon-no.svg" not in success


@pytest.mark.django_db
def test_an_interrupted_entry_shows_its_error_section(admin_client, alice):
    row = entry(alice, "gemini", "gemini-2.5-flash", 0, "0", datetime(2026, 3, 5, tzinfo=UTC))
    LedgerEntry.objects.filter(pk=row.pk).update(status="interrupted")
    html = admin_client.get(
        reverse("admin:llm_providers_ledgerentry_change", args=[row.pk])
    ).content.decode()
    assert ">Error</h2>" in html


# --- Summaries: corrections as adjustments --------------------------------------------------------


@pytest.mark.django_db
def test_summary_edit_applies_deltas_and_writes_adjustments(admin_client, admin_user, alice):
    record(alice, cost=Decimal("0.5"))  # openrouter: 1 call, 19 tokens, $0.5
    record(alice, provider="gemini", model="gemini-2.5-flash", tokens=(5, 3))  # priced $0.000009
    summary = UsageSummary.objects.get(user=alice)
    page = admin_client.get(change_url(summary))
    assert page.status_code == 200
    data = form_values(page)
    assert data["openrouter_cost"] == "0.5"  # shown exactly, without twelve trailing zeros
    assert data["initial-openrouter_cost"] == "0.5"

    data.update(openrouter_cost="0.3", openrouter_calls="0", reason="Refund for an outage")
    response = admin_client.post(change_url(summary), data)

    assert response.status_code == 302, response.content.decode()[:2000]
    summary.refresh_from_db()
    assert (summary.openrouter_calls, summary.openrouter_tokens, summary.openrouter_cost) == (
        0,
        19,
        Decimal("0.3"),
    )
    assert (summary.total_calls, summary.total_tokens, summary.total_cost) == (
        1,
        27,
        Decimal("0.300009"),
    )
    adjustments = {a.field: a for a in UsageAdjustment.objects.filter(summary=summary)}
    assert set(adjustments) == {"openrouter_cost", "openrouter_calls"}
    cost = adjustments["openrouter_cost"]
    assert (cost.old_value, cost.new_value, cost.delta) == ("0.5", "0.3", "-0.2")
    assert cost.reason == "Refund for an outage"
    assert cost.created_by == admin_user
    calls = adjustments["openrouter_calls"]
    assert (calls.old_value, calls.new_value, calls.delta) == ("1", "0", "-1")
    assert_summary_explained(summary)

    # The adjustments are listed, read-only, on the summary's page.
    html = admin_client.get(change_url(summary)).content.decode()
    assert "Refund for an outage" in html
    assert "openrouter_cost" in html
    assert 'name="adjustments-0-reason"' not in html


@pytest.mark.django_db
def test_a_call_recorded_while_the_form_is_open_is_not_lost(admin_client, alice):
    record(alice, cost=Decimal("0.5"))
    summary = UsageSummary.objects.get(user=alice)
    data = form_values(admin_client.get(change_url(summary)))

    # Meanwhile, a live call: +1 call, +19 tokens, +$0.25 on OpenRouter.
    record(alice, cost=Decimal("0.25"))

    # The admin lowers the cost they saw by $0.2, and adds 100 tokens; calls untouched.
    data.update(openrouter_cost="0.3", openrouter_tokens="119", reason="Correction")
    response = admin_client.post(change_url(summary), data, follow=True)

    assert response.status_code == 200
    summary.refresh_from_db()
    assert summary.openrouter_cost == Decimal("0.55")  # 0.5 + 0.25 (call) - 0.2 (edit)
    assert summary.openrouter_tokens == 19 + 19 + 100
    assert summary.openrouter_calls == 2  # not reset to the 1 the form was loaded with
    assert (summary.total_calls, summary.total_tokens, summary.total_cost) == (
        2,
        138,
        Decimal("0.55"),
    )
    cost = UsageAdjustment.objects.get(field="openrouter_cost")
    assert (cost.old_value, cost.new_value, cost.delta) == ("0.75", "0.55", "-0.2")
    assert not UsageAdjustment.objects.filter(field="openrouter_calls").exists()
    messages = [str(m) for m in response.context["messages"]]
    assert any("Calls were recorded while you edited" in m for m in messages)
    assert_summary_explained(summary)

    # Later calls add on top of the corrected value.
    record(alice, cost=Decimal("0.01"))
    summary.refresh_from_db()
    assert summary.openrouter_cost == Decimal("0.56")
    assert_summary_explained(summary)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("changes", "field", "error"),
    [
        ({"openrouter_calls": "-1"}, "openrouter_calls", "greater than or equal to 0"),
        ({"openrouter_tokens": "-5"}, "openrouter_tokens", "greater than or equal to 0"),
        ({"openrouter_cost": "-0.01"}, "openrouter_cost", "greater than or equal to 0"),
        ({"openrouter_cost": "0.1", "reason": ""}, "reason", "This field is required."),
        ({}, None, "Nothing was changed."),
    ],
)
def test_invalid_summary_edits_change_nothing(admin_client, alice, changes, field, error):
    record(alice, cost=Decimal("0.5"))
    summary = UsageSummary.objects.get(user=alice)
    data = form_values(admin_client.get(change_url(summary)))
    data.update({"reason": "why", **changes})

    response = admin_client.post(change_url(summary), data)

    assert response.status_code == 200
    form = response.context["adminform"].form
    errors = form.errors[field] if field else form.non_field_errors()
    assert any(error in e for e in errors), form.errors
    summary.refresh_from_db()
    assert (summary.openrouter_calls, summary.openrouter_cost) == (1, Decimal("0.5"))
    assert not UsageAdjustment.objects.exists()


@pytest.mark.django_db
def test_an_edit_below_zero_after_a_concurrent_correction_is_refused(admin_client, alice):
    record(alice, cost=Decimal("0.5"))
    summary = UsageSummary.objects.get(user=alice)
    data = form_values(admin_client.get(change_url(summary)))
    # Another admin takes $0.4 off meanwhile; taking $0.3 off what this page showed would
    # leave -$0.2.
    ledger.adjust_summary(summary.pk, {"openrouter_cost": Decimal("-0.4")}, reason="other")
    data.update(openrouter_cost="0.2", reason="mine")

    response = admin_client.post(change_url(summary), data)

    assert response.status_code == 200
    assert "below zero" in str(response.context["adminform"].form.errors["openrouter_cost"])
    summary.refresh_from_db()
    assert summary.openrouter_cost == Decimal("0.1")
    assert UsageAdjustment.objects.count() == 1


@pytest.mark.django_db
def test_a_correction_refused_at_save_time_writes_nothing(admin_client, alice, monkeypatch):
    # The conditional UPDATE found the row changed under it (another admin's correction
    # between validation and saving): the admin is told, and nothing is saved or logged.
    from django.contrib.admin.models import LogEntry
    from django.core.exceptions import ValidationError

    def refused(*args, **kwargs):
        raise ValidationError("The summary changed meanwhile")

    record(alice, cost=Decimal("0.5"))
    summary = UsageSummary.objects.get(user=alice)
    data = form_values(admin_client.get(change_url(summary)))
    data.update(openrouter_cost="0.4", reason="why")
    monkeypatch.setattr(ledger, "adjust_summary", refused)

    response = admin_client.post(change_url(summary), data, follow=True)

    assert response.redirect_chain == [(change_url(summary), 302)]
    assert [str(m) for m in response.context["messages"]] == ["The summary changed meanwhile"]
    summary.refresh_from_db()
    assert summary.openrouter_cost == Decimal("0.5")
    assert not LogEntry.objects.exists()


@pytest.mark.django_db
def test_staff_with_view_permission_only_see_summaries_read_only(client, django_user_model, alice):
    record(alice, cost=Decimal("0.5"))
    summary = UsageSummary.objects.get(user=alice)
    viewer = django_user_model.objects.create_user("viewer", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_usagesummary"))
    client.force_login(viewer)

    page = client.get(change_url(summary))

    assert page.status_code == 200
    html = page.content.decode()
    assert 'name="openrouter_cost"' not in html and 'name="reason"' not in html
    assert client.post(change_url(summary), {"openrouter_cost": "0"}).status_code == 403


@pytest.mark.django_db
def test_summaries_cannot_be_added_or_deleted_and_list_shows_spend(admin_client, alice):
    record(alice, cost=Decimal("0.5"))
    summary = UsageSummary.objects.get(user=alice)

    html = admin_client.get(SUMMARIES).content.decode()
    # OpenRouter's cost, with its calls and tokens under it; the providers by their labels.
    assert (
        '<td class="field-openrouter_column">$0.5<span class="llm-note">1 call</span>'
        '<span class="llm-note">19 tokens</span></td>'
    ) in html
    assert '<td class="field-gemini_column">$0<span class="llm-note">0 calls</span>' in html
    for label in ("Google Gemini", "OpenRouter", "Hugging Face", "Total"):
        assert f">{label}</a>" in html  # the columns' sortable headers
    assert reverse("admin:llm_providers_cost_report") in html
    assert admin_client.get(reverse("admin:llm_providers_usagesummary_add")).status_code == 403
    delete = reverse("admin:llm_providers_usagesummary_delete", args=[summary.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    assert UsageSummary.objects.filter(pk=summary.pk).exists()


def test_adjust_summary_refuses_unknown_columns():
    with pytest.raises(ValueError, match="total_cost"):
        ledger.adjust_summary(1, {"total_cost": Decimal(1)}, reason="x")


# --- Prices and budgets ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_price_saved_in_the_admin_is_marked_admin_and_used_at_once(admin_client):
    price = ModelPrice.objects.get(provider="gemini", model="gemini-2.5-flash")
    assert price.source == "seed"
    assert prices.price_for("gemini", "gemini-2.5-flash").prompt_per_million == Decimal("0.3")

    response = admin_client.post(
        reverse("admin:llm_providers_modelprice_change", args=[price.pk]),
        {
            "provider": "gemini",
            "model": "gemini-2.5-flash",
            "prompt_per_million": "0.5",
            "completion_per_million": "3",
        },
    )

    assert response.status_code == 302
    price.refresh_from_db()
    assert (price.prompt_per_million, price.completion_per_million, price.source) == (
        Decimal("0.5"),
        Decimal("3"),
        "admin",
    )
    assert prices.price_for("gemini", "gemini-2.5-flash").prompt_per_million == Decimal("0.5")


@pytest.mark.django_db
def test_adding_a_price_lowercases_the_model_and_refuses_duplicates(admin_client):
    add = reverse("admin:llm_providers_modelprice_add")
    data = {
        "provider": "openrouter",
        "model": " Acme/Big-Model ",
        "prompt_per_million": "1.5",
        "completion_per_million": "2",
    }
    assert admin_client.post(add, data).status_code == 302
    created = ModelPrice.objects.get(model="acme/big-model")
    assert (created.provider, created.source) == ("openrouter", "admin")

    again = admin_client.post(add, {**data, "model": "ACME/big-model"})
    assert again.status_code == 200
    assert "already exists" in str(again.context["adminform"].form.errors)

    html = admin_client.get(PRICES + "?source__exact=admin&q=acme").content.decode()
    assert "acme/big-model" in html
    assert "$1.5" in html
    assert "gemini-2.5-flash" not in html
    assert '<th class="field-provider_display"><a href="' in html
    assert ">OpenRouter</a></th>" in html  # the provider by its label


@pytest.mark.django_db
def test_negative_price_is_refused(admin_client):
    response = admin_client.post(
        reverse("admin:llm_providers_modelprice_add"),
        {
            "provider": "openrouter",
            "model": "acme/x",
            "prompt_per_million": "-1",
            "completion_per_million": "1",
        },
    )
    assert response.status_code == 200
    assert not ModelPrice.objects.filter(model="acme/x").exists()


@pytest.mark.django_db
def test_budgets_show_this_months_spend_and_what_is_left(admin_client, alice, bob):
    UsageBudget.objects.create(user=alice, monthly_cost_limit=Decimal("1"), monthly_call_limit=10)
    UsageBudget.objects.create(user=bob, monthly_cost_limit=None, monthly_call_limit=None)
    record(alice, cost=Decimal("0.25"))
    record(alice, cost=Decimal("0.05"), ok=False)  # billed, but not a call

    response = admin_client.get(BUDGETS)
    rows = {b.user.username: b for b in response.context["cl"].result_list}
    model_admin = response.context["cl"].model_admin
    alice_row = rows["alice"]
    assert model_admin.spent_display(alice_row) == "$0.3"
    assert model_admin.calls_display(alice_row) == 1
    assert model_admin.cost_remaining_display(alice_row) == "$0.7"
    assert model_admin.calls_remaining_display(alice_row) == "9"
    assert model_admin.cost_remaining_display(rows["bob"]) == "unlimited"
    assert model_admin.spent_display(rows["bob"]) == "$0"
    assert (
        model_admin.cost_use(alice_row)
        == '$0.3<span class="llm-note" title="$0.7 left">$0.7 left</span>'
    )
    assert (
        model_admin.calls_use(alice_row) == '1<span class="llm-note" title="9 left">9 left</span>'
    )
    html = response.content.decode()
    assert "$0.7 left" in html and "unlimited left" in html

    budget = UsageBudget.objects.get(user=alice)
    change = admin_client.get(reverse("admin:llm_providers_usagebudget_change", args=[budget.pk]))
    text = change.content.decode()
    assert f"{billing_period()}: $0.3 of $1 spent, $0.7 left; 1 of 10 calls, 9 left." in text
    assert "admin-autocomplete" in text  # the user is picked by autocomplete


# --- The cost report page -------------------------------------------------------------------------


@pytest.fixture
def march(alice, bob):
    """Ledger rows in March 2026, on its edges, and just outside it."""
    entry(alice, "openrouter", "openai/gpt-4o", 1000, "0.25", datetime(2026, 3, 2, 10, tzinfo=UTC))
    entry(
        alice,
        "gemini",
        "gemini-2.5-flash",
        10,
        "0.000001",
        datetime(2026, 3, 31, 23, 59, 59, tzinfo=UTC),
        status="error",
    )
    entry(
        bob,
        "huggingface",
        "meta-llama/llama-3.1-8b-instruct",
        1300,
        "0.000047",
        datetime(2026, 3, 15, tzinfo=UTC),
    )
    entry(None, "gemini", "gemini-2.5-flash", 500, "0.1", datetime(2026, 3, 1, tzinfo=UTC))
    entry(alice, "gemini", "gemini-2.5-pro", 5, "7", datetime(2026, 2, 28, 23, 59, 59, tzinfo=UTC))
    entry(bob, "gemini", "gemini-2.5-pro", 5, "9", datetime(2026, 4, 1, tzinfo=UTC))


def svgs(html: str) -> list[str]:
    return re.findall(r"<svg class=\"cost-chart\".*?</svg>", html, flags=re.S)


def report_rows(response) -> list[tuple]:
    [table] = response.context["tables"]
    return [(r["key"], r["calls"], r["tokens"], r["cost"]) for r in table["rows"]]


MARCH = {"start": "2026-03-01", "end": "2026-03-31"}


@pytest.mark.django_db
@pytest.mark.usefixtures("march")
def test_cost_report_page_totals_and_chart(admin_client):
    response = admin_client.get(REPORT, MARCH)

    assert response.status_code == 200
    [by_user] = response.context["tables"]  # by user unless asked otherwise
    assert by_user["group_by"] == "user"
    assert report_rows(response) == [
        ("alice", 1, 1010, "$0.250001"),
        ("(system)", 1, 500, "$0.1"),
        ("bob", 1, 1300, "$0.000047"),
    ]
    assert by_user["total"] == {"calls": 3, "tokens": 2810, "cost": "$0.350048", "share": "100.0%"}

    html = response.content.decode()
    assert "Cost report" in html
    assert '<div class="breadcrumbs">' in html
    summary = "<strong>$0.350048</strong> for 3 successful calls and 2810 tokens."
    assert summary in " ".join(html.split())
    [chart] = svgs(html)
    assert chart.count('<rect class="bar"') == 3
    for row in by_user["rows"]:
        assert f">{row['key']}</text>" in chart
        assert f">{row['cost']}</text>" in chart
    # Bars are drawn to scale: the biggest is the full width, the others in proportion.
    widths = re.findall(r'<rect class="bar" x="0" y="[\d.]+" width="([\d.]+)"', chart)
    assert widths == ["560.0", "224.0", "1.0"]
    assert "<script" not in html.split('id="content"')[1]


def main_table(html: str) -> str:
    """The page's report table (its heading, chart and rows)."""
    [table] = re.findall(r'<div class="module cost-report-table".*?</table>', html, flags=re.S)
    return table


@pytest.mark.django_db
@pytest.mark.usefixtures("march")
@pytest.mark.parametrize(
    ("group_by", "keys"),
    [
        ("user", ["alice", "(system)", "bob"]),
        ("provider", ["OpenRouter", "Google Gemini", "Hugging Face"]),
        ("model", ["openai/gpt-4o", "gemini-2.5-flash", "meta-llama/llama-3.1-8b-instruct"]),
        ("day", ["2026-03-01", "2026-03-02", "2026-03-15", "2026-03-31"]),
        ("key_owner", ["The platform's key"]),
    ],
)
def test_group_by_switches_the_page_to_that_grouping(admin_client, group_by, keys):
    response = admin_client.get(REPORT, {**MARCH, "group_by": group_by})

    [table] = response.context["tables"]
    assert table["group_by"] == group_by
    assert [row["key"] for row in table["rows"]] == keys
    assert table["total"]["cost"] == "$0.350048"
    html = response.content.decode()
    # One table and one chart: the grouping's, named by it; no other grouping's table.
    assert html.count('class="module cost-report-table"') == 1
    assert f'id="cost-by-{group_by}"' in html
    title = {"key_owner": "key owner"}.get(group_by, group_by)
    assert f"<h2>Cost by {title}</h2>" in html
    assert len(svgs(html)) == 1
    # The tabs name every grouping; the chosen one is the current page.
    current = re.findall(r'<span class="current" aria-current="page">(.*?)</span>', html)
    assert current == [{"key_owner": "Key owner"}.get(group_by, group_by.capitalize())]
    assert html.count("&amp;group_by=") >= 4
    assert f'<input type="hidden" name="group_by" value="{group_by}"' in html


@pytest.mark.django_db
@pytest.mark.usefixtures("march")
def test_each_grouping_gives_a_different_page(admin_client):
    tables = {
        group_by: main_table(
            admin_client.get(REPORT, {**MARCH, "group_by": group_by}).content.decode()
        )
        for group_by in ("user", "provider", "model", "day", "key_owner")
    }
    assert len(set(tables.values())) == 5
    assert ">openrouter<" not in tables["provider"]  # labels, not registry names
    assert ">OpenRouter</text>" in tables["provider"]  # in the chart too


@pytest.mark.django_db
@pytest.mark.usefixtures("march", "ollama")
def test_cost_report_names_custom_and_removed_providers(admin_client, alice):
    entry(alice, "ollama", "llama3.2", 5, "0.5", datetime(2026, 3, 3, tzinfo=UTC))
    entry(alice, "gone", "m", 5, "0.4", datetime(2026, 3, 3, tzinfo=UTC))

    response = admin_client.get(REPORT, {**MARCH, "group_by": "provider"})

    assert [row[0] for row in report_rows(response)] == [
        "Local Ollama",
        "gone",
        "OpenRouter",
        "Google Gemini",
        "Hugging Face",
    ]


@pytest.mark.django_db
@pytest.mark.usefixtures("march")
@pytest.mark.parametrize("group_by", ["user", "provider", "model", "day", "key_owner"])
def test_each_row_links_to_the_ledger_rows_it_sums(admin_client, group_by):
    response = admin_client.get(REPORT, {**MARCH, "group_by": group_by})
    [table] = response.context["tables"]

    assert table["rows"]
    for row in table["rows"]:
        ledger_page = admin_client.get(row["ledger_url"])
        assert ledger_page.status_code == 200
        shown = list(ledger_page.context["cl"].result_list)
        assert sum(e.total_tokens for e in shown) == row["tokens"], row["key"]
        assert usd(sum((e.cost for e in shown), ZERO)) == row["cost"], row["key"]
        assert sum(e.status == "success" for e in shown) == row["calls"], row["key"]


@pytest.mark.django_db
@pytest.mark.usefixtures("march")
def test_cost_report_csv_download(admin_client):
    response = admin_client.get(REPORT, {**MARCH, "group_by": "user", "format": "csv"})

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == (
        'attachment; filename="llm-costs-by-user-2026-03-01-to-2026-03-31.csv"'
    )
    assert response.content.decode() == (
        "key,calls,tokens,cost\nalice,1,1010,0.250001\n(system),1,500,0.1\nbob,1,1300,0.000047\n"
    )
    # The CSV keeps the registry's names, as the API's report does.
    by_provider = admin_client.get(REPORT, {**MARCH, "group_by": "provider", "format": "csv"})
    assert by_provider.content.decode() == (
        "key,calls,tokens,cost\nopenrouter,1,1000,0.25\ngemini,1,510,0.100001\n"
        "huggingface,1,1300,0.000047\n"
    )
    # The page links the CSV of the grouping shown, and only that one.
    page = admin_client.get(REPORT, {**MARCH, "group_by": "provider"}).content.decode()
    assert re.findall(r'href="(\?[^"]*format=csv)"', page) == [
        "?start=2026-03-01&amp;end=2026-03-31&amp;group_by=provider&amp;format=csv"
    ]


@pytest.mark.django_db
def test_cost_report_defaults_to_this_month_and_validates_dates(admin_client, alice):
    record(alice, cost=Decimal("0.125"))
    first, last = month_bounds()

    response = admin_client.get(REPORT)

    html = response.content.decode()
    assert f'value="{first.isoformat()}"' in html
    assert f'value="{last.isoformat()}"' in html
    assert report_rows(response) == [("alice", 1, 19, "$0.125")]

    bad = admin_client.get(REPORT, {"start": "2026-03-31", "end": "2026-03-01"})
    assert bad.status_code == 200
    assert bad.context["tables"] == []
    assert "The end date is before the start date." in bad.content.decode()
    assert 'class="cost-report-tabs"' not in bad.content.decode()
    assert admin_client.get(REPORT, {"start": "March"}).context["tables"] == []
    unknown = admin_client.get(REPORT, {**MARCH, "group_by": "colour"})
    assert unknown.context["tables"] == []
    assert "Select a valid choice" in unknown.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize("group_by", ["user", "provider", "day"])
def test_cost_report_with_no_calls_has_no_csv_button(admin_client, group_by):
    response = admin_client.get(
        REPORT, {"start": "2001-01-01", "end": "2001-01-31", "group_by": group_by}
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert "No calls in this period." in html
    assert svgs(html) == []
    assert "Download CSV" not in html
    assert "format=csv" not in html
    assert response.context["tables"][0]["csv_url"] is None


@pytest.mark.django_db
def test_cost_report_is_staff_only(client, django_user_model):
    response = client.get(REPORT)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))

    user = django_user_model.objects.create_user("someone", password="pw-for-test-only")
    client.force_login(user)
    assert client.get(REPORT).status_code == 302

    # Staff need to be allowed to see the ledger: the report shows everyone's spend.
    user.is_staff = True
    user.save()
    assert client.get(REPORT).status_code == 403
    user.user_permissions.add(Permission.objects.get(codename="view_ledgerentry"))
    assert client.get(REPORT).status_code == 200


@pytest.mark.django_db
def test_report_is_linked_from_the_ledger_and_the_app_index(admin_client):
    assert reverse("admin:llm_providers_cost_report") == REPORT
    assert REPORT in admin_client.get(LEDGER).content.decode()
    app_index = reverse("admin:app_list", args=["llm_providers"])
    assert REPORT in admin_client.get(app_index).content.decode()
