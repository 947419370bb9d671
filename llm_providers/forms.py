"""The admin's forms: keys (the secret is write-only, validated, and encrypted on save), summary
corrections (applied as deltas), prices, and the date ranges of the cost report and the
dashboard."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from django import forms
from django.core.exceptions import ImproperlyConfigured
from django.core.validators import MinValueValidator
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from . import crypto, registry
from .accounting.ledger import ADJUSTABLE_FIELDS
from .accounting.money import money_str
from .accounting.reports import GROUPINGS, BadRange, check_range, month_bounds
from .exceptions import ConfigurationError, LLMError
from .keys import check_key
from .models import APIKey, CustomProvider, ModelPrice, UsageSummary

MIN_SECRET_LENGTH = 16


def key_pages_help(provider: str | None = None) -> str:
    """Links to the pages where keys are made (``Provider.key_page``): one provider's, or every
    provider's."""
    if provider:
        classes = [registry.provider_class(provider)] if registry.canonical_name(provider) else []
    else:
        classes = list(registry.provider_classes())
    links = [(cls.label, cls.key_page) for cls in classes if cls.key_page]
    if not links:
        return ""
    return format_html(
        "Get a key at {}.",
        format_html_join(
            ", ",
            '{}: <a href="{}" target="_blank" rel="noopener">{}</a>',
            ((label, url, url) for label, url in links),
        ),
    )


def provider_field(current: str | None = None) -> forms.ChoiceField:
    """A choice of the registry's providers (custom ones included); ``current`` stays a choice
    even when it is no longer registered (a custom provider since removed)."""
    choices = registry.as_choices()
    if current and current not in dict(choices):
        choices.append((current, f"{current} (not configured)"))
    return forms.ChoiceField(label="Provider", choices=choices)


def check_secret(secret: str, *, min_length: int = MIN_SECRET_LENGTH) -> str:
    """A pasted key, stripped; ValidationError if it cannot be a key (admin form and API).
    ``min_length``: the provider's ``min_key_length``."""
    secret = secret.strip()
    # Error messages describe the input, never repeat it.
    if not secret:
        raise forms.ValidationError("Enter the API key.", code="required")
    if any(ch.isspace() for ch in secret):
        raise forms.ValidationError(
            "The key contains whitespace. Paste the key alone, as the provider shows it.",
            code="whitespace",
        )
    if len(secret) < min_length:
        raise forms.ValidationError(
            "That is too short to be an API key (%(length)d characters; provider keys have "
            "at least %(minimum)d). Copy the whole key from the provider's page.",
            code="too_short",
            params={"length": len(secret), "minimum": min_length},
        )
    return secret


