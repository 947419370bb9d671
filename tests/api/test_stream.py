"""Streaming over the REST API (SPEC §8): ``generate/`` with ``stream: true`` and the streaming
``v1/chat/completions``.

The stream is ``text/event-stream`` whatever the ``Accept`` header; errors before the first byte
are ordinary JSON errors with their status; a failure after it is an ``error`` event; usage is
recorded when the stream ends, also when the client goes away — over the test client (closing
the response) and over a real socket to the live server (Django notices only when a write
fails, so the upstream holds its stream open until the client has gone).
"""

from __future__ import annotations

import io
import json
import socket
import struct
import threading
import time
from decimal import Decimal
from unittest import mock
from urllib.parse import urlsplit

import pytest
from django.db import connections
from django.db.models import Sum
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIRequestFactory

from llm_providers.api.views import GenerateView
from llm_providers.models import PROVIDER_NAMES, LedgerEntry, UsageBudget, UsageSummary
from tests.conftest import FAKE_KEYS
from tests.providers import wire

GENERATE = "/api/llm/generate/"
CHAT = "/api/llm/v1/chat/completions"
DONE_KEYS = {"id", "provider", "model", "usage", "cost", "attempts", "fallback_from"}
SSE = "text/event-stream"


# --- Helpers ----------------------------------------------------------------------------------


def parse_events(body: bytes) -> list[tuple[str, object]]:
    """``[(event name, data)]`` of an SSE body; data is JSON-decoded except ``[DONE]``."""
    events = []
    for block in body.decode("utf-8").split("\n\n"):
        if not block.strip():
            continue
        name, data = "message", []
        for line in block.split("\n"):
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: "):
                data.append(line[len("data: ") :])
        text = "\n".join(data)
        events.append((name, text if text == "[DONE]" else json.loads(text)))
    return events


def deltas(events) -> list[str]:
    return [data["delta"] for name, data in events if name == "message"]


def assert_summary_matches_ledger(user) -> None:
    """Each provider's (and the total's) calls, tokens and cost equal the sums of the ledger."""
    summary = UsageSummary.objects.filter(user=user).first() or UsageSummary(user=user)
    entries = LedgerEntry.objects.filter(user=user)
    for name in [*PROVIDER_NAMES, "total"]:
        rows = entries if name == "total" else entries.filter(provider=name)
        assert getattr(summary, f"{name}_calls") == rows.filter(status="success").count(), name
        assert getattr(summary, f"{name}_tokens") == (
            rows.aggregate(n=Sum("total_tokens"))["n"] or 0
        ), name
        assert getattr(summary, f"{name}_cost") == (
            rows.aggregate(c=Sum("cost"))["c"] or Decimal(0)
        ), name
    assert (summary.reserved_calls, summary.reserved_cost) == (0, 0)


def gemini_text_stream(count: int) -> tuple[list[str], bytes]:
    texts = [f"w{i} " for i in range(count)]
    return texts, wire.gemini_stream(texts)


class GatedBody(io.BufferedReader):
    """An upstream body that sends ``head``, then holds the stream open until ``gate`` is set,
    then sends ``tail``: so the server is still writing after the client has gone.

    ``head`` is preceded by an SSE comment that brings it to whole 512-byte reads (requests'
    chunk size), so all of its events reach the reader before the wait.
    """

    def __init__(self, head: bytes, tail: bytes, gate: threading.Event, timeout: float = 10):
        super().__init__(io.BytesIO(b""))
        self.head = b": " + b"." * (-(len(head) + 3) % 512) + b"\n" + head
        self.tail = tail
        self.gate = gate
        self.timeout = timeout

    def read(self, size: int | None = -1) -> bytes:
        if not self.head:
            self.gate.wait(self.timeout)
        source = "head" if self.head else "tail"
        data = getattr(self, source)
        size = len(data) if size is None or size < 0 else size
        out, rest = data[:size], data[size:]
        setattr(self, source, rest)
        return out


# --- Fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user("streamer")


@pytest.fixture
def token(user) -> str:
    return Token.objects.create(user=user).key


@pytest.fixture
def api(token) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Token {token}")


