"""The fake upstream (fake_upstream/), driven over real HTTP by our own provider clients.

One fake serves the module; each test resets its scripts, records and configuration. The
autouse ``http`` fixture mocks ``requests`` with ``responses``: the fake's URL is let through.
Retry waits are recorded by the ``sleeps`` fixture, not slept, so a 429 with ``retry_after``
costs nothing here; only the hang tests wait (LLM_TIMEOUT=1).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from decimal import Decimal
from io import StringIO

import jsonschema
import pytest
import requests
from django.core.management import call_command

from fake_upstream import FakeConfig, FakeUpstream, FakeUpstreamClient
from fake_upstream.faults import FaultError, parse_faults
from fake_upstream.replies import NOT_JSON, example_for_schema
from llm_providers.exceptions import (
    InvalidStructuredOutput,
    ModelNotFound,
    ProviderAuthError,
    ProviderUnavailable,
    RateLimited,
    UpstreamTimeout,
)
from llm_providers.providers.gemini import GeminiProvider
from llm_providers.providers.huggingface import HuggingFaceProvider
from llm_providers.providers.openrouter import OpenRouterProvider
from llm_providers.results import ChatRequest
from tests.conftest import FAKE_KEYS


@dataclass(frozen=True)
class Case:
    name: str
    cls: type
    model: str
    path: str  # of a non-streamed generation on the fake


CASES = [
    Case(
        "openrouter",
        OpenRouterProvider,
        "openai/gpt-4o-mini",
        "/openrouter/api/v1/chat/completions",
    ),
    Case(
        "gemini",
        GeminiProvider,
        "gemini-2.5-flash",
        "/gemini/v1beta/models/gemini-2.5-flash:generateContent",
    ),
    Case(
        "huggingface",
        HuggingFaceProvider,
        "meta-llama/Llama-3.1-8B-Instruct",
        "/hf/v1/chat/completions",
    ),
]
IDS = [c.name for c in CASES]
SCHEMA = {
    "title": "paper",
    "type": "object",
    "properties": {
        "title": {"type": "string", "minLength": 3},
        "year": {"type": "integer", "minimum": 1900},
        "score": {"type": "number"},
        "open_access": {"type": "boolean"},
        "kind": {"enum": ["article", "book"]},
        "authors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"name": {"type": "string"}},
                "required": ["name"],
            },
        },
        "venue": {"type": "object", "properties": {"name": {"type": "string"}}},
        "version": {"const": 2},
    },
    "required": ["title", "year", "kind", "authors"],
    "additionalProperties": False,
}
PROMPT = "Summarise the paper Attention Is All You Need in one line"


@pytest.fixture(scope="module")
def upstream():
    with FakeUpstream() as fake:
        yield fake


@pytest.fixture
def fake(upstream, http, settings):
    upstream.reset()
    upstream.configure(**asdict(FakeConfig()))
    http.add_passthru(upstream.url)
    for setting, url in upstream.base_urls.items():
        setattr(settings, setting, url)
    return upstream


def client(case: Case, key: str | None = None):
    return case.cls(key or FAKE_KEYS[case.name])


def ask(case: Case, prompt: str = PROMPT, **kwargs) -> ChatRequest:
    return ChatRequest.from_prompt(prompt, model=case.model, **kwargs)


def stream_all(provider, request):
    stream = provider.stream(request)
    deltas = [d.text for d in stream]
    return deltas, stream.completion


# --- Answers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_text(fake, case):
    completion = client(case).complete(ask(case))
    words = PROMPT.split()
    assert completion.text.startswith("Echo: " + " ".join(words[:8]))
    assert len(completion.text.split()) == 20  # the configured completion_words
    assert completion.usage.prompt_tokens == len(words)
    assert completion.usage.completion_tokens == 20
    assert completion.usage.total_tokens == len(words) + 20
    assert completion.finish_reason in ("stop", "STOP")
    assert completion.response_id
    assert completion.requests == 1


def test_openrouter_reports_cost_from_its_price_table(fake):
    provider = client(CASES[0])
    completion = provider.complete(
        ChatRequest.from_prompt("Hello there friend", model="openai/gpt-4o-mini")
    )
    # 3 prompt tokens x $0.15/M + 20 completion tokens x $0.60/M, exactly.
    assert completion.usage.reported_cost == Decimal("0.00001245")
    turbo = provider.complete(ChatRequest.from_prompt("Hi", model="openai/gpt-4-turbo"))
    assert turbo.usage.reported_cost == Decimal("0.00001") + 20 * Decimal("0.00003")
    unknown = provider.complete(ChatRequest.from_prompt("Hi", model="someone/new-model"))
    assert unknown.usage.reported_cost == 0
    assert unknown.model == "someone/new-model"


def test_openrouter_headers(fake):
    response = requests.post(
        fake.base_urls["OPENROUTER_BASE_URL"] + "/chat/completions",
        headers={"Authorization": f"Bearer {FAKE_KEYS['openrouter']}"},
        json={"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "Hi"}]},
        timeout=5,
    )
    assert response.status_code == 200
    assert response.headers["X-Generation-Id"] == response.json()["id"]
    assert response.json()["id"].startswith("gen-")
    assert response.json()["provider"] == "OpenAI"


def test_completion_words_and_max_tokens(fake):
    fake.configure(completion_words=7)
    case = CASES[2]
    assert len(client(case).complete(ask(case)).text.split()) == 7
    cut = client(case).complete(ask(case, max_tokens=3))
    assert cut.text == "Echo: Summarise the"
    assert cut.finish_reason == "length"


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_structured_json(fake, case):
    completion = client(case).complete(ask(case, json_schema=SCHEMA))
    jsonschema.validate(completion.data, SCHEMA)
    assert completion.data["kind"] == "article"
    assert completion.data["version"] == 2
    assert completion.requests == 1
    sent = fake.requests(case.name)[0]["json"]
    if case.name == "gemini":
        assert sent["generationConfig"]["responseJsonSchema"] == SCHEMA
    else:
        assert sent["response_format"]["json_schema"]["schema"] == SCHEMA


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_stream(fake, case):
    deltas, completion = stream_all(client(case), ask(case))
    assert len(deltas) == 4  # 20 words, 5 per chunk
    assert "".join(deltas) == completion.text
    assert completion.text.startswith("Echo: Summarise")
    assert completion.usage.completion_tokens == 20
    assert completion.usage.prompt_tokens == len(PROMPT.split())
    if case.name == "openrouter":
        assert completion.usage.reported_cost > 0


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_stream_structured_json(fake, case):
    deltas, completion = stream_all(client(case), ask(case, json_schema=SCHEMA))
    jsonschema.validate(json.loads(completion.text), SCHEMA)
    assert len(deltas) > 1


def test_stream_wire_details(fake):
    or_stream = requests.post(
        fake.base_urls["OPENROUTER_BASE_URL"] + "/chat/completions",
        headers={"Authorization": "Bearer sk-or-v1-x"},
        json={
            "model": "openai/gpt-4o",
            "stream": True,
            "messages": [{"role": "user", "content": "Hi"}],
        },
        timeout=5,
    )
    assert or_stream.text.startswith(": OPENROUTER PROCESSING\n\n")
    assert or_stream.text.endswith("data: [DONE]\n\n")
    events = [json.loads(e[6:]) for e in or_stream.text.split("\n\n") if e.startswith("data: {")]
    assert {e["id"] for e in events} == {or_stream.headers["X-Generation-Id"]}
    assert all(e["object"] == "chat.completion.chunk" and e["provider"] for e in events)
    assert "usage" in events[-1] and events[-1]["choices"][0]["finish_reason"] == "stop"

    fake.configure(openrouter_usage_chunk="empty_choices", gemini_sse_separator="\n\n")
    provider = client(CASES[0])
    _, completion = stream_all(provider, ask(CASES[0]))
    assert completion.usage.completion_tokens == 20

    gemini = requests.post(
        fake.base_urls["GEMINI_BASE_URL"] + "/models/gemini-2.5-flash:streamGenerateContent",
        params={"alt": "sse"},
        headers={"x-goog-api-key": "AIza-x"},
        json={"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]},
        timeout=5,
    )
    assert "\r\n" not in gemini.text
    fake.configure(gemini_sse_separator="\r\n\r\n")
    gemini = requests.post(
        fake.base_urls["GEMINI_BASE_URL"] + "/models/gemini-2.5-flash:streamGenerateContent",
        params={"alt": "sse"},
        headers={"x-goog-api-key": "AIza-x"},
        json={"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]},
        timeout=5,
    )
    chunks = [json.loads(e[6:]) for e in gemini.text.split("\r\n\r\n") if e]
    assert "[DONE]" not in gemini.text
    counts = [c["usageMetadata"]["candidatesTokenCount"] for c in chunks]
    assert counts == sorted(counts) and counts[-1] == 20  # cumulative
    assert chunks[-1]["candidates"][0] == {
        "content": {"role": "model"},
        "finishReason": "STOP",
        "index": 0,
    }

    hf = requests.post(
        fake.base_urls["HF_BASE_URL"] + "/chat/completions",
        headers={"Authorization": "Bearer hf_x"},
        json={"model": "a/b", "stream": True, "messages": [{"role": "user", "content": "Hi"}]},
        timeout=5,
    )
    assert '"usage"' not in hf.text  # only with stream_options.include_usage
    assert hf.text.endswith("data: [DONE]\n\n")


def test_gemini_plain_body_is_pretty_printed(fake):
    response = requests.post(
        fake.base_urls["GEMINI_BASE_URL"] + "/models/gemini-2.5-pro:generateContent",
        headers={"x-goog-api-key": "AIza-x"},
        json={"contents": [{"role": "user", "parts": [{"text": 'Say "hi" \\ @P@'}]}]},
        timeout=5,
    )
    assert response.headers["Content-Type"] == "application/json; charset=UTF-8"
    assert response.text.startswith('{\n  "candidates": [\n')
    body = response.json()
    assert body["candidates"][0]["content"]["parts"][0]["text"].startswith('Echo: Say "hi" \\ @P@')
    assert body["usageMetadata"]["promptTokenCount"] == 4
    assert body["modelVersion"] == "gemini-2.5-pro"
    assert len(body["responseId"]) > 20


# --- Records -----------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_records_show_headers_and_body_but_no_key(fake, case, settings):
    settings.OPENROUTER_X_TITLE = "Alwrity"
    client(case).complete(ask(case, temperature=0.2))
    [record] = fake.requests()
    key = FAKE_KEYS[case.name]
    assert record["provider"] == case.name
    assert record["method"] == "POST"
    assert record["path"] == case.path
    assert record["status"] == 200
    assert record["auth"]["present"] is True
    assert record["auth"]["last4"] == key[-4:]
    assert record["auth"]["prefix"] == case.cls.key_prefix
    assert key not in json.dumps(record)
    headers = {k.lower() for k in record["headers"]}
    assert not headers & {"authorization", "x-goog-api-key"}
    if case.name == "gemini":
        assert record["auth"]["via"] == "x-goog-api-key"
        assert record["json"]["contents"] == [{"role": "user", "parts": [{"text": PROMPT}]}]
        assert record["json"]["generationConfig"]["temperature"] == 0.2
    else:
        assert record["auth"]["via"] == "authorization"
        assert record["json"]["model"] == case.model
        assert record["json"]["messages"] == [{"role": "user", "content": PROMPT}]
    if case.name == "openrouter":
        assert record["headers"]["X-Title"] == "Alwrity"
    assert fake.requests("gemini" if case.name != "gemini" else "openrouter") == []


# --- Errors that are not faults ------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_bad_key_is_an_auth_error(fake, case):
    with pytest.raises(ProviderAuthError):
        client(case, key="bad-key-0000000000000").complete(ask(case))
    assert len(fake.requests()) == 1  # not retried


def test_auth_error_bodies(fake):
    urls = fake.base_urls
    gemini = urls["GEMINI_BASE_URL"] + "/models/gemini-2.5-flash:generateContent"
    body = {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}
    bad = requests.post(gemini, headers={"x-goog-api-key": "bad"}, json=body, timeout=5)
    assert bad.status_code == 400
    assert bad.json()["error"]["details"][0]["reason"] == "API_KEY_INVALID"
    assert requests.post(gemini, json=body, timeout=5).status_code == 403
    assert requests.post(gemini + "?key=AIza-q", json=body, timeout=5).status_code == 200
    assert fake.requests()[-1]["query"] == {"key": "[redacted]"}
    key = requests.get(
        urls["OPENROUTER_BASE_URL"] + "/key", headers={"Authorization": "Bearer bad"}
    )
    assert key.status_code == 401
    assert key.json() == {"error": {"message": "User not found.", "code": 401}}
    hf = requests.post(urls["HF_BASE_URL"] + "/chat/completions", json={}, timeout=5)
    assert hf.status_code == 401
    assert hf.json() == {"error": "Invalid credentials in Authorization header"}


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_connection_test(fake, case):
    assert "accepted the key" in client(case).test_connection()
    with pytest.raises(ProviderAuthError):
        client(case, key="bad-0000000000000000").test_connection()


def test_openrouter_key_and_models(fake):
    base = fake.base_urls["OPENROUTER_BASE_URL"]
    key = requests.get(base + "/key", headers={"Authorization": "Bearer sk-or-v1-abcdef123"})
    assert key.json()["data"]["limit_remaining"] == 74.5
    models = requests.get(base + "/models").json()["data"]
    mini = next(m for m in models if m["id"] == "openai/gpt-4o-mini")
    assert mini["pricing"]["prompt"] == "0.00000015"
    assert mini["pricing"]["completion"] == "0.0000006"


@pytest.mark.django_db
def test_sync_model_prices_reads_the_fake(fake):
    out = StringIO()
    call_command("sync_model_prices", "--dry-run", stdout=out)
    # Every listed model has a per-token price the command can read (the seeded prices agree).
    assert "skipped 0 " in out.getvalue()
    assert fake.requests("openrouter")[0]["path"] == "/openrouter/api/v1/models"


def test_unknown_models(fake):
    with pytest.raises(ModelNotFound):
        client(CASES[0]).complete(ChatRequest.from_prompt("Hi", model="acme/fake-1.0"))
    with pytest.raises(ModelNotFound):
        client(CASES[1]).complete(ChatRequest.from_prompt("Hi", model="gpt-4"))
    hf = requests.post(
        fake.base_urls["HF_BASE_URL"] + "/chat/completions",
        headers={"Authorization": "Bearer hf_x"},
        json={"model": "llama", "messages": [{"role": "user", "content": "Hi"}]},
        timeout=5,
    )
    assert hf.status_code == 400
    assert hf.json()["error"]["code"] == "model_not_supported"
    slashless = requests.post(
        fake.base_urls["OPENROUTER_BASE_URL"] + "/chat/completions",
        headers={"Authorization": "Bearer sk-or-v1-x"},
        json={"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}]},
        timeout=5,
    )
    assert slashless.json()["error"]["message"] == "gpt-4o is not a valid model ID"


# --- Faults --------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_429_is_rate_limited_with_the_wait(fake, case, sleeps):
    fake.script(case.name, [{"status": 429, "retry_after": 1, "times": 4}])
    with pytest.raises(RateLimited) as caught:
        client(case).complete(ask(case))
    assert caught.value.retry_after == 1.0
    assert caught.value.requests == 4  # LLM_MAX_RETRIES=3
    assert sleeps == [1.0, 1.0, 1.0]
    assert [r["status"] for r in fake.requests()] == [429] * 4


def test_429_wire_format(fake):
    fake.script("openrouter", [{"status": 429, "retry_after": 2}, {"status": 429}])
    fake.script("gemini", [{"status": 429, "retry_after": 2.5}])
    fake.script("hf", [{"status": 429, "retry_after": 3}])
    urls = fake.base_urls
    body = {"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "Hi"}]}
    first = requests.post(urls["OPENROUTER_BASE_URL"] + "/chat/completions", json=body)
    assert first.headers["Retry-After"] == "2"
    assert first.json()["error"]["metadata"]["retry_after_seconds"] == 2
    second = requests.post(urls["OPENROUTER_BASE_URL"] + "/chat/completions", json=body)
    assert "Retry-After" not in second.headers
    assert second.headers["X-RateLimit-Remaining"] == "0"
    gemini = requests.post(
        urls["GEMINI_BASE_URL"] + "/models/gemini-2.5-flash:generateContent", json={}
    )
    assert "Retry-After" not in gemini.headers
    error = gemini.json()["error"]
    assert error["status"] == "RESOURCE_EXHAUSTED"
    assert error["details"][-1] == {
        "@type": "type.googleapis.com/google.rpc.RetryInfo",
        "retryDelay": "2.5s",
    }
    hf = requests.post(urls["HF_BASE_URL"] + "/chat/completions", json=body)
    assert hf.headers["Retry-After"] == "3"
    assert isinstance(hf.json()["error"], str)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_5xx_is_unavailable_after_retries(fake, case, status):
    fake.script(case.name, [{"status": status, "times": 4}])
    with pytest.raises(ProviderUnavailable) as caught:
        client(case).complete(ask(case))
    assert caught.value.requests == 4
    assert caught.value.upstream_status == status
    assert isinstance(caught.value, UpstreamTimeout) == (status == 504)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_a_retry_after_a_fault_succeeds(fake, case):
    fake.script(case.name, [{"status": 503}, "reset", "truncate"])
    completion = client(case).complete(ask(case))
    assert completion.requests == 4
    assert [r["fault"] and r["fault"]["fault"] for r in fake.requests()] == [
        "status",
        "reset",
        "truncate",
        None,
    ]
    assert fake.pending()[case.name] == []


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_reset_is_unavailable(fake, case):
    fake.script(case.name, [{"fault": "reset", "times": 4}])
    with pytest.raises(ProviderUnavailable) as caught:
        client(case).complete(ask(case))
    assert not isinstance(caught.value, UpstreamTimeout)
    assert caught.value.requests == 4
    assert [r["status"] for r in fake.requests()] == [None] * 4


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_hang_is_a_timeout(fake, case, settings):
    settings.LLM_TIMEOUT = 1
    settings.LLM_MAX_RETRIES = 0
    fake.script(case.name, ["hang"])
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout):
        client(case).complete(ask(case))
    assert 0.9 < time.monotonic() - started < 3


def test_hang_on_a_stream_is_a_timeout(fake, settings):
    settings.LLM_TIMEOUT = settings.LLM_FIRST_TOKEN_TIMEOUT = 1  # a stream waits for its first text
    settings.LLM_MAX_RETRIES = 0
    fake.script("gemini", ["hang"])
    with pytest.raises(UpstreamTimeout):
        stream_all(client(CASES[1]), ask(CASES[1]))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_malformed_is_unavailable(fake, case):
    fake.script(case.name, ["malformed", "malformed"])
    with pytest.raises(ProviderUnavailable, match="not JSON") as caught:
        client(case).complete(ask(case))
    # Our client reports a 200 that is not JSON at once: it does not retry it.
    assert caught.value.requests == 1
    # In a stream the event that is not JSON is skipped (SPEC §5.1); the stream then lacks its end.
    with pytest.raises(ProviderUnavailable, match="ended before the answer was complete"):
        stream_all(client(case), ask(case))
    assert fake.pending()[case.name] == []


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_truncated_stream_keeps_the_partial_text(fake, case):
    fake.script(case.name, ["truncate", {"fault": "truncate", "abort": True}])
    for _ in range(2):
        with pytest.raises(ProviderUnavailable) as caught:
            stream_all(client(case), ask(case))
        partial = caught.value.partial_text
        assert partial.startswith("Echo: Summarise")
        assert len(partial.split()) == 10  # two chunks of five words
        assert not isinstance(caught.value, UpstreamTimeout)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_truncated_body_is_unavailable(fake, case):
    fake.script(case.name, [{"fault": "truncate", "times": 4}])
    with pytest.raises(ProviderUnavailable) as caught:
        client(case).complete(ask(case))
    assert caught.value.requests == 4


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_midstream_error(fake, case):
    fake.script(case.name, ["midstream_error", "midstream_error"])
    with pytest.raises(ProviderUnavailable) as caught:
        stream_all(client(case), ask(case))
    assert caught.value.partial_text.startswith("Echo: Summarise")
    assert len(caught.value.partial_text.split()) == 5
    # Without a stream: the error inside a 200 answer.
    with pytest.raises(ProviderUnavailable):
        client(case).complete(ask(case))


def test_midstream_error_codes(fake):
    fake.script("openrouter", [{"fault": "midstream_error", "status": 429}])
    with pytest.raises(RateLimited):
        stream_all(client(CASES[0]), ask(CASES[0]))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_invalid_json_twice_is_invalid_structured_output(fake, case):
    fake.script(case.name, ["invalid_json", "invalid_json"])
    with pytest.raises(InvalidStructuredOutput) as caught:
        client(case).complete(ask(case, json_schema=SCHEMA))
    assert caught.value.raw_text == NOT_JSON
    assert caught.value.requests == 2
    fake.script(case.name, ["invalid_json"])
    completion = client(case).complete(ask(case, json_schema=SCHEMA))
    assert completion.requests == 2
    jsonschema.validate(completion.data, SCHEMA)


def test_delays(fake, settings):
    case = CASES[0]
    fake.configure(delay_ms=300)
    started = time.monotonic()
    client(case).complete(ask(case))
    assert time.monotonic() - started >= 0.3
    fake.configure(delay_ms=0, stream_chunk_delay_ms=50)
    started = time.monotonic()
    stream_all(client(case), ask(case))
    assert time.monotonic() - started >= 0.3  # 7 events after the first
    fake.configure(stream_chunk_delay_ms=0)
    settings.LLM_TIMEOUT = 0.5
    settings.LLM_MAX_RETRIES = 0
    fake.script("openrouter", [{"delay_ms": 1000}])
    with pytest.raises(UpstreamTimeout):
        client(case).complete(ask(case))


# --- The plain OpenAI-compatible route (custom providers), spoken to with plain requests --------


def chat(url: str, headers: dict | None = None, **body) -> requests.Response:
    body = {"model": "llama3.2", "messages": [{"role": "user", "content": PROMPT}], **body}
    return requests.post(f"{url}/chat/completions", json=body, headers=headers or {}, timeout=5)


def sse_events(response: requests.Response) -> list[str]:
    assert response.headers["Content-Type"].startswith("text/event-stream")
    assert response.text.endswith("data: [DONE]\n\n")
    return [e.removeprefix("data: ") for e in response.text.split("\n\n") if e]


def test_openai_route_needs_no_key(fake):
    response = chat(fake.openai_base_url())
    assert response.status_code == 200
    body = response.json()
    assert (body["object"], body["model"]) == ("chat.completion", "llama3.2")
    [choice] = body["choices"]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"].startswith("Echo: Summarise the paper")
    assert choice["finish_reason"] == "stop"
    assert body["usage"] == {"prompt_tokens": 11, "completion_tokens": 20, "total_tokens": 31}
    [record] = fake.requests("ollama")
    assert record["provider"] == "openai"
    assert record["path"] == "/openai/v1/chat/completions"
    assert record["auth"]["present"] is False

    short = chat(fake.openai_base_url(), max_tokens=5).json()
    assert short["choices"][0]["finish_reason"] == "length"
    assert short["usage"]["completion_tokens"] == 5


def test_openai_route_stream_with_usage_last(fake):
    plain = chat(fake.openai_base_url()).json()["choices"][0]["message"]["content"]
    response = chat(fake.openai_base_url(), stream=True, stream_options={"include_usage": True})
    *chunks, done = sse_events(response)
    assert done == "[DONE]"
    chunks = [json.loads(c) for c in chunks]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1
    *content, finish, usage = chunks
    assert content[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(c["choices"][0]["delta"]["content"] for c in content) == plain
    assert all(c["usage"] is None for c in [*content, finish])
    assert finish["choices"][0]["finish_reason"] == "stop"
    assert usage["choices"] == []
    assert usage["usage"] == {"prompt_tokens": 11, "completion_tokens": 20, "total_tokens": 31}

    without = chat(fake.openai_base_url(), stream=True)
    assert '"usage"' not in without.text  # only when stream_options.include_usage asks


def test_openai_route_honours_json_schema(fake):
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "paper", "strict": True, "schema": SCHEMA},
    }
    body = chat(fake.openai_base_url(), response_format=response_format).json()
    jsonschema.validate(json.loads(body["choices"][0]["message"]["content"]), SCHEMA)

    stream = chat(fake.openai_base_url(), response_format=response_format, stream=True)
    text = "".join(
        json.loads(e)["choices"][0]["delta"].get("content", "") for e in sse_events(stream)[:-1]
    )
    jsonschema.validate(json.loads(text), SCHEMA)


def test_openai_route_errors(fake):
    url = fake.openai_base_url()
    refused = chat(url, headers={"Authorization": "Bearer bad-key"})
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "invalid_api_key"
    assert chat(url, headers={"Authorization": "Bearer sk-local-1234"}).status_code == 200

    missing = chat(url, model="missing-model")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "model_not_found"
    assert chat(url, model="").status_code == 400

    fake.script("openai", [{"status": 429, "retry_after": 2}, {"status": 503}])
    limited = chat(url)
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "2")
    assert limited.json()["error"]["type"] == "rate_limit_exceeded"
    assert chat(url).json()["error"]["type"] == "server_error"
    fake.script("ollama", [{"fault": "midstream_error", "status": 502}])
    broken = chat(url, stream=True).text.split("\n\n")
    assert json.loads(broken[1].removeprefix("data: "))["error"]["type"] == "server_error"
    assert "[DONE]" not in broken[-1]
    assert fake.pending()["openai"] == []


def test_openai_route_one_base_url_per_server(fake):
    for name in ("ollama", "vllm"):
        base = fake.openai_base_url(name)
        assert base == f"{fake.url}/openai/{name}/v1"
        assert chat(base).status_code == 200
        models = requests.get(f"{base}/models", timeout=5).json()
        assert models["object"] == "list" and models["data"][0]["id"] == "llama3.2"
    paths = [r["path"] for r in fake.requests("openai")]
    assert paths == [
        "/openai/ollama/v1/chat/completions",
        "/openai/ollama/v1/models",
        "/openai/vllm/v1/chat/completions",
        "/openai/vllm/v1/models",
    ]


# --- Control API, CLI, lifecycle ----------------------------------------------------------------


def test_control_api_over_http(fake):
    remote = FakeUpstreamClient(fake.url)
    assert remote.base_urls == fake.base_urls
    assert remote.script("hf", ["reset", {"status": 503, "times": 2}]) == 3
    assert remote.pending()["huggingface"][1] == {"fault": "status", "status": 503}
    with pytest.raises(urllib.error.HTTPError) as caught:
        remote.script("gemini", ["explode"])
    assert caught.value.code == 400
    with pytest.raises(urllib.error.HTTPError):
        remote.script("nobody", [])
    config = remote.configure(delay_ms=5, completion_words=3)
    assert (config["delay_ms"], config["completion_words"]) == (5, 3)
    with pytest.raises(urllib.error.HTTPError):
        remote.configure(delay_ms="soon")
    requests.get(fake.base_urls["GEMINI_BASE_URL"] + "/models", headers={"x-goog-api-key": "AIza1"})
    [record] = remote.requests("gemini")
    assert record["path"] == "/gemini/v1beta/models"
    assert remote.stats()["gemini"] == 1
    remote.reset()
    assert remote.requests() == []
    assert remote.pending()["huggingface"] == []


def test_fault_scripts_are_validated():
    assert [f.kind for f in parse_faults(["hang", {"status": 500, "times": 2}])] == [
        "hang",
        "status",
        "status",
    ]
    for bad in ("nope", [{"status": 200}], [{"fault": "status"}], [{"status": 500, "x": 1}]):
        with pytest.raises(FaultError):
            parse_faults(bad if isinstance(bad, list) else [bad])


def test_schema_examples():
    schema = {
        "type": "object",
        "properties": {
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
            "maybe": {"anyOf": [{"type": "null"}, {"type": "integer", "maximum": 0}]},
            "ref": {"$ref": "#/$defs/thing"},
            "GEMINI": {"type": "OBJECT", "properties": {"n": {"type": "NUMBER"}}},
        },
        "$defs": {"thing": {"type": "object", "properties": {"ok": {"type": "boolean"}}}},
    }
    value = example_for_schema(schema)
    assert value == {
        "tags": ["tags example"] * 2,
        "maybe": 0,
        "ref": {"ok": True},
        "GEMINI": {"n": 1.5},
    }
    jsonschema.validate(
        value,
        {k: v for k, v in schema.items() if k != "properties"}
        | {"properties": {k: v for k, v in schema["properties"].items() if k != "GEMINI"}},
    )


def test_cli_prints_its_urls():
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fake_upstream",
            "--port",
            "0",
            "--delay-ms",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = [process.stdout.readline().strip() for _ in range(5)]
        url = lines[0].removeprefix("FAKE_UPSTREAM_URL=")
        assert url.startswith("http://127.0.0.1:")
        assert lines[1:] == [
            f"OPENROUTER_BASE_URL={url}/openrouter/api/v1",
            f"GEMINI_BASE_URL={url}/gemini/v1beta",
            f"HF_BASE_URL={url}/hf/v1",
            f"OPENAI_COMPATIBLE_BASE_URL={url}/openai/v1",
        ]
        with urllib.request.urlopen(f"{url}/_fake/health", timeout=5) as response:
            assert json.loads(response.read()) == {"ok": True}
    finally:
        process.terminate()
        assert process.wait(10) == 0
    assert "Warning" not in process.stderr.read()


def test_stop_cancels_hanging_requests(http):
    fake = FakeUpstream(hang_seconds=60).start()
    http.add_passthru(fake.url)
    fake.script("openrouter", ["hang"])
    outcome: list = []

    def call() -> None:
        try:
            requests.post(
                fake.base_urls["OPENROUTER_BASE_URL"] + "/chat/completions", json={}, timeout=30
            )
        except requests.RequestException as exc:
            outcome.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    deadline = time.monotonic() + 5
    while not fake.requests() and time.monotonic() < deadline:
        time.sleep(0.02)
    started = time.monotonic()
    fake.stop()
    caller.join(5)
    assert time.monotonic() - started < 3
    assert len(outcome) == 1 and isinstance(outcome[0], requests.ConnectionError)
