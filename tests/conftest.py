"""Shared fixtures.

Every test runs with no provider configured (whatever the machine's environment or .env
holds), upstream base URLs on hosts that cannot resolve, fast retries, and a recorder instead
of ``time.sleep`` between retries. HTTP is mocked with ``responses``: an unregistered request
fails as a connection error, so no test reaches the network.
"""

import pytest
import responses
from django.core.cache import cache
from django.test.utils import override_settings

from llm_providers import counting, keys, registry
from llm_providers.accounting import prices
from llm_providers.conf import DEFAULTS, llm_settings
from llm_providers.providers import base as base_provider

OPENROUTER_URL = "https://openrouter.test/api/v1"
GEMINI_URL = "https://gemini.test/v1beta"
HF_URL = "https://hf.test/v1"

# Keys shaped like the real ones, so masks and prefixes behave as in production.
FAKE_KEYS = {
    "gemini": "AIzaSyFAKE-g3m1n1-k3y-000000000000abcd",
    "openrouter": "sk-or-v1-fake00p3nr0ut3r0k3y000000000wxyz",
    "huggingface": "hf_FAKEhu9g1ngf4c3t0k3n0000000000hfkk",
}
KEY_SETTINGS = {cls.name: cls.key_setting for cls in registry.BUILTIN_PROVIDERS}


@pytest.fixture(scope="session")
def django_db_modify_db_settings(tmp_path_factory):
    """SQLite tests use a database file, not memory: concurrency tests open a connection per
    thread, and in-memory shared-cache databases fail concurrent writers instead of queueing
    them (busy timeout and BEGIN IMMEDIATE work only on files)."""
    from django.conf import settings

    db = settings.DATABASES["default"]
    if db["ENGINE"] == "django.db.backends.sqlite3":
        db.setdefault("TEST", {})["NAME"] = str(tmp_path_factory.mktemp("db") / "test.sqlite3")


@pytest.fixture(autouse=True)
def llm_config(settings, monkeypatch):
    # The app reads a setting left unset (or None) from the environment: a developer's exported
    # GEMINI_API_KEY & co. must not reach the tests.
    for name in DEFAULTS:
        monkeypatch.delenv(name, raising=False)
    llm_settings.reload()
    settings.GPT_PROVIDER = None
    settings.GEMINI_API_KEY = None
    settings.OPENROUTER_API_KEY = None
    settings.HF_TOKEN = None
    settings.OPENROUTER_MODEL = "openai/gpt-4-turbo"
    settings.GEMINI_MODEL = "gemini-2.5-flash"
    settings.HF_MODEL = "meta-llama/Llama-3.1-8B-Instruct"
    settings.OPENROUTER_HTTP_REFERER = None
    settings.OPENROUTER_X_TITLE = None
    settings.OPENROUTER_BASE_URL = OPENROUTER_URL
    settings.GEMINI_BASE_URL = GEMINI_URL
    settings.HF_BASE_URL = HF_URL
    settings.LLM_CUSTOM_PROVIDERS = []
    settings.LLM_TIMEOUT = 5.0
    settings.LLM_MAX_RETRIES = 3
    settings.LLM_RETRY_BASE_DELAY = 0.0
    settings.LLM_RETRY_MAX_DELAY = 0.0
    settings.LLM_RETRY_TOTAL_TIMEOUT = 120.0
    settings.LLM_ENCRYPTION_KEYS = []
    # A usage-recording failure fails the test instead of only being logged.
    settings.LLM_STRICT_ACCOUNTING = True
    settings.LLM_DEFAULT_MONTHLY_COST_LIMIT = None
    settings.LLM_DEFAULT_MONTHLY_CALL_LIMIT = None
    return settings


@pytest.fixture(scope="session", autouse=True)
def cache_dir(tmp_path_factory):
    """The default cache as the project configures it without REDIS_URL (files shared by the
    processes of a machine), in a directory of this test session: a subprocess given
    ``CACHE_DIR`` shares it, and nothing reaches the project's own ``var/cache``."""
    location = tmp_path_factory.mktemp("cache")
    backend = "django.core.cache.backends.filebased.FileBasedCache"
    with override_settings(CACHES={"default": {"BACKEND": backend, "LOCATION": str(location)}}):
        yield location


@pytest.fixture(autouse=True)
def cleared_cache(cache_dir):
    """Each test starts with an empty cache: no throttle count or version of another test."""
    clear_cache()
    yield
    clear_cache()


def clear_cache() -> None:
    cache.clear()
    counts = counting.counter()
    if isinstance(counts, counting.AppendCounter):  # files the cache's clear() leaves alone
        counts.clear()


@pytest.fixture(autouse=True)
def fresh_price_cache():
    """Each test sees the price table of its own database (tests roll their changes back)."""
    prices.invalidate()
    yield
    prices.invalidate()


@pytest.fixture(autouse=True)
def fresh_key_cache():
    """Each test sees the keys of its own database (a transactional test's flush sends no
    signal)."""
    keys.invalidate_keys()
    registry.invalidate()
    yield
    keys.invalidate_keys()
    registry.invalidate()


@pytest.fixture(autouse=True)
def sleeps(monkeypatch):
    """The waits the retry loop asked for, in order (nothing actually sleeps)."""
    waits: list[float] = []
    monkeypatch.setattr(base_provider, "sleep", waits.append)
    return waits


@pytest.fixture(autouse=True)
def http(request):
    """``responses`` mock of all HTTP; tests marked ``live`` get the real network."""
    if request.node.get_closest_marker("live"):
        yield None
        return
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def use_keys(settings):
    """``use_keys("gemini", "openrouter")`` gives those providers environment keys."""

    def _use(*providers: str) -> None:
        for name in providers:
            setattr(settings, KEY_SETTINGS[name], FAKE_KEYS[name])

    return _use


def pytest_collection_modifyitems(items):
    """Transactional tests restore the database's migrated data (the seeded price table) after
    they flush it, so a test's outcome never depends on which tests ran before it."""
    for item in items:
        marker = item.get_closest_marker("django_db")
        if (
            marker
            and marker.kwargs.get("transaction")
            and "serialized_rollback" not in marker.kwargs
        ):
            kwargs = {**marker.kwargs, "serialized_rollback": True}
            item.add_marker(pytest.mark.django_db(*marker.args, **kwargs), append=False)