def post_stream(api: Client, body: dict | None = None, path: str = GENERATE, **headers):
    body = {"prompt": "hi", "stream": True} if body is None else body
    return api.post(path, body, content_type="application/json", **headers)


def hang_up_test_client(response) -> None:
    """What a server does when its client goes away: close the response.

    Closing fires ``request_finished``, on which Django closes the database connection; the
    test client avoids that only when it closes the response itself (at the end of
    ``streaming_content``), so the test's connection (inside its transaction) is kept here."""
    with mock.patch.object(connections["default"], "close_if_unusable_or_obsolete"):
        response.close()


def read_all(response) -> list[tuple[str, object]]:
    assert response.status_code == 200
    assert response.streaming
    return parse_events(b"".join(response.streaming_content))


# --- generate/ with stream: true --------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "accept", [None, "text/event-stream", "application/json", "text/html", "*/*"]
)
def test_stream_is_an_event_stream_whatever_the_accept_header(api, use_keys, http, accept):
    use_keys("gemini")
    http.post(wire.gemini_stream_url(), body=wire.gemini_stream(["Hel", "lo"]), content_type=SSE)
    headers = {"HTTP_ACCEPT": accept} if accept else {}
    response = post_stream(api, **headers)
    assert response["Content-Type"] == SSE
    assert response["Cache-Control"] == "no-cache"
    assert deltas(read_all(response)) == ["Hel", "lo"]


@pytest.mark.django_db
@pytest.mark.parametrize("accept", ["text/event-stream", "text/html"])
def test_without_stream_the_answer_is_json_whatever_the_accept_header(api, use_keys, http, accept):
    use_keys("gemini")
    http.post(wire.gemini_generate_url(), body=wire.gemini_response("Red."))
    response = api.post(
        GENERATE, {"prompt": "hi"}, content_type="application/json", HTTP_ACCEPT=accept
    )
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json()["text"] == "Red."


@pytest.mark.django_db
def test_deltas_in_order_then_done_with_exactly_the_contract_keys(api, user, use_keys, http):
    use_keys("gemini")
    texts, body = gemini_text_stream(5)
    http.post(wire.gemini_stream_url(), body=body, content_type=SSE)
    events = read_all(post_stream(api, {"prompt": "count", "stream": True}))
    assert deltas(events) == texts
    assert [name for name, _ in events] == ["message"] * 5 + ["done"]
    done = events[-1][1]
    assert set(done) == DONE_KEYS
    [entry] = LedgerEntry.objects.filter(user=user)
    assert done["id"] == entry.request_id
    assert (done["provider"], done["model"]) == ("gemini", "gemini-2.5-flash")
    assert done["usage"] == {"prompt_tokens": 51, "completion_tokens": 10, "total_tokens": 61}
    assert Decimal(done["cost"]) == entry.cost > 0
    assert isinstance(done["cost"], str)
    assert (done["attempts"], done["fallback_from"]) == (1, [])
    # The upstream was asked for a stream, with the prompt.
    [call] = http.calls
    assert call.request.url.endswith(":streamGenerateContent?alt=sse")
    assert "count" in call.request.body.decode()


@pytest.mark.django_db
def test_a_full_stream_records_its_usage_once(api, user, use_keys, http):
    use_keys("gemini")
    http.post(wire.gemini_stream_url(), body=wire.gemini_stream(["a", "b"]), content_type=SSE)
    read_all(post_stream(api))
    [entry] = LedgerEntry.objects.filter(user=user)
    assert (entry.provider, entry.status, entry.error_code) == ("gemini", "success", "")
    assert (entry.prompt_tokens, entry.completion_tokens, entry.total_tokens) == (51, 4, 55)
    assert entry.cost_source == "price_table"
    summary = UsageSummary.objects.get(user=user)
    assert (summary.gemini_calls, summary.gemini_tokens) == (1, 55)
    assert_summary_matches_ledger(user)
    usage = api.get("/api/llm/usage/").json()
    assert usage["providers"]["gemini"]["calls"] == 1
    assert usage["providers"]["gemini"]["tokens"] == 55
    assert Decimal(usage["providers"]["gemini"]["cost"]) == entry.cost
    [row] = api.get("/api/llm/calls/").json()["results"]
    assert (row["request_id"], row["status"], row["total_tokens"]) == (
        entry.request_id,
        "success",
        55,
    )


