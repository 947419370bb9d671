"""The key admin: write-only secret input, masks only, and the test/activate/deactivate actions."""

from datetime import UTC, datetime

import pytest
from cryptography.fernet import Fernet
from django.contrib import messages
from django.contrib.admin.models import LogEntry
from django.db import connection
from django.urls import reverse

from llm_providers.models import APIKey
from tests.conftest import FAKE_KEYS, OPENROUTER_URL

SECRET = FAKE_KEYS["openrouter"]
CHANGELIST = reverse("admin:llm_providers_apikey_changelist")
ADD = reverse("admin:llm_providers_apikey_add")


@pytest.fixture(autouse=True)
def fast_password_hasher(settings):
    # admin_client logs in a freshly created superuser; the default hasher is slow by design.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def change_url(key: APIKey) -> str:
    return reverse("admin:llm_providers_apikey_change", args=[key.pk])


def store(provider: str = "openrouter", secret: str = SECRET, *, active=True, label="") -> APIKey:
    key = APIKey(provider=provider, active=active, label=label)
    key.set_secret(secret)
    key.save()
    return key


def run_action(admin_client, action: str, *keys: APIKey) -> list[tuple[int, str]]:
    response = admin_client.post(
        CHANGELIST,
        {"action": action, "_selected_action": [str(k.pk) for k in keys]},
        follow=True,
    )
    assert response.status_code == 200
    return [(m.level, m.message) for m in response.context["messages"]]


def all_database_text() -> str:
    """Every value in every table, as text: where a leaked key would be found."""
    values = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            values.extend(str(v) for row in cursor.fetchall() for v in row)
    return "\n".join(values)


# --- adding and showing ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_add_page_has_an_empty_write_only_secret_input_with_help(admin_client):
    html = admin_client.get(ADD).content.decode()

    assert '<input type="password" name="secret"' in html
    assert 'autocomplete="new-password"' in html
    assert "https://openrouter.ai/settings/keys" in html
    assert "https://aistudio.google.com/app/apikey" in html
    assert "https://huggingface.co/settings/tokens" in html
    assert 'name="encrypted_secret"' not in html
    assert '<option value="huggingface">Hugging Face</option>' in html


@pytest.mark.django_db
def test_add_a_key_through_the_admin(admin_client):
    response = admin_client.post(
        ADD,
        {"provider": "openrouter", "label": "prod", "secret": f"  {SECRET} ", "active": "on"},
    )

    assert response.status_code == 302
    key = APIKey.objects.get()
    assert (key.provider, key.label, key.active, key.mask) == (
        "openrouter",
        "prod",
        True,
        "sk-or-…wxyz",
    )
    assert key.secret() == SECRET
    assert SECRET not in all_database_text()  # nor in the admin log or the session


@pytest.mark.django_db
def test_changelist_and_change_page_show_the_mask_never_the_key(admin_client):
    key = store(label="prod")

    changelist = admin_client.get(CHANGELIST).content.decode()
    change = admin_client.get(change_url(key)).content.decode()

    for html in (changelist, change):
        assert "sk-or-…wxyz" in html
        assert SECRET not in html
        assert key.encrypted_secret not in html
    assert '<input type="password" name="secret"' in change
    assert "Leave empty to keep the current key (sk-or-…wxyz)" in change
    assert "https://openrouter.ai/settings/keys" in change


@pytest.mark.django_db
def test_staff_only(client, django_user_model):
    store()
    assert client.get(CHANGELIST).status_code == 302  # to the login page

    user = django_user_model.objects.create_user("someone", password="pw-for-test-only")
    client.force_login(user)
    assert client.get(CHANGELIST).status_code == 302


# --- changing -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_blank_secret_on_change_keeps_the_current_key(admin_client):
    key = store(label="old label")

    response = admin_client.post(
        change_url(key),
        {"provider": "openrouter", "label": "new label", "secret": "", "active": "on"},
    )

    assert response.status_code == 302
    fresh = APIKey.objects.get(pk=key.pk)
    assert fresh.label == "new label"
    assert fresh.encrypted_secret == key.encrypted_secret
    assert fresh.secret() == SECRET


@pytest.mark.django_db
def test_a_new_secret_on_change_replaces_the_key(admin_client):
    key = store()
    replacement = "sk-or-v1-replacement0key000000000000009876"

    response = admin_client.post(
        change_url(key),
        {"provider": "openrouter", "label": "", "secret": replacement, "active": "on"},
    )

    assert response.status_code == 302
    fresh = APIKey.objects.get(pk=key.pk)
    assert fresh.secret() == replacement
    assert fresh.mask == "sk-or-…9876"


