"""The accounting tables: the ledger, the per-user summaries, prices and budgets."""

from datetime import UTC

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from .money import ZERO, MoneyField

# The providers with their own column group in UsageSummary (the seed's table): a fact of the
# table's schema, not the list of providers (that is the registry's). Other providers' usage is
# summed from the ledger; the summary's totals count every provider.
SUMMARY_PROVIDERS = ("gemini", "openrouter", "huggingface")
PROVIDER_CHOICES = [
    ("gemini", "Google Gemini"),
    ("openrouter", "OpenRouter"),
    ("huggingface", "Hugging Face"),
]


class CostSource(models.TextChoices):
    PROVIDER = "provider", "reported by the provider"
    PRICE_TABLE = "price_table", "price table"
    # A stream abandoned before the provider reported usage: tokens counted from the text.
    ESTIMATED = "estimated", "estimated from the text"
    UNPRICED = "unpriced", "no known price (recorded as 0)"


class CallStatus(models.TextChoices):
    SUCCESS = "success", "success"
    ERROR = "error", "error"
    # Written before the upstream request; becomes success or error when the attempt ends.
    IN_FLIGHT = "in_flight", "in flight"
    # Still in flight long after the request deadline: its process died mid-call (SPEC §7).
    INTERRUPTED = "interrupted", "interrupted"


class KeyOwner(models.TextChoices):
    """Whose key an attempt was made with (SPEC §12.2)."""

    PLATFORM = "platform", "the platform's key"
    USER = "user", "the user's own key"


def billing_period(when=None) -> str:
    """The billing period (``YYYY-MM``, UTC) of a moment; now by default."""
    return (when or timezone.now()).astimezone(UTC).strftime("%Y-%m")


class LedgerEntry(models.Model):
    """One provider attempt of one request, success or failure (retries inside it included).

    A row is written ``in_flight`` before its upstream request (``ledger.begin_attempt``) and
    settled once, by a conditional update on that status: into ``success``/``error`` when the
    attempt ends (``ledger.finish_attempt``), or into ``interrupted`` by the sweep when its
    process died (``accounting.sweeper``). ``ledger.record_call`` writes settled rows at once.
    Settled rows are never edited: an admin's correction of spend is a ``UsageAdjustment``.
    """

    request_id = models.CharField(max_length=32, db_index=True)
    # PROTECT: spend must not vanish with a user; deactivate users who have spent instead.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="llm_calls",
    )
    provider = models.CharField(max_length=32)  # a registry name; no choices (see APIKey)
    model = models.CharField(max_length=200)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    total_tokens = models.PositiveIntegerField(default=0)
    cost = MoneyField(default=ZERO, help_text="USD")
    cost_source = models.CharField(max_length=16, choices=CostSource.choices)
    latency_ms = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=16, choices=CallStatus.choices)
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)
    retries = models.PositiveSmallIntegerField(default=0)
    is_fallback = models.BooleanField(default=False)
    # The attempt continued a stream another attempt had begun (SPEC §5.1): its text extends
    # what was already sent.
    resumed = models.BooleanField(default=False)
    # Made with the platform's key or the user's own (SPEC §12.2): the user pays their provider
    # for the latter, so by default it does not count against their cost limit.
    key_owner = models.CharField(max_length=8, choices=KeyOwner.choices, default=KeyOwner.PLATFORM)
    # The request's worst-case cost: what the attempt is charged if it is interrupted.
    estimate = MoneyField(default=ZERO, help_text="USD")
    # Whether the user's summary (of this row's period) holds a budget reservation of
    # ``estimate`` and one call for this row: true only while the row is in flight.
    reserved = models.BooleanField(default=False)
    period = models.CharField(max_length=7, db_index=True, help_text="YYYY-MM (UTC)")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        verbose_name = "ledger entry"
        verbose_name_plural = "ledger entries"
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["user", "created_at"], name="ledger_user_created"),
            # The sweep's query, every few seconds: only the (few) rows in flight.
            models.Index(
                fields=["created_at"],
                condition=Q(status="in_flight"),
                name="ledger_in_flight",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model} {self.status} {self.created_at:%Y-%m-%d %H:%M:%S}"


PROVIDER_NAMES = list(SUMMARY_PROVIDERS)


