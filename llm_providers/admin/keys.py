"""Custom providers and API keys (stored encrypted; masks only; test, activate, deactivate)."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from .. import registry
from ..exceptions import LLMError
from ..forms import APIKeyForm, CustomProviderForm
from ..keys import check_key, rejects_key, stored_key
from ..models import APIKey, CustomProvider
from .common import ListMedia, ProviderFilter, clipped, provider_label, short_time, with_note


@admin.register(CustomProvider)
class CustomProviderAdmin(admin.ModelAdmin):
    """Custom OpenAI-compatible providers (SPEC §12.1). A change takes effect at the next call in
    every process sharing the cache (``cache_version``); a key for one is added under API keys."""

    form = CustomProviderForm
    list_display = [
        "name",
        "label",
        "base_url",
        "default_model",
        "requires_key",
        "priority",
        "active",
    ]
    list_filter = ["active", "requires_key"]
    search_fields = ["name", "label", "base_url"]
    readonly_fields = ["created_at", "updated_at"]


# What the owner column says of the platform's keys (users' own keys name their user).
PLATFORM = "(platform)"


class OwnerFilter(admin.SimpleListFilter):
    """The platform's keys or users' own (SPEC §12.2), in words; the parameter is the one
    Django's ``owner__isnull`` lookup takes."""

    title = "whose key"
    parameter_name = "owner__isnull"

    def lookups(self, request: HttpRequest, model_admin) -> list[tuple[str, str]]:
        return [("True", "the platform's"), ("False", "users' own")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[APIKey]) -> QuerySet[APIKey]:
        if self.value() in ("True", "False"):
            return queryset.filter(owner__isnull=self.value() == "True")
        return queryset


@admin.register(APIKey)
class APIKeyAdmin(admin.ModelAdmin):
    """Keys are shown only by their mask; the secret input is write-only (see ``APIKeyForm``).
    ``status_note`` and ``checked_at`` (read-only) say how the key's last test went, or why it
    was deactivated (``keys.record_key_outcome``). ``owner`` (read-only) tells a user's own
    key (SPEC §12.2, added by its user through ``me/keys/``) from the platform's (empty)."""

    Media = ListMedia
    form = APIKeyForm
    list_display = [
        "provider_display",
        "owner_display",
        "label_display",
        "mask",
        "active",
        "status_display",
        "last_used",
    ]
    list_filter = [("provider", ProviderFilter), "active", OwnerFilter]
    search_fields = ["label", "owner__username"]
    list_select_related = ["owner"]
    readonly_fields = ["owner", "mask", "status_note", "checked_at", "created_at", "last_used_at"]
    actions = ["test_connection", "activate", "deactivate"]

    def get_fields(self, request: HttpRequest, obj: APIKey | None = None) -> list[str]:
        if obj is None:
            return ["provider", "label", "secret", "validate", "active"]
        return [
            "provider",
            "owner",
            "label",
            "mask",
            "secret",
            "validate",
            "active",
            "status_note",
            "checked_at",
            "created_at",
            "last_used_at",
        ]

    @admin.display(description="Key")
    def mask(self, obj: APIKey) -> str:
        return obj.mask

    @admin.display(description="provider", ordering="provider")
    def provider_display(self, obj: APIKey) -> str:
        return provider_label(obj.provider)

    @admin.display(description="owner", ordering="owner__username")
    def owner_display(self, obj: APIKey) -> str:
        return clipped(obj.owner.get_username()) if obj.owner_id else PLATFORM

    @admin.display(description="label", ordering="label")
    def label_display(self, obj: APIKey) -> str:
        return clipped(obj.label) if obj.label else "-"

    @admin.display(description="last test", ordering="checked_at")
    def status_display(self, obj: APIKey) -> str:
        if not obj.checked_at and not obj.status_note:
            return "-"
        checked = f"{obj.checked_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC" if obj.checked_at else ""
        return with_note(clipped(obj.status_note or "-"), checked)

    @admin.display(description="last used (UTC)", ordering="last_used_at")
    def last_used(self, obj: APIKey) -> str:
        return short_time(obj.last_used_at)

    @admin.action(permissions=["change"], description="Test connection")
    def test_connection(self, request: HttpRequest, queryset: QuerySet[APIKey]) -> None:
        for key in queryset:
            try:
                message, level = self._test_key(key), messages.SUCCESS
            except LLMError as exc:
                # check_key scrubs the key from errors; decryption errors never held it.
                message, level = str(exc), messages.ERROR
                if rejects_key(exc):
                    self._note(key, message)
            else:
                self._note(key, message)
            self.message_user(request, f"{key}: {message}", level)

    @staticmethod
    def _test_key(key: APIKey) -> str:
        resolved = stored_key(key)
        return check_key(key.provider, resolved.secret, source=resolved.source)

    @staticmethod
    def _note(key: APIKey, message: str) -> None:
        """Keep the test's answer on the key. An update: the note changes no call's key, so
        the processes' copies of the keys need not be dropped."""
        note = message[: APIKey._meta.get_field("status_note").max_length]
        APIKey.objects.filter(pk=key.pk).update(status_note=note, checked_at=timezone.now())

    @admin.action(
        permissions=["change"], description="Activate (deactivates the provider's other keys)"
    )
    def activate(self, request: HttpRequest, queryset: QuerySet[APIKey]) -> None:
        by_provider: dict[str, list[APIKey]] = defaultdict(list)
        for key in queryset:
            by_provider[key.provider].append(key)
        for provider, keys in by_provider.items():
            if len(keys) > 1:
                self.message_user(
                    request,
                    f"Only one {registry.provider_class(provider).label} key can be active: "
                    f"select one of {', '.join(k.mask for k in keys)}.",
                    messages.ERROR,
                )
                continue
            key = keys[0]
            if not key.active:
                key.active = True
                key.save(update_fields=["active"])  # save() deactivates the others
                self.log_change(request, key, "Activated.")
            self.message_user(request, f"{key} is the active key.", messages.SUCCESS)

    @admin.action(permissions=["change"], description="Deactivate")
    def deactivate(self, request: HttpRequest, queryset: QuerySet[APIKey]) -> None:
        keys = list(queryset.filter(active=True))
        for key in keys:
            key.active = False
            key.save(update_fields=["active"])
            self.log_change(request, key, "Deactivated.")
        self.message_user(request, f"Deactivated {len(keys)} key(s).", messages.SUCCESS)
