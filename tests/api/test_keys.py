"""``keys/`` and ``keys/<id>/`` (staff): the key manager. Masks only, never a key."""

import re

import pytest
import requests

from llm_providers.keys import resolve_key
from llm_providers.models import APIKey
from tests.api.support import API, assert_error
from tests.conftest import FAKE_KEYS, OPENROUTER_URL
from tests.providers import wire

pytestmark = pytest.mark.django_db

KEYS = API + "keys/"
SPEC_FIELDS = ["id", "provider", "label", "mask", "active", "created_at", "last_used_at"]
NEW_OPENROUTER = "sk-or-v1-brand0new0openrouter0key00000newk"
NEW_GEMINI = "AIzaSyBrandNewGeminiKey000000000000gg"


def stored(provider: str, secret: str, label: str = "") -> APIKey:
    key = APIKey(provider=provider, label=label)
    key.set_secret(secret)
    key.save()
    return key


def assert_no_plaintext(response, *secrets: str) -> None:
    content = response.content.decode()
    for secret in secrets:
        assert secret not in content
        if len(secret) >= 20:
            assert secret[6:-4] not in content  # not even its middle


def detail(key_id: int) -> str:
    return f"{KEYS}{key_id}/"


# --- List ---------------------------------------------------------------------------------------


def test_list_is_masked(staff_api):
    gemini = stored("gemini", FAKE_KEYS["gemini"], "prod")
    old = stored("openrouter", "sk-or-v1-old0openrouter0key000000000000old1", "old")
    current = stored("openrouter", FAKE_KEYS["openrouter"], "current")
    hf = stored("huggingface", FAKE_KEYS["huggingface"])

    response = staff_api.get(KEYS)

    assert response.status_code == 200
    rows = response.json()
    assert [list(r) for r in rows] == [SPEC_FIELDS] * 4
    by_id = {r["id"]: r for r in rows}
    assert {i: (r["provider"], r["label"], r["mask"], r["active"]) for i, r in by_id.items()} == {
        gemini.pk: ("gemini", "prod", "AIza…abcd", True),
        old.pk: ("openrouter", "old", "sk-or-…old1", False),
        current.pk: ("openrouter", "current", "sk-or-…wxyz", True),
        hf.pk: ("huggingface", "", "hf_…hfkk", True),
    }
    assert by_id[gemini.pk]["last_used_at"] is None
    assert by_id[gemini.pk]["created_at"].endswith("Z")
    assert_no_plaintext(
        response, *FAKE_KEYS.values(), "sk-or-v1-old0openrouter0key000000000000old1"
    )


def test_empty_list(staff_api):
    assert staff_api.get(KEYS).json() == []


# --- Add ----------------------------------------------------------------------------------------


def test_post_stores_the_key_and_makes_it_active_at_once(staff_api):
    previous = stored("openrouter", FAKE_KEYS["openrouter"], "before")
    other_provider = stored("gemini", FAKE_KEYS["gemini"])

    response = staff_api.post(
        KEYS, {"provider": "openrouter", "key": NEW_OPENROUTER, "label": "rotated"}, format="json"
    )

    assert response.status_code == 201
    body = response.json()
    assert list(body) == SPEC_FIELDS
    new = APIKey.objects.get(pk=body["id"])
    assert {k: v for k, v in body.items() if k not in ("created_at",)} == {
        "id": new.pk,
        "provider": "openrouter",
        "label": "rotated",
        "mask": "sk-or-…newk",
        "active": True,
        "last_used_at": None,
    }
    assert_no_plaintext(response, NEW_OPENROUTER)
    assert new.secret() == NEW_OPENROUTER
    assert NEW_OPENROUTER not in new.encrypted_secret
    previous.refresh_from_db()
    other_provider.refresh_from_db()
    assert previous.active is False
    assert other_provider.active is True
    resolved = resolve_key("openrouter")
    assert (resolved.secret, resolved.key_id) == (NEW_OPENROUTER, new.pk)


def test_post_beats_the_environment_key(staff_api, use_keys):
    use_keys("gemini")
    staff_api.post(KEYS, {"provider": "google", "key": NEW_GEMINI}, format="json")
    assert resolve_key("gemini").secret == NEW_GEMINI


def test_post_label_is_optional_and_alias_is_stored_canonically(staff_api):
    response = staff_api.post(
        KEYS, {"provider": "hf", "key": FAKE_KEYS["huggingface"]}, format="json"
    )
    assert response.status_code == 201
    assert (response.json()["provider"], response.json()["label"]) == ("huggingface", "")
    assert APIKey.objects.get().provider == "huggingface"


