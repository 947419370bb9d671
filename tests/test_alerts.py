"""Budget alerts (SPEC §7): a signal and emails when a user's spend crosses a fraction of their
cost limit, once per threshold, user and period, also under concurrency; never failing a call."""

import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from django.db import connection

from llm_providers.accounting import alerts
from llm_providers.accounting.budgets import summary_row
from llm_providers.accounting.ledger import add_to_summary, record_call
from llm_providers.exceptions import BudgetExceeded
from llm_providers.main_text_generation import llm_generate
from llm_providers.models import BudgetAlert, UsageBudget, UsageSummary, billing_period
from llm_providers.signals import budget_threshold_reached
from tests.accounting.support import gemini_success, openrouter_success
from tests.conftest import GEMINI_URL
from tests.test_router import gemini_ok

GEMINI_GENERATE = f"{GEMINI_URL}/models/gemini-2.5-flash:generateContent"


@pytest.fixture
def received():
    """The signal's calls, as (threshold, spent, cost_limit, user, period)."""
    calls, lock = [], threading.Lock()

    def receiver(sender, user, period, threshold, spent, cost_limit, **kwargs):
        with lock:
            calls.append((threshold, spent, cost_limit, user, period))

    budget_threshold_reached.connect(receiver)
    yield calls
    budget_threshold_reached.disconnect(receiver)


@pytest.fixture
def writer(django_user_model):
    return django_user_model.objects.create_user("writer", email="writer@example.com")


@pytest.fixture(autouse=True)
def admins(settings):
    settings.ADMINS = [("Ops", "ops@example.com")]


@pytest.mark.django_db
def test_crossing_a_threshold_sends_a_signal_and_emails_once(writer, received, mailoutbox):
    UsageBudget.objects.create(user=writer, monthly_cost_limit=Decimal("0.001"))
    for _ in range(2):  # $0.0004 each: 40%, then 80%
        record_call("r", writer.pk, [openrouter_success(cost="0.0004")])
    assert [r[0] for r in received] == [Decimal("0.8")]
    _, spent, limit, user, period = received[0]
    assert (spent, limit, user, period) == (
        Decimal("0.0008"),
        Decimal("0.001"),
        writer,
        billing_period(),
    )
    assert sorted(m.to[0] for m in mailoutbox) == ["ops@example.com", "writer@example.com"]
    assert "80%" in mailoutbox[0].subject and "$0.0008" in mailoutbox[0].body

    record_call("r", writer.pk, [openrouter_success(cost="0.0001")])  # 90%: nothing new
    assert len(received) == 1 and len(mailoutbox) == 2

    record_call("r", writer.pk, [openrouter_success(cost="0.0002")])  # 110%
    assert [r[0] for r in received] == [Decimal("0.8"), Decimal("1")]
    assert BudgetAlert.objects.filter(user=writer).count() == 2
    assert len(mailoutbox) == 4


@pytest.mark.django_db
def test_one_call_crossing_two_thresholds_sends_both(writer, received):
    UsageBudget.objects.create(user=writer, monthly_cost_limit=Decimal("0.001"))
    record_call("r", writer.pk, [openrouter_success(cost="0.002")])
    assert sorted(r[0] for r in received) == [Decimal("0.8"), Decimal("1")]


@pytest.mark.django_db
def test_a_user_without_an_address_only_the_admins_are_emailed(
    django_user_model, received, mailoutbox
):
    user = django_user_model.objects.create_user("noaddress")
    UsageBudget.objects.create(user=user, monthly_cost_limit=Decimal("0.001"))
    record_call("r", user.pk, [openrouter_success(cost="0.0009")])
    assert [m.to for m in mailoutbox] == [["ops@example.com"]]


@pytest.mark.django_db
def test_no_alert_without_a_cost_limit_or_below_the_thresholds(writer, received, settings):
    record_call("r", writer.pk, [openrouter_success(cost="5")])  # unlimited
    UsageBudget.objects.create(user=writer, monthly_cost_limit=Decimal("100"))
    record_call("r", writer.pk, [gemini_success()])
    settings.LLM_BUDGET_ALERT_THRESHOLDS = []
    record_call("r", writer.pk, [openrouter_success(cost="200")])
    assert received == []


