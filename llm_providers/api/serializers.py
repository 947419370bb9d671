"""Request validation and response shapes of the REST API (SPEC §8)."""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers

from .. import registry
from ..accounting.money import money_str
from ..conf import llm_settings
from ..exceptions import LLMError, ModelNotFound
from ..forms import check_secret
from ..keys import resolve_keys
from ..models import APIKey, LedgerEntry
from ..structured import check_schema
from .schema import extend_schema_field

PERIOD = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
# The built-in providers' names and aliases (the OpenAPI enum's name in the project's settings);
# the fields accept every provider of the registry, custom ones included.
PROVIDER_INPUTS = [*(cls.name for cls in registry.BUILTIN_PROVIDERS), *registry.ALIASES]


class StrictCharField(serializers.CharField):
    """A string, and only a string: 42 or true are not silently turned into text."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


@extend_schema_field(
    {"type": "string", "description": "A provider's name or alias (see providers/)."}
)
class ProviderField(StrictCharField):
    """A provider of the registry, built-in or custom, by name or alias → its canonical name."""

    default_error_messages = {"invalid_choice": '"{input}" is not a valid choice.'}

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        name = registry.canonical_name(value)
        if name is None:
            self.fail("invalid_choice", input=value)
        return name


class StrictFloatField(serializers.FloatField):
    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictIntegerField(serializers.IntegerField):
    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


class RejectUnknownFieldsMixin:
    """A misspelt field ("temprature") is an error, not silently ignored."""

    def validate(self, attrs):
        unknown = sorted(set(self.initial_data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().validate(attrs)


@extend_schema_field(
    {
        "type": "object",
        "additionalProperties": True,
        "description": "A JSON Schema (an object) the answer must match; the parsed answer "
        "is returned as `data`.",
    }
)
class JSONSchemaField(serializers.JSONField):
    """A JSON Schema, documented as the object it is (checked by ``validate_json_schema``)."""


class GenerateRequestSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    """A generation: the prompt, and optionally the provider, model and output constraints.
    Without ``provider`` and ``model`` the primary provider answers with its default model."""

    prompt = StrictCharField(trim_whitespace=False)
    system_prompt = StrictCharField(
        required=False, allow_null=True, allow_blank=True, trim_whitespace=False
    )
    provider = ProviderField(required=False, allow_null=True)
    model = StrictCharField(required=False, allow_null=True, max_length=200)
    temperature = StrictFloatField(required=False, allow_null=True, min_value=0, max_value=2)
    max_tokens = StrictIntegerField(required=False, allow_null=True, min_value=1)
    json_schema = JSONSchemaField(required=False, allow_null=True)
    stream = StrictBooleanField(required=False, default=False)
    # The chain after the first model (SPEC §5.1), e.g. ["openrouter/openai/gpt-4o-mini"].
    fallback_models = serializers.ListField(
        child=StrictCharField(max_length=300), required=False, allow_null=True, max_length=10
    )

    def validate_prompt(self, value: str) -> str:
        if not value.strip():
            raise serializers.ValidationError("The prompt is empty.")
        limit = int(llm_settings.LLM_MAX_PROMPT_CHARS)
        if len(value) > limit:
            raise serializers.ValidationError(f"At most {limit} characters.")
        return value

    def validate_max_tokens(self, value: int | None) -> int | None:
        ceiling = int(llm_settings.LLM_MAX_OUTPUT_TOKENS)
        if value is not None and value > ceiling:
            raise serializers.ValidationError(f"At most {ceiling}.")
        return value

    def validate_json_schema(self, value):
        if value is None:
            return None
        try:
            check_schema(value)
        except LLMError as exc:
            raise serializers.ValidationError(exc.message) from None
        return value

    def validate(self, attrs):
        attrs = super().validate(attrs)
        if attrs.get("stream") and attrs.get("json_schema") is not None:
            raise serializers.ValidationError(
                {"stream": ["Streaming returns text; json_schema needs stream: false."]}
            )
        model = attrs.get("model")
        if model:
            self._check_model(attrs.get("provider"), model)
        return attrs

    def _check_model(self, provider: str | None, model: str) -> None:
        """Refuse a model id malformed for the provider that would get it (400, no call): the
        named one, else the primary of the caller's keys (``context["user_id"]``: their own
        keys can make another provider their primary, SPEC §12.2)."""
        name = registry.canonical_name(provider) if provider else None
        if name is None:
            try:
                name = registry.primary_provider(resolve_keys(self.context.get("user_id")))
            except LLMError:
                return  # the router reports the configuration problem
        if name is None:
            return
        try:
            registry.provider_class(name).check_model(model)
        except ModelNotFound as exc:
            raise serializers.ValidationError({"model": [exc.message]}) from None


class UsageSerializer(serializers.Serializer):
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    total_tokens = serializers.IntegerField()


class GenerationSerializer(serializers.Serializer):
    """``generate/``'s answer; also the data of the stream's ``done`` event (without text)."""

    id = serializers.CharField(source="request_id")
    provider = serializers.CharField()
    model = serializers.CharField()
    text = serializers.CharField()
    data = serializers.JSONField(allow_null=True)
    usage = serializers.SerializerMethodField()
    cost = serializers.SerializerMethodField()
    attempts = serializers.IntegerField(source="upstream_requests")
    fallback_from = serializers.ListField(child=serializers.CharField())

    def get_usage(self, generation) -> dict:
        return generation.usage.as_dict()

    def get_cost(self, generation) -> str:
        return money_str(generation.cost)


class LedgerEntrySerializer(serializers.ModelSerializer):
    cost = serializers.SerializerMethodField()

    class Meta:
        model = LedgerEntry
        fields = [
            "id",
            "request_id",
            "provider",
            "model",
            "status",
            "error_code",
            "prompt_tokens",
            "completion_tokens",
            "total_tokens",
            "cost",
            "cost_source",
            "latency_ms",
            "retries",
            "is_fallback",
            "resumed",
            "key_owner",
            "created_at",
        ]

    def get_cost(self, entry) -> str:
        return money_str(entry.cost)


class APIKeySerializer(serializers.ModelSerializer):
    """Keys as the key manager shows them: the mask, never the key."""

    class Meta:
        model = APIKey
        fields = ["id", "provider", "label", "mask", "active", "created_at", "last_used_at"]
        read_only_fields = fields


class APIKeyCreateSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    provider = ProviderField()
    key = StrictCharField(write_only=True, trim_whitespace=False)
    label = StrictCharField(required=False, allow_blank=True, max_length=100, default="")

    def validate(self, attrs):
        attrs = super().validate(attrs)
        if "key" in attrs:
            attrs["key"] = checked_key(attrs["key"], attrs["provider"])
        return attrs


class MyKeySerializer(APIKeySerializer):
    """A user's own key (``me/keys/``): the mask, and whether a call its provider rejects may be
    retried with the platform's key."""

    class Meta(APIKeySerializer.Meta):
        fields = [*APIKeySerializer.Meta.fields, "platform_fallback"]
        read_only_fields = fields