@pytest.mark.django_db
def test_changing_the_provider_requires_that_providers_key(admin_client):
    key = store()

    response = admin_client.post(
        change_url(key), {"provider": "gemini", "label": "", "secret": "", "active": "on"}
    )

    assert response.status_code == 200
    html = response.content.decode()
    assert "Enter the new provider&#x27;s key when changing the provider." in html
    assert APIKey.objects.get(pk=key.pk).provider == "openrouter"


@pytest.mark.django_db
def test_saving_an_active_key_deactivates_the_providers_other_key(admin_client):
    old = store(label="old")

    response = admin_client.post(
        ADD, {"provider": "openrouter", "label": "new", "secret": SECRET[::-1], "active": "on"}
    )

    assert response.status_code == 302
    old.refresh_from_db()
    new = APIKey.objects.get(label="new")
    assert (old.active, new.active) == (False, True)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("secret", "error"),
    [
        ("", "Enter the API key."),
        ("   \n ", "Enter the API key."),
        ("sk-or-v1-has inner-space-0000000000wxyz", "The key contains whitespace."),
        ("sk-or-v1-tab\there-000000000000000000wxyz", "The key contains whitespace."),
        ("sk-or-short", "That is too short to be an API key (11 characters"),
    ],
)
def test_invalid_secret_input_is_refused_and_not_echoed(admin_client, secret, error):
    response = admin_client.post(ADD, {"provider": "openrouter", "label": "x", "secret": secret})

    html = response.content.decode()
    assert response.status_code == 200
    assert error in html
    assert APIKey.objects.count() == 0
    if secret.strip():
        assert secret.strip() not in html


# --- actions --------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_test_connection_action_reports_success(admin_client, http):
    key = store(label="prod")
    http.get(f"{OPENROUTER_URL}/key", json={"data": {"label": "sk-or-v1-fak...xyz"}}, status=200)

    [(level, message)] = run_action(admin_client, "test_connection", key)

    assert level == messages.SUCCESS
    assert message.startswith(f"OpenRouter key #{key.pk} 'prod' (sk-or-…wxyz): OpenRouter accepted")
    assert SECRET not in message
    assert http.calls[0].request.headers["Authorization"] == f"Bearer {SECRET}"


@pytest.mark.django_db
def test_test_connection_action_reports_a_rejected_key_without_it(admin_client, http):
    key = store()
    # An upstream that echoes the key back in its error must not get it onto the page.
    http.get(
        f"{OPENROUTER_URL}/key",
        json={"error": {"code": 401, "message": f"No auth credentials found for {SECRET}"}},
        status=401,
    )

    response = admin_client.post(
        CHANGELIST, {"action": "test_connection", "_selected_action": [str(key.pk)]}, follow=True
    )

    [msg] = list(response.context["messages"])
    assert msg.level == messages.ERROR
    assert "OpenRouter rejected the key from the admin key manager" in msg.message
    assert "HTTP 401" in msg.message and "sk-or-…wxyz" in msg.message
    assert SECRET not in msg.message
    assert SECRET not in response.content.decode()
    assert len(http.calls) == 1  # a rejected key is not retried


@pytest.mark.django_db
def test_test_connection_action_reports_an_undecryptable_key(admin_client, http, settings):
    settings.LLM_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    key = store()
    settings.LLM_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]

    [(level, message)] = run_action(admin_client, "test_connection", key)

    assert level == messages.ERROR
    assert "cannot be decrypted" in message
    assert len(http.calls) == 0


@pytest.mark.django_db
def test_test_connection_action_reports_each_key(admin_client, http):
    good = store(label="good")
    bad = store(secret=SECRET.replace("fake", "gone"), active=False, label="bad")
    http.get(
        f"{OPENROUTER_URL}/key",
        json={"error": {"code": 401, "message": "User not found."}},
        status=401,
        match=[_bearer(bad)],
    )
    http.get(f"{OPENROUTER_URL}/key", json={"data": {}}, status=200, match=[_bearer(good)])

    reported = dict(
        (message.split(":")[0], level)
        for level, message in run_action(admin_client, "test_connection", good, bad)
    )

    assert reported == {
        f"OpenRouter key #{good.pk} 'good' (sk-or-…wxyz)": messages.SUCCESS,
        f"OpenRouter key #{bad.pk} 'bad' (sk-or-…wxyz)": messages.ERROR,
    }


def _bearer(key: APIKey):
    from responses.matchers import header_matcher

    return header_matcher({"Authorization": f"Bearer {key.secret()}"})


