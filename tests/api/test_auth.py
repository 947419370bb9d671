"""Authentication and the staff boundary of every endpoint (SPEC §8).

Token (``Authorization: Token <key>``), ``Bearer <key>`` and session authentication all work;
everything but ``health/`` needs one of them; staff-only endpoints refuse other users with 403.
"""

import io

import pytest
from django.core.management import call_command
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from llm_providers.models import APIKey, LedgerEntry, UsageSummary
from tests.api.support import API, PASSWORD, assert_error, token_client
from tests.conftest import FAKE_KEYS
from tests.providers.wire import gemini_generate_url, gemini_response

pytestmark = pytest.mark.django_db

# Every endpoint but health/, with a request that would succeed once authenticated.
PROTECTED = [
    ("post", "generate/", {"prompt": "hello"}),
    ("get", "usage/", None),
    ("get", "calls/", None),
    ("get", "reports/costs/", None),
    ("get", "keys/", None),
    ("post", "keys/", {"provider": "openrouter", "key": FAKE_KEYS["openrouter"]}),
    ("patch", "keys/{key_id}/", {"label": "renamed"}),
    ("delete", "keys/{key_id}/", None),
    ("get", "providers/", None),
    ("post", "v1/chat/completions", {"messages": [{"role": "user", "content": "hello"}]}),
]
STAFF_ONLY = [
    ("get", "reports/costs/", None),
    ("get", "keys/", None),
    ("post", "keys/", {"provider": "openrouter", "key": FAKE_KEYS["openrouter"]}),
    ("patch", "keys/{key_id}/", {"label": "renamed"}),
    ("delete", "keys/{key_id}/", None),
]


@pytest.fixture
def stored_key():
    key = APIKey(provider="gemini", label="prod")
    key.set_secret(FAKE_KEYS["gemini"])
    key.save()
    return key


def call(client, method, path, body, key_id):
    url = API + path.format(key_id=key_id)
    if body is None:
        return getattr(client, method)(url)
    return getattr(client, method)(url, body, format="json")


def assert_untouched(stored_key, http):
    """A refused request changed nothing: no upstream call, no usage, the key as it was."""
    assert len(http.calls) == 0
    assert LedgerEntry.objects.count() == 0
    assert UsageSummary.objects.count() == 0
    assert list(APIKey.objects.values_list("pk", "label", "active")) == [
        (stored_key.pk, "prod", True)
    ]


@pytest.mark.parametrize(("method", "path", "body"), PROTECTED)
def test_missing_credentials_are_401_not_authenticated(
    anon, stored_key, http, use_keys, method, path, body
):
    use_keys("gemini")
    response = call(anon, method, path, body, stored_key.pk)
    error = assert_error(response, 401, "not_authenticated")
    assert error["message"] == "Authentication credentials were not provided."
    assert response["WWW-Authenticate"] == "Token"
    assert_untouched(stored_key, http)


@pytest.mark.parametrize(
    "header",
    [
        "Token 0123456789abcdef0123456789abcdef01234567",
        "Bearer 0123456789abcdef0123456789abcdef01234567",
        "Token",
        "Bearer",
        "Token two parts",
    ],
)
@pytest.mark.parametrize(("method", "path", "body"), PROTECTED)
def test_bad_token_is_401_authentication_failed(
    anon, stored_key, http, use_keys, method, path, body, header
):
    use_keys("gemini")
    anon.credentials(HTTP_AUTHORIZATION=header)
    response = call(anon, method, path, body, stored_key.pk)
    assert_error(response, 401, "authentication_failed")
    assert_untouched(stored_key, http)


def test_bad_token_message(anon):
    anon.credentials(HTTP_AUTHORIZATION="Token 0123456789abcdef0123456789abcdef01234567")
    assert assert_error(anon.get(API + "usage/"), 401, "authentication_failed") == {
        "code": "authentication_failed",
        "message": "Invalid token.",
    }


def test_token_of_an_inactive_user_is_refused(user):
    client = token_client(user)
    user.is_active = False
    user.save()
    error = assert_error(client.get(API + "usage/"), 401, "authentication_failed")
    assert error["message"] == "User inactive or deleted."


