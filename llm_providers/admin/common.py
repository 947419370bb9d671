"""What the admin's pages share: the provider and user filters, money and user columns."""

from __future__ import annotations

from decimal import Decimal

from django.contrib import admin
from django.contrib.auth import get_user_model

from .. import registry
from ..accounting import reports
from ..accounting.money import money_str
from ..models import LedgerEntry, UsageSummary

USERNAME_LOOKUP = "user__" + get_user_model().USERNAME_FIELD


class ProviderFilter(admin.ChoicesFieldListFilter):
    """The registry's providers (custom ones included), though the field has no choices."""

    def choices(self, changelist):
        yield {
            "selected": self.lookup_val is None,
            "query_string": changelist.get_query_string(remove=[self.lookup_kwarg]),
            "display": "All",
        }
        selected = set(self.lookup_val or ())
        for name, label in registry.as_choices():
            yield {
                "selected": name in selected,
                "query_string": changelist.get_query_string({self.lookup_kwarg: name}),
                "display": label,
            }


def usd(value: Decimal | None) -> str:
    return f"${money_str(value)}"


def user_or_system(obj: LedgerEntry | UsageSummary) -> str:
    return obj.user.get_username() if obj.user_id else reports.SYSTEM_KEY


class UserFilter(admin.RelatedOnlyFieldListFilter):
    """The users who have rows; rows without a user (system usage) as ``(system)``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.empty_value_display = reports.SYSTEM_KEY