class UsageSummary(models.Model):
    """A user's usage in one billing period: the ledger's sums, plus admins' adjustments.

    Columns are only ever changed with ``F()`` updates (by the recorder, budget reservations
    and adjustments), never by saving a whole row, so no concurrent change is lost.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="llm_usage_summaries",
    )
    period = models.CharField(max_length=7, help_text="YYYY-MM (UTC)")
    gemini_calls = models.PositiveIntegerField(default=0)
    gemini_tokens = models.PositiveBigIntegerField(default=0)
    gemini_cost = MoneyField(default=ZERO)
    openrouter_calls = models.PositiveIntegerField(default=0)
    openrouter_tokens = models.PositiveBigIntegerField(default=0)
    openrouter_cost = MoneyField(default=ZERO)
    huggingface_calls = models.PositiveIntegerField(default=0)
    huggingface_tokens = models.PositiveBigIntegerField(default=0)
    huggingface_cost = MoneyField(default=ZERO)
    total_calls = models.PositiveIntegerField(default=0)
    total_tokens = models.PositiveBigIntegerField(default=0)
    total_cost = MoneyField(default=ZERO)
    # The part of total_cost spent with the user's own keys (SPEC §12.2): in the totals, which
    # equal the ledger, but left out of the cost limit unless LLM_BYOK_COUNTS_AGAINST_BUDGET.
    byok_cost = MoneyField(default=ZERO, editable=False)
    # Budget reservations of calls in flight (settled when they are recorded).
    reserved_cost = MoneyField(default=ZERO, editable=False)
    reserved_calls = models.IntegerField(default=0, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "usage summary"
        verbose_name_plural = "usage summaries"
        ordering = ["-period", "user_id"]
        constraints = [
            models.UniqueConstraint(fields=["user", "period"], name="one_summary_per_user_period"),
            # NULLs are distinct in unique constraints: system usage needs its own.
            models.UniqueConstraint(
                fields=["period"],
                condition=Q(user__isnull=True),
                name="one_system_summary_per_period",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user or '(system)'} {self.period}"


class UsageAdjustment(models.Model):
    """An admin's correction of one summary column; kept so the ledger still explains the total."""

    summary = models.ForeignKey(UsageSummary, on_delete=models.CASCADE, related_name="adjustments")
    field = models.CharField(max_length=32)
    old_value = models.CharField(max_length=40)
    new_value = models.CharField(max_length=40)
    delta = models.CharField(max_length=40)
    reason = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.field}: {self.old_value} → {self.new_value}"


class PriceSource(models.TextChoices):
    SEED = "seed", "seeded"
    OPENROUTER = "openrouter", "OpenRouter /models"
    ADMIN = "admin", "entered by an admin"


class ModelPrice(models.Model):
    """What a model costs, USD per million tokens. Model ids are stored lower-case."""

    provider = models.CharField(max_length=32)  # a registry name; no choices (see APIKey)
    model = models.CharField(max_length=200)
    prompt_per_million = models.DecimalField(max_digits=20, decimal_places=8)
    completion_per_million = models.DecimalField(max_digits=20, decimal_places=8)
    source = models.CharField(max_length=16, choices=PriceSource.choices, default=PriceSource.ADMIN)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["provider", "model"]
        constraints = [
            models.UniqueConstraint(fields=["provider", "model"], name="one_price_per_model"),
            models.CheckConstraint(
                condition=Q(prompt_per_million__gte=0) & Q(completion_per_million__gte=0),
                name="price_not_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.provider}/{self.model}"

    def save(self, *args, **kwargs) -> None:
        self.model = self.model.strip().lower()
        super().save(*args, **kwargs)


class UsageBudget(models.Model):
    """A user's monthly limits. Empty = unlimited; users without a row get the global default
    (``LLM_DEFAULT_MONTHLY_COST_LIMIT`` / ``LLM_DEFAULT_MONTHLY_CALL_LIMIT``)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="llm_budget"
    )
    monthly_cost_limit = models.DecimalField(
        max_digits=14, decimal_places=6, null=True, blank=True, help_text="USD; empty = unlimited"
    )
    monthly_call_limit = models.PositiveIntegerField(
        null=True, blank=True, help_text="successful calls; empty = unlimited"
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(monthly_cost_limit__gte=0) | Q(monthly_cost_limit__isnull=True),
                name="budget_not_negative",
            )
        ]

    def __str__(self) -> str:
        return f"budget of {self.user}"


class BudgetAlert(models.Model):
    """A budget alert sent (SPEC §7): one per user, period and threshold, whatever the
    concurrency — the unique constraint decides which of two racing calls sends it."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="llm_budget_alerts"
    )
    period = models.CharField(max_length=7, help_text="YYYY-MM (UTC)")
    threshold = models.DecimalField(
        max_digits=6, decimal_places=4, help_text="fraction of the cost limit"
    )
    spent = MoneyField(default=ZERO, help_text="USD spent when it was crossed")
    cost_limit = models.DecimalField(max_digits=14, decimal_places=6)
    sent_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-sent_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "period", "threshold"], name="one_alert_per_threshold_period"
            )
        ]

    def __str__(self) -> str:
        return f"{self.user} {self.period} {self.threshold:%}"
