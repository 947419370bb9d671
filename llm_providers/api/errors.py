"""One exception handler: the app's exception hierarchy and DRF's own errors, as
``{"error": {"code": ..., "message": ..., ...}}`` with the statuses of SPEC §8.

Views never catch provider exceptions one by one; they let them rise to here.
"""

from __future__ import annotations

import math

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.http import Http404
from rest_framework import exceptions as drf
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from ..exceptions import LLMError

_DRF_CODES: list[tuple[type[Exception], str]] = [
    (drf.NotAuthenticated, "not_authenticated"),
    (drf.AuthenticationFailed, "authentication_failed"),
    (drf.PermissionDenied, "permission_denied"),
    (drf.ValidationError, "invalid_request"),
    (drf.ParseError, "invalid_request"),
    (drf.UnsupportedMediaType, "invalid_request"),
    (drf.Throttled, "rate_limited"),
    (drf.NotFound, "not_found"),
    (drf.MethodNotAllowed, "method_not_allowed"),
    (drf.NotAcceptable, "not_acceptable"),
]


def error_body(code: str, message: str, **extra) -> dict:
    return {"error": {"code": code, "message": message, **extra}}


def llm_error_response(exc: LLMError) -> Response:
    response = Response({"error": exc.as_dict()}, status=exc.status)
    retry_after = getattr(exc, "retry_after", None)
    if exc.status == 429:
        # Like DRF's Throttled: the client is told when to come back (1 s when nobody said).
        response["Retry-After"] = str(max(1, math.ceil(retry_after or 1)))
    return response


def exception_handler(exc, context):
    if isinstance(exc, LLMError):
        return llm_error_response(exc)
    if isinstance(exc, RequestDataTooBig):
        # Django would answer its HTML 400 page (it is a SuspiciousOperation).
        return Response(error_body("invalid_request", body_too_big_message()), status=400)
    # Django's own (get_object_or_404, …), as DRF's handler converts them, so they get a code.
    if isinstance(exc, Http404):
        exc = drf.NotFound(*exc.args)
    elif isinstance(exc, DjangoPermissionDenied):
        exc = drf.PermissionDenied(*exc.args)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # an unexpected error: Django's 500 handling (and logging) takes it
    code = next((c for cls, c in _DRF_CODES if isinstance(exc, cls)), "error")
    if isinstance(exc, drf.ValidationError):
        fields = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        response.data = error_body(code, _first_message(fields), fields=fields)
    else:
        detail = getattr(exc, "detail", None) or str(exc)
        response.data = error_body(code, str(detail))
    return response


def body_too_big_message() -> str:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    if limit is None:  # no limit set: something else found the body too large
        return "The request body is too large."
    return f"The request body is larger than {limit} bytes."


def _first_message(fields: dict) -> str:
    for name, messages in fields.items():
        first = messages[0] if isinstance(messages, list) and messages else messages
        if isinstance(first, dict):
            return f"{name}: {_first_message(first)}"
        return f"{name}: {first}" if name != "non_field_errors" else str(first)
    return "Invalid request."


def not_found(request, exception=None):
    """``handler404`` for the API's paths: the error body, not an HTML page."""
    from django.http import JsonResponse
    from django.views.defaults import page_not_found

    if not request.path.startswith("/api/"):
        return page_not_found(request, exception)
    return JsonResponse(error_body("not_found", "No such endpoint."), status=404)


def server_error(request):
    """``handler500`` for the API's paths; the error is logged by Django as usual."""
    from django.http import JsonResponse
    from django.views.defaults import server_error as html_server_error

    if not request.path.startswith("/api/"):
        return html_server_error(request)
    return JsonResponse(error_body("server_error", "Internal server error."), status=500)
