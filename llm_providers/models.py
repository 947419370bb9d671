"""Database models of llm_providers: the keys here, the accounting tables in
``accounting.models``."""

from django.conf import settings
from django.db import models, transaction
from django.db.models import Q

from . import crypto
from .accounting.models import (  # noqa: F401  (the app's models, in one module)
    PROVIDER_CHOICES,
    PROVIDER_NAMES,
    SUMMARY_PROVIDERS,
    BudgetAlert,
    CallStatus,
    CostSource,
    KeyOwner,
    LedgerEntry,
    ModelPrice,
    PriceSource,
    UsageAdjustment,
    UsageBudget,
    UsageSummary,
    billing_period,
)
from .custom_models import CustomProvider  # noqa: F401  (read by the registry)
from .registry import canonical_name, provider_class


def mask_secret(secret_prefix: str, last_four: str) -> str:
    """How a key is shown anywhere: its public prefix and last four characters, ``sk-or-…abcd``."""
    return f"{secret_prefix}…{last_four}"


class APIKey(models.Model):
    """A provider key, encrypted at rest: the platform's (``owner`` None) or a user's own
    (SPEC §12.2, used only for that user's calls). One active key per (provider, owner); more
    may be stored."""

    # Any provider of the registry, custom ones included: no choices, so adding one needs no
    # migration; forms and serializers check the name against the registry.
    provider = models.CharField(max_length=32)
    label = models.CharField(max_length=100, blank=True)
    encrypted_secret = models.TextField(editable=False)
    # Only what the mask shows: the provider's well-known public prefix and the last four.
    secret_prefix = models.CharField(max_length=8, blank=True, editable=False)
    last_four = models.CharField(max_length=4, editable=False)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Key health (SPEC §6): the last check's result, or why the key was deactivated (a
    # provider rejecting it on LLM_CIRCUIT_FAILURES calls in a row). Never the key itself.
    status_note = models.CharField(max_length=300, blank=True, editable=False)
    checked_at = models.DateTimeField(null=True, blank=True, editable=False)
    # None: the platform's key, used for everyone's calls; a user: that user's own key, used
    # for their calls only (and deleted with them).
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="llm_keys",
        editable=False,
    )
    # A user's own key (SPEC §12.2): when its provider rejects it, may the call be retried with
    # the platform's key (and count against the user's budget)? Only if its owner said so.
    platform_fallback = models.BooleanField(default=False, editable=False)

    class Meta:
        verbose_name = "API key"
        ordering = ["provider", "-active", "-created_at"]
        constraints = [
            # NULLs are distinct in unique constraints: the platform's keys need their own.
            models.UniqueConstraint(
                fields=["provider"],
                condition=Q(active=True, owner__isnull=True),
                name="one_active_key_per_provider",
            ),
            models.UniqueConstraint(
                fields=["provider", "owner"],
                condition=Q(active=True, owner__isnull=False),
                name="one_active_user_key_per_provider",
            ),
        ]

    def __str__(self) -> str:
        label = f" {self.label!r}" if self.label else ""
        return f"{self.get_provider_display()} key #{self.pk}{label} ({self.mask})"

    def save(self, *args, **kwargs) -> None:
        # Activating a key deactivates the provider's other keys of the same owner in the same
        # transaction, so the one-active-key constraints hold without anyone doing it by hand.
        with transaction.atomic():
            if self.active:
                APIKey.objects.filter(
                    provider=self.provider, owner_id=self.owner_id, active=True
                ).exclude(pk=self.pk).update(active=False)
            super().save(*args, **kwargs)

    def validate_constraints(self, exclude=None) -> None:
        # Model validation (ModelForm, the admin) would refuse a second active key, which is
        # just what save() resolves by deactivating the first. Both constraints are on
        # provider, so excluding provider skips them; the database still enforces them.
        super().validate_constraints(exclude={*(exclude or ()), "provider"})

    def get_provider_display(self) -> str:
        """The provider's label (what Django's choices gave, for any provider of the registry)."""
        name = canonical_name(self.provider)
        return provider_class(name).label if name else self.provider

    @property
    def is_users(self) -> bool:
        """A user's own key (not the platform's)."""
        return self.owner_id is not None

    @property
    def mask(self) -> str:
        return mask_secret(self.secret_prefix, self.last_four)

    def set_secret(self, secret: str) -> None:
        """Encrypt ``secret`` into this row (not saved). Only the mask's parts stay readable."""
        secret = secret.strip()
        name = canonical_name(self.provider)  # None: a custom provider since removed
        prefix = provider_class(name).key_prefix if name else ""
        self.encrypted_secret = crypto.encrypt(secret)
        self.secret_prefix = prefix if prefix and secret.startswith(prefix) else ""
        # Short secrets (never real keys, but possible input) reveal nothing.
        self.last_four = secret[-4:] if len(secret) >= 16 else ""

    def secret(self) -> str:
        return crypto.decrypt(self.encrypted_secret, what=f"The stored {self}")
