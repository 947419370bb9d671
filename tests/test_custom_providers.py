"""Custom OpenAI-compatible providers (SPEC §12.1): the registry, their validation, keyless
detection, the router with them, the system check and the admin page. The API's view of them is
in ``tests/api/test_custom_providers.py``, the provider contract in ``tests/providers``."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
import responses
from django.core.exceptions import ImproperlyConfigured
from django.urls import reverse

from llm_providers import cache_version, checks, registry
from llm_providers.exceptions import AllProvidersFailed, ProviderNotConfigured, UnknownProvider
from llm_providers.keys import resolve_keys
from llm_providers.main_text_generation import llm_generate, llm_stream, llm_text_gen
from llm_providers.models import APIKey, CustomProvider, LedgerEntry, ModelPrice, UsageSummary
from llm_providers.providers.custom import CustomOpenAIProvider
from llm_providers.results import Generation, TextDelta
from tests.providers import wire

OLLAMA_URL = "http://127.0.0.1:11434/v1"
OLLAMA = {"name": "ollama", "base_url": OLLAMA_URL, "default_model": "llama3.2"}
KEYLESS_OLLAMA = {**OLLAMA, "requires_key": False}


@pytest.fixture
def custom(settings):
    """``custom({...}, …)`` sets ``LLM_CUSTOM_PROVIDERS``."""

    def _set(*definitions: dict) -> None:
        settings.LLM_CUSTOM_PROVIDERS = list(definitions)

    return _set


def ollama_answers(http, body: str | bytes | None = None, *, status=200, stream=False):
    http.add(
        responses.POST,
        f"{OLLAMA_URL}/chat/completions",
        body=body if body is not None else wire.hf_completion("Hi from llama", model="llama3.2"),
        status=status,
        content_type=wire.SSE if stream else "application/json",
    )


# --- The registry ---------------------------------------------------------------------------------


def test_the_built_in_providers_and_their_aliases_come_from_the_classes():
    assert [cls.name for cls in registry.BUILTIN_PROVIDERS] == [
        "gemini",
        "openrouter",
        "huggingface",
    ]
    assert registry.ALIASES == {"google": "gemini", "hf": "huggingface"}
    assert registry.canonical_name("Google") == "gemini"


@pytest.mark.django_db
def test_custom_providers_come_after_the_built_in_ones_unless_they_set_a_priority(custom):
    custom(
        {**OLLAMA, "name": "zeta"},
        {**OLLAMA, "name": "first", "priority": 1},
        {**OLLAMA, "name": "second", "priority": 2},
    )
    CustomProvider.objects.create(name="alpha", base_url=OLLAMA_URL, default_model="m")

    assert registry.provider_names() == [
        "first",
        "gemini",
        "second",
        "openrouter",
        "huggingface",
        "zeta",
        "alpha",
    ]


@pytest.mark.django_db
def test_a_custom_provider_is_an_openai_compatible_class_made_from_its_data(custom):
    custom({**OLLAMA, "label": "Local Ollama"})

    cls = registry.provider_class("OLLAMA")

    assert issubclass(cls, CustomOpenAIProvider)
    assert (cls.name, cls.label, cls.default_model(), cls.key_setting) == (
        "ollama",
        "Local Ollama",
        "llama3.2",
        "OLLAMA_API_KEY",
    )
    assert cls("a-key").base_url == OLLAMA_URL
    with pytest.raises(ValueError, match="needs a key"):  # requires_key defaults to true
        cls()
    assert ("ollama", "Local Ollama") in registry.as_choices()


@pytest.mark.django_db
def test_the_setting_wins_over_an_admin_row_of_the_same_name(custom, caplog):
    custom(KEYLESS_OLLAMA)
    CustomProvider.objects.create(name="ollama", base_url="http://other:1/v1", default_model="x")

    assert registry.provider_class("ollama").default_model() == "llama3.2"
    assert "defined in LLM_CUSTOM_PROVIDERS and in the admin" in caplog.text


@pytest.mark.django_db
def test_inactive_and_invalid_admin_rows_are_left_out(caplog):
    CustomProvider.objects.create(name="off", base_url=OLLAMA_URL, default_model="m", active=False)
    CustomProvider.objects.create(name="hf", base_url=OLLAMA_URL, default_model="m")  # reserved

    assert registry.provider_names() == ["gemini", "openrouter", "huggingface"]
    assert "is reserved" in caplog.text


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("ollama", "must be a list of objects"),
        ([["ollama"]], "entry 1: each entry must be a JSON object"),
        ([{**OLLAMA, "name": "gemini"}], "entry 1: name 'gemini' is reserved"),
        ([{**OLLAMA, "name": "google"}], "name 'google' is reserved"),
        ([{**OLLAMA, "name": "Bad Name"}], "must be 1-32 lower-case letters"),
        ([{**OLLAMA, "base_url": "127.0.0.1:11434"}], "must be an http:// or https:// URL"),
        ([{**OLLAMA, "default_model": ""}], "default_model must be a non-empty string"),
        ([{**OLLAMA, "requires_key": "no"}], "requires_key must be true or false"),
        ([{**OLLAMA, "priority": 0}], "priority must be a whole number from 1"),
        ([{**OLLAMA, "api_key": "x"}], "unknown field(s) api_key"),
        ([{"name": "ollama"}], "base_url is required"),
        ([OLLAMA, OLLAMA], "entry 2: name 'ollama' is defined twice"),
    ],
)
def test_a_malformed_setting_is_a_clear_configuration_error(settings, value, message):
    settings.LLM_CUSTOM_PROVIDERS = value
    with pytest.raises(ImproperlyConfigured, match="LLM_CUSTOM_PROVIDERS") as caught:
        registry.configured_custom_definitions()
    assert message in str(caught.value)
    assert [e.id for e in checks.check_custom_providers(None)] == ["llm_providers.E003"]


def test_the_setting_is_read_as_json_from_the_environment(settings, monkeypatch):
    del settings.LLM_CUSTOM_PROVIDERS
    monkeypatch.setenv("LLM_CUSTOM_PROVIDERS", json.dumps([KEYLESS_OLLAMA]))
    from llm_providers.conf import llm_settings

    llm_settings.reload()
    assert registry.configured_custom_definitions()[0]["requires_key"] is False
    assert checks.check_custom_providers(None) == []


# --- Detection and keys ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_keyless_provider_is_available_and_primary_when_it_is_the_only_one(custom):
    custom(KEYLESS_OLLAMA)

    keys = resolve_keys()

    assert list(keys) == ["ollama"]
    assert keys["ollama"].secret == ""
    assert registry.primary_provider(keys) == "ollama"


@pytest.mark.django_db
def test_a_custom_provider_that_needs_a_key_is_not_available_without_one(custom, settings):
    custom(OLLAMA)
    assert resolve_keys() == {}
    with pytest.raises(ProviderNotConfigured, match="OLLAMA_API_KEY not found"):
        llm_text_gen("hi", provider="ollama")

    settings.OLLAMA_API_KEY = "local-key"
    assert resolve_keys()["ollama"].source == "the environment variable OLLAMA_API_KEY"


@pytest.mark.django_db
def test_gpt_provider_may_name_a_custom_provider(custom, settings):
    custom(KEYLESS_OLLAMA)
    settings.GPT_PROVIDER = "Ollama"
    assert registry.configured_primary() == "ollama"

    settings.GPT_PROVIDER = "nothing"
    with pytest.raises(UnknownProvider, match="ollama"):
        registry.configured_primary()


@pytest.mark.django_db
def test_a_stored_key_is_sent_to_a_custom_provider(custom, http):
    custom(OLLAMA)
    key = APIKey(provider="ollama")
    key.set_secret("short-key")
    key.save()
    ollama_answers(http)

    llm_text_gen("hi")

    assert http.calls[0].request.headers["Authorization"] == "Bearer short-key"
    assert str(key) == f"ollama key #{key.pk} (…)"  # short keys reveal nothing in the mask


# --- The router with a custom provider ------------------------------------------------------------


@pytest.mark.django_db
def test_a_keyless_provider_answers_without_any_auth_header_and_is_accounted(custom, http):
    custom(KEYLESS_OLLAMA)
    ollama_answers(http)

    generation = llm_generate("hi")

    assert (generation.provider, generation.model, generation.text) == (
        "ollama",
        "llama3.2",
        "Hi from llama",
    )
    request = http.calls[0].request
    assert "Authorization" not in request.headers
    assert json.loads(request.body)["model"] == "llama3.2"
    row = LedgerEntry.objects.get()
    assert (row.provider, row.total_tokens, row.cost, row.cost_source) == (
        "ollama",
        62,
        Decimal(0),
        "unpriced",
    )
    summary = UsageSummary.objects.get()
    assert (summary.total_calls, summary.total_tokens) == (1, 62)  # totals count every provider
    assert summary.gemini_calls == summary.openrouter_calls == summary.huggingface_calls == 0


@pytest.mark.django_db
def test_a_price_row_prices_a_custom_providers_model(custom, http):
    custom(KEYLESS_OLLAMA)
    ModelPrice.objects.create(
        provider="ollama", model="llama3.2", prompt_per_million=1, completion_per_million=2
    )
    ollama_answers(http)

    assert llm_generate("hi").cost == Decimal("0.000079")  # (45 * 1 + 17 * 2) / 1e6


@pytest.mark.django_db
def test_a_custom_provider_is_a_fallback_after_the_built_in_ones(custom, use_keys, http):
    custom(KEYLESS_OLLAMA)
    use_keys("huggingface")
    http.add(responses.POST, wire.HF_CHAT, body=wire.hf_error("overloaded"), status=503)
    ollama_answers(http)

    generation = llm_generate("hi")

    assert generation.provider == "ollama"
    assert generation.fallback_from == ["huggingface"]


@pytest.mark.django_db
def test_a_custom_provider_streams_and_returns_structured_output(custom, http):
    custom(KEYLESS_OLLAMA)
    ollama_answers(http, wire.hf_stream(["Hel", "lo"]), stream=True)

    items = list(llm_stream("hi"))

    assert [i.text for i in items if isinstance(i, TextDelta)] == ["Hel", "lo"]
    assert isinstance(items[-1], Generation) and items[-1].provider == "ollama"

    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    ollama_answers(http, wire.hf_completion('{"a": 1}', model="llama3.2"))
    assert llm_text_gen("json please", json_struct=schema) == {"a": 1}
    sent = json.loads(http.calls[-1].request.body)
    assert sent["response_format"]["json_schema"]["schema"] == schema


@pytest.mark.django_db
def test_an_unreachable_keyless_provider_is_a_provider_failure(custom):
    custom(KEYLESS_OLLAMA)  # nothing answers: responses refuses the connection
    with pytest.raises(AllProvidersFailed, match="ollama"):
        llm_text_gen("hi")


# --- Changes take effect without a restart --------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_saving_or_deleting_a_row_moves_the_cache_version(settings):
    settings.LLM_KEY_CACHE_SECONDS = 3600
    assert "lab" not in registry.provider_names()
    before = cache_version.current()

    row = CustomProvider.objects.create(
        name="lab", base_url=OLLAMA_URL, default_model="m", requires_key=False
    )

    assert cache_version.current() != before
    assert "lab" in registry.provider_names()
    assert "lab" in resolve_keys()
    row.delete()
    assert "lab" not in registry.provider_names()
    assert "lab" not in resolve_keys()


# --- The admin ------------------------------------------------------------------------------------


@pytest.fixture
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


ADD = reverse("admin:llm_providers_customprovider_add")


@pytest.mark.django_db
def test_the_admin_adds_a_custom_provider_that_is_used_at_once(admin_client, fast_passwords, http):
    assert admin_client.get(ADD).status_code == 200
    response = admin_client.post(
        ADD,
        {
            "name": "lab",
            "label": "Lab vLLM",
            "base_url": "http://vllm.lab:8000/v1/",
            "default_model": "Qwen/Qwen2.5-7B",
            "requires_key": "on",
            "priority": "",
            "active": "on",
        },
    )
    assert response.status_code == 302, response.content.decode()
    row = CustomProvider.objects.get()
    assert (row.base_url, row.requires_key) == ("http://vllm.lab:8000/v1", True)
    assert "lab" in registry.provider_names()

    changelist = admin_client.get(reverse("admin:llm_providers_customprovider_changelist"))
    assert "Lab vLLM" in changelist.content.decode()
    key_page = admin_client.get(reverse("admin:llm_providers_apikey_add")).content.decode()
    assert '<option value="lab">Lab vLLM</option>' in key_page


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("name", "error"),
    [("hf", "is reserved"), ("openrouter", "is reserved"), ("Ollama!", "lower-case letters")],
)
def test_the_admin_refuses_reserved_and_malformed_names(admin_client, fast_passwords, name, error):
    response = admin_client.post(
        ADD, {"name": name, "base_url": OLLAMA_URL, "default_model": "m", "active": "on"}
    )
    assert response.status_code == 200
    assert error in response.content.decode()
    assert not CustomProvider.objects.exists()


@pytest.mark.django_db
def test_the_admin_refuses_a_name_the_setting_defines(admin_client, fast_passwords, custom):
    custom(KEYLESS_OLLAMA)
    response = admin_client.post(
        ADD, {"name": "ollama", "base_url": OLLAMA_URL, "default_model": "m", "active": "on"}
    )
    assert "already defined in LLM_CUSTOM_PROVIDERS" in response.content.decode()


@pytest.mark.django_db
def test_the_ledger_filter_offers_custom_providers(admin_client, fast_passwords, custom):
    custom(KEYLESS_OLLAMA)
    html = admin_client.get(reverse("admin:llm_providers_ledgerentry_changelist")).content
    assert b"?provider__exact=ollama" in html


@pytest.mark.django_db
def test_the_ledger_filter_selects_a_custom_providers_rows(admin_client, fast_passwords, custom):
    custom(KEYLESS_OLLAMA)
    for provider in ("ollama", "gemini"):
        LedgerEntry.objects.create(
            request_id=provider, provider=provider, model="m", status="success", period="2026-01"
        )
    changelist = reverse("admin:llm_providers_ledgerentry_changelist")
    rows = admin_client.get(changelist, {"provider__exact": "ollama"}).context["cl"].result_list
    assert [row.provider for row in rows] == ["ollama"]


@pytest.mark.django_db
def test_gpt_provider_may_name_a_provider_defined_in_the_admin(settings):
    CustomProvider.objects.create(name="lab", base_url=OLLAMA_URL, default_model="m")
    settings.GPT_PROVIDER = "lab"
    assert checks.check_gpt_provider(None) == []
    settings.GPT_PROVIDER = "elsewhere"
    assert [e.id for e in checks.check_gpt_provider(None)] == ["llm_providers.E001"]
