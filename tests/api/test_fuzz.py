"""Schema-driven fuzzing of the REST API with schemathesis (issue 4: "finds no 500s").

Every operation of the OpenAPI schema served at ``/api/schema/`` is called through the WSGI
application with generated valid and invalid input, authenticated as a staff user (so the staff
endpoints are exercised too), with every upstream mocked to succeed. A response may be a 5xx
only where the contract puts one on purpose — 502, 503 or 504 with the ``{"error": {...}}``
body — never a 500; and every JSON error has that body.

Bounded for CI: a few examples per operation, derandomized, no example database.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict

import pytest
import schemathesis
from django.core.cache import cache
from django.test import Client
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from rest_framework.authtoken.models import Token

from alwrity.wsgi import application
from llm_providers.api.throttling import GenerationRateThrottle, UserRateThrottle
from llm_providers.models import APIKey, LedgerEntry
from tests.conftest import GEMINI_URL
from tests.providers import wire

MAX_EXAMPLES = 25
DELIBERATE_5XX = {
    502: {"provider_error", "invalid_structured_output"},
    503: {"provider_not_configured", "database_unavailable"},
    504: {"upstream_timeout"},
}
SSE = "text/event-stream"

# Status codes seen per operation, checked once every operation has run.
SEEN: dict[str, Counter] = defaultdict(Counter)


def no_undeliberate_server_error(ctx, response, case) -> None:
    """No 500 (``not_a_server_error`` for anything but the contract's own 5xx), and every
    JSON error carries ``{"error": {"code", "message"}}``."""
    SEEN[case.operation.label][response.status_code] += 1
    status = response.status_code
    detail = f"{case.operation.label} → {status}: {response.text[:500]}"
    if status >= 500:
        assert status in DELIBERATE_5XX, detail
    if status >= 400 and "json" in response.headers.get("content-type", [""])[0]:
        body = response.json()
        assert isinstance(body, dict) and isinstance(body.get("error"), dict), detail
        assert isinstance(body["error"].get("code"), str), detail
        assert isinstance(body["error"].get("message"), str), detail
        if status >= 500:
            assert body["error"]["code"] in DELIBERATE_5XX[status], detail


@pytest.fixture
def stored_keys(staff_token):
    """Keys for the key manager's PATCH and DELETE to find (besides random ids), and the
    fuzzing user's own keys for ``me/keys/<id>/``'s DELETE."""
    KEY_IDS.clear()
    owner = Token.objects.get(key=staff_token).user
    for provider, secret, key_owner in [
        ("gemini", "AIzaSyFUZZ-0000000000000000000001", None),
        ("huggingface", "hf_FUZZ00000000000000000000000001", None),
        ("gemini", "AIzaSyFUZZ-0000000000000000000002", owner),
        ("huggingface", "hf_FUZZ00000000000000000000000002", owner),
    ]:
        key = APIKey(provider=provider, label="fuzz", owner=key_owner)
        key.set_secret(secret)
        key.save()
        KEY_IDS.append(key.pk)
    yield
    KEY_IDS.clear()


@pytest.fixture
def staff_token(django_user_model) -> str:
    staff = django_user_model.objects.create_user("fuzz-admin", is_staff=True, is_superuser=True)
    return Token.objects.create(user=staff).key


@pytest.fixture
def upstreams_succeed(use_keys, http, monkeypatch):
    """Every provider has a key and answers every request (plain and streamed)."""
    use_keys("gemini", "openrouter", "huggingface")
    cache.clear()
    # Generous throttles: the fuzzer sends more than a user's per-minute allowance.
    for throttle in (UserRateThrottle, GenerationRateThrottle):
        monkeypatch.setattr(throttle, "rate", "100000/min", raising=False)
    models = re.escape(f"{GEMINI_URL}/models/")
    http.add(
        "POST",
        re.compile(models + r"[^:]+:generateContent"),
        body=wire.gemini_response('{"answer": "ok"}'),
    )
    http.add(
        "POST",
        re.compile(models + r"[^:]+:streamGenerateContent.*"),
        body=wire.gemini_stream(["o", "k"]),
        content_type=SSE,
    )

    def openai_style(completion: str, stream: bytes):
        def reply(request):
            asked = json.loads(request.body)
            if asked.get("stream"):
                return 200, {"Content-Type": SSE}, stream
            return 200, {"Content-Type": "application/json"}, completion

        return reply

    # The key manager's ?validate=1 tests a key with each provider's free endpoint.
    http.add("GET", wire.OPENROUTER_KEY_URL, json={"data": {"label": "fuzz"}})
    http.add("GET", re.compile(re.escape(f"{GEMINI_URL}/models") + r"(\?.*)?$"), json={})
    http.add_callback(
        "POST",
        wire.OPENROUTER_CHAT,
        callback=openai_style(wire.or_completion('{"answer": "ok"}'), wire.or_stream(["o", "k"])),
    )
    http.add_callback(
        "POST",
        wire.HF_CHAT,
        callback=openai_style(wire.hf_completion('{"answer": "ok"}'), wire.hf_stream(["o", "k"])),
    )
    yield
    cache.clear()


# Loaded from the running application's /api/schema/ (no database access: anonymous GET).
# Not a lazy `schemathesis.pytest.from_fixture` schema: its runner does not work with pytest 9.2
# (it sets `node._nodeid`, which pytest 9.2 no longer has).
schema = schemathesis.openapi.from_wsgi("/api/schema/", application)
schema.config.generation.update(max_examples=MAX_EXAMPLES, deterministic=True, database="none")
schema.config.phases.update(phases=["examples", "coverage", "fuzzing"])

# Random data seldom gets past the first checks of some operations (a chat needs a non-blank
# user message and a well-formed model; a key at least 16 characters; an existing key's id).
# Half the generated cases are repaired that far, so the fuzz also reaches the code behind.
CHAT = "/api/llm/v1/chat/completions"
MODELS = [
    None,
    "auto",
    "gemini/gemini-2.5-flash",
    "openai/gpt-4o",
    "openrouter/openai/gpt-4o",
    "huggingface/meta-llama/Llama-3.1-8B-Instruct",
]
KEY_IDS: list[int] = []


def _repaired_chat(body: dict, model: str | None) -> dict:
    messages = body.get("messages") if isinstance(body.get("messages"), list) else []
    return {**body, "model": model, "messages": [{"role": "user", "content": "hi"}, *messages]}


KEY_POSTS = ("/api/llm/keys/", "/api/llm/me/keys/")


@schema.hook
def flatmap_body(context, body):
    path = context.operation.path if context.operation else None
    if not isinstance(body, dict):
        return st.just(body)
    if path == CHAT:
        return st.one_of(
            st.just(body), st.sampled_from(MODELS).map(lambda m: _repaired_chat(body, m))
        )
    if path in KEY_POSTS and context.operation.method.lower() == "post":
        valid = {**body, "provider": "openrouter", "key": "sk-or-v1-fuzz0000000000000000000001"}
        return st.sampled_from([body, valid])
    return st.just(body)


@schema.hook
def flatmap_path_parameters(context, path_parameters):
    if not KEY_IDS or "id" not in (path_parameters or {}):
        return st.just(path_parameters)
    known = st.sampled_from(KEY_IDS).map(lambda pk: {**path_parameters, "id": pk})
    return st.one_of(st.just(path_parameters), known)


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@pytest.mark.django_db(transaction=True)
def test_no_server_errors(case, staff_token, upstreams_succeed, stored_keys):
    response = case.call(headers={"Authorization": f"Token {staff_token}"})
    case.validate_response(response, checks=[no_undeliberate_server_error])


def test_every_operation_was_exercised_authenticated():
    """Runs after the fuzz (same module, in order): every operation of the schema was called,
    never refused for lack of credentials, and answered with success at least once (the key
    manager's PATCH and DELETE need an existing id, which random ids seldom are)."""
    if not SEEN:
        pytest.skip("the fuzz test did not run")
    operations = {result.ok().label for result in schema.get_all_operations()}
    if set(SEEN) != operations:
        pytest.skip("only part of the fuzz ran")
    for label, statuses in SEEN.items():
        assert 401 not in statuses and 403 not in statuses, (label, statuses)
        assert any(200 <= code < 300 for code in statuses), (label, statuses)


# --- Inputs the fuzzer seldom builds, which gave 500s ------------------------------------------


def _nested(depth: int) -> dict:
    schema: dict = {"type": "string"}
    for _ in range(depth):
        schema = {"not": schema}
    return schema


def _chat_with_schema(schema) -> dict:
    return {
        "model": "gemini/gemini-2.5-flash",
        "messages": [{"role": "user", "content": "hi"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
    }


BAD_SCHEMAS = [
    pytest.param({"$schema": 5}, id="$schema-not-a-string"),
    pytest.param({"$schema": ["x"]}, id="$schema-a-list"),
    pytest.param({"properties": {"a": {"$ref": "#/$defs/missing"}}}, id="ref-to-nowhere"),
    pytest.param({"$ref": "https://example.com/schema.json"}, id="remote-ref"),
    pytest.param({"$defs": {"a": {"$anchor": "a"}}, "$ref": "#b"}, id="no-such-anchor"),
    pytest.param(_nested(300), id="nested-too-deeply"),
]


@pytest.fixture
def user_client(django_user_model):
    user = django_user_model.objects.create_user("fuzz-regression")
    token = Token.objects.create(user=user).key
    return Client(HTTP_AUTHORIZATION=f"Token {token}", raise_request_exception=False)


@pytest.mark.django_db
@pytest.mark.parametrize("schema_", BAD_SCHEMAS)
@pytest.mark.parametrize("path", ["generate", "chat"])
def test_unusable_json_schema_is_a_400_before_any_upstream_call(
    user_client, use_keys, http, schema_, path
):
    use_keys("gemini")
    http.add("POST", wire.gemini_generate_url(), body=wire.gemini_response('{"a": 1}'))
    if path == "generate":
        body = {"prompt": "hi", "json_schema": schema_}
        url = "/api/llm/generate/"
    else:
        body, url = _chat_with_schema(schema_), CHAT
    response = user_client.post(url, body, content_type="application/json")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "invalid_request"
    assert len(http.calls) == 0
    assert not LedgerEntry.objects.exists()


@pytest.mark.django_db
def test_a_resolvable_ref_still_works(user_client, use_keys, http):
    use_keys("gemini")
    http.add("POST", wire.gemini_generate_url(), body=wire.gemini_response('{"a": 1}'))
    schema_ = {
        "type": "object",
        "properties": {"a": {"$ref": "#/$defs/n"}},
        "$defs": {"n": {"type": "integer"}},
    }
    response = user_client.post(
        "/api/llm/generate/", {"prompt": "hi", "json_schema": schema_}, "application/json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["data"] == {"a": 1}


@pytest.mark.django_db
@pytest.mark.parametrize("json_schema", ["x", ["x"], 5], ids=["string", "list", "number"])
def test_response_format_json_schema_not_an_object_is_a_400(
    user_client, use_keys, http, json_schema
):
    use_keys("gemini")
    body = {
        "messages": [{"role": "user", "content": "hi"}],
        "response_format": {"type": "json_schema", "json_schema": json_schema},
    }
    response = user_client.post(CHAT, body, content_type="application/json")
    assert response.status_code == 400, response.content
    assert "response_format" in response.json()["error"]["fields"]
    assert len(http.calls) == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("method", "url"),
    [("post", "/api/llm/generate/"), ("post", CHAT), ("post", "/api/llm/keys/")],
)
def test_a_body_nested_too_deeply_is_a_400(django_user_model, http, method, url):
    staff = django_user_model.objects.create_user("deep", is_staff=True, is_superuser=True)
    token = Token.objects.create(user=staff).key
    client = Client(HTTP_AUTHORIZATION=f"Token {token}", raise_request_exception=False)
    body = '{"prompt": ' + "[" * 100_000 + "]" * 100_000 + "}"
    response = getattr(client, method)(url, body, content_type="application/json")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "invalid_request"
    assert len(http.calls) == 0
