"""The admin's side of SPEC §8's permissions: the same three staff users as
``tests/api/test_permissions.py`` (no permissions, view-only, full) on the key admin and the cost
report page, so the API and the admin answer alike.

Also the report page's dates: a range it cannot report is a form error, never a 500.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from llm_providers.keys import resolve_key
from llm_providers.models import APIKey
from tests.conftest import FAKE_KEYS

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:llm_providers_apikey_changelist")
ADD = reverse("admin:llm_providers_apikey_add")
REPORT = reverse("admin:llm_providers_cost_report")
NEW_OPENROUTER = "sk-or-v1-intruder0openrouter0key0000000intr"
VIEW = ["view_apikey", "view_ledgerentry"]
FULL = [*VIEW, "add_apikey", "change_apikey", "delete_apikey"]


@pytest.fixture(autouse=True)
def fast_password_hasher(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def login_staff(client, django_user_model):
    """``login_staff(["view_apikey", ...])``: the test client, logged in as a staff user with
    those permissions of the app."""

    def _login(codenames: list[str], **flags):
        user = django_user_model.objects.create_user("staffer", **{"is_staff": True, **flags})
        user.user_permissions.set(
            Permission.objects.filter(
                content_type__app_label="llm_providers", codename__in=codenames
            )
        )
        client.force_login(user)
        return client

    return _login


@pytest.fixture
def current_key():
    key = APIKey(provider="openrouter", label="real", active=True)
    key.set_secret(FAKE_KEYS["openrouter"])
    key.save()
    return key


def change_url(key: APIKey) -> str:
    return reverse("admin:llm_providers_apikey_change", args=[key.pk])


def delete_url(key: APIKey) -> str:
    return reverse("admin:llm_providers_apikey_delete", args=[key.pk])


def add(client):
    form = {"provider": "openrouter", "label": "new", "secret": NEW_OPENROUTER, "active": "on"}
    return client.post(ADD, form)


def activate_by_action(client, key: APIKey):
    return client.post(CHANGELIST, {"action": "activate", "_selected_action": [str(key.pk)]})


@pytest.fixture
def spare_key():
    key = APIKey(provider="openrouter", label="spare", active=False)
    key.set_secret("sk-or-v1-spare0openrouter0key0000000000spr1")
    key.save()
    return key


def test_staff_without_permissions_are_refused_every_key_page_and_the_report(
    login_staff, current_key, spare_key
):
    client = login_staff([])
    for response in (
        client.get(CHANGELIST),
        client.get(ADD),
        add(client),
        client.get(change_url(current_key)),
        activate_by_action(client, spare_key),
        client.post(delete_url(current_key), {"post": "yes"}),
        client.get(REPORT),
        client.get(REPORT, {"format": "csv"}),
    ):
        assert response.status_code == 403
    assert resolve_key("openrouter").key_id == current_key.pk
    assert APIKey.objects.count() == 2


def test_view_only_staff_see_keys_and_the_report_but_change_nothing(
    login_staff, current_key, spare_key
):
    client = login_staff(VIEW)
    assert client.get(CHANGELIST).status_code == 200
    page = client.get(change_url(current_key))
    assert page.status_code == 200 and 'name="secret"' not in page.content.decode()
    assert client.get(REPORT).status_code == 200
    assert client.get(REPORT, {"format": "csv"}).status_code == 200

    assert client.get(ADD).status_code == 403
    assert add(client).status_code == 403
    assert client.post(change_url(spare_key), {"active": "on"}).status_code == 403
    assert client.post(delete_url(current_key), {"post": "yes"}).status_code == 403
    assert resolve_key("openrouter").key_id == current_key.pk
    assert APIKey.objects.count() == 2


def test_view_only_staff_cannot_activate_a_key_by_an_action(login_staff, current_key, spare_key):
    client = login_staff(VIEW)
    activate_by_action(client, spare_key)
    spare_key.refresh_from_db()
    assert not spare_key.active
    assert resolve_key("openrouter").key_id == current_key.pk


@pytest.mark.parametrize(
    ("codenames", "flags"), [(FULL, {}), ([], {"is_superuser": True})], ids=["full", "superuser"]
)
def test_full_permissions_and_superusers_manage_keys_and_read_the_report(
    login_staff, current_key, spare_key, codenames, flags
):
    client = login_staff(codenames, **flags)
    assert client.get(REPORT).status_code == 200
    assert add(client).status_code == 302
    new = APIKey.objects.get(label="new")
    assert resolve_key("openrouter").key_id == new.pk
    assert activate_by_action(client, spare_key).status_code == 302
    assert resolve_key("openrouter").key_id == spare_key.pk
    assert client.post(delete_url(current_key), {"post": "yes"}).status_code == 302
    assert not APIKey.objects.filter(pk=current_key.pk).exists()


def test_the_report_needs_the_ledger_not_the_key_permission(login_staff):
    client = login_staff(["view_apikey", "add_apikey", "change_apikey", "delete_apikey"])
    assert client.get(REPORT).status_code == 403


# --- The report page's dates --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ({"start": "2026-01-01", "end": "9999-12-31"}, "end", "at most 10 years"),
        ({"start": "9999-12-31", "end": "9999-12-31"}, "end", "before 9999-12-31"),
        ({"start": "0001-01-01", "end": "2026-01-31"}, "end", "at most 10 years"),
        ({"start": "2026-02-01", "end": "2026-01-31"}, "end", "before the start"),
    ],
    ids=["end-9999-12-31", "the-last-day", "start-year-1", "end-before-start"],
)
def test_a_range_the_report_cannot_cover_is_a_form_error(admin_client, query, field, message):
    for extra in ({}, {"format": "csv"}):
        response = admin_client.get(REPORT, {**query, **extra})
        assert response.status_code == 200
        assert response["Content-Type"].startswith("text/html")
        form = response.context["form"]
        assert any(message in error for error in form.errors[field]), form.errors
        assert response.context["tables"] == []


def test_ten_years_to_the_day_are_reported(admin_client):
    response = admin_client.get(REPORT, {"start": "2016-01-01", "end": "2025-12-31"})
    assert response.status_code == 200
    assert not response.context["form"].errors