def test_post_strips_surrounding_whitespace(staff_api):
    response = staff_api.post(
        KEYS, {"provider": "gemini", "key": f"  {NEW_GEMINI}\n"}, format="json"
    )
    assert response.status_code == 201
    assert APIKey.objects.get().secret() == NEW_GEMINI


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"provider": "openrouter", "key": "sk-or-short"}, "key"),
        ({"provider": "openrouter", "key": "sk-or-v1-has whitespace0inside000000000"}, "key"),
        ({"provider": "openrouter", "key": "sk-or-v1-tab\tinside00000000000000000000"}, "key"),
        ({"provider": "openrouter", "key": ""}, "key"),
        ({"provider": "openrouter", "key": "     "}, "key"),
        ({"provider": "openrouter", "key": 1234567890123456789012}, "key"),
        ({"provider": "openrouter"}, "key"),
        ({"key": NEW_OPENROUTER}, "provider"),
        ({"provider": "anthropic", "key": NEW_OPENROUTER}, "provider"),
        ({"provider": "openrouter", "key": NEW_OPENROUTER, "label": "x" * 101}, "label"),
        ({"provider": "openrouter", "key": NEW_OPENROUTER, "active": False}, "active"),
        ({"provider": "openrouter", "key": NEW_OPENROUTER, "secret": "x"}, "secret"),
    ],
)
def test_invalid_key_is_400_and_nothing_is_stored(staff_api, body, field):
    previous = stored("openrouter", FAKE_KEYS["openrouter"])

    response = staff_api.post(KEYS, body, format="json")

    error = assert_error(response, 400, "invalid_request")
    assert list(error["fields"]) == [field]
    assert list(APIKey.objects.values_list("pk", "active")) == [(previous.pk, True)]
    assert resolve_key("openrouter").secret == FAKE_KEYS["openrouter"]
    if isinstance(body.get("key"), str) and body["key"].strip():
        assert_no_plaintext(response, body["key"])


def test_invalid_key_messages(staff_api):
    short = staff_api.post(KEYS, {"provider": "gemini", "key": "AIza-short"}, format="json")
    assert assert_error(short, 400, "invalid_request")["fields"] == {
        "key": [
            "That is too short to be an API key (10 characters; provider keys have at least 16)."
            " Copy the whole key from the provider's page."
        ]
    }
    spaced = staff_api.post(
        KEYS, {"provider": "gemini", "key": "AIza Sy0000000000000000000000"}, format="json"
    )
    assert assert_error(spaced, 400, "invalid_request")["fields"] == {
        "key": ["The key contains whitespace. Paste the key alone, as the provider shows it."]
    }
    assert "AIza Sy0000000000000000000000" not in spaced.content.decode()


# --- Change -------------------------------------------------------------------------------------


def test_patch_label(staff_api):
    key = stored("gemini", FAKE_KEYS["gemini"], "old")
    response = staff_api.patch(detail(key.pk), {"label": "new"}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert list(body) == SPEC_FIELDS
    assert (body["id"], body["label"], body["mask"], body["active"]) == (
        key.pk,
        "new",
        "AIza…abcd",
        True,
    )
    key.refresh_from_db()
    assert key.label == "new"
    assert key.secret() == FAKE_KEYS["gemini"]
    assert_no_plaintext(response, FAKE_KEYS["gemini"])


def test_patch_deactivate_and_reactivate(staff_api, use_keys):
    use_keys("openrouter")
    first = stored("openrouter", "sk-or-v1-first0openrouter0key00000000first")
    second = stored("openrouter", NEW_OPENROUTER)
    assert resolve_key("openrouter").key_id == second.pk

    off = staff_api.patch(detail(second.pk), {"active": False}, format="json")
    assert (off.status_code, off.json()["active"]) == (200, False)
    # No active stored key left: the environment variable's key is used again.
    assert resolve_key("openrouter").secret == FAKE_KEYS["openrouter"]

    on = staff_api.patch(detail(first.pk), {"active": True}, format="json")
    assert (on.status_code, on.json()["active"]) == (200, True)
    assert resolve_key("openrouter").key_id == first.pk
    second.refresh_from_db()
    assert second.active is False

    again = staff_api.patch(detail(second.pk), {"active": True}, format="json")
    assert again.json()["active"] is True
    first.refresh_from_db()
    assert first.active is False
    assert resolve_key("openrouter").secret == NEW_OPENROUTER


def test_patch_key_replaces_the_secret(staff_api):
    key = stored("openrouter", FAKE_KEYS["openrouter"], "prod")
    response = staff_api.patch(detail(key.pk), {"key": NEW_OPENROUTER}, format="json")
    assert response.status_code == 200
    assert (response.json()["mask"], response.json()["label"]) == ("sk-or-…newk", "prod")
    assert_no_plaintext(response, NEW_OPENROUTER, FAKE_KEYS["openrouter"])
    assert resolve_key("openrouter").secret == NEW_OPENROUTER


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"key": "short"}, "key"),
        ({"key": "sk-or-v1 with whitespace 0000000000000"}, "key"),
        ({"active": "no"}, "active"),
        ({"label": 5}, "label"),
        ({"provider": "gemini"}, "provider"),
    ],
)
def test_invalid_patch_is_400_and_changes_nothing(staff_api, body, field):
    key = stored("openrouter", FAKE_KEYS["openrouter"], "prod")
    error = assert_error(
        staff_api.patch(detail(key.pk), body, format="json"), 400, "invalid_request"
    )
    assert list(error["fields"]) == [field]
    key.refresh_from_db()
    assert (key.provider, key.label, key.active, key.secret()) == (
        "openrouter",
        "prod",
        True,
        FAKE_KEYS["openrouter"],
    )


