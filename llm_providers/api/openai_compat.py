"""``POST v1/chat/completions`` and ``GET v1/models``: OpenAI's shapes over the same router.

So the official ``openai`` SDK (``base_url=<host>/api/llm/v1``, ``api_key=<DRF token>``) works,
accounted like every other call. ``model`` picks the provider (SPEC §8, §12.1): ``<name>/<id>``
for any provider of the registry (``gemini/…``, ``hf/…``, a custom ``ollama/llama3.2``), any other
``<vendor>/<name>`` OpenRouter; omitted or ``auto`` is the primary provider with its default
model. The chain (SPEC §5.1) applies whatever ``model`` says: ``models`` (OpenRouter's name for
it) gives the request's own fallbacks, else ``LLM_FALLBACKS`` or the other available providers.
``v1/models`` lists the models in that routing form (``model_catalog``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from rest_framework import serializers
from rest_framework.response import Response

from .. import router
from ..exceptions import LLMError
from ..results import Generation, Message, TextDelta
from ..router import route
from .base import AppAPIView
from .model_catalog import find_model, list_models, routing_id
from .schema import OpenApiExample, OpenApiTypes, extend_schema, extend_schema_field
from .serializers import StrictBooleanField, StrictFloatField, StrictIntegerField
from .streaming import StreamingContentNegotiation, event_stream_response, sse
from .throttling import GenerationRateThrottle

_FINISH = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
}


def public_model(generation: Generation) -> str:
    """The model that answered, named the way a client would ask for it again."""
    return routing_id(generation.provider, generation.model)


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string"},
            {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "type": {"type": "string", "enum": ["text"]},
                        "text": {"type": "string"},
                    },
                    "required": ["type", "text"],
                },
            },
        ]
    }
)
class ChatContentField(serializers.JSONField):
    """A message's content as the schema documents it: a string or a list of text parts."""


@extend_schema_field(
    {
        "type": "object",
        "properties": {
            "type": {"type": "string", "enum": ["text", "json_object", "json_schema"]},
            "json_schema": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "schema": {"type": "object"}},
                "required": ["schema"],
            },
        },
        "required": ["type"],
    }
)
class ResponseFormatField(serializers.DictField):
    """``response_format`` as the schema documents it (OpenAI's shape)."""


class ChatMessageSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=["system", "developer", "user", "assistant"])
    content = ChatContentField()

    def validate_content(self, value) -> str:
        if isinstance(value, str):
            return value
        if isinstance(value, list):  # content parts: only text is supported
            texts = []
            for part in value:
                if not isinstance(part, dict) or part.get("type") != "text":
                    raise serializers.ValidationError("Only text content parts are supported.")
                if not isinstance(part.get("text"), str):
                    raise serializers.ValidationError("A text part needs a string 'text'.")
                texts.append(part["text"])
            return "".join(texts)
        raise serializers.ValidationError("content must be a string or a list of text parts.")


class ChatCompletionRequestSerializer(serializers.Serializer):
    """The fields used; others (``n`` = 1, ``user``, ``seed`` …) are accepted and ignored, as
    OpenAI-compatible servers do."""

    model = serializers.CharField(required=False, allow_null=True, allow_blank=True)
    # A ListField, not many=True: its min_length reaches the OpenAPI schema (minItems).
    messages = serializers.ListField(child=ChatMessageSerializer(), allow_empty=False, min_length=1)
    temperature = StrictFloatField(required=False, allow_null=True, min_value=0, max_value=2)
    max_tokens = StrictIntegerField(required=False, allow_null=True, min_value=1)
    max_completion_tokens = StrictIntegerField(required=False, allow_null=True, min_value=1)
    stream = StrictBooleanField(required=False, default=False)
    stream_options = serializers.DictField(required=False, allow_null=True)
    response_format = ResponseFormatField(required=False, allow_null=True)
    n = StrictIntegerField(required=False, allow_null=True, min_value=1, max_value=1)
    # The fallback models after ``model`` (OpenRouter's ``models``), in routing form.
    models = serializers.ListField(
        child=serializers.CharField(max_length=300), required=False, allow_null=True, max_length=10
    )

    def validate_response_format(self, value):
        if not value or value.get("type") in (None, "text"):
            return None
        if value.get("type") == "json_object":
            return {"type": "object"}
        if value.get("type") == "json_schema":
            json_schema = value.get("json_schema")
            schema = json_schema.get("schema") if isinstance(json_schema, dict) else None
            if not isinstance(schema, dict):
                raise serializers.ValidationError("json_schema.schema must be a JSON object.")
            return schema
        raise serializers.ValidationError("type must be text, json_object or json_schema.")

    def validate(self, attrs):
        if attrs.get("stream") and attrs.get("response_format") is not None:
            # A streamed answer is plain text, never checked against a schema.
            raise serializers.ValidationError(
                {
                    "response_format": [
                        "Streaming returns text; response_format needs stream: false."
                    ]
                }
            )
        return attrs


#: The request examples in the docs; ``model: "auto"`` (the primary provider's default model)
#: makes each succeed as it is with whatever provider is configured.
CHAT_EXAMPLES = [
    OpenApiExample(
        "Chat",
        summary="A conversation, answered by the primary provider",
        value={
            "model": "auto",
            "messages": [
                {"role": "system", "content": "You answer in one sentence."},
                {"role": "user", "content": "Why is the sky blue?"},
            ],
            "max_tokens": 200,
        },
        request_only=True,
    ),
    OpenApiExample(
        "JSON schema",
        summary="Structured output (OpenAI's response_format)",
        value={
            "model": "auto",
            "messages": [{"role": "user", "content": "Name the three primary colours of paint."}],
            "response_format": {
                "type": "json_schema",
                "json_schema": {
                    "name": "colours",
                    "schema": {
                        "type": "object",
                        "properties": {"colours": {"type": "array", "items": {"type": "string"}}},
                        "required": ["colours"],
                    },
                },
            },
        },
        request_only=True,
    ),
]


