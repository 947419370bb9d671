"""Encryption at rest: round trips, what the database holds, rotation, and the fallback key."""

from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.contrib.auth import get_user_model
from django.core import checks
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, connections
from django.db.backends.sqlite3.base import DatabaseWrapper as SQLiteDatabaseWrapper

from llm_providers import crypto
from llm_providers.exceptions import ConfigurationError, KeyDecryptionError
from llm_providers.models import APIKey
from tests.conftest import FAKE_KEYS

KEY_A = Fernet.generate_key().decode()
KEY_B = Fernet.generate_key().decode()
KEY_C = Fernet.generate_key().decode()
SECRET = FAKE_KEYS["openrouter"]


def store(provider: str = "openrouter", secret: str = SECRET, *, active: bool = True, using=None):
    key = APIKey(provider=provider, active=active)
    key.set_secret(secret)
    key.save(using=using)
    return key


def raw_row(pk: int) -> tuple:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {APIKey._meta.db_table} WHERE id = %s", [pk])
        return cursor.fetchone()


# --- round trip -----------------------------------------------------------------------------------


def test_encrypt_decrypt_round_trip():
    token = crypto.encrypt(SECRET)

    assert crypto.decrypt(token) == SECRET
    assert SECRET not in token
    assert crypto.encrypt(SECRET) != token  # a fresh IV each time


@pytest.mark.django_db
def test_model_round_trip_and_raw_row_holds_no_plaintext():
    key = store()

    row = raw_row(key.pk)
    assert APIKey.objects.get(pk=key.pk).secret() == SECRET
    assert key.encrypted_secret in row  # the row read is the one written
    assert not any(SECRET in str(value) for value in row)
    # Only the mask's parts are readable: the public prefix and the last four.
    assert {"sk-or-", "wxyz"} <= set(row)


@pytest.fixture
def sqlite_file_db(tmp_path):
    """A second, file-backed SQLite database with the APIKey table (and the users' table its
    ``owner`` refers to), as alias ``keyfile``.

    The test database itself is in memory (pytest-django's SQLite default), so the bytes on disk
    are checked in a real database file the ORM writes through Django's SQLite backend.
    """
    path = tmp_path / "keys.sqlite3"
    # Registered as a connection but not in settings.DATABASES: Django's test case treats it
    # as a dynamically created connection and leaves it alone.
    settings_dict = connections.configure_settings(
        {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(path)}}
    )["default"]
    connections["keyfile"] = SQLiteDatabaseWrapper(settings_dict, alias="keyfile")
    try:
        with connections["keyfile"].schema_editor() as editor:
            editor.create_model(get_user_model())
            editor.create_model(APIKey)
        yield path
    finally:
        connections["keyfile"].close()
        del connections["keyfile"]


def file_bytes(path: Path) -> bytes:
    """The database file and any journal beside it."""
    return b"".join(p.read_bytes() for p in sorted(path.parent.glob(f"{path.name}*")))


@pytest.mark.django_db(transaction=True)
def test_database_file_on_disk_holds_no_plaintext(sqlite_file_db):
    first = store(using="keyfile")
    replacement = FAKE_KEYS["openrouter"].replace("fake", "next")
    second = APIKey.objects.using("keyfile").get(pk=first.pk)
    second.set_secret(replacement)
    second.save(using="keyfile")
    connections["keyfile"].close()

    on_disk = file_bytes(sqlite_file_db)
    assert second.encrypted_secret.encode() in on_disk  # the file really holds the row
    assert SECRET.encode() not in on_disk
    assert replacement.encode() not in on_disk
    # Nor a recognisable chunk of it (the mask shows the last four, nothing more).
    assert SECRET[:-4].encode() not in on_disk
    assert SECRET.encode("utf-16-le") not in on_disk


# --- wrong keys -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_decrypting_with_a_wrong_key_is_a_helpful_error_without_the_secret(settings):
    settings.LLM_ENCRYPTION_KEYS = [KEY_A]
    key = store()
    settings.LLM_ENCRYPTION_KEYS = [KEY_B]

    with pytest.raises(KeyDecryptionError) as caught:
        APIKey.objects.get(pk=key.pk).secret()

    error = caught.value
    message = str(error)
    assert isinstance(error, ConfigurationError)
    assert f"key #{key.pk}" in message and "sk-or-…wxyz" in message
    assert "LLM_ENCRYPTION_KEYS" in message
    assert "Add the old key after the new one" in message
    assert SECRET not in message and SECRET not in repr(error)
    assert key.encrypted_secret not in message
    assert error.__cause__ is None and error.__suppress_context__


def test_an_invalid_configured_key_says_how_to_make_one(settings):
    settings.LLM_ENCRYPTION_KEYS = ["not-a-fernet-key"]

    with pytest.raises(KeyDecryptionError, match=r"Fernet\.generate_key") as caught:
        crypto.encrypt(SECRET)

    assert "not-a-fernet-key" not in str(caught.value)


def test_comma_separated_keys_setting_is_accepted(settings):
    settings.LLM_ENCRYPTION_KEYS = f" {KEY_B} , {KEY_A} "
    token = Fernet(KEY_A.encode()).encrypt(SECRET.encode()).decode()

    assert crypto.decrypt(token) == SECRET
    assert Fernet(KEY_B.encode()).decrypt(crypto.encrypt(SECRET).encode()).decode() == SECRET


