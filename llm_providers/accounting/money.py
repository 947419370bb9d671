"""Money: USD as ``Decimal`` in Python, stored as an exact integer number of picodollars.

SQLite has no exact decimal type: it does ``F("cost") + x`` and ``SUM(cost)`` in floating point, so
a DecimalField summary can drift from the sum of its ledger rows. Integers are exact on every
database, so money is kept as an integer count of 10⁻¹² USD. That resolves a single token of the
cheapest model (10⁻⁸ USD and below) and still holds $9.2 million in one 64-bit column.
"""

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

from django import forms
from django.core import exceptions
from django.db import models

PLACES = 12
QUANTUM = Decimal(1).scaleb(-PLACES)
ZERO = Decimal(0).quantize(QUANTUM)


def to_money(value) -> Decimal:
    """A Decimal rounded (half to even) to the stored precision."""
    return Decimal(value).quantize(QUANTUM, rounding=ROUND_HALF_EVEN)


def money_str(value: Decimal | None) -> str:
    """A decimal string without exponent or trailing zeros, as APIs and CSV show money."""
    if value is None:
        return "0"
    text = format(Decimal(value).normalize(), "f")
    return "0" if text in ("-0", "") else text


class MoneyField(models.BigIntegerField):
    description = "USD amount (stored as integer picodollars)"

    def from_db_value(self, value, expression, connection):
        return None if value is None else Decimal(int(value)).scaleb(-PLACES)

    def to_python(self, value):
        if value is None or isinstance(value, Decimal):
            return value
        try:
            return to_money(str(value))
        except (InvalidOperation, ValueError, TypeError):
            raise exceptions.ValidationError(
                "“%(value)s” is not an amount of money.", code="invalid", params={"value": value}
            ) from None

    def get_prep_value(self, value):
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            value = Decimal(value)
        amount = self.to_python(value)
        return int(amount.scaleb(PLACES).to_integral_value(rounding=ROUND_HALF_EVEN))

    def formfield(self, **kwargs):
        return forms.DecimalField(
            **{"max_digits": 19, "decimal_places": PLACES, "required": not self.blank, **kwargs}
        )


# The output field of money amounts in ``F()`` expressions (``F("total_cost") + Value(amount,
# output_field=MONEY)``), so they are sent in the stored unit. One instance serves them all.
MONEY = MoneyField()