@pytest.mark.django_db
def test_openrouter_stream_reports_its_own_cost(api, user, use_keys, http):
    use_keys("openrouter")
    usage = wire.or_usage(10, 3, Decimal("0.000055"))
    http.post(
        wire.OPENROUTER_CHAT,
        body=wire.or_stream(["Hi", " there"], usage=usage, model="openai/gpt-4-turbo"),
        content_type=SSE,
    )
    events = read_all(post_stream(api))
    assert deltas(events) == ["Hi", " there"]
    done = events[-1][1]
    assert (done["provider"], done["model"], done["cost"]) == (
        "openrouter",
        "openai/gpt-4-turbo",
        "0.000055",
    )
    assert done["usage"]["total_tokens"] == 13
    assert wire.request_json(http.calls[0])["stream_options"] == {"include_usage": True}
    [entry] = LedgerEntry.objects.filter(user=user)
    assert (entry.cost, entry.cost_source) == (Decimal("0.000055"), "provider")
    assert_summary_matches_ledger(user)


@pytest.mark.django_db
def test_fallback_before_the_first_delta_shows_in_done(api, user, use_keys, http):
    use_keys("gemini", "openrouter")
    http.post(wire.gemini_stream_url(), status=503, body=wire.gemini_status_error(503))
    http.post(
        wire.OPENROUTER_CHAT,
        body=wire.or_stream(["Hi", "!"], model="openai/gpt-4-turbo"),
        content_type=SSE,
    )
    events = read_all(post_stream(api))
    assert deltas(events) == ["Hi", "!"]
    name, done = events[-1]
    assert name == "done"
    assert (done["provider"], done["fallback_from"]) == ("openrouter", ["gemini"])
    assert done["attempts"] == 4 + 1  # Gemini tried and retried three times, then OpenRouter
    rows = list(LedgerEntry.objects.filter(user=user).order_by("id"))
    assert [(r.provider, r.status, r.is_fallback, r.retries) for r in rows] == [
        ("gemini", "error", False, 3),
        ("openrouter", "success", True, 0),
    ]
    assert {r.request_id for r in rows} == {done["id"]}
    assert_summary_matches_ledger(user)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "failure",
    ["gemini_error_event", "connection_reset"],
)
def test_an_upstream_failure_mid_stream_is_an_error_event(api, user, use_keys, http, failure):
    use_keys("gemini")  # no other model to continue the stream
    head = wire.sse([wire.gemini_chunk("partial")], sep="\r\n\r\n")
    if failure == "gemini_error_event":
        body = head + wire.sse([wire.gemini_stream_error(503)], sep="\r\n\r\n")
    else:
        body = wire.CutConnection(head, ConnectionResetError(104, "Connection reset by peer"))
    http.post(wire.gemini_stream_url(), body=body, content_type=SSE)
    events = read_all(post_stream(api))
    assert [name for name, _ in events] == ["message", "error"]
    assert deltas(events) == ["partial"]
    error = events[-1][1]["error"]
    assert error["code"] == "stream_interrupted"  # never a done after a truncated answer
    assert [a["provider"] for a in error["attempts"]] == ["gemini"]
    assert FAKE_KEYS["gemini"] not in json.dumps(error)
    [entry] = LedgerEntry.objects.filter(user=user)
    assert (entry.provider, entry.status, entry.error_code) == ("gemini", "error", "provider_error")
    assert_summary_matches_ledger(user)


