"""Key health (SPEC §6): a key tested with its provider before the admin saves it, and a key its
provider keeps rejecting deactivated, with the reason on the key and in the log."""

import logging

import pytest
from django.core.cache import cache
from django.urls import reverse

from llm_providers import keys, router
from llm_providers.exceptions import (
    InsufficientCredits,
    ProviderAuthError,
    ProviderFailure,
    ProviderNotConfigured,
)
from llm_providers.models import APIKey
from llm_providers.results import Message
from tests.conftest import FAKE_KEYS, OPENROUTER_URL

pytestmark = pytest.mark.django_db

SECRET = FAKE_KEYS["openrouter"]
# What an upstream may echo instead of the exact key: the key cut short by one character.
FRAGMENT = SECRET[:-1]
ADD = reverse("admin:llm_providers_apikey_add")
CHANGELIST = reverse("admin:llm_providers_apikey_changelist")
KEY_CHECK = f"{OPENROUTER_URL}/key"
CHAT = f"{OPENROUTER_URL}/chat/completions"
MASK = "sk-or-…wxyz"


@pytest.fixture(autouse=True)
def fast_password_hasher(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def three_in_a_row(settings):
    settings.LLM_CIRCUIT_FAILURES = 3


def store(secret: str = SECRET, *, active: bool = True) -> APIKey:
    key = APIKey(provider="openrouter", active=active, label="prod")
    key.set_secret(secret)
    key.save()
    return key


def change_url(key: APIKey) -> str:
    return reverse("admin:llm_providers_apikey_change", args=[key.pk])


def key_check_refuses(http, message: str = f"User not found for {FRAGMENT}") -> None:
    http.get(KEY_CHECK, json={"error": {"code": 401, "message": message}}, status=401)


def rejected(status: int = 401) -> ProviderAuthError:
    error_class = InsufficientCredits if status == 402 else ProviderAuthError
    return error_class(
        f"OpenRouter rejected the key (HTTP {status}: User not found.)",
        provider="openrouter",
        upstream_status=status,
    )


def fresh(key: APIKey) -> APIKey:
    return APIKey.objects.get(pk=key.pk)


# --- the admin's checkbox -------------------------------------------------------------------------


def add_with_test(admin_client, **extra):
    data = {"provider": "openrouter", "label": "prod", "secret": SECRET, "active": "on"}
    return admin_client.post(ADD, {**data, "validate": "on", **extra})


def test_checkbox_accepted_key_is_saved_with_the_answer(admin_client, http):
    http.get(KEY_CHECK, json={"data": {"label": "x"}}, status=200)

    response = add_with_test(admin_client)

    assert response.status_code == 302
    key = APIKey.objects.get()
    assert key.active and key.secret() == SECRET
    assert key.status_note.startswith("OpenRouter accepted the key")
    assert key.checked_at is not None
    assert [c.request.headers["Authorization"] for c in http.calls] == [f"Bearer {SECRET}"]


def test_checkbox_rejected_key_is_a_form_error_and_nothing_is_saved(admin_client, http):
    key_check_refuses(http)

    response = add_with_test(admin_client)

    assert response.status_code == 200
    html = response.content.decode()
    assert "The key was not saved" in html
    assert "OpenRouter rejected the key from the key entered (HTTP 401" in html
    assert FRAGMENT not in html and SECRET[:12] not in html
    assert APIKey.objects.count() == 0


def test_checkbox_unreachable_provider_is_a_form_error_and_nothing_is_saved(admin_client, http):
    # No answer registered: the request fails as a connection error.
    response = add_with_test(admin_client)

    assert response.status_code == 200
    assert "The key was not saved" in response.content.decode()
    assert APIKey.objects.count() == 0
    assert len(http.calls) == 1  # tested once, not retried


def test_unticked_checkbox_sends_no_request(admin_client, http):
    response = admin_client.post(
        ADD, {"provider": "openrouter", "label": "prod", "secret": SECRET, "active": "on"}
    )

    assert response.status_code == 302
    assert len(http.calls) == 0
    assert APIKey.objects.get().checked_at is None


def test_checkbox_on_change_tests_the_stored_key_and_keeps_it_when_refused(admin_client, http):
    key = store()
    key_check_refuses(http)

    response = admin_client.post(
        change_url(key), {"provider": "openrouter", "label": "renamed", "validate": "on"}
    )

    assert response.status_code == 200
    assert f"rejected the key from the stored key {MASK}" in response.content.decode()
    assert fresh(key).label == "prod" and fresh(key).active


def test_a_new_secret_replaces_the_note_of_the_old_key(admin_client):
    key = store()
    APIKey.objects.filter(pk=key.pk).update(status_note="Deactivated …", active=False)

    admin_client.post(
        change_url(key),
        {"provider": "openrouter", "label": "prod", "secret": SECRET.replace("fake", "new0")},
    )

    assert fresh(key).status_note == ""


def test_key_admin_shows_status_note_and_checked_at_read_only(admin_client):
    key = store()
    keys.deactivate_key(key.pk, count=3, reason="OpenRouter answered HTTP 401: User not found.")

    changelist = admin_client.get(CHANGELIST).content.decode()
    change = admin_client.get(change_url(key)).content.decode()

    for html in (changelist, change):
        assert "rejected by OpenRouter on 3 calls in a row" in html
        assert SECRET not in html
    assert 'name="status_note"' not in change and 'name="checked_at"' not in change


# --- counting rejections --------------------------------------------------------------------------


def test_n_rejections_in_a_row_deactivate_a_stored_key(http, caplog):
    key = store()
    resolved = keys.resolve_keys()["openrouter"]
    key_check_refuses(http)

    with caplog.at_level(logging.WARNING, logger="llm_providers.keys"):
        keys.record_key_outcome(resolved, rejected())
        keys.record_key_outcome(resolved, rejected())
        assert fresh(key).active and len(http.calls) == 0
        keys.record_key_outcome(resolved, rejected())

    row = fresh(key)
    assert not row.active
    assert row.checked_at is not None
    assert "rejected by OpenRouter on 3 calls in a row" in row.status_note
    assert "User not found for [key]" in row.status_note  # the echoed fragment, masked
    assert FRAGMENT[:8] not in row.status_note
    [record] = caplog.records
    assert MASK in record.getMessage() and FRAGMENT[:8] not in record.getMessage()
    assert "openrouter" not in keys.resolve_keys()  # every process drops it (cache version)


def test_a_users_own_key_is_never_deactivated_by_key_health(http, django_user_model):
    # Deactivating it would switch its owner's calls to the platform's key without their say
    # (SPEC §12.2): each rejection is reported to them instead.
    owner = django_user_model.objects.create_user("owner")
    key = store()
    APIKey.objects.filter(pk=key.pk).update(owner=owner)
    resolved = keys.resolve_keys(owner.pk)["openrouter"]
    key_check_refuses(http)

    for _ in range(5):
        keys.record_key_outcome(resolved, rejected())

    assert resolved.owner == "user"
    assert fresh(key).active and len(http.calls) == 0


def test_a_success_in_between_resets_the_count(http):
    key = store()
    resolved = keys.resolve_keys()["openrouter"]

    for error in [rejected(), rejected(), None, rejected(), rejected()]:
        keys.record_key_outcome(resolved, error)

    assert fresh(key).active
    assert len(http.calls) == 0  # never reached the third rejection in a row


def test_a_402_is_the_credit_not_the_key(http):
    key = store()
    resolved = keys.resolve_keys()["openrouter"]

    for _ in range(5):
        keys.record_key_outcome(resolved, rejected(402))

    assert fresh(key).active and fresh(key).status_note == ""
    assert len(http.calls) == 0


def test_a_key_the_key_check_accepts_is_kept(http):
    # E.g. 403s for a model the key may not use: a caller asking for it again and again must not
    # get the platform's key switched off.
    key = store()
    resolved = keys.resolve_keys()["openrouter"]
    http.get(KEY_CHECK, json={"data": {}}, status=200)

    for _ in range(3):
        keys.record_key_outcome(resolved, rejected(403))

    assert fresh(key).active
    assert cache.get(keys._rejections_key(resolved)) is None  # counting starts again


def test_an_unreachable_key_check_keeps_counting_without_deactivating(http):
    key = store()
    resolved = keys.resolve_keys()["openrouter"]

    for _ in range(3):
        keys.record_key_outcome(resolved, rejected())
    assert fresh(key).active
    assert len(http.calls) == 1  # the check, which found no answer

    key_check_refuses(http)
    keys.record_key_outcome(resolved, rejected())
    assert not fresh(key).active


def test_an_environment_key_is_only_reported(http, use_keys, caplog):
    use_keys("openrouter")
    resolved = keys.resolve_keys()["openrouter"]
    key_check_refuses(http)

    with caplog.at_level(logging.WARNING, logger="llm_providers.keys"):
        for _ in range(3):
            keys.record_key_outcome(resolved, rejected())

    [record] = caplog.records
    assert "OPENROUTER_API_KEY" in record.getMessage()
    assert FRAGMENT[:8] not in record.getMessage()
    assert keys.resolve_keys()["openrouter"].secret == SECRET  # still in use
    assert not APIKey.objects.exists()


def test_a_success_costs_one_cache_read_and_no_write(monkeypatch):
    store()
    resolved = keys.resolve_keys()["openrouter"]
    calls = []
    for name in ("get", "get_many", "set", "add", "incr", "delete", "delete_many", "touch"):
        original = getattr(cache, name)
        monkeypatch.setattr(
            cache, name, lambda *a, _n=name, _o=original, **k: calls.append(_n) or _o(*a, **k)
        )

    keys.record_key_outcome(resolved, None)

    assert calls == ["get"]


# --- through a real call ------------------------------------------------------------------------


def call():
    return router.generate([Message("user", "hi")], provider="openrouter", fallback=False)


def test_a_key_rejected_on_three_calls_is_deactivated_and_no_longer_used(http):
    key = store()
    http.post(CHAT, json={"error": {"code": 401, "message": "User not found."}}, status=401)
    key_check_refuses(http)

    for _ in range(3):
        with pytest.raises(ProviderFailure):
            call()

    row = fresh(key)
    assert not row.active
    assert "3 calls in a row" in row.status_note
    with pytest.raises(ProviderNotConfigured):
        call()
    assert [c.request.url for c in http.calls] == [CHAT, CHAT, CHAT, KEY_CHECK]


def test_402s_through_a_real_call_leave_the_key_active(http):
    key = store()
    http.post(CHAT, json={"error": {"code": 402, "message": "Insufficient credits"}}, status=402)

    for _ in range(4):
        with pytest.raises(ProviderFailure):
            call()

    assert fresh(key).active
    assert all(c.request.url == CHAT for c in http.calls)