class ChatCompletionsView(AppAPIView):
    """OpenAI's chat completions (the SDK's ``chat.completions.create``) over the router."""

    # Its own rate only: one throttle history read and written per generation, not two.
    throttle_classes = [GenerationRateThrottle]
    content_negotiation_class = StreamingContentNegotiation

    @extend_schema(
        summary="Chat completions (OpenAI's shape)",
        description="What OpenAI's SDKs call with base_url=<host>/api/llm/v1; `model` in "
        "routing form (see v1/models) or `auto`; `stream: true` answers OpenAI's chunks.",
        request=ChatCompletionRequestSerializer,
        examples=CHAT_EXAMPLES,
        responses={200: OpenApiTypes.OBJECT, (200, "text/event-stream"): OpenApiTypes.STR},
    )
    def post(self, request):
        params = ChatCompletionRequestSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        system = "\n\n".join(
            m["content"] for m in data["messages"] if m["role"] in ("system", "developer")
        )
        messages = [
            Message(m["role"], m["content"])
            for m in data["messages"]
            if m["role"] in ("user", "assistant")
        ]
        provider, model = route(data.get("model"))
        options = {
            "system_prompt": system or None,
            "provider": provider,
            "model": model,
            "temperature": data.get("temperature"),
            "max_tokens": data.get("max_completion_tokens") or data.get("max_tokens"),
            "user_id": request.user,
            "fallback_models": _fallbacks(data.get("models"), data.get("model")),
        }
        created = int(time.time())
        if data.get("stream"):
            include_usage = bool((data.get("stream_options") or {}).get("include_usage"))
            items = router.stream(messages, **options)
            return event_stream_response(
                items, lambda it: _chunks(it, created, include_usage, data.get("model"))
            )
        generation = router.generate(messages, json_schema=data.get("response_format"), **options)
        return Response(
            {
                "id": f"chatcmpl-{generation.request_id}",
                "object": "chat.completion",
                "created": created,
                "model": public_model(generation),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": generation.text},
                        "finish_reason": _finish(generation.completion.finish_reason),
                        "logprobs": None,
                    }
                ],
                "usage": generation.usage.as_dict(),
            }
        )


def _fallbacks(models: list[str] | None, model: str | None) -> list[str] | None:
    """The request's own chain after ``model`` from OpenRouter's ``models`` (whose first entry
    may repeat ``model``); None when not given, [] (no fallback) when given empty."""
    if models is None:
        return None
    return models[1:] if models and models[0] == model else models


def _finish(reason: str | None) -> str:
    if not reason:
        return "stop"
    return _FINISH.get(reason, reason.lower() if reason.isupper() else reason)


def _chunks(
    items: Iterator, created: int, include_usage: bool, asked_model: str | None
) -> Iterator[str]:
    """OpenAI ``chat.completion.chunk`` events, then ``data: [DONE]``."""
    chunk_id = f"chatcmpl-{int(time.time() * 1000)}"

    def chunk(delta: dict, finish: str | None = None, model: str | None = None) -> dict:
        return {
            "id": chunk_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model or asked_model or "auto",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    try:
        yield sse(chunk({"role": "assistant", "content": ""}))
        for item in items:
            if isinstance(item, TextDelta):
                yield sse(chunk({"content": item.text}))
            elif isinstance(item, Generation):
                model = public_model(item)
                yield sse(chunk({}, _finish(item.completion.finish_reason), model))
                if include_usage:
                    yield sse(
                        {**chunk({}, None, model), "choices": [], "usage": item.usage.as_dict()}
                    )
        yield "data: [DONE]\n\n"
    except LLMError as exc:
        yield sse({"error": exc.as_dict()})
    finally:
        items.close()


class ModelSerializer(serializers.Serializer):
    """OpenAI's ``model`` object: ``id`` is what ``v1/chat/completions`` takes as ``model``."""

    id = serializers.CharField()
    object = serializers.ChoiceField(choices=["model"])
    created = serializers.IntegerField(help_text="Unix time its price was set; 0 if unpriced")
    owned_by = serializers.CharField(help_text="the provider's name (see providers/)")


class ModelListSerializer(serializers.Serializer):
    object = serializers.ChoiceField(choices=["list"])
    data = ModelSerializer(many=True)


class ModelListView(AppAPIView):
    """The models a client may name (SPEC §8): each available provider's default model, then
    the priced ones, in routing form; what the SDK's ``models.list()`` reads."""

    @extend_schema(
        operation_id="api_llm_v1_models_list",
        summary="List the models (OpenAI's shape)",
        description="Each available provider's default model and every priced model, with ids "
        "in the form v1/chat/completions takes as `model`; `owned_by` is the provider.",
        responses={200: ModelListSerializer},
    )
    def get(self, request):
        data = [entry.as_dict() for entry in list_models(request.user.pk)]
        return Response({"object": "list", "data": data})


class ModelDetailView(AppAPIView):
    """One model of the list (the SDK's ``models.retrieve``); an id not listed is a 404
    ``model_not_found``."""

    @extend_schema(
        operation_id="api_llm_v1_models_retrieve",
        summary="Retrieve a model (OpenAI's shape)",
        description="One model of v1/models, by any routing form of its id "
        "(e.g. gemini/gemini-2.5-flash); a model not in the list is a 404.",
        responses={200: ModelSerializer},
    )
    def get(self, request, model: str):
        return Response(find_model(model, request.user.pk).as_dict())
