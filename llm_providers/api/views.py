"""The REST API's views (SPEC §8). Errors rise to ``api.errors.exception_handler``."""

from __future__ import annotations

import contextlib
from datetime import date

from django.db import connection, transaction
from django.shortcuts import get_object_or_404
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from rest_framework import generics, serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.permissions import AllowAny
from rest_framework.renderers import BaseRenderer, BrowsableAPIRenderer, JSONRenderer
from rest_framework.response import Response

from .. import circuits, registry
from ..accounting import budgets, reports
from ..accounting.money import ZERO, money_str
from ..exceptions import ProviderAuthError
from ..keys import check_key as provider_accepts
from ..keys import resolve_keys, stored_key
from ..main_text_generation import llm_generate, llm_stream
from ..models import (
    PROVIDER_NAMES,
    APIKey,
    CallStatus,
    KeyOwner,
    LedgerEntry,
    UsageSummary,
    billing_period,
)
from . import serializers as s
from .base import AppAPIConfig, AppAPIView
from .errors import error_body
from .permissions import StaffModelPermissions
from .schema import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    OpenApiTypes,
    extend_schema,
    inline_serializer,
)
from .streaming import StreamingContentNegotiation, event_stream_response
from .throttling import GenerationRateThrottle

_ERROR = inline_serializer(
    "Error",
    {
        "error": inline_serializer(
            "ErrorDetail", {"code": serializers.CharField(), "message": serializers.CharField()}
        )
    },
)


_VALIDATE = OpenApiParameter(
    "validate",
    OpenApiTypes.BOOL,
    description="1: test the key with its provider first; a key it rejects is a 400 and "
    "nothing is stored",
)


#: ``generate/``'s request examples in the docs. Each succeeds as it is with whatever provider
#: is configured: none names a provider or a model.
GENERATE_EXAMPLES = [
    OpenApiExample(
        "Text",
        summary="Text from the primary provider's default model",
        value={"prompt": "Write a haiku about the sea.", "temperature": 0.7, "max_tokens": 200},
        request_only=True,
    ),
    OpenApiExample(
        "JSON",
        summary="JSON that matches a schema (returned parsed as `data`)",
        value={
            "prompt": "Name the three primary colours of paint.",
            "json_schema": {
                "type": "object",
                "properties": {"colours": {"type": "array", "items": {"type": "string"}}},
                "required": ["colours"],
            },
        },
        request_only=True,
    ),
    OpenApiExample(
        "Stream",
        summary="Text as server-sent events",
        value={"prompt": "Tell a short story about a lighthouse.", "stream": True},
        request_only=True,
    ),
]


class GenerateView(AppAPIView):
    """Generate text (or JSON valid against ``json_schema``) with fallback across providers."""

    # Its own rate only: one throttle history read and written per generation, not two.
    throttle_classes = [GenerationRateThrottle]
    content_negotiation_class = StreamingContentNegotiation

    @extend_schema(
        summary="Generate text or JSON",
        description="One generation by the primary provider (or the one named), falling back "
        "along the chain on provider failures; `stream: true` answers server-sent events.",
        request=s.GenerateRequestSerializer,
        examples=GENERATE_EXAMPLES,
        responses={
            200: s.GenerationSerializer,
            (200, "text/event-stream"): OpenApiTypes.STR,
            **{code: OpenApiResponse(_ERROR) for code in (400, 401, 402, 404, 429, 502, 503, 504)},
        },
    )
    def post(self, request):
        params = s.GenerateRequestSerializer(
            data=request.data, context={"user_id": request.user.pk}
        )
        params.is_valid(raise_exception=True)
        args = dict(params.validated_data)
        stream = args.pop("stream", False)
        json_schema = args.pop("json_schema", None)
        if stream:
            items = llm_stream(args.pop("prompt"), user_id=request.user, **args)
            return event_stream_response(items)
        generation = llm_generate(
            args.pop("prompt"), json_struct=json_schema, user_id=request.user, **args
        )
        return Response(s.GenerationSerializer(generation).data)


def _period(value: str | None) -> str:
    if value is None:
        return billing_period()
    if not s.PERIOD.match(value):
        raise ValidationError({"period": ["Use the form YYYY-MM, e.g. 2026-11."]})
    return value