@pytest.mark.django_db
def test_configured_thresholds_are_used(writer, received, settings):
    settings.LLM_BUDGET_ALERT_THRESHOLDS = [0.5, "bad", -1]
    UsageBudget.objects.create(user=writer, monthly_cost_limit=Decimal("0.001"))
    record_call("r", writer.pk, [openrouter_success(cost="0.0006")])
    assert [r[0] for r in received] == [Decimal("0.5")]


@pytest.mark.django_db
def test_a_failing_receiver_or_mail_server_never_fails_the_call(
    writer, monkeypatch, caplog, mailoutbox
):
    def broken(**kwargs):
        raise RuntimeError("receiver bug")

    budget_threshold_reached.connect(broken)
    monkeypatch.setattr(alerts, "mail_admins", lambda *a, **k: 1 / 0)
    try:
        UsageBudget.objects.create(user=writer, monthly_cost_limit=Decimal("0.001"))
        rows = record_call("r", writer.pk, [openrouter_success(cost="0.002")])
    finally:
        budget_threshold_reached.disconnect(broken)
    assert len(rows) == 1
    assert "receiver bug" in caplog.text and "Could not email" in caplog.text
    assert BudgetAlert.objects.filter(user=writer).count() == 2  # sent (as far as it could)


@pytest.mark.django_db
def test_alerts_after_calls_through_the_router(use_keys, http, writer, received):
    use_keys("gemini")
    # Each call costs $0.000009; 80% of $0.00002 is crossed by the second.
    UsageBudget.objects.create(user=writer, monthly_cost_limit=Decimal("0.00002"))
    http.post(GEMINI_GENERATE, json=gemini_ok())
    llm_generate("a", user_id=writer, max_tokens=1)
    assert received == []
    llm_generate("b", user_id=writer, max_tokens=1)
    assert [r[0] for r in received] == [Decimal("0.8")]


def _concurrently(count, fn):
    start = threading.Barrier(count)

    def task(i):
        start.wait()
        try:
            return fn(i)
        except BudgetExceeded:
            return None
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(task, range(count)))


@pytest.mark.django_db(transaction=True)
def test_racing_checks_send_each_alert_exactly_once(writer, received, mailoutbox):
    UsageBudget.objects.create(user=writer, monthly_cost_limit=Decimal("0.001"))
    period = billing_period()
    summary_row(writer.pk, period)
    add_to_summary(writer.pk, period, {"total_cost": Decimal("0.0015")})

    sent = _concurrently(12, lambda i: alerts.check(writer.pk, period))

    assert sorted(a.threshold for batch in sent for a in batch) == [Decimal("0.8"), Decimal("1")]
    assert sorted(r[0] for r in received) == [Decimal("0.8"), Decimal("1")]
    assert len(mailoutbox) == 4


@pytest.mark.django_db(transaction=True)
def test_concurrent_calls_crossing_a_threshold_alert_once(use_keys, http, writer, received):
    use_keys("gemini")
    # $0.000009 a call, a reservation of $0.0000151: nine calls fit in $0.0001 and cross the
    # 80% mark, while other calls are recorded at the same time. Calls refused while others
    # hold reservations are tried again.
    UsageBudget.objects.create(user=writer, monthly_cost_limit=Decimal("0.0001"))
    http.post(GEMINI_GENERATE, json=gemini_ok())

    def calls(i):
        for _ in range(8):
            with contextlib.suppress(BudgetExceeded):
                llm_generate("x", user_id=writer.pk, max_tokens=4)

    _concurrently(8, calls)
    assert UsageSummary.objects.get(user=writer).total_cost >= Decimal("0.00008")
    assert [r[0] for r in received] == [Decimal("0.8")]
    assert BudgetAlert.objects.get(user=writer).threshold == Decimal("0.8")
