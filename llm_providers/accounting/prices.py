"""Prices and cost: what a call cost, and what one might cost (for budget reservations).

Cost precedence (SPEC §7): the provider's own reported cost (OpenRouter ``usage.cost``), else
tokens times the price table, else 0 flagged ``unpriced``: never a guess.

The price table is small and read on every call, so each process keeps it in memory for
``LLM_PRICE_CACHE_SECONDS`` and drops it at once when a price is saved in this process.

A model missing from the table is priced on demand where its provider publishes prices
(``PUBLISHED_PRICES``: OpenRouter's ``/models``, fetched once and kept in Django's cache for
``LISTING_SECONDS``); the price found is stored (source ``openrouter``), so it is known from then
on, to every process.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import requests
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models.signals import post_delete, post_save

from ..conf import llm_settings
from ..results import Usage
from .models import CostSource, ModelPrice, PriceSource
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
    return _worst_case(price, prompt_chars, max_tokens)


def _worst_case(price: Price, prompt_chars: int, max_tokens: int) -> Decimal:
    return price.cost(estimate_tokens(prompt_chars) + 16, max_tokens)


def chain_worst_case(
    entries: Iterable[tuple[str, str]], prompt_chars: int, max_tokens: int, *, on_demand: bool
) -> tuple[Decimal, list[tuple[str, str]]]:
    """``(worst case of the dearest entry, [(provider, model) with no known price])`` of a
    chain of ``(provider, model)`` entries. ``on_demand``: look a missing price up where its
    provider publishes prices (``price_on_demand``) before calling it unknown."""
    worst, unpriced = ZERO, []
    for provider, model in entries:
        price = price_on_demand(provider, model) if on_demand else price_for(provider, model)
        if price is None:
            unpriced.append((provider, model))
        else:
            worst = max(worst, _worst_case(price, prompt_chars, max_tokens))
    return worst, unpriced


# --- Prices published by providers -------------------------------------------------------------

# How long a provider's price listing is kept in Django's cache (shared by the processes that
# share the cache): one fetch serves every unknown model asked for meanwhile.
LISTING_SECONDS = 3600
# After a failed fetch, how long to wait before fetching again (a miss is not cached as long).
FAILED_LISTING_SECONDS = 60
MILLION_STORED = Decimal("1E-8")  # ModelPrice's columns: 8 decimal places
LARGEST = Decimal(10) ** 12  # and 20 digits


class PriceListingError(Exception):
    """A provider's price listing could not be fetched or read (the message says why)."""


def openrouter_listing() -> dict[str, tuple[Decimal, Decimal]]:
    """OpenRouter's prices, ``{model: (prompt, completion) USD per million tokens}``, from
    ``GET {OPENROUTER_BASE_URL}/models`` (no key needed). Raises ``PriceListingError``."""
    return read_listing(
        fetch_listing(f"{str(llm_settings.OPENROUTER_BASE_URL).rstrip('/')}/models")
    )[0]


def fetch_listing(url: str) -> object:
    """The JSON body of ``GET url``; ``PriceListingError`` when it cannot be had."""
    try:
        response = requests.get(
            url, headers={"Accept": "application/json"}, timeout=float(llm_settings.LLM_TIMEOUT)
        )
    except requests.RequestException as exc:
        raise PriceListingError(f"Could not reach {url}: {exc}") from None
    if response.status_code != 200:
        raise PriceListingError(
            f"{url} answered HTTP {response.status_code}: {response.text[:300]!r}."
        )
    try:
        return response.json()
    except ValueError:
        raise PriceListingError(f"{url} did not answer JSON: {response.text[:300]!r}.") from None


def read_listing(body: object) -> tuple[dict[str, tuple[Decimal, Decimal]], int]:
    """``({model: (prompt, completion) per million}, number skipped)`` of a ``/models`` body
    (OpenRouter's shape: prices are strings in USD per *token*).

    Skipped: entries without an id or a prompt/completion price, and variable-price routers
    (``openrouter/auto`` lists ``"-1"``).
    """
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        raise PriceListingError('Malformed /models answer: expected {"data": [...]}.')
    listed: dict[str, tuple[Decimal, Decimal]] = {}
    skipped = 0
    for entry in data:
        model = entry.get("id") if isinstance(entry, dict) else None
        price = entry.get("pricing") if isinstance(entry, dict) else None
        if not isinstance(model, str) or not model.strip() or not isinstance(price, dict):
            skipped += 1
            continue
        prompt = per_million(price.get("prompt"))
        completion = per_million(price.get("completion"))
        if prompt is None or completion is None:
            skipped += 1
            continue
        listed[model.strip().lower()] = (prompt, completion)
    return listed, skipped


def per_million(per_token: object) -> Decimal | None:
    """USD per token (a string, as OpenRouter sends it) → USD per million tokens, exactly."""
    if per_token is None or isinstance(per_token, bool):
        return None
    try:
        value = Decimal(str(per_token))
    except InvalidOperation:
        return None
    if not value.is_finite() or value < 0 or value * MILLION >= LARGEST:
        return None
    return (value * MILLION).quantize(MILLION_STORED)


# Extension point: providers that publish their prices, and how to read them. A function
# returns ``{model id (lower case): (prompt, completion) USD per million tokens}`` or raises
# ``PriceListingError``.
PUBLISHED_PRICES: dict[str, Callable[[], dict[str, tuple[Decimal, Decimal]]]] = {
    "openrouter": openrouter_listing,
}


def published_prices(provider: str) -> dict[str, tuple[Decimal, Decimal]]:
    """The provider's published price listing, from Django's cache or fetched once ({} when it
    publishes none or the fetch failed: a failure is logged and retried a minute later)."""
    fetch = PUBLISHED_PRICES.get(provider)
    if fetch is None:
        return {}
    key = f"llm_providers:price_listing:{provider}"
    listing = cache.get(key)
    if listing is not None:
        return listing
    try:
        listing, ttl = fetch(), LISTING_SECONDS
    except PriceListingError as exc:
        logger.warning("Could not read %s's published prices: %s", provider, exc)
        listing, ttl = {}, FAILED_LISTING_SECONDS
    cache.set(key, listing, ttl)
    return listing


def price_on_demand(provider: str, model: str) -> Price | None:
    """The model's price from the table, else from its provider's published prices (then
    stored in the table, source ``openrouter``), else None."""
    price = price_for(provider, model)
    if price is not None:
        return price
    listing = published_prices(provider)
    for name in _candidates(provider, model):
        if (found := listing.get(name)) is not None:
            _store(provider, name, *found)
            return Price(*found)
    return None


def _store(provider: str, model: str, prompt: Decimal, completion: Decimal) -> None:
    """Add a published price to the table. Another process may be adding it at the same
    moment: the unique constraint keeps one row, and either is the same price."""
    try:
        with transaction.atomic():
            ModelPrice.objects.get_or_create(
                provider=provider,
                model=model,
                defaults={
                    "prompt_per_million": prompt,
                    "completion_per_million": completion,
                    "source": PriceSource.OPENROUTER,
                },
            )
    except IntegrityError:
        pass
    logger.info(
        "Priced %s model %r on demand from its published prices: $%s / $%s per million tokens.",
        provider,
        model,
        prompt,
        completion,
    )