@pytest.mark.django_db
def test_a_stream_broken_after_text_is_continued_by_the_next_model(api, user, use_keys, http):
    use_keys("gemini", "openrouter")
    head = wire.sse([wire.gemini_chunk("Once upon")], sep="\r\n\r\n")
    http.post(wire.gemini_stream_url(), body=head, content_type=SSE)  # no finish: broken
    tail = wire.sse(
        [
            wire.or_chunk(" a time.", model="openai/gpt-4-turbo"),
            wire.or_chunk("", finish_reason="stop"),
        ]
    )
    http.post(wire.OPENROUTER_CHAT, body=tail, content_type=SSE)
    events = read_all(post_stream(api))
    assert [name for name, _ in events] == ["message", "message", "done"]
    assert deltas(events) == ["Once upon", " a time."]
    done = events[-1][1]
    assert (done["provider"], done["resumed"], done["fallback_from"]) == (
        "openrouter",
        True,
        ["gemini"],
    )
    sent = json.loads(http.calls[-1].request.body)
    assert sent["messages"][-1] == {"role": "assistant", "content": "Once upon"}
    assert_summary_matches_ledger(user)


@pytest.mark.django_db
def test_openrouter_mid_stream_error_event(api, user, use_keys, http):
    use_keys("openrouter")
    body = wire.sse(
        [
            wire.or_chunk("", model="openai/gpt-4-turbo"),
            wire.or_chunk("par"),
            wire.or_stream_error(502, "Provider disconnected"),
        ]
    )
    http.post(wire.OPENROUTER_CHAT, body=body, content_type=SSE)
    events = read_all(post_stream(api))
    assert [name for name, _ in events] == ["message", "error"]
    assert events[-1][1]["error"]["code"] == "stream_interrupted"
    assert LedgerEntry.objects.filter(user=user, status="error").count() == 1
    assert_summary_matches_ledger(user)


# Errors before the first byte are ordinary JSON responses with their status.


def assert_json_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert not response.streaming
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    return body["error"]


@pytest.mark.django_db
@pytest.mark.parametrize("accept", [None, "text/event-stream"])
def test_no_provider_configured_is_a_503_before_the_stream(api, user, http, accept):
    headers = {"HTTP_ACCEPT": accept} if accept else {}
    error = assert_json_error(post_stream(api, **headers), 503, "provider_not_configured")
    for variable in ("GEMINI_API_KEY", "OPENROUTER_API_KEY", "HF_TOKEN"):
        assert variable in error["message"]
    assert len(http.calls) == 0
    assert not LedgerEntry.objects.exists()


@pytest.mark.django_db
def test_named_provider_without_a_key_is_a_503(api, use_keys, http):
    use_keys("gemini")
    response = post_stream(api, {"prompt": "hi", "stream": True, "provider": "openrouter"})
    error = assert_json_error(response, 503, "provider_not_configured")
    assert "OPENROUTER_API_KEY not found" in error["message"]
    assert len(http.calls) == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"prompt": "hi", "stream": True, "temperature": 5}, "temperature"),
        ({"prompt": "hi", "stream": True, "max_tokens": 0}, "max_tokens"),
        ({"prompt": "", "stream": True}, "prompt"),
        ({"prompt": "hi", "stream": "yes"}, "stream"),
        ({"prompt": "hi", "stream": True, "json_schema": {"type": "object"}}, "stream"),
        ({"prompt": "hi", "stream": True, "provider": "openrouter", "model": "gpt4"}, "model"),
        ({"prompt": "hi", "stream": True, "temprature": 1}, "temprature"),
    ],
)
def test_invalid_stream_request_is_a_400_with_no_call_and_no_usage(
    api, use_keys, http, body, field
):
    use_keys("gemini", "openrouter")
    error = assert_json_error(post_stream(api, body), 400, "invalid_request")
    assert field in error["fields"]
    assert len(http.calls) == 0
    assert not LedgerEntry.objects.exists()


@pytest.mark.django_db
def test_spent_budget_is_a_402_before_the_stream(api, user, use_keys, http):
    use_keys("gemini")
    UsageBudget.objects.create(user=user, monthly_call_limit=0)
    assert_json_error(post_stream(api), 402, "budget_exceeded")
    assert len(http.calls) == 0
    assert not LedgerEntry.objects.exists()


