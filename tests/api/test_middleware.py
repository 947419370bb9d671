"""The lazy session and message middleware (``llm_providers.api.middleware``): token calls build
neither; every request answers exactly as with Django's own middleware (statuses, headers,
cookies), sessions and messages included."""

from __future__ import annotations

import pytest
from django.conf import settings as django_settings
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse
from django.utils.functional import empty
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from llm_providers.models import APIKey
from tests.api.support import API, PASSWORD, token_client

pytestmark = pytest.mark.django_db

OURS = {
    "llm_providers.api.middleware.SessionMiddleware": (
        "django.contrib.sessions.middleware.SessionMiddleware"
    ),
    "llm_providers.api.middleware.MessageMiddleware": (
        "django.contrib.messages.middleware.MessageMiddleware"
    ),
}


def test_the_project_uses_them():
    assert set(OURS) <= set(django_settings.MIDDLEWARE)


def test_a_token_call_builds_no_session_and_no_message_storage(user):
    response = token_client(user).get(API + "usage/")
    assert response.status_code == 200
    request = response.wsgi_request
    assert request.session._wrapped is empty
    assert request._messages._wrapped is empty
    assert not response.cookies
    assert "Vary" not in response or "Cookie" not in response["Vary"]


def shape(response) -> tuple:
    """What a client sees, without what is random per run (session keys, signatures)."""
    cookies = {
        name: (bool(morsel.value), morsel["max-age"], morsel["path"], morsel["samesite"])
        for name, morsel in response.cookies.items()
    }
    headers = {k: v for k, v in response.headers.items() if k not in ("Set-Cookie", "Expires")}
    if response.get("Content-Type", "").startswith("application/json"):
        body = response.content
    else:
        body = None  # HTML carries the CSRF token: random
    return response.status_code, headers, cookies, body


def token_of(user) -> APIClient:
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def session_client(user) -> Client:
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client


def bad_cookie_client() -> Client:
    client = Client()
    client.cookies[django_settings.SESSION_COOKIE_NAME] = "not-a-session"
    return client


def admin_message_round_trip(client: Client):
    """The admin's action: a message added, stored (cookie), and shown on the next page."""
    key = APIKey(provider="gemini", label="k", active=True)
    key.set_secret("AIzaSyMIDDLEWARE-00000000000000000001")
    key.save()
    changelist = reverse("admin:llm_providers_apikey_changelist")
    posted = client.post(changelist, {"action": "deactivate", "_selected_action": [str(key.pk)]})
    shown = client.get(changelist)
    messages = [m.message for m in get_messages(shown.wsgi_request)]
    return shape(posted), shape(shown), messages


SCENARIOS = {
    "token call": lambda user, staff: token_of(user).get(API + "usage/"),
    "token generate refused": lambda user, staff: token_of(user).post(
        API + "generate/", {"prompt": ""}, content_type="application/json"
    ),
    "anonymous call": lambda user, staff: Client().get(API + "usage/"),
    "health": lambda user, staff: Client().get(API + "health/"),
    "session call": lambda user, staff: session_client(user).get(API + "usage/"),
    "bad session cookie": lambda user, staff: bad_cookie_client().get(API + "usage/"),
    "admin login page": lambda user, staff: Client().get(reverse("admin:login")),
    "admin login": lambda user, staff: Client().post(
        reverse("admin:login"), {"username": staff.username, "password": PASSWORD}
    ),
    "admin page": lambda user, staff: session_client(staff).get(reverse("admin:index")),
}


def djangos_middleware(settings):
    settings.MIDDLEWARE = [OURS.get(name, name) for name in django_settings.MIDDLEWARE]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_the_same_answers_as_djangos_middleware(settings, user, staff, use_keys, scenario):
    use_keys("gemini")
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    ours = shape(SCENARIOS[scenario](user, staff))
    djangos_middleware(settings)
    assert shape(SCENARIOS[scenario](user, staff)) == ours


def test_admin_messages_as_with_djangos_middleware(settings, staff):
    staff.is_superuser = True
    staff.save()
    ours = admin_message_round_trip(session_client(staff))
    assert ours[2] == ["Deactivated 1 key(s)."]
    APIKey.objects.all().delete()
    djangos_middleware(settings)
    assert admin_message_round_trip(session_client(staff)) == ours