class APIKeyForm(forms.ModelForm):
    """Adds and replaces keys. The stored secret is never sent back to the browser: the input
    starts empty, and left empty on an existing key it keeps the key as it is.

    With ``validate`` ticked the key (the new one, else the stored one) is tested with its
    provider before anything is saved: a key the provider refuses, or a test that cannot reach
    it, is a form error with the provider's reason; an accepted key is saved with the answer in
    its ``status_note`` and the time in ``checked_at`` (SPEC §6, key health)."""

    secret = forms.CharField(
        label="API key",
        required=False,  # required only when adding; enforced in clean_secret
        strip=True,
        # "new-password" keeps browsers from filling in the admin's own saved password, which
        # would silently replace the key on save ("off" is ignored for password inputs).
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
    )
    validate = forms.BooleanField(
        label="Test the key with the provider before saving",
        required=False,
        help_text="One request to the provider's cheapest endpoint; a refused key is not saved.",
    )

    class Meta:
        model = APIKey
        fields = ["provider", "label", "secret", "active"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.adding = self.instance.pk is None
        self.accepted: str | None = None  # the provider's answer to the test, when it passed
        if "provider" in self.fields:
            self.fields["provider"] = provider_field(self.instance.provider)
        secret = self.fields["secret"]
        if self.adding:
            secret.required = True
            secret.error_messages["required"] = "Enter the API key."
            secret.help_text = key_pages_help()
        else:
            secret.help_text = format_html(
                "Leave empty to keep the current key ({}); enter a new key to replace it. {}",
                self.instance.mask,
                key_pages_help(self.instance.provider),
            )

    def clean_secret(self) -> str:
        secret = self.cleaned_data.get("secret") or ""
        if not secret:
            if self.adding:
                raise forms.ValidationError("Enter the API key.", code="required")
            return ""
        return secret  # checked in clean(), with the provider's minimum length

    def clean(self) -> dict:
        cleaned = super().clean()
        if (
            not self.adding
            and "provider" in self.changed_data
            and not cleaned.get("secret")
            and "secret" not in self.errors
        ):
            # The stored key belongs to the old provider (and its mask to the old prefix).
            self.add_error("secret", "Enter the new provider's key when changing the provider.")
        if cleaned.get("secret"):
            provider = cleaned.get("provider") or self.instance.provider
            minimum = (
                registry.provider_class(provider).min_key_length
                if registry.canonical_name(provider or "")
                else MIN_SECRET_LENGTH
            )
            try:
                cleaned["secret"] = check_secret(cleaned["secret"], min_length=minimum)
            except forms.ValidationError as exc:
                self.add_error("secret", exc)
                return cleaned
            try:
                crypto.fernet()
            except ConfigurationError as exc:  # an invalid LLM_ENCRYPTION_KEYS value
                raise forms.ValidationError(str(exc), code="encryption") from None
        if cleaned.get("validate") and not self.errors:
            self._test_with_provider(cleaned)
        return cleaned

    def _test_with_provider(self, cleaned: dict) -> None:
        """The checkbox's test: sets ``accepted``, or adds the provider's reason as an error."""
        provider = cleaned.get("provider") or self.instance.provider
        if cleaned.get("secret"):
            secret, source = cleaned["secret"], "the key entered"
        else:
            try:
                secret = self.instance.secret()
            except ConfigurationError as exc:  # undecryptable: the message never holds the key
                raise forms.ValidationError(str(exc), code="undecryptable") from None
            source = f"the stored key {self.instance.mask}"
        try:
            self.accepted = check_key(provider, secret, source=source)
        except LLMError as exc:  # refused, or not reachable: either way, nothing is saved
            raise forms.ValidationError(
                "The key was not saved: %(reason)s", code="rejected", params={"reason": exc}
            ) from None

    def save(self, commit: bool = True) -> APIKey:
        key = super().save(commit=False)
        if self.cleaned_data.get("secret"):
            key.set_secret(self.cleaned_data["secret"])
            # The note and time were about the key this one replaces.
            key.status_note, key.checked_at = "", None
        if self.accepted:
            key.checked_at = timezone.now()
            key.status_note = self.accepted[: APIKey._meta.get_field("status_note").max_length]
        if commit:
            key.save()
            self._save_m2m()
        return key


class UsageSummaryForm(forms.ModelForm):
    """Corrects a summary's per-provider calls, tokens and cost.

    Live calls keep updating the row while the page is open, so the form does not save values:
    each field also posts the value the page was loaded with (Django's hidden initial input),
    and ``deltas`` is what the admin changed, to be added to whatever the row holds at save time.
    """

    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
        help_text="Why the spend is corrected. Kept with each adjustment.",
    )

    class Meta:
        model = UsageSummary
        fields = ADJUSTABLE_FIELDS

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.deltas: dict[str, int | Decimal] = {}
        # Columns a call changed between loading the page and saving it.
        self.moved: list[str] = []
        for name in ADJUSTABLE_FIELDS:
            field = self.fields.get(name)
            if field is None:
                continue
            field.show_hidden_initial = True
            field.label = name.rpartition("_")[2].capitalize()  # under the provider's heading
            if name.endswith("_cost"):
                field.validators.append(MinValueValidator(0))
                field.widget.attrs["min"] = "0"
                field.help_text = "USD"
                self.initial[name] = money_str(self.initial.get(name))

    def loaded_value(self, name: str) -> int | Decimal:
        """The value the page showed; the current value when the post does not say."""
        field = self.fields[name]
        raw = field.hidden_widget().value_from_datadict(
            self.data, self.files, self.add_initial_prefix(name)
        )
        if raw in (None, ""):
            return getattr(self.instance, name)
        try:
            return field.to_python(raw)
        except forms.ValidationError:
            return getattr(self.instance, name)

    def clean(self) -> dict:
        cleaned = super().clean()
        for name in ADJUSTABLE_FIELDS:
            if name not in self.fields or cleaned.get(name) is None:
                continue
            loaded = self.loaded_value(name)
            delta = cleaned[name] - loaded
            # The instance still holds the row as read for this post (the form has not
            # written into it yet).
            current = getattr(self.instance, name)
            if current != loaded:
                self.moved.append(name)
            if not delta:
                continue
            if current + delta < 0:
                self.add_error(
                    name,
                    f"This would take it below zero: it is {_plain(current)} now "
                    f"(calls were recorded or corrected since the page was loaded).",
                )
                continue
            self.deltas[name] = delta
        if not self.deltas and not self.errors:
            raise forms.ValidationError(
                "Nothing was changed. Edit the calls, tokens or cost to correct, then save.",
                code="unchanged",
            )
        return cleaned


