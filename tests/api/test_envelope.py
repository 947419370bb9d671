"""Every error under ``/api/`` is the JSON envelope ``{"error": {"code", "message"}}`` (SPEC §8),
also those Django answers before or instead of a view: an oversized body, a ``Host`` header
outside ``ALLOWED_HOSTS``, an unknown URL, a method a view does not take, a 500 with DEBUG on.
They were Django's HTML pages. Through the test client and over real HTTP (``live_server``).

The middleware (``llm_providers.middleware.APIErrorEnvelopeMiddleware``) is also tried in a
host project's URLconf of its own (no ``handler404``/``handler500``, the app under ``/llm/``).
"""

from __future__ import annotations

import json

import pytest
import requests
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse, HttpResponseNotAllowed
from django.test import Client
from django.urls import include, path

from llm_providers.models import LedgerEntry
from tests.api.support import API, assert_error

pytestmark = pytest.mark.django_db

THREE_MB = b'{"prompt": "' + b"a" * 3_000_000 + b'"}'


def assert_envelope(status: int, content_type: str, body: bytes, expected_status: int, code: str):
    assert status == expected_status, body[:300]
    assert content_type == "application/json"
    error = json.loads(body)["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    return error


# --- Through the test client ---------------------------------------------------------------------


def test_an_oversized_body_is_a_400_envelope_and_reaches_no_provider(api, use_keys, http):
    use_keys("gemini")
    response = api.post(API + "generate/", THREE_MB, content_type="application/json")
    error = assert_error(response, 400, "invalid_request")
    assert "larger than 2621440 bytes" in error["message"]
    assert len(http.calls) == 0
    assert not LedgerEntry.objects.exists()


@pytest.mark.parametrize("endpoint", ["health/", "generate/", "keys/", "nowhere/"])
def test_a_host_outside_allowed_hosts_is_a_400_envelope(endpoint):
    response = Client().get(API + endpoint, HTTP_HOST="evil.example")
    error = assert_error(response, 400, "invalid_request")
    assert "Host header" in error["message"]
    # Django answers it before any view: the middleware says a retry cannot fix it.
    assert response["x-should-retry"] == "false"


def test_outside_the_api_django_keeps_its_pages():
    response = Client().get("/admin/", HTTP_HOST="evil.example")
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/html")
    assert Client().get("/nowhere/")["Content-Type"].startswith("text/html")


@pytest.mark.parametrize("url", [API + "nowhere/", "/api/nowhere", API + "keys/x/"])
def test_an_unknown_url_under_the_api_is_a_404_envelope(url):
    assert_error(Client().get(url), 404, "not_found")


def test_a_method_a_view_does_not_take_is_a_405_envelope_with_allow(api):
    response = api.put(API + "providers/")
    assert_error(response, 405, "method_not_allowed")
    assert "GET" in response["Allow"]


def test_a_server_error_is_a_500_envelope_also_with_debug_on(settings, monkeypatch):
    from llm_providers.api import views

    def boom(self, request):
        raise RuntimeError("boom")

    monkeypatch.setattr(views.HealthView, "get", boom)
    for debug in (False, True):
        settings.DEBUG = debug
        response = Client(raise_request_exception=False).get(API + "health/")
        error = assert_error(response, 500, "server_error")
        assert "boom" not in error["message"]


# --- In a host project: the middleware alone, without the project's handlers ---------------------


def django_not_allowed(request):
    return HttpResponseNotAllowed(["GET"])


def django_forbidden(request):
    raise PermissionDenied


def django_not_found(request):
    raise Http404("no such thing")


def django_html_error(request):
    return HttpResponse("<h1>Teapot</h1>", status=418)


urlpatterns = [
    path("llm/", include("llm_providers.urls")),
    path("api/plain/405/", django_not_allowed),
    path("api/plain/403/", django_forbidden),
    path("api/plain/404/", django_not_found),
    path("api/plain/418/", django_html_error),
    path("elsewhere/403/", django_forbidden),
]


@pytest.mark.urls("tests.api.test_envelope")
@pytest.mark.parametrize(
    ("url", "status", "code"),
    [
        ("/api/plain/405/", 405, "method_not_allowed"),
        ("/api/plain/403/", 403, "permission_denied"),
        ("/api/plain/404/", 404, "not_found"),
        ("/api/plain/418/", 418, "error"),
        ("/api/unrouted/", 404, "not_found"),
        # Wherever the host mounts the app, its paths are the API's.
        ("/llm/nowhere/", 404, "not_found"),
    ],
)
def test_a_host_project_gets_the_envelope_from_the_middleware(url, status, code):
    response = Client().get(url)
    assert_error(response, status, code)
    if status == 405:
        assert response["Allow"] == "GET"
    assert int(response["Content-Length"]) == len(response.content)


@pytest.mark.urls("tests.api.test_envelope")
def test_a_host_project_keeps_its_pages_elsewhere():
    response = Client().get("/elsewhere/403/")
    assert response.status_code == 403
    assert response["Content-Type"].startswith("text/html")


# --- Over real HTTP ------------------------------------------------------------------------------


@pytest.fixture
def server(live_server, http):
    """The live server's URL; requests to it pass the ``responses`` mock that holds all HTTP."""
    http.add_passthru(live_server.url)
    return live_server.url


@pytest.mark.django_db(transaction=True)
def test_over_http_every_refusal_is_the_envelope(server):
    def check(response, status, code):
        return assert_envelope(
            response.status_code, response.headers["Content-Type"], response.content, status, code
        )

    big = requests.post(
        server + API + "generate/",
        data=THREE_MB,
        headers={"Content-Type": "application/json", "Authorization": "Token nope"},
        timeout=30,
    )
    # The credentials are checked first: an unknown token is refused before the body is read.
    check(big, 401, "authentication_failed")
    bad_host = requests.get(server + API + "health/", headers={"Host": "evil.example"}, timeout=10)
    assert "Host header" in check(bad_host, 400, "invalid_request")["message"]
    check(requests.get(server + API + "nowhere/", timeout=10), 404, "not_found")
    check(requests.put(server + API + "health/", timeout=10), 405, "method_not_allowed")


@pytest.mark.django_db(transaction=True)
def test_over_http_an_oversized_body_is_the_envelope(server, django_user_model):
    from rest_framework.authtoken.models import Token

    user = django_user_model.objects.create_user("big-body")
    token = Token.objects.create(user=user).key
    response = requests.post(
        server + API + "generate/",
        data=THREE_MB,
        headers={"Content-Type": "application/json", "Authorization": f"Token {token}"},
        timeout=30,
    )
    error = assert_envelope(
        response.status_code,
        response.headers["Content-Type"],
        response.content,
        400,
        "invalid_request",
    )
    assert "larger than" in error["message"]
    assert not LedgerEntry.objects.exists()
