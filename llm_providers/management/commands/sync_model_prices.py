"""``manage.py sync_model_prices``: refresh OpenRouter's prices from its ``/models`` endpoint.

``GET {OPENROUTER_BASE_URL}/models`` needs no key. Its prices are strings in USD per *token*
(https://openrouter.ai/docs/api-reference/list-available-models); the table holds USD per
million tokens, converted exactly with ``Decimal``. A price an admin entered is never
overwritten, and models OpenRouter no longer lists are left as they are. (Reading the listing
is shared with the on-demand pricing of ``accounting.prices``.)
"""

from __future__ import annotations

from decimal import Decimal

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from llm_providers.accounting import prices
from llm_providers.accounting.money import money_str
from llm_providers.conf import llm_settings
from llm_providers.models import ModelPrice, PriceSource

PROVIDER = "openrouter"


class Command(BaseCommand):
    help = (
        "Update the OpenRouter prices of the price table from OpenRouter's /models endpoint "
        "(through OPENROUTER_BASE_URL). Prices entered in the admin are kept."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="show what would change, change nothing"
        )

    def handle(self, *args, **options) -> None:
        dry_run = options["dry_run"]
        listed, skipped = read_prices(fetch_models())
        verbose = dry_run or options["verbosity"] >= 2
        would = "would " if dry_run else ""
        created: list[ModelPrice] = []
        updated: list[ModelPrice] = []
        unchanged = 0
        kept: list[str] = []
        with transaction.atomic():
            existing = {
                row.model: row
                for row in ModelPrice.objects.select_for_update().filter(provider=PROVIDER)
            }
            now = timezone.now()
            for model, (prompt, completion) in sorted(listed.items()):
                row = existing.get(model)
                if row is None:
                    created.append(
                        ModelPrice(
                            provider=PROVIDER,
                            model=model,
                            prompt_per_million=prompt,
                            completion_per_million=completion,
                            source=PriceSource.OPENROUTER,
                        )
                    )
                    if verbose:
                        self.stdout.write(
                            f"{would}create {model}: {_price(prompt)} / {_price(completion)}"
                        )
                    continue
                if row.prompt_per_million == prompt and row.completion_per_million == completion:
                    unchanged += 1
                    continue
                if row.source == PriceSource.ADMIN:
                    kept.append(model)
                    continue
                if verbose:
                    self.stdout.write(
                        f"{would}update {model}: "
                        f"{_price(row.prompt_per_million)} / {_price(row.completion_per_million)}"
                        f" -> {_price(prompt)} / {_price(completion)}"
                    )
                row.prompt_per_million, row.completion_per_million = prompt, completion
                row.source, row.updated_at = PriceSource.OPENROUTER, now
                updated.append(row)
            if not dry_run:
                ModelPrice.objects.bulk_create(created)
                ModelPrice.objects.bulk_update(
                    updated,
                    ["prompt_per_million", "completion_per_million", "source", "updated_at"],
                )
        if not dry_run:
            prices.invalidate()  # bulk writes send no post_save

        if kept:
            self.stdout.write(
                f"Kept {len(kept)} price(s) entered by an admin (an admin's price wins over "
                f"OpenRouter's): {', '.join(kept)}"
            )
        summary = (
            f"created {len(created)}, updated {len(updated)}, unchanged {unchanged}, "
            f"skipped {skipped} (no fixed per-token price), kept (admin) {len(kept)}"
        )
        if dry_run:
            self.stdout.write(f"Dry run, nothing changed: would have {summary}.")
        else:
            self.stdout.write(self.style.SUCCESS(f"OpenRouter prices: {summary}."))


def fetch_models() -> object:
    try:
        return prices.fetch_listing(f"{str(llm_settings.OPENROUTER_BASE_URL).rstrip('/')}/models")
    except prices.PriceListingError as exc:
        raise CommandError(f"{exc} Nothing was changed.") from None


def read_prices(body: object) -> tuple[dict[str, tuple[Decimal, Decimal]], int]:
    """``({model: (prompt, completion) per million}, number skipped)`` of a /models body."""
    try:
        return prices.read_listing(body)
    except prices.PriceListingError as exc:
        raise CommandError(f"{exc} Nothing was changed.") from None


def _price(value: Decimal) -> str:
    return f"${money_str(value)}/M"
