"""The models ``v1/models`` lists (SPEC §8): each available provider's default model and every
priced model, named in the routing form that ``v1/chat/completions`` accepts as ``model``.

Routing form (``router.route``): ``<provider>/<id>`` for Gemini, Hugging Face and custom
providers; OpenRouter's own ``<vendor>/<name>``, unless that vendor is also a provider's name or
alias (``google/…`` means Gemini): then ``openrouter/<vendor>/<name>``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import registry
from ..exceptions import ModelNotFound
from ..keys import resolve_keys
from ..models import ModelPrice
from ..router import route


def routing_id(provider: str, model: str) -> str:
    """The ``model`` a client sends to reach ``model`` of ``provider`` (its canonical name)."""
    if provider == "openrouter" and route(model) == ("openrouter", model):
        return model
    return f"{provider}/{model}"


@dataclass(frozen=True)
class ModelEntry:
    """One model of the list: whose it is, its id upstream, and when its price was set."""

    provider: str
    model: str
    created: int  # Unix time of its price row; 0 for a default model without a price

    @property
    def id(self) -> str:
        return routing_id(self.provider, self.model)

    def as_dict(self) -> dict:
        """OpenAI's ``model`` object."""
        return {
            "id": self.id,
            "object": "model",
            "created": self.created,
            "owned_by": self.provider,
        }


def list_models(user_id: int | None) -> list[ModelEntry]:
    """The models for ``user_id`` (whose own keys make providers available to them), in the
    providers' priority order; within a provider its default model first (when available),
    then its priced models by id. No model twice (ids compared without case, as prices are)."""
    available = resolve_keys(user_id)
    priced = _priced_models()
    entries: list[ModelEntry] = []
    seen: set[tuple[str, str]] = set()
    for cls in registry.provider_classes():
        candidates = [ModelEntry(cls.name, cls.default_model(), 0)] if cls.name in available else []
        candidates += sorted(priced.get(cls.name, []), key=lambda e: e.model)
        for entry in candidates:
            key = (entry.provider, entry.model.lower())
            if key not in seen and _well_formed(cls, entry.model):
                seen.add(key)
                entries.append(entry)
    return entries


def find_model(model_id: str, user_id: int | None) -> ModelEntry:
    """The listed model ``model_id`` routes to (any routing form of it: ``hf/…``,
    ``openrouter/openai/…``); ``ModelNotFound`` when none."""
    provider, model = route(model_id)
    if provider is not None and model is not None:
        for entry in list_models(user_id):
            if entry.provider == provider and entry.model.lower() == model.lower():
                return entry
    raise ModelNotFound(
        f"Model not found: {model_id!r} is not in the model list (GET v1/models).",
        model=model_id,
    )


def _priced_models() -> dict[str, list[ModelEntry]]:
    """The price table's models, by provider name (``list_models`` reads those of the
    registered providers only)."""
    rows = ModelPrice.objects.values_list("provider", "model", "updated_at")
    priced: dict[str, list[ModelEntry]] = {}
    for provider, model, updated_at in rows:
        priced.setdefault(provider, []).append(
            ModelEntry(provider, model, int(updated_at.timestamp()))
        )
    return priced


def _well_formed(cls, model: str) -> bool:
    """Whether the provider would take ``model`` (a malformed priced id is not listed)."""
    try:
        cls.check_model(model)
    except ModelNotFound:
        return False
    return True
