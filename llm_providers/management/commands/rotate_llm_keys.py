"""``manage.py rotate_llm_keys``: re-encrypt every stored provider key with the newest key.

Rotation: put the new Fernet key first in ``LLM_ENCRYPTION_KEYS`` (keeping the old ones after it),
run this command, then drop the old keys. All rows change in one transaction, or none does.
"""

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from llm_providers import crypto
from llm_providers.exceptions import ConfigurationError, KeyDecryptionError
from llm_providers.models import APIKey


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored provider key with the first LLM_ENCRYPTION_KEYS key "
        "(or the SECRET_KEY-derived key when LLM_ENCRYPTION_KEYS is not set)."
    )

    def handle(self, *args, **options) -> None:
        try:
            crypto.fernet()
        except ConfigurationError as exc:
            raise CommandError(str(exc)) from None

        with transaction.atomic():
            rows = list(APIKey.objects.select_for_update().order_by("pk"))
            tokens: dict[int, str] = {}
            unreadable: list[APIKey] = []
            for row in rows:
                try:
                    tokens[row.pk] = crypto.rotate(row.encrypted_secret)
                except KeyDecryptionError:
                    unreadable.append(row)
            if unreadable:
                names = "; ".join(str(row) for row in unreadable)
                raise CommandError(
                    f"Nothing was changed: {len(unreadable)} stored key(s) cannot be decrypted "
                    f"with LLM_ENCRYPTION_KEYS (or the SECRET_KEY-derived key): {names}. Add the "
                    "encryption key they were stored with after the new one in "
                    "LLM_ENCRYPTION_KEYS, or enter those keys again in the admin, then rerun."
                )
            for pk, token in tokens.items():
                APIKey.objects.filter(pk=pk).update(encrypted_secret=token)

        newest = (
            "the first LLM_ENCRYPTION_KEYS key"
            if crypto.configured_keys()
            else "the SECRET_KEY-derived key (LLM_ENCRYPTION_KEYS is not set)"
        )
        self.stdout.write(self.style.SUCCESS(f"Re-encrypted {len(tokens)} key(s) with {newest}."))
