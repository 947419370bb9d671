"""Prices and cost: what a call cost, and what one might cost (for budget reservations).

Cost precedence (SPEC §7): the provider's own reported cost (OpenRouter ``usage.cost``), else
tokens times the price table, else 0 flagged ``unpriced``: never a guess.

The price table is small and read on every call, so each process keeps it in memory for
``LLM_PRICE_CACHE_SECONDS`` and drops it at once when a price is saved in this process.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from decimal import Decimal

from django.db.models.signals import post_delete, post_save

from ..conf import llm_settings
from ..results import Usage
from .models import CostSource, ModelPrice
from .money import ZERO, to_money

logger = logging.getLogger(__name__)
MILLION = Decimal(1_000_000)


@dataclass(frozen=True)
class Price:
    prompt_per_million: Decimal
    completion_per_million: Decimal

    def cost(self, prompt_tokens: int, completion_tokens: int) -> Decimal:
        return to_money(
            (
                prompt_tokens * self.prompt_per_million
                + completion_tokens * self.completion_per_million
            )
            / MILLION
        )


_lock = threading.Lock()
_table: dict[tuple[str, str], Price] | None = None
_loaded_at = 0.0


def _prices() -> dict[tuple[str, str], Price]:
    global _table, _loaded_at
    ttl = float(llm_settings.LLM_PRICE_CACHE_SECONDS)
    table = _table
    if table is not None and time.monotonic() - _loaded_at < ttl:
        return table
    rows = ModelPrice.objects.values_list(
        "provider", "model", "prompt_per_million", "completion_per_million"
    )
    table = {(p, m): Price(pp, cp) for p, m, pp, cp in rows}
    with _lock:
        _table, _loaded_at = table, time.monotonic()
    return table


def invalidate(**kwargs) -> None:
    global _table
    with _lock:
        _table = None


post_save.connect(invalidate, sender=ModelPrice)
post_delete.connect(invalidate, sender=ModelPrice)


def _candidates(provider: str, model: str) -> list[str]:
    """Ids to look a model up under: as given, without ``models/``, a ``:suffix`` or a date."""
    model = (model or "").strip().lower()
    names = [model, model.removeprefix("models/")]
    base, _, suffix = names[-1].partition(":")
    if suffix:
        names.append(base)  # HF routing suffix (:novita) or an OpenRouter variant (:nitro)
    return list(dict.fromkeys(n for n in names if n))


def price_for(provider: str, model: str) -> Price | None:
    table = _prices()
    if provider == "openrouter" and (model or "").lower().endswith(":free"):
        return Price(Decimal(0), Decimal(0))  # OpenRouter's free variants cost nothing
    for name in _candidates(provider, model):
        if (price := table.get((provider, name))) is not None:
            return price
    return None


def cost_of(
    provider: str, models: list[str], usage: Usage, *, estimated: bool = False
) -> tuple[Decimal, str]:
    """(cost in USD, cost source) of one attempt; ``models`` in order of preference."""
    if usage.reported_cost is not None:
        return to_money(usage.reported_cost), CostSource.PROVIDER
    for model in models:
        price = price_for(provider, model)
        if price is not None:
            source = CostSource.ESTIMATED if estimated else CostSource.PRICE_TABLE
            return price.cost(usage.prompt_tokens, usage.completion_tokens), source
    if usage.total_tokens:
        logger.warning(
            "No price for %s model %r: its %d tokens are recorded at cost 0 (unpriced). "
            "Add it under Model prices in the admin or run manage.py sync_model_prices.",
            provider,
            models[0] if models else "",
            usage.total_tokens,
        )
    return ZERO, CostSource.UNPRICED


def estimate_tokens(chars: int) -> int:
    """Rough token count of text: about four characters a token for English prose."""
    return math.ceil(chars / 4)


def worst_case_cost(provider: str, model: str, prompt_chars: int, max_tokens: int) -> Decimal:
    """An upper estimate of a call's cost, for budget reservations (0 when unpriced)."""
    price = price_for(provider, model)
    if price is None:
        return ZERO
    return price.cost(estimate_tokens(prompt_chars) + 16, max_tokens)
