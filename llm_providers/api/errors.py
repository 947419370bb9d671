"""One exception handler: the app's exception hierarchy and DRF's own errors, as
``{"error": {"code": ..., "message": ..., ...}}`` with the statuses of SPEC §8.

Views never catch provider exceptions one by one; they let them rise to here.

Every error response also says whether repeating the request could succeed, in the
``x-should-retry`` header that OpenAI's SDKs obey (``should_retry`` decides, from the code): an
SDK's automatic retries then repeat only what a retry can fix, not a missing key three times.
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

from ..exceptions import AllProvidersFailed, LLMError, ProviderAuthError

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


# --- Whether a retry can help ------------------------------------------------------------------

#: Codes of failures that may pass: the same request can succeed a little later (after
#: ``Retry-After`` for ``rate_limited``). Answered with ``x-should-retry: true``.
RETRYABLE_CODES = frozenset(
    {
        "rate_limited",  # the upstream's or this API's rate limit (429, with Retry-After)
        "upstream_timeout",  # every provider was too slow this time (504)
        "provider_error",  # the providers failed (502), unless only by rejecting keys: below
        "stream_interrupted",  # a broken stream: asking again starts a new one
    }
)

#: Codes a retry cannot fix: the request, the caller's rights or budget, or the deployment's
#: configuration must change first. Answered with ``x-should-retry: false``.
FINAL_CODES = frozenset(
    {
        "invalid_request",  # 400: the same body is refused the same way
        "context_length_exceeded",  # 400: the prompt does not fit the models of the chain
        "content_policy_violation",  # 400: the provider refuses this content
        "not_authenticated",  # 401
        "authentication_failed",  # 401
        "budget_exceeded",  # 402: until the period ends or an admin raises the limit
        "permission_denied",  # 403
        "model_not_found",  # 404
        "not_found",  # 404
        "method_not_allowed",  # 405
        "not_acceptable",  # 406
        "provider_not_configured",  # 503: no key until an admin adds one
        # 502: the model answered twice (the router's own retry) with JSON the schema refuses;
        # each try is paid for, and a schema one model cannot satisfy usually defeats it again.
        "invalid_structured_output",
    }
)


def should_retry(code: str, exc: Exception | None = None) -> bool | None:
    """Whether repeating the request that failed with ``code`` (raised as ``exc``) can succeed:
    True, False, or None when the code is in neither list (the client's own rule applies;
    OpenAI's SDKs retry 408, 409, 429 and 5xx).

    A provider failure is retryable when at least one of its attempts failed in a way that
    passes: not when every provider refused its key or account (a rejected, revoked or
    out-of-credit key stays so until someone replaces it) or refused the request itself."""
    if code in FINAL_CODES:
        return False
    if code in RETRYABLE_CODES:
        return _may_pass(exc)
    return None


def _may_pass(exc: Exception | None) -> bool:
    if isinstance(exc, AllProvidersFailed) and exc.failures:
        return any(_may_pass(failure.error) for failure in exc.failures)
    if isinstance(exc, ProviderAuthError):
        return False
    if isinstance(exc, LLMError):
        return exc.code in RETRYABLE_CODES
    return True  # DRF's Throttled, or nothing more known than the code


def mark_retry(response, code: str, exc: Exception | None = None):
    """Set ``x-should-retry`` on an error ``response`` (any Django response) as
    ``should_retry`` decides; leave it unset when it has no opinion. Returns the response."""
    verdict = should_retry(code, exc)
    if verdict is not None:
        response["x-should-retry"] = "true" if verdict else "false"
    return response


# --- Error responses -----------------------------------------------------------------------------


def error_body(code: str, message: str, **extra) -> dict:
    return {"error": {"code": code, "message": message, **extra}}


def llm_error_response(exc: LLMError) -> Response:
    response = Response({"error": exc.as_dict()}, status=exc.status)
    retry_after = getattr(exc, "retry_after", None)
    if exc.status == 429:
        # Like DRF's Throttled: the client is told when to come back (1 s when nobody said).
        response["Retry-After"] = str(max(1, math.ceil(retry_after or 1)))
    return mark_retry(response, exc.code, exc)


def exception_handler(exc, context):
    if isinstance(exc, LLMError):
        return llm_error_response(exc)
    if isinstance(exc, RequestDataTooBig):
        # Django would answer its HTML 400 page (it is a SuspiciousOperation).
        response = Response(error_body("invalid_request", body_too_big_message()), status=400)
        return mark_retry(response, "invalid_request")
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
    return mark_retry(response, code, exc)


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
    response = JsonResponse(error_body("not_found", "No such endpoint."), status=404)
    return mark_retry(response, "not_found")


def server_error(request):
    """``handler500`` for the API's paths; the error is logged by Django as usual."""
    from django.http import JsonResponse
    from django.views.defaults import server_error as html_server_error

    if not request.path.startswith("/api/"):
        return html_server_error(request)
    return JsonResponse(error_body("server_error", "Internal server error."), status=500)