@pytest.mark.django_db
def test_activate_action_makes_the_key_the_providers_only_active_key(admin_client):
    current = store(label="current")
    spare = store(secret=SECRET[::-1], active=False, label="spare")
    gemini = store("gemini", FAKE_KEYS["gemini"])

    [(level, message)] = run_action(admin_client, "activate", spare)

    assert level == messages.SUCCESS
    assert message == f"{spare} is the active key."
    assert LogEntry.objects.get(object_id=str(spare.pk)).get_change_message() == "Activated."
    assert dict(APIKey.objects.values_list("label", "active")) == {
        "current": False,
        "spare": True,
        "": True,  # the gemini key is untouched
    }
    assert APIKey.objects.get(pk=gemini.pk).active
    assert not APIKey.objects.get(pk=current.pk).active


@pytest.mark.django_db
def test_activate_action_refuses_two_keys_of_one_provider(admin_client):
    first = store(active=False, label="first")
    second = store(secret=SECRET[::-1], active=False, label="second")

    [(level, message)] = run_action(admin_client, "activate", first, second)

    assert level == messages.ERROR
    assert message.startswith("Only one OpenRouter key can be active")
    assert not APIKey.objects.filter(active=True).exists()


@pytest.mark.django_db
def test_deactivate_action(admin_client):
    openrouter = store()
    gemini = store("gemini", FAKE_KEYS["gemini"])
    huggingface = store("huggingface", FAKE_KEYS["huggingface"])

    [(level, message)] = run_action(admin_client, "deactivate", openrouter, gemini)

    assert (level, message) == (messages.SUCCESS, "Deactivated 2 key(s).")
    assert set(APIKey.objects.filter(active=True)) == {huggingface}
    logged = LogEntry.objects.values_list("object_id", "change_message")
    assert sorted(logged) == sorted(
        [(str(openrouter.pk), "Deactivated."), (str(gemini.pk), "Deactivated.")]
    )


@pytest.mark.django_db
def test_key_list_shows_a_users_key_by_owner_and_mask_only(admin_client, django_user_model):
    owner = django_user_model.objects.create_user("keyowner")
    secret = "sk-or-v1-q7w3e9r1t5y8u2i6o4p0a3s7d1f9g5h2usr1"
    key = APIKey(provider="openrouter", owner=owner)
    key.set_secret(secret)
    key.save()

    page = admin_client.get("/admin/llm_providers/apikey/").content.decode()
    detail = admin_client.get(f"/admin/llm_providers/apikey/{key.pk}/change/").content.decode()

    assert "keyowner" in page and "sk-or-…usr1" in page
    assert "keyowner" in detail
    assert secret not in page and secret not in detail


@pytest.mark.django_db
def test_key_list_names_providers_and_owners_in_words(admin_client, django_user_model):
    platform = store(label="prod")
    owner = django_user_model.objects.create_user("keyowner")
    users = APIKey(provider="gemini", owner=owner)
    users.set_secret(FAKE_KEYS["gemini"])
    users.save()

    response = admin_client.get(CHANGELIST)
    model_admin = response.context["cl"].model_admin
    html = response.content.decode()

    # Labels, not registry names; the platform's keys say so rather than "-".
    assert model_admin.provider_display(platform) == "OpenRouter"
    assert model_admin.provider_display(users) == "Google Gemini"
    assert ">OpenRouter</a></th>" in html and ">Google Gemini</a></th>" in html
    assert model_admin.owner_display(platform) == "(platform)"
    assert "keyowner" in model_admin.owner_display(users)
    # The owner filter in words, on the owner__isnull lookup.
    assert "By whose key" in html and "the platform&#x27;s" in html
    shown = {
        query: {k.pk for k in admin_client.get(CHANGELIST + query).context["cl"].result_list}
        for query in ("?owner__isnull=True", "?owner__isnull=False")
    }
    assert shown == {"?owner__isnull=True": {platform.pk}, "?owner__isnull=False": {users.pk}}


@pytest.mark.django_db
def test_key_list_shows_the_last_test_with_its_time(admin_client):
    key = store(label="prod")
    run_at = datetime(2026, 3, 5, 12, 30, tzinfo=UTC)
    APIKey.objects.filter(pk=key.pk).update(
        status_note="OpenRouter accepted the key (120 ms).", checked_at=run_at
    )
    key.refresh_from_db()

    model_admin = admin_client.get(CHANGELIST).context["cl"].model_admin

    cell = model_admin.status_display(key)
    assert 'title="OpenRouter accepted the key (120 ms).">OpenRouter accepted' in cell
    assert ">2026-03-05 12:30 UTC</span>" in cell
    assert model_admin.status_display(store(secret=SECRET[::-1], label="new")) == "-"
