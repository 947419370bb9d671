"""The API's error envelope for the errors Django answers before (or instead of) a view.

The API's views answer every error as ``{"error": {"code", "message"}}`` (``api.errors``). Some
errors never reach them: a ``Host`` header outside ``ALLOWED_HOSTS`` (raised by Django's own
middleware), a body over ``DATA_UPLOAD_MAX_MEMORY_SIZE``, a URL no view matches, a 500 with
``DEBUG`` on. Django answers those with its HTML pages (``handler400`` …). A host project adds
this middleware, first in ``MIDDLEWARE``, and gets the envelope for them too under the API's
paths; other paths keep Django's pages.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from http import HTTPStatus

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, HttpResponse
from django.urls import NoReverseMatch, reverse

from .api.errors import body_too_big_message, error_body, mark_retry

# The envelope's codes (SPEC §8) for the statuses Django answers by itself.
_CODES = {
    400: "invalid_request",
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    500: "server_error",
}


class APIErrorEnvelopeMiddleware:
    """Rewrite an error response that is not JSON, under the API's paths, as the envelope;
    its status and headers (``Allow`` of a 405 …) are kept.

    The API's paths are ``API_PREFIXES`` and wherever the project mounts the app's URLs; set
    ``API_PREFIXES`` in a subclass to change them. Put it first in ``MIDDLEWARE``: Django turns
    an exception into a response inside every middleware, so only the outermost one sees the
    responses to what the others raised (``DisallowedHost`` comes from ``CommonMiddleware``).
    """

    API_PREFIXES: tuple[str, ...] = ("/api/",)

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.status_code >= 400 and self.needs_envelope(request, response):
            self.rewrite(request, response)
        return response

    def needs_envelope(self, request: HttpRequest, response: HttpResponse) -> bool:
        if response.streaming or response.get("Content-Type", "").startswith("application/json"):
            return False
        return request.path.startswith(self.api_prefixes())

    def api_prefixes(self) -> tuple[str, ...]:
        try:
            return (*self.API_PREFIXES, reverse("llm_providers:root"))
        except NoReverseMatch:  # the project mounts the app without its namespace
            return self.API_PREFIXES

    def rewrite(self, request: HttpRequest, response: HttpResponse) -> None:
        status = response.status_code
        code = _CODES.get(status, "error")
        body = error_body(code, _message(request, status))
        response.content = json.dumps(body).encode()
        response["Content-Type"] = "application/json"
        if response.has_header("Content-Length"):
            response["Content-Length"] = str(len(response.content))
        mark_retry(response, code)


def _message(request: HttpRequest, status: int) -> str:
    """What went wrong, as far as the response and the request tell (Django's 400 page says
    nothing of which check refused the request)."""
    if status == 400:
        try:
            request.get_host()
        except DisallowedHost:
            return "The Host header is not one this server answers for (ALLOWED_HOSTS)."
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if limit is not None and _content_length(request) > limit:
            return body_too_big_message()
    if status == 404:
        return "No such endpoint."
    if status == 500:
        return "Internal server error."
    try:
        return f"{HTTPStatus(status).phrase}."
    except ValueError:
        return "The request failed."


def _content_length(request: HttpRequest) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0
