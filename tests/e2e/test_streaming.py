"""End to end: ``generate/`` with ``stream: true`` (server-sent events) through the production
server: whole streams, faults before and after the first text, and a client that hangs up."""

from __future__ import annotations

import json
import socket
import time

import pytest

from tests.e2e.harness import (
    API,
    Client,
    Event,
    assert_error,
    ledger_mark,
    money,
    read_events,
    rows_since,
    wait_for_rows,
)
from tests.e2e.test_faults import FALLBACK, PROVIDERS, shape

pytestmark = pytest.mark.e2e

DONE_FIELDS = {"id", "provider", "model", "usage", "cost", "attempts", "fallback_from"}


def stream(api: Client, body: dict) -> list[Event]:
    """POST ``generate/`` with ``stream: true``; every event until the server ends the stream."""
    conn, response = api.stream("generate/", {**body, "stream": True})
    try:
        assert response.status == 200, (response.status, response.read()[:500])
        assert response.headers["Content-Type"].startswith("text/event-stream")
        assert response.headers["Cache-Control"] == "no-cache"
        return list(read_events(response))
    finally:
        response.close()
        conn.close()


def split(events: list[Event]) -> tuple[str, Event]:
    """The streamed text (from the ``data: {"delta"}`` events) and the last event."""
    *deltas, last = events
    assert deltas, "no text before the last event"
    assert all(e.event is None and set(e.json()) == {"delta"} for e in deltas), deltas
    return "".join(e.json()["delta"] for e in deltas), last


@pytest.mark.parametrize("provider", PROVIDERS)
def test_stream(api, fake, provider):
    mark = ledger_mark(api)
    events = stream(api, {"prompt": "Stream me a story", "provider": provider})
    text, done = split(events)
    assert len(events) >= 3  # 20 words in chunks of 5
    assert done.event == "done"
    out = done.json()
    assert set(out) == DONE_FIELDS
    assert text.startswith("Echo: Stream me a story") and len(text.split()) == 20
    assert (out["provider"], out["attempts"], out["fallback_from"]) == (provider, 1, [])
    assert out["usage"]["completion_tokens"] == 20
    [request] = fake.requests()
    assert request["json"].get("stream") or "streamGenerateContent" in request["path"]
    [row] = rows_since(api, mark)
    assert shape([row]) == [(provider, "success", "", 0, False)]
    assert row["request_id"] == out["id"]
    assert row["total_tokens"] == out["usage"]["total_tokens"]
    assert money(row["cost"]) == money(out["cost"]) > 0


@pytest.mark.parametrize(
    ("faults", "attempts", "fallback_from"),
    [
        (["reset"], 2, []),  # retried before the stream starts
        ([{"status": 503, "times": 2}], 3, ["gemini"]),
        ([{"status": 429, "retry_after": 0.1}], 2, []),
        (["malformed"], 2, ["gemini"]),  # an event that is not JSON, before any text
    ],
    ids=["reset", "503", "429", "malformed"],
)
def test_fault_before_the_text(api, fake, faults, attempts, fallback_from):
    fake.script("gemini", faults)
    mark = ledger_mark(api)
    text, done = split(stream(api, {"prompt": "Stream anyway"}))
    assert done.event == "done", done
    out = done.json()
    assert (out["attempts"], out["fallback_from"]) == (attempts, fallback_from)
    assert out["provider"] == ("openrouter" if fallback_from else "gemini")
    assert text.startswith("Echo: Stream anyway")
    rows = rows_since(api, mark)
    assert [r["status"] for r in rows] == ["error"] * len(fallback_from) + ["success"]
    assert sum(r["retries"] + 1 for r in rows) == attempts


FAULTS_AFTER_TEXT = pytest.mark.parametrize(
    "fault",
    ["truncate", {"fault": "truncate", "abort": True}, "midstream_error"],
    ids=["truncate", "truncate-abort", "midstream_error"],
)


@pytest.mark.parametrize("provider", PROVIDERS)
@FAULTS_AFTER_TEXT
def test_fault_after_the_text_is_continued_by_the_next_model(api, fake, fault, provider):
    """Text already reached the client: the next model of the chain continues it (SPEC §5.1)
    and the client gets the whole answer, told it was resumed."""
    whole = split(stream(api, {"prompt": "Cut me off", "provider": provider}))[0]
    before = len(fake.requests())
    fake.script(provider, [fault])
    mark = ledger_mark(api)
    text, last = split(stream(api, {"prompt": "Cut me off", "provider": provider}))
    assert last.event == "done", last
    out = last.json()
    assert out["resumed"] is True and out["fallback_from"] == [provider]
    assert out["provider"] == FALLBACK[provider]
    assert text == whole
    broken, continued = fake.requests()[before:]
    assert (broken["provider"], continued["provider"]) == (provider, FALLBACK[provider])
    rows = rows_since(api, mark)
    assert [(r["provider"], r["status"]) for r in rows] == [
        (provider, "error"),
        (FALLBACK[provider], "success"),
    ]
    if provider == "gemini":  # its usage comes with every chunk: what was sent is accounted
        assert rows[0]["completion_tokens"] > 0


