"""OpenAPI documentation of the views, when drf-spectacular is installed.

The app works without it: then ``extend_schema`` and the other names here are no-ops, and only the
project decides whether to serve a schema (``alwrity/urls.py`` serves ``/api/schema/`` and
``/api/docs/``). Views import these names from here, never from ``drf_spectacular`` directly.
"""

from __future__ import annotations

from typing import Any

try:
    from drf_spectacular.extensions import OpenApiAuthenticationExtension
    from drf_spectacular.types import OpenApiTypes
    from drf_spectacular.utils import (
        OpenApiExample,
        OpenApiParameter,
        OpenApiResponse,
        extend_schema,
        extend_schema_field,
        inline_serializer,
    )
except ImportError:
    OpenApiAuthenticationExtension = None

    def extend_schema(*args: Any, **kwargs: Any):
        """No schema without drf-spectacular: the view or field is left as it is."""
        return lambda decorated: decorated

    extend_schema_field = extend_schema

    def _unused(*args: Any, **kwargs: Any) -> None:
        return None

    OpenApiExample = OpenApiParameter = OpenApiResponse = inline_serializer = _unused

    class _AnyType:
        def __getattr__(self, name: str) -> None:
            return None

    OpenApiTypes = _AnyType()

SPECTACULAR_INSTALLED = OpenApiAuthenticationExtension is not None

__all__ = [
    "SPECTACULAR_INSTALLED",
    "OpenApiExample",
    "OpenApiParameter",
    "OpenApiResponse",
    "OpenApiTypes",
    "extend_schema",
    "extend_schema_field",
    "inline_serializer",
]

if SPECTACULAR_INSTALLED:

    class BearerTokenScheme(OpenApiAuthenticationExtension):
        """Documents the Bearer form of the tokens (beside DRF's ``Token`` scheme)."""

        target_class = "llm_providers.api.authentication.BearerTokenAuthentication"
        name = "bearerAuth"

        def get_security_definition(self, auto_schema):
            return {"type": "http", "scheme": "bearer", "description": "A DRF API token."}
