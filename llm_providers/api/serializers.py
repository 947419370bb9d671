"""Request validation and response shapes of the REST API (SPEC §8)."""

from __future__ import annotations

import copy
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

PERIOD = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
PROVIDER_INPUTS = [*registry.provider_names(), *registry.ALIASES]


class StrictCharField(serializers.CharField):
    """A string, and only a string: 42 or true are not silently turned into text."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


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


class ShallowFieldsMixin:
    """Copy the declared fields shallowly for each instance, not deeply (DRF's default).

    A serializer binds its own copy of every field, so DRF deep-copies them per instance, and
    a deep copy rebuilds each field from its arguments: most of the CPU a request serializer
    costs, on every generation. A shallow copy is enough for flat fields (no child fields, no
    nested serializers) whose shared parts (validators, choices, messages) nothing changes.
    """

    def get_fields(self):
        return {name: copy.copy(field) for name, field in self._declared_fields.items()}


class GenerateRequestSerializer(
    ShallowFieldsMixin, RejectUnknownFieldsMixin, serializers.Serializer
):
    prompt = StrictCharField(trim_whitespace=False)
    system_prompt = StrictCharField(
        required=False, allow_null=True, allow_blank=True, trim_whitespace=False
    )
    provider = serializers.ChoiceField(choices=PROVIDER_INPUTS, required=False, allow_null=True)
    model = StrictCharField(required=False, allow_null=True, max_length=200)
    temperature = StrictFloatField(required=False, allow_null=True, min_value=0, max_value=2)
    max_tokens = StrictIntegerField(required=False, allow_null=True, min_value=1)
    json_schema = serializers.JSONField(required=False, allow_null=True)
    stream = StrictBooleanField(required=False, default=False)

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

    @staticmethod
    def _check_model(provider: str | None, model: str) -> None:
        """Refuse a model id malformed for the provider that would get it (400, no call)."""
        name = registry.canonical_name(provider) if provider else None
        if name is None:
            try:
                name = registry.primary_provider(resolve_keys())
            except LLMError:
                return  # the router reports the configuration problem
        if name is None:
            return
        try:
            registry.provider_class(name).check_model(model)
        except ModelNotFound as exc:
            raise serializers.ValidationError({"model": [exc.message]}) from None


# --- generate/'s request without a serializer instance, when it is plainly valid ---------------

_GENERATE_FIELDS = frozenset(GenerateRequestSerializer._declared_fields)
_PROVIDER_INPUTS = frozenset(PROVIDER_INPUTS)
_MODEL_MAX_LENGTH = GenerateRequestSerializer._declared_fields["model"].max_length
_SURROGATE = re.compile("[\ud800-\udfff]")


def _plain_text(value) -> bool:
    """A string every CharField here takes as it is: no NUL, no lone surrogate (DRF's
    validators refuse both)."""
    return (
        type(value) is str
        and "\x00" not in value
        and (value.isascii() or _SURROGATE.search(value) is None)
    )


def plain_generate_args(data) -> dict | None:
    """``GenerateRequestSerializer(data=data).validated_data`` for a request that is plainly
    valid, or None: then the serializer itself decides, with its own errors.

    A serializer instance copies and binds its eight fields and runs each one's validators,
    most of what validating a ``generate/`` request costs, on every generation. This accepts
    only what those fields accept unchanged (JSON's own types, in range), converts as they
    convert (``model`` trimmed, an integer temperature as a float, ``stream`` defaulting to
    false), and runs the serializer's own checks (prompt, max_tokens, the model's form). Any
    doubt — a wrong type, a bound crossed, an unknown field, a ``json_schema`` — is None, so
    every error still comes from the serializer. ``tests/api/test_generate_fast_path.py``
    holds the two equal over generated requests.
    """
    if type(data) is not dict or not data.keys() <= _GENERATE_FIELDS:
        return None
    prompt = data.get("prompt")
    if (
        not _plain_text(prompt)
        or not prompt.strip()
        or len(prompt) > int(llm_settings.LLM_MAX_PROMPT_CHARS)
    ):
        return None
    args = {"prompt": prompt}
    if "system_prompt" in data:
        value = data["system_prompt"]
        if value is not None and not _plain_text(value):
            return None
        args["system_prompt"] = value
    if "provider" in data:
        value = data["provider"]
        if value is not None and (type(value) is not str or value not in _PROVIDER_INPUTS):
            return None
        args["provider"] = value
    if "model" in data:
        value = data["model"]
        if value is not None:
            if not _plain_text(value):
                return None
            value = value.strip()  # CharField's trim_whitespace
            if not value or len(value) > _MODEL_MAX_LENGTH:
                return None
        args["model"] = value
    if "temperature" in data:
        value = data["temperature"]
        if value is not None:
            if type(value) not in (int, float) or not 0 <= value <= 2:
                return None
            value = float(value)
        args["temperature"] = value
    if "max_tokens" in data:
        value = data["max_tokens"]
        if value is not None and (
            type(value) is not int or not 1 <= value <= int(llm_settings.LLM_MAX_OUTPUT_TOKENS)
        ):
            return None
        args["max_tokens"] = value
    if "json_schema" in data:
        if data["json_schema"] is not None:
            return None  # checked (and its errors worded) by the serializer
        args["json_schema"] = None
    stream = data.get("stream", False)
    if type(stream) is not bool:
        return None
    args["stream"] = stream
    if args.get("model"):
        try:
            GenerateRequestSerializer._check_model(args.get("provider"), args["model"])
        except serializers.ValidationError:
            return None
    return args


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


def generation_data(generation) -> dict:
    """``GenerationSerializer(generation).data``, built directly: a serializer instance deep-
    copies its declared fields, a noticeable share of a ``generate/`` call's CPU. The
    serializer stays the documented shape; a test holds the two equal."""

    def text(value):
        return None if value is None else str(value)

    fallback_from = generation.fallback_from
    return {
        "id": text(generation.request_id),
        "provider": text(generation.provider),
        "model": text(generation.model),
        "text": text(generation.text),
        "data": generation.data,
        "usage": generation.usage.as_dict(),
        "cost": money_str(generation.cost),
        "attempts": generation.upstream_requests,
        "fallback_from": None if fallback_from is None else [str(p) for p in fallback_from],
    }


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
    provider = serializers.ChoiceField(choices=PROVIDER_INPUTS)
    key = StrictCharField(write_only=True, trim_whitespace=False)
    label = StrictCharField(required=False, allow_blank=True, max_length=100, default="")

    def validate_provider(self, value: str) -> str:
        return registry.provider_class(value).name

    def validate_key(self, value: str) -> str:
        try:
            return check_secret(value)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from None


class APIKeyUpdateSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    key = StrictCharField(required=False, write_only=True, trim_whitespace=False)
    label = StrictCharField(required=False, allow_blank=True, max_length=100)
    active = StrictBooleanField(required=False)

    validate_key = APIKeyCreateSerializer.validate_key


class ProviderSerializer(serializers.Serializer):
    name = serializers.CharField()
    available = serializers.BooleanField()
    default_model = serializers.CharField()
    priority = serializers.IntegerField()
    primary = serializers.BooleanField()


class ReportRowSerializer(serializers.Serializer):
    key = serializers.CharField()
    calls = serializers.IntegerField()
    tokens = serializers.IntegerField()
    cost = serializers.CharField()
