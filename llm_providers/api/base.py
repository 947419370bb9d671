"""The API's own DRF configuration (SPEC §11).

Every view of the app takes its authentication, permissions, throttles, renderers, parsers,
content negotiation, pagination and error envelope from ``AppAPIConfig``, never from the host
project's ``REST_FRAMEWORK`` defaults: the app answers the same in any project. A view that
differs (``health/`` is open, the staff endpoints need staff) overrides one attribute.
"""

from __future__ import annotations

from rest_framework.authentication import SessionAuthentication
from rest_framework.metadata import SimpleMetadata
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.pagination import PageNumberPagination
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.views import APIView

from ..metrics import APIRequest
from .authentication import BearerTokenAuthentication, TokenAuthentication
from .errors import exception_handler
from .parsers import JSONParser
from .streaming import when_over
from .throttling import UserRateThrottle


class PageNumberPages(PageNumberPagination):
    """``?page=N``, 50 rows a page, with DRF's ``{count, next, previous, results}``."""

    page_size = 50


class AppAPIConfig:
    """The DRF settings of the app's views, as class attributes (mix in before a DRF view)."""

    # Token first: a request without credentials gets 401 with ``WWW-Authenticate: Token``.
    authentication_classes = [
        TokenAuthentication,
        BearerTokenAuthentication,
        SessionAuthentication,
    ]
    permission_classes = [IsAuthenticated]
    throttle_classes = [UserRateThrottle]
    renderer_classes = [JSONRenderer]
    parser_classes = [JSONParser]
    content_negotiation_class = DefaultContentNegotiation
    metadata_class = SimpleMetadata
    versioning_class = None
    pagination_class = PageNumberPages
    # Counted in the metrics' requests and requests in flight (``metrics``).
    counted_in_metrics = True

    def get_exception_handler(self):
        """Errors in the app's envelope ``{"error": {"code", "message"}}`` (``api.errors``)."""
        return exception_handler

    def dispatch(self, request, *args, **kwargs):
        """DRF's dispatch, counted in the metrics (``metrics``): in flight until the response
        is over (a stream until it ends or is closed), then by endpoint and status."""
        if not self.counted_in_metrics:
            return super().dispatch(request, *args, **kwargs)
        endpoint = getattr(request.resolver_match, "url_name", None) or type(self).__name__
        # Any word can be a method; each label value is a series for the process's lifetime.
        method = request.method if request.method.lower() in self.http_method_names else "other"
        tracked = APIRequest(endpoint)
        try:
            response = super().dispatch(request, *args, **kwargs)
        except BaseException:
            tracked.answered(method, 500)  # what Django will answer
            tracked.end()
            raise
        tracked.answered(method, response.status_code)
        if response.streaming and not response.is_async:
            when_over(response, tracked.end)
        else:
            tracked.end()
        return response


class AppAPIView(AppAPIConfig, APIView):
    """An ``APIView`` with the app's DRF configuration."""