class MyKeyCreateSerializer(APIKeyCreateSerializer):
    platform_fallback = StrictBooleanField(required=False, default=False)


class APIKeyUpdateSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    key = StrictCharField(required=False, write_only=True, trim_whitespace=False)
    label = StrictCharField(required=False, allow_blank=True, max_length=100)
    active = StrictBooleanField(required=False)

    def validate(self, attrs):
        attrs = super().validate(attrs)
        if "key" in attrs:
            attrs["key"] = checked_key(attrs["key"], self.context["provider"])
        return attrs


def checked_key(value: str, provider: str) -> str:
    """A pasted key as ``check_secret`` cleans it for ``provider``, or a ValidationError."""
    try:
        return check_secret(value, min_length=registry.provider_class(provider).min_key_length)
    except DjangoValidationError as exc:
        raise serializers.ValidationError({"key": exc.messages}) from None


class ProviderSerializer(serializers.Serializer):
    name = serializers.CharField()
    available = serializers.BooleanField()
    default_model = serializers.CharField()
    priority = serializers.IntegerField()
    primary = serializers.BooleanField()
    circuit = serializers.ChoiceField(choices=["closed", "open", "half_open"])


class ReportRowSerializer(serializers.Serializer):
    key = serializers.CharField()
    calls = serializers.IntegerField()
    tokens = serializers.IntegerField()
    cost = serializers.CharField()