def _plain(value: int | Decimal) -> str:
    return money_str(value) if isinstance(value, Decimal) else str(value)


class ModelPriceForm(forms.ModelForm):
    class Meta:
        model = ModelPrice
        fields = ["provider", "model", "prompt_per_million", "completion_per_million"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "provider" in self.fields:
            self.fields["provider"] = provider_field(self.instance.provider)

    def clean_model(self) -> str:
        # Stored lower-case (prices are looked up that way); cleaned here so the
        # one-price-per-model check sees what will be saved.
        return self.cleaned_data["model"].strip().lower()


class CustomProviderForm(forms.ModelForm):
    """A custom OpenAI-compatible provider (SPEC §12.1), checked as the registry checks
    ``LLM_CUSTOM_PROVIDERS``: built-in names and aliases are reserved, as are names the setting
    already defines."""

    class Meta:
        model = CustomProvider
        fields = [
            "name",
            "label",
            "base_url",
            "default_model",
            "requires_key",
            "priority",
            "active",
        ]

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        try:
            registry.check_custom_name(name)
        except ValueError as exc:
            raise forms.ValidationError(f"The {exc}", code="invalid") from None
        try:
            in_settings = {d["name"] for d in registry.configured_custom_definitions()}
        except ImproperlyConfigured:
            in_settings = set()  # reported by the system check
        if name in in_settings:
            raise forms.ValidationError(
                f"{name!r} is already defined in LLM_CUSTOM_PROVIDERS.", code="taken"
            )
        return name

    def clean_base_url(self) -> str:
        try:
            return registry.check_base_url(self.cleaned_data["base_url"].strip())
        except ValueError as exc:
            raise forms.ValidationError(f"The {exc}", code="invalid") from None

    def clean_default_model(self) -> str:
        return self.cleaned_data["default_model"].strip()


class DateRangeForm(forms.Form):
    """A period of inclusive UTC days, from a page's query over its defaults: the cost
    report's and the dashboard's."""

    start = forms.DateField(widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"))
    end = forms.DateField(
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
        help_text="Inclusive; days are UTC.",
    )

    @classmethod
    def over_defaults(cls, query, defaults: dict[str, str]):
        """A bound form: the query's values over ``defaults`` (its fields' names)."""
        data = dict(defaults)
        data.update({k: query[k] for k in data if query.get(k)})
        return cls(data)

    def clean(self) -> dict:
        cleaned = super().clean()
        start: date | None = cleaned.get("start")
        end: date | None = cleaned.get("end")
        if start and end and start > end:
            self.add_error("end", "The end date is before the start date.")
        return cleaned


class CostReportForm(DateRangeForm):
    group_by = forms.ChoiceField(
        label="Group by", choices=[(name, name.capitalize()) for name in GROUPINGS]
    )

    @classmethod
    def from_query(cls, query) -> CostReportForm:
        """A bound form: the query's values over the defaults (this month, by user)."""
        first, last = month_bounds()
        defaults = {"start": first.isoformat(), "end": last.isoformat(), "group_by": "user"}
        return cls.over_defaults(query, defaults)


class DashboardForm(DateRangeForm):
    """The dashboard's period: inclusive UTC days, the last ``DEFAULT_DAYS`` up to today by
    default, at most ``MAX_DAYS`` (a chart of more days has no room for them; the cost report
    covers longer ranges)."""

    DEFAULT_DAYS = 30
    MAX_DAYS = 366

    @classmethod
    def default_range(cls, today: date) -> tuple[date, date]:
        return today - timedelta(days=cls.DEFAULT_DAYS - 1), today

    @classmethod
    def from_query(cls, query, today: date) -> DashboardForm:
        """A bound form: the query's dates over the defaults."""
        start, end = cls.default_range(today)
        return cls.over_defaults(query, {"start": start.isoformat(), "end": end.isoformat()})

    def clean(self) -> dict:
        cleaned = super().clean()
        start: date | None = cleaned.get("start")
        end: date | None = cleaned.get("end")
        if start is None or end is None or end < start:
            return cleaned  # nothing to check, or already refused
        if (end - start).days >= self.MAX_DAYS:
            self.add_error(
                "end",
                f"The dashboard shows at most {self.MAX_DAYS} days; the cost report covers "
                "longer ranges.",
            )
        else:
            try:
                check_range(start, end)
            except BadRange as exc:
                self.add_error(exc.field, str(exc))
        return cleaned