@pytest.mark.django_db
def test_every_provider_failing_is_a_502_listing_each_attempt(api, user, use_keys, http):
    use_keys("gemini", "openrouter")
    http.post(wire.gemini_stream_url(), status=503, body=wire.gemini_status_error(503))
    http.post(wire.OPENROUTER_CHAT, status=502, body=wire.or_error(502, wire.OR_ERRORS[502]))
    error = assert_json_error(post_stream(api), 502, "provider_error")
    assert [(a["provider"], a["code"]) for a in error["attempts"]] == [
        ("gemini", "provider_error"),
        ("openrouter", "provider_error"),
    ]
    rows = LedgerEntry.objects.filter(user=user).order_by("id")
    assert [(r.provider, r.status) for r in rows] == [("gemini", "error"), ("openrouter", "error")]
    assert_summary_matches_ledger(user)


@pytest.mark.django_db
def test_every_provider_rate_limited_is_a_429_with_retry_after(api, use_keys, http):
    use_keys("openrouter")
    http.post(
        wire.OPENROUTER_CHAT,
        status=429,
        body=wire.or_error(429, wire.OR_ERRORS[429]),
        headers={"Retry-After": "7"},
    )
    response = post_stream(api)
    assert_json_error(response, 429, "rate_limited")
    assert int(response["Retry-After"]) >= 1


@pytest.mark.django_db
def test_model_unknown_upstream_is_a_404_before_the_stream(api, use_keys, http):
    use_keys("gemini")
    http.post(
        wire.gemini_stream_url("gemini-0-nope"), status=404, body=wire.gemini_status_error(404)
    )
    response = post_stream(api, {"prompt": "hi", "stream": True, "model": "gemini-0-nope"})
    error = assert_json_error(response, 404, "model_not_found")
    assert "Model not found" in error["message"]


@pytest.mark.django_db
def test_streaming_needs_authentication(client, use_keys, http):
    use_keys("gemini")
    response = client.post(
        GENERATE, {"prompt": "hi", "stream": True}, content_type="application/json"
    )
    assert_json_error(response, 401, "not_authenticated")
    bad = Client(HTTP_AUTHORIZATION="Token nope").post(
        GENERATE, {"prompt": "hi", "stream": True}, content_type="application/json"
    )
    assert_json_error(bad, 401, "authentication_failed")
    assert len(http.calls) == 0


# --- A client that goes away (test client: closing the response) ------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("provider", ["gemini", "huggingface"])
def test_disconnect_drains_a_billing_provider_for_its_exact_usage(
    api, user, use_keys, http, provider
):
    # Google and Hugging Face bill the whole generation even when the client goes away: the
    # rest of the stream is read (not sent) for its usage.
    use_keys(provider)
    texts = [f"t{i}" for i in range(20)]
    if provider == "gemini":
        http.post(wire.gemini_stream_url(), body=wire.gemini_stream(texts), content_type=SSE)
        expected = (51, 40, 91)
    else:
        http.post(wire.HF_CHAT, body=wire.hf_stream(texts, usage=(12, 20)), content_type=SSE)
        expected = (12, 20, 32)
    response = post_stream(api)
    first = next(iter(response.streaming_content))
    assert parse_events(first) == [("message", {"delta": "t0"})]
    hang_up_test_client(response)
    [entry] = LedgerEntry.objects.filter(user=user)
    assert (entry.provider, entry.status, entry.error_code) == (
        provider,
        "error",
        "client_disconnected",
    )
    assert (entry.prompt_tokens, entry.completion_tokens, entry.total_tokens) == expected
    assert entry.cost_source != "estimated"
    assert_summary_matches_ledger(user)


@pytest.mark.django_db
def test_disconnect_closes_openrouter_and_estimates_unreported_usage(api, user, use_keys, http):
    # OpenRouter stops generating (and billing) when the stream is closed; it had reported no
    # usage yet, so the tokens are estimated from the text and flagged.
    use_keys("openrouter")
    texts = ["12345678"] + ["more"] * 30
    http.post(
        wire.OPENROUTER_CHAT,
        body=wire.or_stream(texts, model="openai/gpt-4-turbo"),
        content_type=SSE,
    )
    response = post_stream(api, {"prompt": "x" * 40, "stream": True})
    assert parse_events(next(iter(response.streaming_content))) == [
        ("message", {"delta": "12345678"})
    ]
    hang_up_test_client(response)
    [entry] = LedgerEntry.objects.filter(user=user)
    assert (entry.status, entry.error_code, entry.cost_source) == (
        "error",
        "client_disconnected",
        "estimated",
    )
    assert (entry.prompt_tokens, entry.completion_tokens) == (10, 2)
    # openai/gpt-4-turbo is seeded at $10 / $30 per million tokens.
    assert entry.cost == Decimal("0.000160")
    assert_summary_matches_ledger(user)


