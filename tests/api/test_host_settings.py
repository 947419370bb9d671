"""The app's API answers as SPEC §8 says whatever the host project's ``REST_FRAMEWORK`` holds
(SPEC §11): its views carry their own authentication, permissions, throttles, renderers, parsers,
negotiation, pagination and error envelope.

DRF binds most defaults to its classes when it is imported (``APIView.renderer_classes =
api_settings.DEFAULT_RENDERER_CLASSES``), so overriding the setting alone would not reach a view
that relied on them: the ``hostile`` fixture also rebinds them, as a project with these settings
would have them.
"""

import pytest
from django.core.exceptions import ImproperlyConfigured
from rest_framework import throttling
from rest_framework.exceptions import NotAcceptable
from rest_framework.generics import GenericAPIView
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.views import APIView

from llm_providers.models import LedgerEntry
from tests.api.support import API, assert_error
from tests.api.test_auth import PROTECTED, call
from tests.providers.wire import gemini_generate_url, gemini_response

pytestmark = pytest.mark.django_db


def host_exception_handler(exc, context):
    return Response({"detail": "the host's handler"}, status=418)


class RefuseEverything(BaseContentNegotiation):
    def select_parser(self, request, parsers):
        return None

    def select_renderer(self, request, renderers, format_suffix=None):
        raise NotAcceptable()


class ThrottleWithoutRate(throttling.SimpleRateThrottle):
    scope = "nowhere"  # no rate anywhere: instantiating it raises ImproperlyConfigured


HOSTILE = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "DEFAULT_THROTTLE_CLASSES": ["tests.api.test_host_settings.ThrottleWithoutRate"],
    "DEFAULT_THROTTLE_RATES": {},
    "EXCEPTION_HANDLER": "tests.api.test_host_settings.host_exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.BrowsableAPIRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.FormParser"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "tests.api.test_host_settings.RefuseEverything",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 1,
    "DEFAULT_VERSIONING_CLASS": "rest_framework.versioning.AcceptHeaderVersioning",
    "ALLOWED_VERSIONS": ["9"],
    "URL_FORMAT_OVERRIDE": None,
}

# (class, attribute, setting) DRF binds at import time.
BOUND = [
    (APIView, "authentication_classes", "DEFAULT_AUTHENTICATION_CLASSES"),
    (APIView, "permission_classes", "DEFAULT_PERMISSION_CLASSES"),
    (APIView, "throttle_classes", "DEFAULT_THROTTLE_CLASSES"),
    (APIView, "renderer_classes", "DEFAULT_RENDERER_CLASSES"),
    (APIView, "parser_classes", "DEFAULT_PARSER_CLASSES"),
    (APIView, "content_negotiation_class", "DEFAULT_CONTENT_NEGOTIATION_CLASS"),
    (APIView, "versioning_class", "DEFAULT_VERSIONING_CLASS"),
    (GenericAPIView, "pagination_class", "DEFAULT_PAGINATION_CLASS"),
    (SimpleRateThrottle, "THROTTLE_RATES", "DEFAULT_THROTTLE_RATES"),
]


@pytest.fixture(autouse=True)
def hostile(settings, monkeypatch):
    settings.REST_FRAMEWORK = HOSTILE
    for cls, attribute, name in BOUND:
        monkeypatch.setattr(cls, attribute, getattr(api_settings, name))
    # The fixture does what it says: a view relying on DRF's defaults would get these.
    assert APIView.authentication_classes == []
    with pytest.raises(ImproperlyConfigured):
        ThrottleWithoutRate()


@pytest.mark.parametrize(("method", "path", "body"), PROTECTED)
def test_anonymous_calls_are_401_in_the_envelope(anon, http, use_keys, method, path, body):
    use_keys("gemini")
    response = call(anon, method, path, body, 1)
    error = assert_error(response, 401, "not_authenticated")
    assert error["message"] == "Authentication credentials were not provided."
    assert response["WWW-Authenticate"] == "Token"
    assert len(http.calls) == 0 and LedgerEntry.objects.count() == 0


def test_a_token_call_generates(api, user, use_keys, http):
    use_keys("gemini")
    http.post(gemini_generate_url(), body=gemini_response("Hi."))
    response = api.post(API + "generate/", {"prompt": "hello"}, format="json")
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/json"
    assert response.json()["text"] == "Hi."
    assert LedgerEntry.objects.get().user == user


def test_a_bearer_call_to_chat_completions_works(user, use_keys, http):
    from tests.api.support import token_client

    use_keys("gemini")
    http.post(gemini_generate_url(), body=gemini_response("Hi."))
    client = token_client(user, keyword="Bearer")
    body = {"messages": [{"role": "user", "content": "hello"}]}
    response = client.post(API + "v1/chat/completions", body, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["choices"][0]["message"]["content"] == "Hi."


def test_errors_are_in_the_apps_envelope(api, anon, staff_api):
    error = assert_error(api.post(API + "generate/", {}, format="json"), 400, "invalid_request")
    assert error["fields"] == {"prompt": ["This field is required."]}
    assert_error(api.get(API + "keys/"), 403, "permission_denied")
    assert_error(api.get(API + "usage/", {"period": "soon"}), 400, "invalid_request")
    assert_error(api.delete(API + "usage/"), 405, "method_not_allowed")
    deep = b"[" * 100_000 + b"]" * 100_000
    response = api.post(API + "generate/", deep, content_type="application/json")
    assert "nested too deeply" in assert_error(response, 400, "invalid_request")["message"]
    anon.credentials(HTTP_AUTHORIZATION="Bearer not-a-token")
    assert_error(anon.get(API + "usage/"), 401, "authentication_failed")
    assert staff_api.get(API + "keys/").status_code == 200


def test_throttled_with_the_apps_rates(api, rates):
    rates("2/min", "100/min")
    assert [api.get(API + "usage/").status_code for _ in range(2)] == [200, 200]
    response = api.get(API + "usage/")
    assert_error(response, 429, "rate_limited")
    assert int(response["Retry-After"]) >= 1


def test_the_ledger_keeps_its_own_pagination(api, user):
    from tests.api.test_calls import entry

    for _ in range(3):
        entry(user)
    body = api.get(API + "calls/").json()
    assert set(body) == {"count", "next", "previous", "results"}
    assert body["count"] == 3 and len(body["results"]) == 3


def test_the_cost_report_csv_is_asked_for_with_format(staff_api):
    response = staff_api.get(API + "reports/costs/", {"format": "csv"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")


def test_health_stays_open(anon):
    assert anon.get(API + "health/").status_code == 200


def test_session_authentication_works(admin_client):
    assert admin_client.get(API + "usage/").status_code == 200
