"""Stored keys: masks, one active key per provider, and resolution (database > environment)."""

import pytest
from django.core.cache import cache
from django.db import IntegrityError, transaction

from llm_providers import keys as keys_module
from llm_providers.exceptions import KeyDecryptionError
from llm_providers.keys import mark_used, resolve_key, resolve_keys
from llm_providers.models import APIKey
from tests.conftest import FAKE_KEYS

DB_KEYS = {
    "gemini": "AIzaSyDATABASE-gemini-key-0000000000dbgm",
    "openrouter": "sk-or-v1-database0openrouter0key00000dbor",
    "huggingface": "hf_DATABASEhuggingfacetoken000000dbhf",
}


def store(provider: str, secret: str | None = None, *, active: bool = True, label: str = ""):
    key = APIKey(provider=provider, label=label, active=active)
    key.set_secret(secret or DB_KEYS[provider])
    key.save()
    return key


# --- masks ----------------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("provider", "mask"),
    [("gemini", "AIza…abcd"), ("openrouter", "sk-or-…wxyz"), ("huggingface", "hf_…hfkk")],
)
def test_mask_shows_public_prefix_and_last_four(provider, mask):
    key = store(provider, FAKE_KEYS[provider], label="main")

    assert key.mask == mask
    assert str(key) == f"{key.get_provider_display()} key #{key.pk} 'main' ({mask})"
    assert FAKE_KEYS[provider] not in str(key)


@pytest.mark.django_db
def test_mask_omits_a_prefix_the_key_does_not_have():
    key = store("openrouter", "not-an-openrouter-shaped-key-9876")

    assert key.mask == "…9876"
    assert key.secret_prefix == ""


@pytest.mark.django_db
def test_set_secret_strips_surrounding_whitespace():
    key = store("openrouter", f"  {FAKE_KEYS['openrouter']}\n")

    assert key.secret() == FAKE_KEYS["openrouter"]
    assert key.mask == "sk-or-…wxyz"


# --- one active key per provider ------------------------------------------------------------------


@pytest.mark.django_db
def test_activating_a_key_deactivates_the_providers_other_key():
    first = store("openrouter", label="first")
    other_provider = store("gemini")

    second = store("openrouter", FAKE_KEYS["openrouter"], label="second")

    first.refresh_from_db()
    other_provider.refresh_from_db()
    assert (first.active, second.active, other_provider.active) == (False, True, True)
    assert list(APIKey.objects.filter(provider="openrouter", active=True)) == [second]

    first.active = True
    first.save()
    second.refresh_from_db()
    assert (first.active, second.active) == (True, False)


@pytest.mark.django_db
def test_inactive_keys_may_be_many():
    store("gemini", active=False)
    store("gemini", FAKE_KEYS["gemini"], active=False)

    assert APIKey.objects.filter(provider="gemini", active=False).count() == 2


@pytest.mark.django_db
def test_database_refuses_a_second_active_key_for_a_provider():
    store("openrouter")
    inactive = store("openrouter", FAKE_KEYS["openrouter"], active=False)

    assert "one_active_key_per_provider" in {c.name for c in APIKey._meta.constraints}
    # .update() bypasses save(), so only the database constraint stands in the way.
    with pytest.raises(IntegrityError), transaction.atomic():
        APIKey.objects.filter(pk=inactive.pk).update(active=True)


# --- resolution -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_no_key_anywhere_resolves_to_none():
    assert resolve_key("openrouter") is None
    assert resolve_keys() == {}


@pytest.mark.django_db
def test_environment_key_is_used_when_the_database_has_none(use_keys):
    use_keys("openrouter")

    key = resolve_key("openrouter")

    assert key.secret == FAKE_KEYS["openrouter"]
    assert key.source == "the environment variable OPENROUTER_API_KEY"
    assert key.key_id is None


@pytest.mark.django_db
def test_active_database_key_wins_over_the_environment(use_keys):
    use_keys("openrouter")
    row = store("openrouter", label="prod")

    key = resolve_key("openrouter")

    assert key.secret == DB_KEYS["openrouter"]
    assert key.key_id == row.pk
    assert key.source == f"the admin key manager (key #{row.pk} 'prod', sk-or-…dbor)"
    assert DB_KEYS["openrouter"] not in repr(key)


@pytest.mark.django_db
def test_inactive_database_key_is_ignored(use_keys):
    store("gemini", active=False)
    assert resolve_key("gemini") is None

    use_keys("gemini")
    assert resolve_key("gemini").secret == FAKE_KEYS["gemini"]


@pytest.mark.django_db
def test_resolve_key_accepts_a_provider_alias():
    row = store("gemini")

    assert resolve_key("google").key_id == row.pk
    assert resolve_key("HF") is None


@pytest.mark.django_db
def test_resolve_keys_merges_database_and_environment(use_keys, django_assert_num_queries):
    use_keys("gemini", "openrouter")
    gemini_row = store("gemini")
    store("openrouter", active=False)

    # The keys (the platform's, and who has own keys), the custom providers (none here).
    with django_assert_num_queries(2):
        keys = resolve_keys()

    assert sorted(keys) == ["gemini", "openrouter"]
    assert (keys["gemini"].secret, keys["gemini"].key_id) == (DB_KEYS["gemini"], gemini_row.pk)
    assert keys["openrouter"].secret == FAKE_KEYS["openrouter"]
    assert keys["openrouter"].source == "the environment variable OPENROUTER_API_KEY"


# --- the process's copy ---------------------------------------------------------------------------


def _added_without_signals(provider: str) -> None:
    """A key saved as another process (or raw SQL) would: no signal reaches this process."""
    key = APIKey(provider=provider)
    key.set_secret(DB_KEYS[provider])
    APIKey.objects.bulk_create([key])


