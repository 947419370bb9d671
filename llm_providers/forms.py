"""The admin's key form: the secret is write-only, validated, and encrypted on save."""

from __future__ import annotations

from django import forms
from django.utils.html import format_html, format_html_join

from . import crypto, registry
from .exceptions import ConfigurationError
from .models import APIKey

# Where an admin creates a key for each provider (shown as the secret field's help text).
KEY_PAGES = {
    "gemini": "https://aistudio.google.com/app/apikey",
    "openrouter": "https://openrouter.ai/settings/keys",
    "huggingface": "https://huggingface.co/settings/tokens",
}
# Every provider's keys are far longer; anything shorter is a paste gone wrong.
MIN_SECRET_LENGTH = 16


def key_pages_help(provider: str | None = None) -> str:
    """Links to the pages where keys are made: one provider's, or every provider's."""
    names = [provider] if provider else registry.provider_names()
    links = [
        (registry.provider_class(name).label, KEY_PAGES[name])
        for name in names
        if name in KEY_PAGES
    ]
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


class APIKeyForm(forms.ModelForm):
    """Adds and replaces keys. The stored secret is never sent back to the browser: the input
    starts empty, and left empty on an existing key it keeps the key as it is."""

    secret = forms.CharField(
        label="API key",
        required=False,  # required only when adding; enforced in clean_secret
        strip=True,
        # "new-password" keeps browsers from filling in the admin's own saved password, which
        # would silently replace the key on save ("off" is ignored for password inputs).
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
    )

    class Meta:
        model = APIKey
        fields = ["provider", "label", "secret", "active"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.adding = self.instance.pk is None
        if "provider" in self.fields:
            self.fields["provider"].choices = registry.as_choices()
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
        # Error messages describe the input, never repeat it.
        if any(ch.isspace() for ch in secret):
            raise forms.ValidationError(
                "The key contains whitespace. Paste the key alone, as the provider shows it.",
                code="whitespace",
            )
        if len(secret) < MIN_SECRET_LENGTH:
            raise forms.ValidationError(
                "That is too short to be an API key (%(length)d characters; provider keys have "
                "at least %(minimum)d). Copy the whole key from the provider's page.",
                code="too_short",
                params={"length": len(secret), "minimum": MIN_SECRET_LENGTH},
            )
        return secret

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
            try:
                crypto.fernet()
            except ConfigurationError as exc:  # an invalid LLM_ENCRYPTION_KEYS value
                raise forms.ValidationError(str(exc), code="encryption") from None
        return cleaned

    def save(self, commit: bool = True) -> APIKey:
        key = super().save(commit=False)
        if self.cleaned_data.get("secret"):
            key.set_secret(self.cleaned_data["secret"])
        if commit:
            key.save()
            self._save_m2m()
        return key