@pytest.mark.parametrize("provider", PROVIDERS)
@FAULTS_AFTER_TEXT
def test_fault_after_the_text_with_no_model_left_is_an_error(api, fake, fault, provider):
    """No model to continue with (an empty chain): ``event: error``, ``stream_interrupted``,
    never a ``done`` after a truncated answer."""
    fake.script(provider, [fault])
    mark = ledger_mark(api)
    body = {"prompt": "Cut me off", "provider": provider, "fallback_models": []}
    text, last = split(stream(api, body))
    assert text.startswith("Echo: Cut me off")
    assert last.event == "error", last
    error = last.json()["error"]
    assert error["code"] == "stream_interrupted" and error["message"]
    assert [a["provider"] for a in error["attempts"]] == [provider]
    assert [r["provider"] for r in fake.requests()] == [provider]
    [row] = rows_since(api, mark)
    assert shape([row]) == [(provider, "error", "provider_error", 0, False)]


def test_stream_stalls_mid_way(api, fake):
    """The upstream goes quiet after the first chunk for longer than LLM_STREAM_IDLE_TIMEOUT
    (2 s) and no model is left to continue."""
    fake.configure(stream_chunk_delay_ms=3000)
    mark = ledger_mark(api)
    started = time.monotonic()
    text, last = split(stream(api, {"prompt": "Then silence", "fallback_models": []}))
    assert 2 <= time.monotonic() - started < 10
    assert text.startswith("Echo: Then silence")
    assert last.event == "error", last
    assert last.json()["error"]["code"] == "stream_interrupted"
    assert shape(rows_since(api, mark)) == [("gemini", "error", "upstream_timeout", 0, False)]


def test_every_provider_fails_before_the_stream(api, fake):
    """Nothing streamed yet: a plain HTTP error with the SPEC's body, not an event stream."""
    for provider in PROVIDERS:
        fake.script(provider, [{"status": 502, "times": 2}])
    mark = ledger_mark(api)
    reply = api.post("generate/", {"prompt": "Nobody home", "stream": True})
    error = assert_error(reply, 502, "provider_error")
    assert [a["provider"] for a in error["attempts"]] == list(PROVIDERS)
    assert len(rows_since(api, mark)) == 3


def _has_text_event(received: bytes) -> bool:
    start = received.find(b'data: {"delta"')
    return start >= 0 and received.find(b"\n\n", start) >= 0


def open_and_hang_up(api: Client, body: dict) -> bytes:
    """Start a stream on a raw socket, read up to the first text event, close the socket."""
    payload = json.dumps({**body, "stream": True}).encode()
    head = (
        f"POST {API}generate/ HTTP/1.1\r\n"
        f"Host: {api.host}:{api.port}\r\n"
        f"Authorization: Token {api.token}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n"
        "\r\n"
    )
    received = b""
    with socket.create_connection((api.host, api.port), timeout=10) as sock:
        sock.sendall(head.encode() + payload)
        deadline = time.monotonic() + 10
        while not _has_text_event(received):
            assert time.monotonic() < deadline, received
            chunk = sock.recv(65536)
            assert chunk, f"the server ended the stream first: {received!r}"
            received += chunk
    return received


@pytest.mark.parametrize(
    ("provider", "drained"),
    [("gemini", True), ("openrouter", False)],
    ids=["gemini-billed-in-full", "openrouter-stopped"],
)
def test_client_hangs_up_mid_stream(api, fake, provider, drained):
    """The ledger row appears when the client has gone: Gemini's stream is read to its end for
    the exact usage it bills; OpenRouter's is closed and charged what was generated so far."""
    words, chunk_ms = 400, 20  # 80 chunks: a stream of ~1.6 s
    fake.configure(completion_words=words, stream_chunk_delay_ms=chunk_ms)
    mark = ledger_mark(api)
    started = time.monotonic()
    received = open_and_hang_up(api, {"prompt": "Tell me a long story", "provider": provider})
    assert b" 200 " in received.split(b"\r\n", 1)[0], received[:200]
    assert b"event: done" not in received
    hung_up_after = time.monotonic() - started
    assert hung_up_after < words / 5 * chunk_ms / 1000, "the stream ended before the hang-up"
    rows = wait_for_rows(api, mark, 1, timeout=20)
    assert len(rows) == 1, f"no ledger row for the abandoned stream after 20 s: {rows}"
    [row] = rows
    assert shape([row]) == [(provider, "error", "client_disconnected", 0, False)]
    prompt_tokens = 5  # the fake counts words: "Tell me a long story"
    if drained:
        assert row["completion_tokens"] == words
        assert row["total_tokens"] == prompt_tokens + words
    else:
        assert 0 < row["completion_tokens"] < words
    assert money(row["cost"]) > 0
    [request] = fake.requests()
    assert request["provider"] == provider


def test_openai_compatible_stream(main, accounts, fake):
    client = main.client(accounts["user"]).with_token(accounts["user"], "Bearer")
    mark = ledger_mark(client)
    conn, response = client.stream(
        "v1/chat/completions",
        {
            "model": "auto",
            "messages": [{"role": "user", "content": "Stream the OpenAI way"}],
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    )
    try:
        assert response.status == 200
        events = list(read_events(response))
    finally:
        response.close()
        conn.close()
    assert events[-1].data == "[DONE]"
    chunks = [e.json() for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text.startswith("Echo: Stream the OpenAI way")
    usage = chunks[-1]["usage"]
    assert usage["completion_tokens"] == 20
    [row] = rows_since(client, mark)
    assert shape([row]) == [("gemini", "success", "", 0, False)]
    assert row["total_tokens"] == usage["total_tokens"]