class UsageView(AppAPIView):
    """The caller's own usage in a billing period, and what is left of their budget."""

    @extend_schema(
        summary="Your usage in a month",
        description="Calls, tokens and cost per provider in a billing month, and what is left "
        "of your budget.",
        parameters=[OpenApiParameter("period", str, description="YYYY-MM (UTC); default: now")],
        responses={200: OpenApiTypes.OBJECT, 400: OpenApiResponse(_ERROR)},
    )
    def get(self, request):
        period = _period(request.query_params.get("period"))
        summary = UsageSummary.objects.filter(user=request.user, period=period).first()

        def figures(prefix: str) -> dict:
            if summary is None:
                return {"calls": 0, "tokens": 0, "cost": "0"}
            return {
                "calls": getattr(summary, f"{prefix}_calls"),
                "tokens": getattr(summary, f"{prefix}_tokens"),
                "cost": money_str(getattr(summary, f"{prefix}_cost")),
            }

        # The seed's three column groups from the summary; other (custom) providers from the
        # ledger: every registered one, and any that has calls in the period.
        providers = {name: figures(name) for name in PROVIDER_NAMES}
        from_ledger = reports.period_usage_by_provider(request.user.pk, period)
        for name in [*registry.provider_names(), *from_ledger]:
            if name not in providers:
                row = from_ledger.get(name) or reports.ReportRow(name, 0, 0, ZERO)
                providers[name] = {k: v for k, v in row.as_dict().items() if k != "key"}
        budget = budgets.remaining(request.user.pk, summary)
        return Response(
            {
                "period": period,
                "providers": providers,
                "total": figures("total"),
                "budget": {
                    "cost_limit": _money_or_none(budget["cost_limit"]),
                    "calls_limit": budget["calls_limit"],
                    "cost_remaining": _money_or_none(budget["cost_remaining"]),
                    "calls_remaining": budget["calls_remaining"],
                    # What calls in flight hold until they are recorded (SPEC §7).
                    "reserved": {
                        "cost": money_str(budget["reserved_cost"]),
                        "calls": budget["reserved_calls"],
                    },
                },
            }
        )


def _money_or_none(value):
    return None if value is None else money_str(value)


def _iso_date(params, name: str) -> date | None:
    value = params.get(name)
    if value in (None, ""):
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValidationError({name: ["Use an ISO date, e.g. 2026-11-24."]}) from None


