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

from .authentication import BearerTokenAuthentication, TokenAuthentication
from .errors import exception_handler
from .parsers import JSONParser
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

    def get_exception_handler(self):
        """Errors in the app's envelope ``{"error": {"code", "message"}}`` (``api.errors``)."""
        return exception_handler


class AppAPIView(AppAPIConfig, APIView):
    """An ``APIView`` with the app's DRF configuration."""