@pytest.mark.django_db
def test_disconnect_before_reading_anything_is_recorded_at_once(token, user, use_keys, http):
    # A server may close the response before iterating it (the client went away while the
    # first delta was awaited), still holding its iterator: the router's stream is closed and
    # accounted by close() itself, not later by the garbage collector.
    use_keys("gemini")
    http.post(wire.gemini_stream_url(), body=wire.gemini_stream(["a", "b"]), content_type=SSE)
    request = APIRequestFactory().post(
        GENERATE,
        {"prompt": "hi", "stream": True},
        format="json",
        HTTP_AUTHORIZATION=f"Token {token}",
    )
    response = GenerateView.as_view()(request)  # as a WSGI server gets it
    assert response.streaming
    hang_up_test_client(response)
    [entry] = LedgerEntry.objects.filter(user=user)
    assert entry.error_code == "client_disconnected"
    assert entry.total_tokens == 55
    assert_summary_matches_ledger(user)


@pytest.mark.django_db
def test_disconnect_releases_the_budget_reservation(api, user, use_keys, http):
    use_keys("gemini")
    UsageBudget.objects.create(user=user, monthly_cost_limit=Decimal("5"), monthly_call_limit=10)
    http.post(wire.gemini_stream_url(), body=wire.gemini_stream(["a", "b"]), content_type=SSE)
    response = post_stream(api)
    summary = UsageSummary.objects.get(user=user)
    assert summary.reserved_calls == 1  # held while the stream is open
    next(iter(response.streaming_content))
    hang_up_test_client(response)
    assert LedgerEntry.objects.filter(user=user).count() == 1
    assert_summary_matches_ledger(user)  # including: nothing reserved any more


# --- A client that goes away over real HTTP (live server) -------------------------------------


def open_stream(live_server, token: str, body: dict, path: str = GENERATE):
    """POST over a raw socket; return (socket, response head, first SSE event)."""
    url = urlsplit(live_server.url)
    sock = socket.create_connection((url.hostname, url.port), timeout=10)
    payload = json.dumps(body).encode()
    sock.sendall(
        (
            f"POST {path} HTTP/1.1\r\nHost: {url.netloc}\r\nAuthorization: Token {token}\r\n"
            f"Content-Type: application/json\r\nAccept: text/event-stream\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n"
        ).encode()
        + payload
    )
    received = b""
    while True:
        head, sep, rest = received.partition(b"\r\n\r\n")
        if sep and b"\n\n" in rest:
            return sock, head.decode(), rest.split(b"\n\n", 1)[0] + b"\n\n"
        chunk = sock.recv(4096)
        assert chunk, f"the server closed the connection: {received!r}"
        received += chunk


