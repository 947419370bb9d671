"""End to end (SPEC §12.2): users' own keys on the production server, against the fake upstream.

Two users each store their own OpenRouter key through ``me/keys/``: every upstream request
carries the key of the user it is made for (the fake records each request's key by its
public prefix and last four characters), a user without a key of their own gets the
platform's, a deleted key stops at once (the next call uses the platform's key, in whichever
worker serves it), and a key the provider rejects is reported to its owner as theirs.
"""

from __future__ import annotations

import pytest

from tests.conftest import FAKE_KEYS
from tests.e2e.harness import Client

pytestmark = pytest.mark.e2e

# Random-looking: any 8 characters of a stored key are masked wherever text is written.
ALICE_KEY = "sk-or-v1-7f3k9q2m5x8w1z4r6t0y3u7i9p2l5j8h4ga1ce"
BOB_KEY = "sk-or-v1-2n8v5c1x7z4b9m3q6w0e2r5t8y1u4i7o3pb0b0"
REJECTED_KEY = "bad-5h2j8k4l1z7x3c9v6b0n2m5q8w1e4r7t3bad1"
CALLS_EACH = 6


def add_key(client: Client, secret: str) -> dict:
    reply = client.post("me/keys/", {"provider": "openrouter", "key": secret, "label": "mine"})
    assert reply.status == 201, reply
    assert secret not in reply.text
    return reply.json()


def delete_key(client: Client, key_id: int) -> None:
    reply = client.request("DELETE", f"me/keys/{key_id}/")
    assert reply.status == 204, reply


def ask(client: Client, **extra) -> dict:
    reply = client.post("generate/", {"prompt": "whose key?", "provider": "openrouter", **extra})
    assert reply.status == 200, reply
    return reply.json()


def last_four_sent(fake) -> list[str]:
    return [r["auth"]["last4"] for r in fake.requests("openrouter")]


@pytest.fixture
def own_keys(api, other_api):
    """Alice (``api``) and Bob (``other_api``) each with their own key; deleted afterwards."""
    made = [(api, add_key(api, ALICE_KEY)), (other_api, add_key(other_api, BOB_KEY))]
    yield made
    for client, key in made:
        client.request("DELETE", f"me/keys/{key['id']}/")


def test_each_upstream_request_carries_its_own_users_key(api, other_api, staff_api, fake, own_keys):
    calls = [api, other_api, staff_api] * CALLS_EACH
    expected = [ALICE_KEY[-4:], BOB_KEY[-4:], FAKE_KEYS["openrouter"][-4:]] * CALLS_EACH

    answers = [ask(client) for client in calls]

    assert {a["provider"] for a in answers} == {"openrouter"}
    assert last_four_sent(fake) == expected
    assert {r["auth"]["prefix"] for r in fake.requests("openrouter")} == {"sk-or-"}
    # Each user's ledger says whose key paid.
    for client, owner in [(api, "user"), (other_api, "user"), (staff_api, "platform")]:
        rows = client.get("calls/", provider="openrouter").json()["results"][:CALLS_EACH]
        assert {row["key_owner"] for row in rows} == {owner}
    # Their keys are theirs: masked in their own list, invisible to the staff key manager.
    listed = api.get("me/keys/").json()
    assert [k["mask"] for k in listed] == ["sk-or-…a1ce"]
    managed = staff_api.get("keys/").json()
    assert own_keys[0][1]["id"] not in {k["id"] for k in managed}


def test_a_deleted_key_stops_at_once(api, other_api, fake, own_keys):
    (_, alice_key), _ = own_keys
    ask(api)
    delete_key(api, alice_key["id"])

    # Every call after the delete, whichever worker serves it, uses the platform's key.
    for _ in range(CALLS_EACH):
        ask(api)
    ask(other_api)

    assert last_four_sent(fake) == [
        ALICE_KEY[-4:],
        *[FAKE_KEYS["openrouter"][-4:]] * CALLS_EACH,
        BOB_KEY[-4:],
    ]
    assert api.get("me/keys/").json() == []


def test_a_rejected_own_key_is_reported_to_its_owner(api, fake):
    key = add_key(api, REJECTED_KEY)
    try:
        reply = api.post(
            "generate/", {"prompt": "whose key?", "provider": "openrouter", "fallback_models": []}
        )
    finally:
        delete_key(api, key["id"])

    assert reply.status == 502, reply
    message = reply.json()["error"]["message"]
    assert f"OpenRouter rejected your own key (me/keys/ #{key['id']}" in message
    assert REJECTED_KEY[:12] not in message
    # Not retried with the platform's key.
    assert last_four_sent(fake) == [REJECTED_KEY[-4:]]