# --- MultiFernet and rotation ---------------------------------------------------------------------


def test_first_key_encrypts_and_every_key_decrypts(settings):
    settings.LLM_ENCRYPTION_KEYS = [KEY_A]
    old_token = crypto.encrypt(SECRET)
    settings.LLM_ENCRYPTION_KEYS = [KEY_B, KEY_A]

    assert crypto.decrypt(old_token) == SECRET
    new_token = crypto.encrypt(SECRET)
    assert Fernet(KEY_B.encode()).decrypt(new_token.encode()).decode() == SECRET


@pytest.mark.django_db
def test_rotate_command_re_encrypts_every_key_with_the_newest_key(settings, capsys):
    settings.LLM_ENCRYPTION_KEYS = [KEY_A]
    openrouter = store()
    gemini = store("gemini", FAKE_KEYS["gemini"], active=False)
    settings.LLM_ENCRYPTION_KEYS = [KEY_B, KEY_A]

    call_command("rotate_llm_keys")

    out = capsys.readouterr().out
    assert out.strip() == "Re-encrypted 2 key(s) with the first LLM_ENCRYPTION_KEYS key."
    settings.LLM_ENCRYPTION_KEYS = [KEY_B]
    for row, secret in [(openrouter, SECRET), (gemini, FAKE_KEYS["gemini"])]:
        fresh = APIKey.objects.get(pk=row.pk)
        assert fresh.encrypted_secret != row.encrypted_secret
        assert fresh.secret() == secret
        assert Fernet(KEY_B.encode()).decrypt(fresh.encrypted_secret.encode()).decode() == secret
        assert (fresh.active, fresh.mask) == (row.active, row.mask)
        assert secret not in out


@pytest.mark.django_db
def test_rotate_command_changes_nothing_when_one_key_cannot_be_decrypted(settings):
    settings.LLM_ENCRYPTION_KEYS = [KEY_A]
    readable = store()
    settings.LLM_ENCRYPTION_KEYS = [KEY_C]
    lost = store("gemini", FAKE_KEYS["gemini"])
    before = dict(APIKey.objects.values_list("pk", "encrypted_secret"))
    settings.LLM_ENCRYPTION_KEYS = [KEY_B, KEY_A]

    with pytest.raises(CommandError) as caught:
        call_command("rotate_llm_keys")

    message = str(caught.value)
    assert message.startswith("Nothing was changed: 1 stored key(s) cannot be decrypted")
    assert f"key #{lost.pk}" in message and "AIza…abcd" in message
    assert f"key #{readable.pk}" not in message
    assert SECRET not in message and FAKE_KEYS["gemini"] not in message
    assert dict(APIKey.objects.values_list("pk", "encrypted_secret")) == before


@pytest.mark.django_db
def test_rotate_command_with_no_keys_stored(capsys):
    call_command("rotate_llm_keys")

    assert "Re-encrypted 0 key(s)" in capsys.readouterr().out


def test_rotate_command_reports_an_invalid_configured_key(settings):
    settings.LLM_ENCRYPTION_KEYS = ["not-a-fernet-key"]

    with pytest.raises(CommandError, match="not a Fernet key"):
        call_command("rotate_llm_keys")


# --- the SECRET_KEY-derived fallback -------------------------------------------------------------


@pytest.mark.django_db
def test_secret_key_derived_fallback_encrypts_and_decrypts(settings):
    settings.SECRET_KEY = "a-secret-key-for-this-test-only-0123456789"
    key = store()

    derived = Fernet(crypto.derived_key())
    assert derived.decrypt(key.encrypted_secret.encode()).decode() == SECRET
    assert APIKey.objects.get(pk=key.pk).secret() == SECRET

    settings.SECRET_KEY = "a-different-secret-key-9876543210-abcdefgh"
    with pytest.raises(KeyDecryptionError):
        APIKey.objects.get(pk=key.pk).secret()


@pytest.mark.django_db
def test_keys_stored_under_the_fallback_survive_setting_a_real_key(settings, capsys):
    key = store()  # LLM_ENCRYPTION_KEYS is empty: the derived key encrypts
    settings.LLM_ENCRYPTION_KEYS = [KEY_B]
    assert APIKey.objects.get(pk=key.pk).secret() == SECRET

    call_command("rotate_llm_keys")
    settings.SECRET_KEY = "a-new-secret-key-after-rotation-0123456789"

    assert APIKey.objects.get(pk=key.pk).secret() == SECRET
    assert "Re-encrypted 1 key(s)" in capsys.readouterr().out


def deploy_check_ids() -> set[str]:
    return {m.id for m in checks.run_checks(include_deployment_checks=True, tags=["security"])}


@pytest.mark.parametrize("value", [[], [" "], None])
def test_deploy_check_warns_when_no_encryption_key_is_set(settings, value):
    settings.LLM_ENCRYPTION_KEYS = value

    assert "llm_providers.W001" in deploy_check_ids()
    assert "llm_providers.W001" not in {m.id for m in checks.run_checks(tags=["security"])}


def test_deploy_check_is_quiet_when_an_encryption_key_is_set(settings):
    settings.LLM_ENCRYPTION_KEYS = [KEY_A]

    assert "llm_providers.W001" not in deploy_check_ids()