class CallsView(AppAPIConfig, generics.ListAPIView):
    """The caller's own ledger, newest first."""

    serializer_class = s.LedgerEntrySerializer

    @extend_schema(
        summary="Your calls (the ledger)",
        description="Your calls, newest first, a page at a time; filter by provider, status "
        "and date.",
        parameters=[
            OpenApiParameter("provider", str, description="a provider's name or alias"),
            OpenApiParameter("status", str, enum=[c.value for c in CallStatus]),
            OpenApiParameter("since", OpenApiTypes.DATE, description="inclusive (UTC)"),
            OpenApiParameter("until", OpenApiTypes.DATE, description="inclusive (UTC)"),
        ],
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        params = self.request.query_params
        entries = LedgerEntry.objects.filter(user=self.request.user)
        provider = params.get("provider")
        if provider:
            name = registry.canonical_name(provider)
            if name is None:
                choices = ", ".join(registry.provider_names())
                raise ValidationError({"provider": [f"Choose one of {choices}."]})
            entries = entries.filter(provider=name)
        status_filter = params.get("status")
        if status_filter:
            if status_filter not in CallStatus.values:
                raise ValidationError({"status": ["Choose success or error."]})
            entries = entries.filter(status=status_filter)
        since, until = _iso_date(params, "since"), _iso_date(params, "until")
        if since:
            entries = entries.filter(created_at__date__gte=since)
        if until:
            entries = entries.filter(created_at__date__lte=until)
        return entries.order_by("-created_at", "-id")


class CSVRenderer(BaseRenderer):
    """``?format=csv`` (DRF's format override) selects it: ``key,calls,tokens,cost``."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return data.encode() if isinstance(data, str) else b""


class FormatParameterWins(DefaultContentNegotiation):
    """``?format=csv`` is an explicit choice: honour it whatever ``Accept`` says (a client
    sending ``Accept: application/json`` by habit would otherwise get a 406). The parameter is
    ``format`` whatever the project's ``URL_FORMAT_OVERRIDE`` says (SPEC §8 names it)."""

    def select_renderer(self, request, renderers, format_suffix=None):
        wanted = format_suffix or request.query_params.get("format")
        for renderer in renderers:
            if wanted and renderer.format == wanted:
                return renderer, renderer.media_type
        return super().select_renderer(request, renderers, format_suffix)


class ErrorsAsJSON:
    """For a view with renderers besides JSON: its errors are still the JSON envelope (SPEC §8),
    whatever the request asked for."""

    def handle_exception(self, exc):
        response = super().handle_exception(exc)
        self.request.accepted_renderer = JSONRenderer()
        self.request.accepted_media_type = JSONRenderer.media_type
        return response


class CostReportView(ErrorsAsJSON, AppAPIView):
    """Staff who may view the ledger: cost per user, provider, model, day or key owner over an
    inclusive date range; ``key_owner`` keeps the calls of the platform's keys or users' own."""

    permission_classes = [StaffModelPermissions]
    queryset = LedgerEntry.objects.none()  # whose view permission reading the report needs
    renderer_classes = [JSONRenderer, CSVRenderer]  # errors stay JSON when CSV was asked for
    content_negotiation_class = FormatParameterWins

    @extend_schema(
        summary="Cost report (staff)",
        description="Calls, tokens and cost per user, provider, model, day or key owner over "
        "an inclusive date range; `format=csv` answers CSV.",
        parameters=[
            OpenApiParameter("start", OpenApiTypes.DATE, description="default: 1st of the month"),
            OpenApiParameter("end", OpenApiTypes.DATE, description="default: end of the month"),
            OpenApiParameter("group_by", str, enum=list(reports.GROUPINGS)),
            OpenApiParameter(
                "key_owner",
                str,
                enum=list(KeyOwner.values),
                description="only calls made with the platform's keys or users' own (§12.2)",
            ),
            OpenApiParameter("format", str, enum=["json", "csv"]),
        ],
        responses={200: s.ReportRowSerializer(many=True), 400: OpenApiResponse(_ERROR)},
    )
    def get(self, request):
        first, last = reports.month_bounds()
        start = _iso_date(request.query_params, "start") or first
        end = _iso_date(request.query_params, "end") or last
        try:
            reports.check_range(start, end)
        except reports.BadRange as exc:
            raise ValidationError({exc.field: [str(exc)]}) from None
        group_by = request.query_params.get("group_by") or "user"
        if group_by not in reports.GROUPINGS:
            raise ValidationError({"group_by": [f"Choose one of {', '.join(reports.GROUPINGS)}."]})
        key_owner = request.query_params.get("key_owner") or None
        if key_owner is not None and key_owner not in KeyOwner.values:
            raise ValidationError({"key_owner": [f"Choose one of {', '.join(KeyOwner.values)}."]})
        rows = reports.cost_report(start, end, group_by, key_owner=key_owner)
        if request.accepted_renderer.format == "csv":
            response = Response(reports.to_csv(rows))
            filename = f"costs-{group_by}-{start}-{end}.csv"
            response["Content-Disposition"] = f'attachment; filename="{filename}"'
            return response
        # The rows themselves, as in the CSV: a list of {key, calls, tokens, cost} (SPEC §8).
        return Response([row.as_dict() for row in rows])


def _validate_param(request) -> bool:
    """``?validate=1``: test the key with its provider before it is stored (SPEC §6)."""
    value = request.query_params.get("validate")
    if value in (None, ""):
        return False
    try:
        return serializers.BooleanField().to_internal_value(value)
    except ValidationError:
        raise ValidationError({"validate": ["Use validate=1 or validate=0."]}) from None


def check_key(key: APIKey) -> None:
    """Test the secret ``key`` holds (saved or not yet) with its provider's
    ``test_connection()``, and note the result on ``key`` (``status_note``, ``checked_at``; not
    saved).

    A key the provider rejects (401/403, or its own way of saying so) is a ``ValidationError``
    on ``key`` with the provider's reason — providers scrub their key from their errors, and the
    source names the key by its mask. Any other failure (network, timeout, 5xx) rises as it is:
    the envelope's 502/504, and nothing is known about the key.
    """
    resolved = stored_key(key)
    source = resolved.source if key.pk else f"the request ({key.mask})"
    try:
        _note_check(key, provider_accepts(key.provider, resolved.secret, source=source))
    except ProviderAuthError as exc:
        raise ValidationError({"key": [str(exc)]}) from None


def _note_check(key: APIKey, note: str) -> None:
    key.status_note = note[: APIKey._meta.get_field("status_note").max_length]
    key.checked_at = timezone.now()


class KeyListView(AppAPIView):
    """The stored keys (masked), for staff who may view keys; adding one (it becomes the active
    key at once), for staff who may add keys. ``?validate=1`` tests it first."""

    permission_classes = [StaffModelPermissions]
    queryset = APIKey.objects.filter(owner__isnull=True)  # the platform's; users' are theirs

    @extend_schema(
        summary="List the provider keys (staff)",
        description="The platform's stored provider keys, masked.",
        responses={200: s.APIKeySerializer(many=True)},
    )
    def get(self, request):
        return Response(s.APIKeySerializer(self.queryset.all(), many=True).data)

    @extend_schema(
        summary="Add a provider key (staff)",
        description="Stores the key encrypted and makes it its provider's active key at once.",
        parameters=[_VALIDATE],
        request=s.APIKeyCreateSerializer,
        responses={
            201: s.APIKeySerializer,
            **{code: OpenApiResponse(_ERROR) for code in (400, 403, 502, 504)},
        },
    )
    def post(self, request):
        validate = _validate_param(request)
        params = s.APIKeyCreateSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        key = APIKey(
            provider=params.validated_data["provider"],
            label=params.validated_data["label"],
            active=True,
        )
        key.set_secret(params.validated_data["key"])
        if validate:
            check_key(key)
        key.save()
        return Response(s.APIKeySerializer(key).data, status=status.HTTP_201_CREATED)


class KeyDetailView(AppAPIView):
    """Relabel, replace, activate or deactivate a key (staff who may change keys; ``?validate=1``
    tests the resulting key first); or delete it (staff who may delete keys)."""

    permission_classes = [StaffModelPermissions]
    queryset = APIKey.objects.filter(owner__isnull=True)  # users' keys are theirs (me/keys/)

    @extend_schema(
        summary="Change a provider key (staff)",
        description="Relabel, replace, activate or deactivate a stored key.",
        parameters=[_VALIDATE],
        request=s.APIKeyUpdateSerializer,
        responses={
            200: s.APIKeySerializer,
            **{code: OpenApiResponse(_ERROR) for code in (400, 403, 404, 502, 504)},
        },
    )
    def patch(self, request, pk: int):
        validate = _validate_param(request)
        key = get_object_or_404(self.queryset.all(), pk=pk)
        params = s.APIKeyUpdateSerializer(data=request.data, context={"provider": key.provider})
        params.is_valid(raise_exception=True)
        data = params.validated_data
        if "key" in data:
            key.set_secret(data["key"])
        if "label" in data:
            key.label = data["label"]
        if "active" in data:
            key.active = data["active"]
        if validate:
            self._check(key, replaced="key" in data)
        key.save()
        return Response(s.APIKeySerializer(key).data)

    @staticmethod
    def _check(key: APIKey, *, replaced: bool) -> None:
        """Test the secret the row is about to hold. A stored secret that the provider now
        rejects keeps the verdict (the key's health, SPEC §6) but none of the changes asked
        for; a rejected replacement leaves the row as it was."""
        try:
            check_key(key)
        except ValidationError as exc:
            if replaced:
                raise
            _note_check(key, str(exc.detail["key"][0]))
            APIKey.objects.filter(pk=key.pk).update(
                status_note=key.status_note, checked_at=key.checked_at
            )
            raise

    @extend_schema(
        summary="Delete a provider key (staff)",
        description="Removes the stored key for good.",
        responses={204: None, 403: OpenApiResponse(_ERROR)},
    )
    def delete(self, request, pk: int):
        get_object_or_404(self.queryset.all(), pk=pk).delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


class MyKeyListView(AppAPIView):
    """The caller's own provider keys (SPEC §12.2), masked; adding one (any authenticated
    user): stored encrypted, used at once for the caller's calls to that provider, in place of
    their previous key for it (deleted: a user's key has no use once replaced).
    ``?validate=1`` tests it with its provider first; ``platform_fallback: true`` lets a call
    the provider refuses with it be retried with the platform's key."""

    @extend_schema(
        summary="List your own keys",
        description="Your own provider keys, masked; your calls use them before the platform's.",
        responses={200: s.MyKeySerializer(many=True)},
    )
    def get(self, request):
        keys = APIKey.objects.filter(owner=request.user)
        return Response(s.MyKeySerializer(keys, many=True).data)

    @extend_schema(
        summary="Add your own key",
        description="Stores your key for a provider (replacing your previous one for it).",
        parameters=[_VALIDATE],
        request=s.MyKeyCreateSerializer,
        responses={
            201: s.MyKeySerializer,
            **{code: OpenApiResponse(_ERROR) for code in (400, 502, 504)},
        },
    )
    def post(self, request):
        validate = _validate_param(request)
        params = s.MyKeyCreateSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        provider = params.validated_data["provider"]
        key = APIKey(
            provider=provider,
            label=params.validated_data["label"],
            owner=request.user,
            active=True,
            platform_fallback=params.validated_data["platform_fallback"],
        )
        key.set_secret(params.validated_data["key"])
        if validate:
            check_key(key)
        with transaction.atomic():
            # Through the models (not a queryset delete) so every process drops the old key.
            for old in APIKey.objects.filter(owner=request.user, provider=provider):
                old.delete()
            key.save()
        return Response(s.MyKeySerializer(key).data, status=status.HTTP_201_CREATED)


class MyKeyDetailView(AppAPIView):
    """Delete one of the caller's own keys: their next call to its provider uses the
    platform's key. Another user's key is a 404, as if it did not exist."""

    @extend_schema(
        summary="Delete your own key",
        description="Your next call to its provider uses the platform's key.",
        responses={204: None, 404: OpenApiResponse(_ERROR)},
    )
    def delete(self, request, pk: int):
        get_object_or_404(APIKey.objects.filter(owner=request.user), pk=pk).delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


class ProvidersView(AppAPIView):
    """Each provider, built-in and custom: whether it is available (a key, or none needed), its
    default model, its priority, the primary one, and its circuit (closed, open, half_open)."""

    @extend_schema(
        summary="List the providers",
        description="Each provider: available, default model, priority, primary, circuit state.",
        responses={200: s.ProviderSerializer(many=True)},
    )
    def get(self, request):
        keys = resolve_keys(request.user.pk)  # available to this user: their own keys too
        primary = registry.primary_provider(keys)
        rows = [
            {
                "name": cls.name,
                "available": cls.name in keys,
                "default_model": cls.default_model(),
                "priority": priority,
                "primary": cls.name == primary,
                "circuit": circuits.state(cls.name),
            }
            for priority, cls in enumerate(registry.provider_classes(), start=1)
        ]
        return Response(s.ProviderSerializer(rows, many=True).data)


class HealthView(AppAPIView):
    """Liveness and a database round trip; needs no credentials."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes: list = []

    @extend_schema(
        summary="Health check",
        description="Liveness and a database round trip; needs no credentials.",
        responses={200: OpenApiTypes.OBJECT, 503: OpenApiTypes.OBJECT},
    )
    def get(self, request):
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
                cursor.fetchone()
        except Exception:
            return Response(
                {
                    "status": "error",
                    "database": "unavailable",
                    **error_body("database_unavailable", "The database is not reachable."),
                },
                status=status.HTTP_503_SERVICE_UNAVAILABLE,
            )
        return Response({"status": "ok", "database": "ok"})


class APIRootView(ErrorsAsJSON, AppAPIView):
    """A directory of the API: a link to each endpoint and to the docs. Clients get JSON; a
    browser (``Accept: text/html``) gets the same links as a page (DRF's browsable API)."""

    # JSON first: what a client that states no preference (curl, ``Accept: */*``) gets.
    renderer_classes = [JSONRenderer, BrowsableAPIRenderer]
    # The page's heading and text (DRF's view name and description).
    name = "LLM providers API"
    description = (
        "The endpoints of the API and its documentation (docs: interactive, schema: OpenAPI). "
        "Programs get these links as JSON: send Accept: application/json, or nothing."
    )

    @extend_schema(
        summary="API directory",
        description="A link to every endpoint and to the docs (a page in a browser).",
        responses={200: OpenApiTypes.OBJECT},
    )
    def get(self, request):
        names = [
            "generate",
            "usage",
            "calls",
            "cost-report",
            "keys",
            "my-keys",
            "providers",
            "health",
            "chat-completions",
            "models",
        ]
        links = {
            name: request.build_absolute_uri(reverse(f"llm_providers:{name}")) for name in names
        }
        # The OpenAPI views belong to the project (drf-spectacular is optional): linked when
        # the project routes them under these names.
        for name in ("docs", "schema"):
            with contextlib.suppress(NoReverseMatch):
                links[name] = request.build_absolute_uri(reverse(name))
        return Response(links)
