"""``me/keys/`` and ``me/keys/<id>/`` (any user): the caller's own provider keys (SPEC §12.2),
masked; used for the caller's calls only."""

import pytest

from llm_providers.keys import resolve_keys
from llm_providers.models import APIKey
from tests.api.support import API, assert_error
from tests.api.test_keys import SPEC_FIELDS, assert_no_plaintext
from tests.conftest import FAKE_KEYS
from tests.providers import wire

pytestmark = pytest.mark.django_db

MY_KEYS = API + "me/keys/"
OWN_KEY = "sk-or-v1-q7w3e9r1t5y8u2i6o4p0a3s7d1f9g5h2usr1"
NEXT_KEY = "sk-or-v1-z4x8c2v6b0n3m7k1j5h9g2f6d0s4a8q3usr2"


def mine(key_id: int) -> str:
    return f"{MY_KEYS}{key_id}/"


def add(client, key=OWN_KEY, provider="openrouter", **extra):
    return client.post(MY_KEYS, {"provider": provider, "key": key, **extra}, format="json")


def test_add_list_and_use_an_own_key(api, user, other_user):
    added = add(api, label="mine")

    assert added.status_code == 201
    body = added.json()
    assert list(body) == [*SPEC_FIELDS, "platform_fallback"]
    assert (body["provider"], body["label"], body["mask"], body["active"]) == (
        "openrouter",
        "mine",
        "sk-or-…usr1",
        True,
    )
    assert_no_plaintext(added, OWN_KEY)
    listed = api.get(MY_KEYS)
    assert listed.json() == [body]
    assert_no_plaintext(listed, OWN_KEY)
    row = APIKey.objects.get(pk=body["id"])
    assert (row.owner_id, row.secret()) == (user.pk, OWN_KEY)
    assert OWN_KEY not in row.encrypted_secret
    assert resolve_keys(user.pk)["openrouter"].secret == OWN_KEY
    assert "openrouter" not in resolve_keys(other_user.pk)


def test_a_new_key_replaces_the_previous_one(api, user):
    first = add(api).json()
    second = add(api, NEXT_KEY).json()

    assert [row["id"] for row in api.get(MY_KEYS).json()] == [second["id"]]
    assert not APIKey.objects.filter(pk=first["id"]).exists()
    assert resolve_keys(user.pk)["openrouter"].secret == NEXT_KEY


def test_each_user_sees_only_their_own_keys(api, other_api, staff_api):
    add(api)
    platform = APIKey(provider="gemini")
    platform.set_secret(FAKE_KEYS["gemini"])
    platform.save()

    assert other_api.get(MY_KEYS).json() == []
    assert staff_api.get(MY_KEYS).json() == []  # staff have keys of their own too, not others'


def test_delete_only_own_keys(api, other_api, user):
    key_id = add(api).json()["id"]

    assert_error(other_api.delete(mine(key_id)), 404, "not_found")
    assert APIKey.objects.filter(pk=key_id).exists()

    assert api.delete(mine(key_id)).status_code == 204
    assert not APIKey.objects.filter(pk=key_id).exists()
    assert resolve_keys(user.pk) == {}
    assert_error(api.delete(mine(key_id)), 404, "not_found")


def test_bad_input_is_a_400(api):
    assert_error(add(api, provider="nope"), 400, "invalid_request")
    assert_error(add(api, key="short"), 400, "invalid_request")
    assert_error(
        api.post(MY_KEYS, {"provider": "openrouter"}, format="json"), 400, "invalid_request"
    )
    assert APIKey.objects.count() == 0


def test_anonymous_callers_are_refused(anon):
    assert_error(anon.get(MY_KEYS), 401, "not_authenticated")
    assert_error(add(anon), 401, "not_authenticated")


def test_a_key_may_let_refused_calls_use_the_platforms_key(api, user):
    reply = add(api, platform_fallback=True)
    assert reply.status_code == 201, reply.content
    assert reply.json()["platform_fallback"] is True
    assert APIKey.objects.get(owner=user).platform_fallback
    listed = api.get(MY_KEYS).json()
    assert [k["platform_fallback"] for k in listed] == [True]


def test_a_model_is_checked_against_the_callers_own_primary(api, user, http, use_keys):
    """The platform's only key is Hugging Face's (whose ids are ``org/model``); the caller's own
    Gemini key makes Gemini their primary, so ``gemini-2.5-flash`` without a provider is a
    well-formed model for them, not a 400 about Hugging Face's id format."""
    use_keys("huggingface")
    added = add(api, FAKE_KEYS["gemini"], provider="gemini")
    assert added.status_code == 201, added.json()
    http.add(
        "POST",
        wire.gemini_generate_url("gemini-2.5-flash"),
        body=wire.gemini_response(),
    )

    response = api.post(
        API + "generate/", {"prompt": "hello", "model": "gemini-2.5-flash"}, format="json"
    )

    assert response.status_code == 200, response.json()
    assert (response.json()["provider"], response.json()["model"]) == ("gemini", "gemini-2.5-flash")
    assert len(http.calls) == 1