# --- Delete and unknown ids -----------------------------------------------------------------------


def test_delete(staff_api):
    key = stored("gemini", FAKE_KEYS["gemini"])
    keep = stored("openrouter", FAKE_KEYS["openrouter"])
    response = staff_api.delete(detail(key.pk))
    assert response.status_code == 204
    assert response.content == b""
    assert list(APIKey.objects.values_list("pk", flat=True)) == [keep.pk]
    assert resolve_key("gemini") is None


@pytest.mark.parametrize("method", ["patch", "delete"])
def test_unknown_id_is_404(staff_api, method):
    key = stored("gemini", FAKE_KEYS["gemini"])
    response = getattr(staff_api, method)(detail(key.pk + 1000), {"label": "x"}, format="json")
    error = assert_error(response, 404, "not_found")
    assert error["message"] == "No APIKey matches the given query."
    assert APIKey.objects.count() == 1


# --- ?validate=1: the provider tests the key before it is stored (SPEC §6) ------------------------

OPENROUTER_KEY_URL = f"{OPENROUTER_URL}/key"


def test_post_validate_stores_an_accepted_key_with_the_verdict(staff_api, http):
    http.get(OPENROUTER_KEY_URL, json={"data": {"label": "sk-or-v1-bra...newk"}})

    response = staff_api.post(
        KEYS + "?validate=1", {"provider": "openrouter", "key": NEW_OPENROUTER}, format="json"
    )

    assert response.status_code == 201, response.content
    assert http.calls[0].request.headers["Authorization"] == f"Bearer {NEW_OPENROUTER}"
    key = APIKey.objects.get()
    assert (key.active, key.secret()) == (True, NEW_OPENROUTER)
    assert key.status_note.startswith("OpenRouter accepted the key")
    assert key.checked_at is not None
    assert_no_plaintext(response, NEW_OPENROUTER)


@pytest.mark.parametrize(
    ("provider", "secret", "url", "status", "body", "reason"),
    [
        pytest.param(
            "openrouter",
            NEW_OPENROUTER,
            OPENROUTER_KEY_URL,
            401,
            # An upstream that echoes the key must not get it into the answer.
            wire.or_error(401, f"User not found for {NEW_OPENROUTER}"),
            "User not found",
            id="openrouter-401",
        ),
        pytest.param(
            "gemini",
            NEW_GEMINI,
            re.compile(re.escape(wire.GEMINI_MODELS) + r"(\?.*)?$"),
            400,  # Google answers a bad key with 400 API_KEY_INVALID
            wire.gemini_invalid_key(),
            "API key not valid",
            id="gemini-400-api-key-invalid",
        ),
    ],
)
def test_post_validate_refuses_a_rejected_key_and_stores_nothing(
    staff_api, http, provider, secret, url, status, body, reason
):
    current = stored(provider, FAKE_KEYS[provider], "current")
    http.add("GET", url, body=body, status=status, content_type="application/json")

    response = staff_api.post(
        KEYS + "?validate=1", {"provider": provider, "key": secret}, format="json"
    )

    error = assert_error(response, 400, "invalid_request")
    assert list(error["fields"]) == ["key"]
    assert "rejected the key" in error["message"] and reason in error["message"]
    assert_no_plaintext(response, secret)
    assert list(APIKey.objects.values_list("pk", "active")) == [(current.pk, True)]
    assert resolve_key(provider).secret == FAKE_KEYS[provider]


