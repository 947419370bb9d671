"""The staff endpoints follow the admin's model permissions (SPEC §8), not ``is_staff`` alone.

``keys/`` needs the key model's view (list), add (POST), change (PATCH) and delete (DELETE)
permissions; ``reports/costs/`` needs viewing the ledger. A staff user without them was able to
list keys, add and activate a new key (deactivating the real one) and read every user's costs.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission

from llm_providers.keys import resolve_key
from llm_providers.models import APIKey
from tests.api.support import API, PASSWORD, assert_error, token_client
from tests.conftest import FAKE_KEYS

pytestmark = pytest.mark.django_db

KEYS = API + "keys/"
REPORT = API + "reports/costs/"
NEW_OPENROUTER = "sk-or-v1-intruder0openrouter0key0000000intr"
VIEW = ["view_apikey", "view_ledgerentry"]
FULL = [*VIEW, "add_apikey", "change_apikey", "delete_apikey"]


@pytest.fixture
def make_staff(django_user_model):
    """``make_staff("name", ["view_apikey", ...])``: a staff user with those permissions of
    the app, and a token client for them."""

    def _make(name: str, codenames: list[str], **flags):
        user = django_user_model.objects.create_user(
            name, password=PASSWORD, **{"is_staff": True, **flags}
        )
        user.user_permissions.set(
            Permission.objects.filter(
                content_type__app_label="llm_providers", codename__in=codenames
            )
        )
        return token_client(user)

    return _make


@pytest.fixture
def current_key():
    key = APIKey(provider="openrouter", label="real", active=True)
    key.set_secret(FAKE_KEYS["openrouter"])
    key.save()
    return key


@pytest.fixture
def spare_key():
    key = APIKey(provider="gemini", label="spare", active=False)
    key.set_secret(FAKE_KEYS["gemini"])
    key.save()
    return key


def add(client):
    return client.post(KEYS, {"provider": "openrouter", "key": NEW_OPENROUTER}, format="json")


def activate(client, key):
    return client.patch(f"{KEYS}{key.pk}/", {"active": True}, format="json")


def delete(client, key):
    return client.delete(f"{KEYS}{key.pk}/")


# --- Staff without permissions: the reproduction ---------------------------------------


def test_staff_without_permissions_can_neither_list_add_activate_delete_nor_read_costs(
    make_staff, current_key, spare_key
):
    intruder = make_staff("intruder", [])

    for response in (
        intruder.get(KEYS),
        add(intruder),
        activate(intruder, spare_key),
        delete(intruder, spare_key),
        intruder.get(REPORT),
        intruder.get(REPORT, {"format": "csv"}),
    ):
        assert_error(response, 403, "permission_denied")

    # The real key is still the one in use; nothing was added, activated or deleted.
    assert resolve_key("openrouter").key_id == current_key.pk
    assert sorted(APIKey.objects.values_list("label", "active")) == [
        ("real", True),
        ("spare", False),
    ]


# --- View-only ----------------------------------------------------------------------------------


def test_view_only_staff_can_list_keys_and_read_costs(make_staff, current_key):
    viewer = make_staff("viewer", VIEW)
    listing = viewer.get(KEYS)
    assert listing.status_code == 200
    assert [row["id"] for row in listing.json()] == [current_key.pk]
    assert viewer.get(REPORT).status_code == 200
    assert viewer.get(REPORT, {"format": "csv"}).status_code == 200


def test_view_only_staff_cannot_add_change_or_delete(make_staff, current_key, spare_key):
    viewer = make_staff("viewer", VIEW)
    assert_error(add(viewer), 403, "permission_denied")
    assert_error(activate(viewer, spare_key), 403, "permission_denied")
    assert_error(delete(viewer, current_key), 403, "permission_denied")
    assert APIKey.objects.count() == 2
    assert resolve_key("openrouter").key_id == current_key.pk
    spare_key.refresh_from_db()
    assert not spare_key.active


def test_keys_and_costs_are_separate_permissions(make_staff, current_key):
    keys_only = make_staff("keys-only", ["view_apikey"])
    costs_only = make_staff("costs-only", ["view_ledgerentry"])
    assert keys_only.get(KEYS).status_code == 200
    assert_error(keys_only.get(REPORT), 403, "permission_denied")
    assert costs_only.get(REPORT).status_code == 200
    assert_error(costs_only.get(KEYS), 403, "permission_denied")


@pytest.mark.parametrize("codename", ["add_apikey", "change_apikey", "delete_apikey"])
def test_each_write_needs_its_own_permission(make_staff, spare_key, codename):
    client = make_staff("one-perm", ["view_apikey", codename])
    attempts = {  # in this order: the delete comes last
        "add_apikey": lambda: add(client),
        "change_apikey": lambda: activate(client, spare_key),
        "delete_apikey": lambda: delete(client, spare_key),
    }
    for name, attempt in attempts.items():
        response = attempt()
        if name == codename:
            assert response.status_code in (200, 201, 204), (name, response.content)
        else:
            assert_error(response, 403, "permission_denied")


# --- Full permissions and superusers ------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "codenames", "flags"),
    [("manager", FULL, {}), ("root", [], {"is_superuser": True})],
    ids=["full-permissions", "superuser"],
)
def test_full_permissions_and_superusers_can_do_everything(
    make_staff, current_key, spare_key, name, codenames, flags
):
    client = make_staff(name, codenames, **flags)
    assert client.get(KEYS).status_code == 200
    assert client.get(REPORT).status_code == 200
    added = add(client)
    assert added.status_code == 201
    assert resolve_key("openrouter").key_id == added.json()["id"]
    assert activate(client, spare_key).status_code == 200
    assert delete(client, current_key).status_code == 204


# --- Not staff: refused whatever permissions they hold, as the admin does -------------------------


def test_users_who_are_not_staff_are_refused_even_with_permissions(make_staff, current_key):
    outsider = make_staff("outsider", FULL, is_staff=False)
    assert_error(outsider.get(KEYS), 403, "permission_denied")
    assert_error(add(outsider), 403, "permission_denied")
    assert_error(outsider.get(REPORT), 403, "permission_denied")
    assert APIKey.objects.count() == 1


def test_anonymous_requests_are_still_401(anon, current_key):
    assert_error(anon.get(KEYS), 401, "not_authenticated")
    assert_error(anon.get(REPORT), 401, "not_authenticated")