def test_token_of_another_scheme_is_not_read_as_a_token(user):
    """``Basic`` credentials are not a token: the request is simply unauthenticated."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Basic {Token.objects.create(user=user).key}")
    assert_error(client.get(API + "usage/"), 401, "not_authenticated")


@pytest.mark.parametrize("keyword", ["Token", "Bearer"])
def test_token_and_bearer_authenticate(user, keyword):
    response = token_client(user, keyword).get(API + "calls/")
    assert response.status_code == 200
    assert response.json() == {"count": 0, "next": None, "previous": None, "results": []}


def test_session_login_authenticates(user):
    client = APIClient()
    assert client.login(username="alice", password=PASSWORD)
    response = client.get(API + "usage/")
    assert response.status_code == 200
    assert response.json()["total"] == {"calls": 0, "tokens": 0, "cost": "0"}


def test_session_post_needs_the_csrf_token(user, use_keys, http):
    """Session-authenticated writes are CSRF-protected (token clients are not: no cookies)."""
    use_keys("gemini")
    client = APIClient(enforce_csrf_checks=True)
    client.login(username="alice", password=PASSWORD)
    response = client.post(API + "generate/", {"prompt": "hello"}, format="json")
    error = assert_error(response, 403, "permission_denied")
    assert error["message"].startswith("CSRF Failed")
    assert len(http.calls) == 0
    assert LedgerEntry.objects.count() == 0


def test_session_post_with_the_csrf_token_works(user, use_keys, http):
    use_keys("gemini")
    http.post(gemini_generate_url(), body=gemini_response("hi"))
    client = APIClient(enforce_csrf_checks=True)
    client.login(username="alice", password=PASSWORD)
    secret = "a" * 32
    client.cookies["csrftoken"] = secret
    response = client.post(
        API + "generate/", {"prompt": "hello"}, format="json", HTTP_X_CSRFTOKEN=secret
    )
    assert response.status_code == 200
    assert response.json()["text"] == "hi"
    assert LedgerEntry.objects.get().user == user


def test_drf_create_token_command_makes_a_working_token(user):
    out = io.StringIO()
    call_command("drf_create_token", "alice", stdout=out)
    key = Token.objects.get(user=user).key
    assert key in out.getvalue()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get(API + "usage/").status_code == 200


def test_logged_out_session_is_not_authenticated(user):
    client = APIClient()
    client.login(username="alice", password=PASSWORD)
    client.logout()
    assert_error(client.get(API + "usage/"), 401, "not_authenticated")


@pytest.mark.parametrize(("method", "path", "body"), STAFF_ONLY)
def test_staff_only_endpoints_refuse_other_users(api, stored_key, http, method, path, body):
    response = call(api, method, path, body, stored_key.pk)
    error = assert_error(response, 403, "permission_denied")
    assert error["message"] == "You do not have permission to perform this action."
    assert_untouched(stored_key, http)
    assert FAKE_KEYS["gemini"] not in response.content.decode()


@pytest.mark.parametrize(("method", "path", "body"), STAFF_ONLY)
def test_staff_only_endpoints_refuse_session_users_too(user, stored_key, method, path, body):
    client = APIClient()
    client.login(username="alice", password=PASSWORD)
    assert_error(call(client, method, path, body, stored_key.pk), 403, "permission_denied")


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("get", "reports/costs/", None, 200),
        ("get", "keys/", None, 200),
        ("post", "keys/", {"provider": "openrouter", "key": FAKE_KEYS["openrouter"]}, 201),
        ("patch", "keys/{key_id}/", {"label": "renamed"}, 200),
        ("delete", "keys/{key_id}/", None, 204),
    ],
)
def test_staff_may_use_staff_only_endpoints(staff_api, stored_key, method, path, body, status):
    assert call(staff_api, method, path, body, stored_key.pk).status_code == status


@pytest.mark.parametrize("path", ["usage/", "calls/", "providers/"])
def test_staff_may_use_user_endpoints(staff_api, path):
    assert staff_api.get(API + path).status_code == 200


def test_health_needs_no_credentials(anon):
    assert anon.get(API + "health/").status_code == 200


def test_unsupported_method_is_405_with_the_error_body(api):
    error = assert_error(api.delete(API + "usage/"), 405, "method_not_allowed")
    assert error["message"] == 'Method "DELETE" not allowed.'


@pytest.mark.parametrize("has_budget", [True, False])
def test_the_token_its_user_and_budget_come_in_one_query(
    user, has_budget, django_assert_num_queries
):
    """What a generation's budget check needs is loaded with the token: no query of its own."""
    from llm_providers.accounting import budgets
    from llm_providers.api.authentication import TokenAuthentication
    from llm_providers.models import UsageBudget

    if has_budget:
        UsageBudget.objects.create(user=user, monthly_call_limit=3)
    key = Token.objects.create(user=user).key
    with django_assert_num_queries(1):
        found, token = TokenAuthentication().authenticate_credentials(key)
        limits = budgets.limits_for(found.pk, found)
    assert (found.pk, token.key) == (user.pk, key)
    assert limits.calls == (3 if has_budget else None)