@pytest.mark.parametrize(
    ("failure", "status", "code"),
    [
        (requests.ConnectionError("connection refused"), 502, "provider_error"),
        (requests.ReadTimeout("read timed out"), 504, "upstream_timeout"),
    ],
    ids=["network-error", "timeout"],
)
def test_post_validate_that_cannot_reach_the_provider_stores_nothing(
    staff_api, http, failure, status, code
):
    http.get(OPENROUTER_KEY_URL, body=failure)

    response = staff_api.post(
        KEYS + "?validate=1", {"provider": "openrouter", "key": NEW_OPENROUTER}, format="json"
    )

    assert_error(response, status, code)
    assert_no_plaintext(response, NEW_OPENROUTER)
    assert not APIKey.objects.exists()


def test_without_validate_no_upstream_request_is_made(staff_api, http):
    for query in ("", "?validate=0"):
        response = staff_api.post(
            KEYS + query, {"provider": "openrouter", "key": NEW_OPENROUTER}, format="json"
        )
        assert response.status_code == 201
    assert len(http.calls) == 0


def test_a_malformed_validate_is_400(staff_api, http):
    response = staff_api.post(
        KEYS + "?validate=maybe", {"provider": "openrouter", "key": NEW_OPENROUTER}, format="json"
    )
    assert list(assert_error(response, 400, "invalid_request")["fields"]) == ["validate"]
    assert not APIKey.objects.exists() and len(http.calls) == 0


def test_patch_validate_refuses_a_rejected_replacement_and_keeps_the_old_key(staff_api, http):
    key = stored("openrouter", FAKE_KEYS["openrouter"], "prod")
    http.get(OPENROUTER_KEY_URL, body=wire.or_error(401, "User not found."), status=401)

    response = staff_api.patch(
        detail(key.pk) + "?validate=1", {"key": NEW_OPENROUTER, "label": "new"}, format="json"
    )

    assert "User not found" in assert_error(response, 400, "invalid_request")["message"]
    assert http.calls[0].request.headers["Authorization"] == f"Bearer {NEW_OPENROUTER}"
    key.refresh_from_db()
    assert (key.label, key.secret(), key.status_note) == ("prod", FAKE_KEYS["openrouter"], "")


def test_patch_validate_does_not_activate_a_stored_key_the_provider_rejects(staff_api, http):
    spare = stored("openrouter", "sk-or-v1-spare0openrouter0key0000000000spr1", "spare")
    current = stored("openrouter", FAKE_KEYS["openrouter"], "current")
    http.get(OPENROUTER_KEY_URL, body=wire.or_error(401, "User not found."), status=401)

    response = staff_api.patch(detail(spare.pk) + "?validate=1", {"active": True}, format="json")

    assert_error(response, 400, "invalid_request")
    spare.refresh_from_db()
    assert not spare.active
    assert "rejected the key" in spare.status_note and spare.checked_at is not None
    assert resolve_key("openrouter").key_id == current.pk


def test_patch_validate_activates_a_stored_key_the_provider_accepts(staff_api, http):
    spare = stored("openrouter", "sk-or-v1-spare0openrouter0key0000000000spr1", "spare")
    stored("openrouter", FAKE_KEYS["openrouter"], "current")
    http.get(OPENROUTER_KEY_URL, json={"data": {}})

    response = staff_api.patch(detail(spare.pk) + "?validate=1", {"active": True}, format="json")

    assert response.status_code == 200, response.content
    assert response.json()["active"] is True
    spare.refresh_from_db()
    assert spare.status_note.startswith("OpenRouter accepted") and spare.checked_at
    assert resolve_key("openrouter").key_id == spare.pk


def test_the_key_manager_leaves_users_own_keys_out(staff_api, user):
    own = APIKey(provider="openrouter", owner=user)
    own.set_secret(NEW_OPENROUTER)
    own.save()
    platform = stored("openrouter", FAKE_KEYS["openrouter"])

    listed = staff_api.get(KEYS).json()

    assert [row["id"] for row in listed] == [platform.pk]
    assert staff_api.patch(detail(own.pk), {"active": False}, format="json").status_code == 404
    assert staff_api.delete(detail(own.pk)).status_code == 404
    assert APIKey.objects.get(pk=own.pk).active
