"""The app's settings (SPEC §3): a Django setting of the same name, else the environment variable,
else the default; environment text converted to the default's type."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from llm_providers import keys, registry
from llm_providers.conf import DEFAULTS, llm_settings
from tests.conftest import FAKE_KEYS


@pytest.fixture
def environ(monkeypatch):
    """``environ(NAME="value")`` exports variables (and the settings are read again)."""

    def _set(**values: str) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, value)
        llm_settings.reload()
        keys.invalidate_keys()

    return _set


@pytest.fixture(autouse=True)
def reload_after(monkeypatch):
    """The variables a test exported are gone, and read again, before the next test."""
    yield
    monkeypatch.undo()
    llm_settings.reload()


def test_a_django_setting_wins_over_the_environment(settings, environ):
    settings.LLM_TIMEOUT = 12.0
    environ(LLM_TIMEOUT="99")
    assert llm_settings.LLM_TIMEOUT == 12.0
    assert llm_settings.origin("LLM_TIMEOUT") == "the Django setting LLM_TIMEOUT"


def test_the_environment_is_read_when_no_setting_is_made(settings, environ):
    del settings.LLM_MAX_RETRIES
    environ(LLM_MAX_RETRIES="7")
    assert llm_settings.LLM_MAX_RETRIES == 7
    assert llm_settings.origin("LLM_MAX_RETRIES") == "the environment variable LLM_MAX_RETRIES"


def test_a_setting_of_none_counts_as_not_set(settings, environ):
    """A project writing ``OPENROUTER_API_KEY = os.environ.get(...)`` and the tests' own
    configuration (None) leave the choice to the environment."""
    settings.OPENROUTER_API_KEY = None
    environ(OPENROUTER_API_KEY=FAKE_KEYS["openrouter"])
    assert FAKE_KEYS["openrouter"] == llm_settings.OPENROUTER_API_KEY


def test_the_default_comes_last(settings, monkeypatch):
    del settings.LLM_MAX_RETRIES
    monkeypatch.delenv("LLM_MAX_RETRIES", raising=False)
    llm_settings.reload()
    assert llm_settings.LLM_MAX_RETRIES == DEFAULTS["LLM_MAX_RETRIES"] == 3
    assert llm_settings.origin("LLM_MAX_RETRIES") == "the default"


def test_an_empty_variable_counts_as_unset(settings, environ):
    settings.GPT_PROVIDER = None
    del settings.LLM_TIMEOUT
    environ(GPT_PROVIDER="", LLM_TIMEOUT="")
    assert llm_settings.GPT_PROVIDER is None
    assert llm_settings.LLM_TIMEOUT == 60.0


@pytest.mark.parametrize(
    ("name", "text", "value"),
    [
        ("LLM_TIMEOUT", "2.5", 2.5),
        ("LLM_MAX_RETRIES", "0", 0),
        ("LLM_STRICT_ACCOUNTING", "true", True),
        ("LLM_STRICT_ACCOUNTING", "Off", False),
        ("LLM_STRICT_ACCOUNTING", "1", True),
        ("LLM_ENCRYPTION_KEYS", "new-key, old-key,", ["new-key", "old-key"]),
        ("LLM_ENCRYPTION_KEYS", '["new-key", "old-key"]', ["new-key", "old-key"]),
        ("LLM_DEFAULT_MONTHLY_COST_LIMIT", "12.50", "12.50"),  # None default: the text
        ("OPENROUTER_MODEL", "anthropic/claude-3.5-sonnet", "anthropic/claude-3.5-sonnet"),
        ("LLM_API_RATE", "5/min", "5/min"),
    ],
)
def test_environment_text_takes_the_defaults_type(settings, environ, name, text, value):
    if hasattr(settings, name):
        delattr(settings, name)
    environ(**{name: text})
    assert getattr(llm_settings, name) == value
    assert type(getattr(llm_settings, name)) is type(value)


@pytest.mark.parametrize(
    ("name", "text"),
    [("LLM_TIMEOUT", "soon"), ("LLM_MAX_RETRIES", "2.5"), ("LLM_STRICT_ACCOUNTING", "maybe")],
)
def test_unreadable_environment_text_is_a_configuration_error(settings, environ, name, text):
    if hasattr(settings, name):
        delattr(settings, name)
    environ(**{name: text})
    with pytest.raises(ImproperlyConfigured, match=f"environment variable {name} is not"):
        getattr(llm_settings, name)


def test_a_secret_is_never_in_the_error(settings, environ):
    del settings.LLM_ENCRYPTION_KEYS
    environ(LLM_ENCRYPTION_KEYS='["secret-value"')  # broken JSON
    with pytest.raises(ImproperlyConfigured) as error:
        _ = llm_settings.LLM_ENCRYPTION_KEYS
    assert "secret-value" not in str(error.value)


@pytest.mark.django_db
def test_a_key_exported_in_the_environment_configures_its_provider(settings, environ):
    """A host project that sets nothing: ``OPENROUTER_API_KEY`` exported is enough."""
    settings.OPENROUTER_API_KEY = None
    environ(OPENROUTER_API_KEY=FAKE_KEYS["openrouter"])
    resolved = keys.resolve_keys()
    assert resolved["openrouter"].secret == FAKE_KEYS["openrouter"]
    assert registry.primary_provider(resolved) == "openrouter"


def test_the_missing_key_message_names_every_place_a_key_can_be_set():
    message = registry.missing_key_error("openrouter").message
    assert "OPENROUTER_API_KEY" in message
    assert "admin key manager" in message
    assert "Django setting" in message and "environment variable" in message


@pytest.mark.django_db
def test_encryption_keys_exported_in_the_environment_encrypt_stored_keys(settings, environ):
    """``LLM_ENCRYPTION_KEYS`` from the environment is the key stored secrets are encrypted
    with, not the one derived from SECRET_KEY."""
    from cryptography.fernet import Fernet

    from llm_providers.models import APIKey

    settings.LLM_ENCRYPTION_KEYS = None
    exported = Fernet.generate_key().decode()
    environ(LLM_ENCRYPTION_KEYS=exported)
    row = APIKey(provider="openrouter")
    row.set_secret(FAKE_KEYS["openrouter"])
    assert (
        Fernet(exported.encode()).decrypt(row.encrypted_secret.encode()).decode()
        == (FAKE_KEYS["openrouter"])
    )
