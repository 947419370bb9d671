"""``manage.py ensure_admin``: make sure the admin account that ``make run`` announces exists."""

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Create a superuser from DJANGO_SUPERUSER_USERNAME (default 'admin'), "
        "DJANGO_SUPERUSER_PASSWORD and DJANGO_SUPERUSER_EMAIL unless that user exists, and print "
        "how to sign in. Safe to run on every start."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--url",
            default="http://127.0.0.1:8000/admin/",
            help="the admin URL to print (default: %(default)s)",
        )

    def handle(self, *args, url: str, **options):
        # The variables Django's own `createsuperuser --noinput` reads, through settings.py
        # (the one reader of the environment and `.env`).
        username = settings.DJANGO_SUPERUSER_USERNAME or "admin"
        password = settings.DJANGO_SUPERUSER_PASSWORD or ""
        email = settings.DJANGO_SUPERUSER_EMAIL or ""

        user_model = get_user_model()
        existing = user_model._default_manager.filter(
            **{user_model.USERNAME_FIELD: username}
        ).first()

        if existing is None:
            generated = not password
            if generated:
                password = secrets.token_urlsafe(18)
            fields = {user_model.USERNAME_FIELD: username, "password": password}
            if any(field.name == "email" for field in user_model._meta.get_fields()):
                fields["email"] = email
            user_model._default_manager.create_superuser(**fields)
            self.stdout.write(self.style.SUCCESS(f"Created superuser {username!r}."))
            if generated:
                note = (
                    "generated now and shown only this once; set DJANGO_SUPERUSER_PASSWORD to "
                    "choose one"
                )
            else:
                note = "from DJANGO_SUPERUSER_PASSWORD in .env or the environment"
            self._sign_in(url, username, f"{password}  ({note})")
            return

        if not existing.is_superuser or not existing.is_staff:
            self.stdout.write(
                self.style.WARNING(
                    f"User {username!r} exists but is not a staff superuser; left unchanged. "
                    "Set DJANGO_SUPERUSER_USERNAME to another name, or grant it rights."
                )
            )
        else:
            self.stdout.write(f"Superuser {username!r} already exists; left unchanged.")
        if password:
            shown = (
                f"{password}  (DJANGO_SUPERUSER_PASSWORD from .env or the environment, "
                "unless it was changed since)"
            )
        else:
            shown = (
                "the one set when it was created (`manage.py changepassword "
                f"{username}` sets a new one)"
            )
        self._sign_in(url, username, shown)

    def _sign_in(self, url: str, username: str, password: str) -> None:
        self.stdout.write(f"  Admin URL: {url}")
        self.stdout.write(f"  Username:  {username}")
        self.stdout.write(f"  Password:  {password}")
