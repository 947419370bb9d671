"""Releasing reservations by hand (SPEC §7): what no call in flight holds, never below zero,
kept as adjustments with the admin's reason; through the admin, with change permission."""

from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from llm_providers.accounting import budgets, ledger
from llm_providers.models import UsageAdjustment, UsageBudget, UsageSummary, billing_period
from tests.accounting.support import assert_ledger_invariants, gemini_success
from tests.test_usage_admin import form_values

pytestmark = pytest.mark.django_db


@pytest.fixture
def writer(django_user_model):
    user = django_user_model.objects.create_user("writer")
    UsageBudget.objects.create(user=user, monthly_cost_limit=Decimal("1"))
    return user


def stuck(user, cost="0.24", calls=3) -> UsageSummary:
    """Reservations no row in flight holds (a process died before writing its row)."""
    for _ in range(calls):
        budgets.reserve(user.pk, Decimal(cost) / calls)
    return UsageSummary.objects.get(user=user, period=billing_period())


def test_release_frees_what_no_call_in_flight_holds(writer, admin_user):
    summary = stuck(writer)
    in_flight = budgets.reserve(writer.pk, Decimal("0.05"))
    row = ledger.begin_attempt(
        "req",
        writer.pk,
        provider="gemini",
        model="gemini-2.5-flash",
        is_fallback=False,
        estimate=Decimal("0.05"),
        reservation=in_flight,
    )

    adjustments = ledger.release_reservations(
        summary.pk, reason="worker killed", created_by_id=admin_user.pk
    )

    summary.refresh_from_db()
    assert (summary.reserved_cost, summary.reserved_calls) == (Decimal("0.05"), 1)
    assert {(a.field, a.old_value, a.new_value, a.delta) for a in adjustments} == {
        ("reserved_cost", "0.29", "0.05", "-0.24"),
        ("reserved_calls", "4", "1", "-3"),
    }
    assert {a.reason for a in adjustments} == {"worker killed"}
    assert_ledger_invariants()
    # The call in flight releases its own when it ends, down to zero, not below.
    ledger.finish_attempt(row, gemini_success(), reservation=in_flight)
    summary.refresh_from_db()
    assert (summary.reserved_cost, summary.reserved_calls) == (0, 0)
    assert (
        budgets.remaining(writer.pk, summary)["cost_remaining"] == Decimal(1) - summary.total_cost
    )


def test_nothing_to_release_writes_nothing(writer):
    summary = UsageSummary.objects.create(user=writer, period=billing_period())
    assert ledger.release_reservations(summary.pk, reason="x") == []
    assert not UsageAdjustment.objects.exists()


def change_url(summary):
    return reverse("admin:llm_providers_usagesummary_change", args=[summary.pk])


def test_an_admin_releases_reservations_in_the_admin(admin_client, admin_user, writer):
    summary = stuck(writer)
    page = admin_client.get(change_url(summary))
    assert 'name="release_reservations"' in page.content.decode()
    data = form_values(page) | {"release_reservations": "on", "reason": "stuck after a deploy"}

    response = admin_client.post(change_url(summary), data, follow=True)

    assert response.status_code == 200
    assert "Reservations released" in response.content.decode()
    summary.refresh_from_db()
    assert (summary.reserved_cost, summary.reserved_calls) == (0, 0)
    kept = UsageAdjustment.objects.filter(summary=summary).order_by("field")
    assert [(a.field, a.delta, a.reason, a.created_by) for a in kept] == [
        ("reserved_calls", "-3", "stuck after a deploy", admin_user),
        ("reserved_cost", "-0.24", "stuck after a deploy", admin_user),
    ]
    # What the user may spend again (usage/'s budget) no longer counts the reservations.
    assert budgets.remaining(writer.pk, summary)["cost_remaining"] == Decimal(1)


def test_a_release_needs_a_reason(admin_client, writer):
    summary = stuck(writer)
    data = form_values(admin_client.get(change_url(summary))) | {
        "release_reservations": "on",
        "reason": "",
    }
    response = admin_client.post(change_url(summary), data)
    assert response.status_code == 200  # the form again, with its error
    summary.refresh_from_db()
    assert summary.reserved_calls == 3


def test_staff_without_change_permission_cannot_release(client, django_user_model, writer):
    summary = stuck(writer)
    viewer = django_user_model.objects.create_user("viewer", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_usagesummary"))
    client.force_login(viewer)
    page = client.get(change_url(summary))
    assert 'name="release_reservations"' not in page.content.decode()
    refused = client.post(change_url(summary), {"release_reservations": "on", "reason": "x"})
    assert refused.status_code == 403
    summary.refresh_from_db()
    assert summary.reserved_calls == 3
