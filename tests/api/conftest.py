"""Fixtures of the REST API tests: users, tokens and authenticated clients.

Every test starts with an empty cache, so throttle counters never leak from one test to the
next (user ids are reused after each test's rollback).
"""

from __future__ import annotations

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from tests.api.support import PASSWORD, token_client


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def empty_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user("alice", password=PASSWORD)


@pytest.fixture
def other_user(django_user_model):
    return django_user_model.objects.create_user("bob", password=PASSWORD)


#: What an administrator gives the staff who manage keys and read costs (SPEC §8: the staff
#: endpoints follow the admin's model permissions).
STAFF_PERMISSIONS = [
    "view_apikey",
    "add_apikey",
    "change_apikey",
    "delete_apikey",
    "view_ledgerentry",
]


@pytest.fixture
def staff(django_user_model):
    """The staff user ``admin``, with the key and ledger permissions of ``STAFF_PERMISSIONS``."""
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user("admin", password=PASSWORD, is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="llm_providers", codename__in=STAFF_PERMISSIONS
        )
    )
    return user


@pytest.fixture
def anon():
    return APIClient()


@pytest.fixture
def api(user):
    """The ordinary user ``alice``, authenticated with ``Authorization: Token <key>``."""
    return token_client(user)


@pytest.fixture
def other_api(other_user):
    """The ordinary user ``bob``."""
    return token_client(other_user)


@pytest.fixture
def staff_api(staff):
    """The staff user ``admin``."""
    return token_client(staff)


@pytest.fixture
def rates(settings):
    """Set the throttle rates as a deployment does: ``rates("100/min", "2/min")`` sets
    ``LLM_API_RATE`` and ``LLM_API_GENERATION_RATE``."""

    def _set(general: str, generation: str) -> None:
        settings.LLM_API_RATE = general
        settings.LLM_API_GENERATION_RATE = generation

    return _set