def hang_up(sock: socket.socket) -> None:
    """Close at once with a reset (SO_LINGER 0): the server's next write fails."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def wait_for_entries(user, count: int = 1, timeout: float = 5.0) -> list[LedgerEntry]:
    deadline = time.monotonic() + timeout
    while True:
        # Settled rows: each attempt is in the ledger, in flight, from its start.
        entries = list(
            LedgerEntry.objects.filter(user=user).exclude(status="in_flight").order_by("id")
        )
        if len(entries) >= count or time.monotonic() > deadline:
            return entries
        time.sleep(0.05)


@pytest.mark.django_db(transaction=True)
def test_live_disconnect_drains_gemini_for_its_full_usage(live_server, user, token, use_keys, http):
    use_keys("gemini")
    gate = threading.Event()
    texts = [f"t{i} " for i in range(200)]
    final = wire.gemini_usage(51, 400)
    everything = wire.gemini_stream(texts, final_usage=final)
    first_event_end = everything.index(b"\r\n\r\n") + 4
    http.post(
        wire.gemini_stream_url(),
        body=GatedBody(everything[:first_event_end], everything[first_event_end:], gate),
        content_type=SSE,
    )
    sock, head, first = open_stream(live_server, token, {"prompt": "hi", "stream": True})
    assert head.startswith("HTTP/1.1 200")
    assert "content-type: text/event-stream" in head.lower()
    assert parse_events(first) == [("message", {"delta": "t0 "})]
    hang_up(sock)
    gate.set()  # the upstream goes on; the server's next writes fail
    entries = wait_for_entries(user)
    assert len(entries) == 1, "the abandoned stream was not recorded within 5 s"
    [entry] = entries
    assert (entry.provider, entry.status, entry.error_code) == (
        "gemini",
        "error",
        "client_disconnected",
    )
    assert (entry.prompt_tokens, entry.completion_tokens, entry.total_tokens) == (51, 400, 451)
    assert entry.cost > 0
    time.sleep(0.3)  # nothing else arrives later: one row for the one attempt
    assert LedgerEntry.objects.filter(user=user).count() == 1
    assert_summary_matches_ledger(user)
    assert len(http.calls) == 1


@pytest.mark.django_db(transaction=True)
def test_live_disconnect_closes_openrouter_and_estimates(live_server, user, token, use_keys, http):
    use_keys("openrouter")
    gate = threading.Event()
    texts = ["12345678"] + ["more"] * 200
    everything = wire.or_stream(texts, model="openai/gpt-4-turbo", processing=0)
    role_and_first = 2  # the role chunk (empty text) and the first delta
    cut = 0
    for _ in range(role_and_first):
        cut = everything.index(b"\n\n", cut) + 2
    http.post(
        wire.OPENROUTER_CHAT,
        body=GatedBody(everything[:cut], everything[cut:], gate),
        content_type=SSE,
    )
    sock, _, first = open_stream(live_server, token, {"prompt": "x" * 40, "stream": True})
    assert parse_events(first) == [("message", {"delta": "12345678"})]
    hang_up(sock)
    gate.set()
    entries = wait_for_entries(user)
    assert len(entries) == 1, "the abandoned stream was not recorded within 5 s"
    [entry] = entries
    assert (entry.provider, entry.error_code) == ("openrouter", "client_disconnected")
    assert entry.cost_source in ("estimated", "provider")
    if entry.cost_source == "estimated":
        # 40 prompt characters ≈ 10 tokens; the text read before closing ≈ 2 or more.
        assert entry.prompt_tokens == 10
        assert entry.completion_tokens >= 2
        assert entry.cost > 0
    time.sleep(0.3)
    assert LedgerEntry.objects.filter(user=user).count() == 1
    assert_summary_matches_ledger(user)


@pytest.mark.django_db(transaction=True)
def test_live_disconnect_from_chat_completions_stream(live_server, user, token, use_keys, http):
    use_keys("gemini")
    gate = threading.Event()
    texts = [f"t{i} " for i in range(200)]
    everything = wire.gemini_stream(texts, final_usage=wire.gemini_usage(7, 300))
    cut = everything.index(b"\r\n\r\n") + 4
    http.post(
        wire.gemini_stream_url(),
        body=GatedBody(everything[:cut], everything[cut:], gate),
        content_type=SSE,
    )
    body = {
        "model": "gemini/gemini-2.5-flash",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
    }
    sock, _, first = open_stream(live_server, token, body, path=CHAT)
    [(_, chunk)] = parse_events(first)
    assert chunk["choices"][0]["delta"]["role"] == "assistant"
    hang_up(sock)
    gate.set()
    entries = wait_for_entries(user)
    assert [(e.error_code, e.total_tokens) for e in entries] == [("client_disconnected", 307)]
    assert_summary_matches_ledger(user)


# --- v1/chat/completions with stream: true -----------------------------------------------------


def chat_body(**extra) -> dict:
    return {
        "model": "gemini/gemini-2.5-flash",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        **extra,
    }


@pytest.mark.django_db
@pytest.mark.parametrize("include_usage", [True, False])
def test_chat_completions_stream_chunks(user, token, use_keys, http, include_usage):
    use_keys("gemini")
    http.post(
        wire.gemini_stream_url(),
        body=wire.gemini_stream(["Hel", "lo", "!"], final_usage=wire.gemini_usage(5, 3)),
        content_type=SSE,
    )
    extra = {"stream_options": {"include_usage": True}} if include_usage else {}
    api = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    response = post_stream(api, chat_body(**extra), path=CHAT)
    assert response["Content-Type"] == SSE
    events = read_all(response)
    assert events[-1] == ("message", "[DONE]")
    chunks = [data for _, data in events[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "Hello!"
    with_choices = [c for c in chunks if c["choices"]]
    assert [c["choices"][0]["finish_reason"] for c in with_choices[:-1]] == [None] * 4
    assert with_choices[-1]["choices"][0]["finish_reason"] == "stop"
    assert with_choices[-1]["model"] == "gemini/gemini-2.5-flash"
    usage_chunks = [c for c in chunks if not c["choices"]]
    if include_usage:
        [usage_chunk] = usage_chunks
        assert usage_chunk is chunks[-1]
        assert usage_chunk["usage"] == {
            "prompt_tokens": 5,
            "completion_tokens": 3,
            "total_tokens": 8,
        }
    else:
        assert usage_chunks == []
        assert all("usage" not in c for c in chunks)
    [entry] = LedgerEntry.objects.filter(user=user)
    assert (entry.status, entry.total_tokens) == ("success", 8)
    assert_summary_matches_ledger(user)


@pytest.mark.django_db
def test_chat_completions_stream_errors_before_and_after_the_first_byte(
    user, token, use_keys, http
):
    use_keys("gemini")
    api = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    # Before: a JSON error with its status.
    assert_json_error(post_stream(api, chat_body(temperature=3), path=CHAT), 400, "invalid_request")
    bad = Client(HTTP_AUTHORIZATION="Bearer nope")
    assert_json_error(post_stream(bad, chat_body(), path=CHAT), 401, "authentication_failed")
    assert len(http.calls) == 0
    # After: an error object in the stream, and no [DONE].
    body = wire.sse([wire.gemini_chunk("partial"), wire.gemini_stream_error(503)], sep="\r\n\r\n")
    http.post(wire.gemini_stream_url(), body=body, content_type=SSE)
    events = read_all(post_stream(api, chat_body(), path=CHAT))
    assert ("message", "[DONE]") not in events
    assert events[-1][1]["error"]["code"] == "stream_interrupted"
    text = "".join(
        d["choices"][0]["delta"].get("content") or "" for _, d in events[:-1] if d.get("choices")
    )
    assert text == "partial"
    assert LedgerEntry.objects.filter(user=user, status="error").count() == 1


@pytest.mark.django_db
def test_chat_completions_stream_refuses_a_response_format(token, use_keys, http):
    # A streamed answer is not validated against a schema: asking for one is a 400, not JSON
    # that was never checked.
    use_keys("gemini")
    api = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    response_format = {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}
    response = post_stream(api, chat_body(response_format=response_format), path=CHAT)
    error = assert_json_error(response, 400, "invalid_request")
    assert "response_format" in error["fields"]
    assert len(http.calls) == 0
    http.post(wire.gemini_stream_url(), body=wire.gemini_stream(["a"]), content_type=SSE)
    plain = post_stream(api, chat_body(response_format={"type": "text"}), path=CHAT)
    assert read_all(plain)[-1] == ("message", "[DONE]")


@pytest.mark.django_db
def test_chat_completions_stream_disconnect_is_recorded(user, token, use_keys, http):
    use_keys("openrouter")
    http.post(
        wire.OPENROUTER_CHAT,
        body=wire.or_stream(["abcd"] * 20, model="openai/gpt-4o"),
        content_type=SSE,
    )
    api = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    response = post_stream(api, chat_body(model="openai/gpt-4o"), path=CHAT)
    stream = iter(response.streaming_content)
    next(stream)  # the role chunk
    next(stream)  # the first delta
    hang_up_test_client(response)
    [entry] = LedgerEntry.objects.filter(user=user)
    assert (entry.provider, entry.error_code) == ("openrouter", "client_disconnected")
    assert_summary_matches_ledger(user)