@pytest.mark.django_db(transaction=True)
def test_the_copy_is_read_once_while_the_version_stands(settings, django_assert_num_queries):
    settings.LLM_KEY_CACHE_SECONDS = 3600
    with django_assert_num_queries(2):  # the keys and the custom providers, once
        assert resolve_keys() == {}
        assert resolve_keys() == {}
    _added_without_signals("gemini")
    assert resolve_keys() == {}  # the version has not moved

    cache.clear()  # evicted: the version starts again from a value no copy holds
    assert list(resolve_keys()) == ["gemini"]


@pytest.mark.django_db(transaction=True)
def test_no_copy_is_kept_with_a_cache_that_keeps_nothing(settings, django_assert_num_queries):
    settings.LLM_KEY_CACHE_SECONDS = 3600
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}
    with django_assert_num_queries(4):  # the keys and the custom providers, each time
        resolve_keys()
        resolve_keys()


@pytest.mark.django_db
def test_an_undecryptable_active_key_is_an_error_not_a_silent_fallback(settings, use_keys):
    use_keys("huggingface")
    store("huggingface")
    settings.SECRET_KEY = "another-secret-key-than-the-one-the-key-was-stored-with"

    with pytest.raises(KeyDecryptionError) as caught:
        resolve_key("huggingface")

    assert "hf_…dbhf" in str(caught.value)
    assert DB_KEYS["huggingface"] not in str(caught.value)


@pytest.mark.django_db
def test_mark_used_stamps_database_keys_only(use_keys):
    row = store("huggingface")
    use_keys("openrouter")

    mark_used(resolve_key("openrouter"))
    row.refresh_from_db()
    assert row.last_used_at is None

    mark_used(resolve_key("huggingface"))
    row.refresh_from_db()
    assert row.last_used_at is not None


# --- users' own keys (SPEC §12.2) -----------------------------------------------------------------

USER_KEY = "sk-or-v1-q7w3e9r1t5y8u2i6o4p0a3s7d1f9g5h2usr1"


def store_own(user, provider: str, secret: str, *, active: bool = True):
    key = APIKey(provider=provider, owner=user, active=active)
    key.set_secret(secret)
    key.save()
    return key


@pytest.mark.django_db
def test_a_users_own_key_is_used_for_that_user_only(use_keys, django_user_model):
    use_keys("openrouter")
    alice = django_user_model.objects.create_user("alice")
    bob = django_user_model.objects.create_user("bob")
    own = store_own(alice, "openrouter", USER_KEY)

    for_alice, for_bob, for_system = resolve_keys(alice.pk), resolve_keys(bob.pk), resolve_keys()

    assert (for_alice["openrouter"].secret, for_alice["openrouter"].owner) == (USER_KEY, "user")
    assert for_alice["openrouter"].key_id == own.pk
    assert for_alice["openrouter"].source == f"your own key (me/keys/ #{own.pk}, sk-or-…usr1)"
    assert (for_bob["openrouter"].secret, for_bob["openrouter"].owner) == (
        FAKE_KEYS["openrouter"],
        "platform",
    )
    assert for_system == for_bob
    assert resolve_key("openrouter").secret == FAKE_KEYS["openrouter"]


@pytest.mark.django_db
def test_a_users_own_key_makes_a_provider_available_to_them_alone(django_user_model):
    alice = django_user_model.objects.create_user("alice")
    bob = django_user_model.objects.create_user("bob")
    store_own(alice, "openrouter", USER_KEY)

    assert list(resolve_keys(alice.pk)) == ["openrouter"]
    assert resolve_keys(bob.pk) == {}


@pytest.mark.django_db
def test_one_active_key_per_provider_and_owner(django_user_model):
    alice = django_user_model.objects.create_user("alice")
    bob = django_user_model.objects.create_user("bob")
    platform = store("openrouter")
    first = store_own(alice, "openrouter", USER_KEY)
    bobs = store_own(bob, "openrouter", "sk-or-v1-p9o5i1u7y3t8r2e6w0q4l9k3j7h1g5f2bob2")
    second = store_own(alice, "openrouter", "sk-or-v1-m1n5b9v3c7x2z6l0k4j8h1g5f9d3s7a2usr3")

    active = set(APIKey.objects.filter(active=True).values_list("pk", flat=True))
    assert active == {platform.pk, bobs.pk, second.pk}
    assert first.pk not in active
    with pytest.raises(IntegrityError), transaction.atomic():
        APIKey.objects.filter(pk=first.pk).update(active=True)


@pytest.mark.django_db(transaction=True)
def test_the_kept_copy_holds_no_users_key_and_a_deleted_one_stops_at_once(
    settings, django_user_model, django_assert_num_queries
):
    settings.LLM_KEY_CACHE_SECONDS = 3600
    alice = django_user_model.objects.create_user("alice")
    bob = django_user_model.objects.create_user("bob")
    own = store_own(alice, "openrouter", USER_KEY)
    resolve_keys()  # the copy is read

    with django_assert_num_queries(0):  # a user without own keys: nothing more than the copy
        assert resolve_keys(bob.pk) == {}
    with django_assert_num_queries(1):  # a user with own keys: theirs, read now
        assert resolve_keys(alice.pk)["openrouter"].secret == USER_KEY
    platform_keys, owners = keys_module._keys._kept[0]
    assert owners == {alice.pk}
    assert USER_KEY not in [key.secret for key in platform_keys.values()]

    own.delete()
    assert resolve_keys(alice.pk) == {}


@pytest.mark.django_db
def test_log_filter_masks_users_keys(django_user_model):
    from llm_providers.log import SecretsFilter

    store_own(django_user_model.objects.create_user("alice"), "openrouter", USER_KEY)

    assert USER_KEY in SecretsFilter().secrets()
