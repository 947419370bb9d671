"""SPEC §5.1's time bounds on a provider call: the deadline, the connect and read timeouts, a
stream's first text and its silences.

What ``responses`` cannot produce (a server that goes quiet, or keeps a stream alive with
comments and no text) is played by a small HTTP server on the loopback interface, which sends
each piece of its script after a delay, as HTTP/1.1 chunks like the real upstreams do.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import responses

from llm_providers.exceptions import ProviderUnavailable, RateLimited, UpstreamTimeout
from llm_providers.providers import base as base_provider
from llm_providers.providers.custom import custom_provider_class
from llm_providers.results import ChatRequest, TextDelta
from tests.providers import wire

KEY = "loopback-key-0123456789SECRET"


def ask() -> ChatRequest:
    return ChatRequest.from_prompt("Hi", model="m")


def chunk(text: str | None = None, *, role: bool = False, finish: str | None = None) -> bytes:
    return wire.sse([wire.hf_chunk(text, role=role, finish_reason=finish, model="m")])


# --- The loopback server --------------------------------------------------------------------------


class Script:
    """What the server answers: status, headers, then (delay, bytes) pieces; a piece of
    ``None`` bytes is a silence of ``delay`` seconds that ends the response."""

    def __init__(self, status: int = 200, content_type: str = wire.SSE):
        self.status = status
        self.content_type = content_type
        self.header_delay = 0.0
        self.pieces: list[tuple[float, bytes | None]] = []


class LoopbackServer:
    def __init__(self):
        self.script = Script()
        self.stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                script = server.script
                if server.stop.wait(script.header_delay):
                    return
                self.send_response(script.status)
                self.send_header("Content-Type", script.content_type)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                self.wfile.flush()
                try:
                    for delay, piece in script.pieces:
                        if server.stop.wait(delay) or piece is None:
                            return
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                        self.wfile.flush()
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                except OSError:  # the client gave up: what these tests are about
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def close(self):
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=2)


@pytest.fixture
def server(http) -> Iterator[LoopbackServer]:
    http.add_passthru("http://127.0.0.1")
    loopback = LoopbackServer()
    yield loopback
    loopback.close()


@pytest.fixture
def bounds(settings):
    settings.LLM_CONNECT_TIMEOUT = 0.5
    settings.LLM_TIMEOUT = 0.3
    settings.LLM_FIRST_TOKEN_TIMEOUT = 0.4
    settings.LLM_STREAM_IDLE_TIMEOUT = 0.25
    return settings


@pytest.fixture
def provider(server, bounds):
    cls = custom_provider_class(name="loop", label="Loop", base_url=server.url, default_model="m")
    return cls(KEY)


def timed(fn):
    started = time.monotonic()
    try:
        fn()
    finally:
        timed.seconds = time.monotonic() - started


# --- Streams --------------------------------------------------------------------------------------


def test_headers_then_silence_fails_at_the_first_text_bound(server, provider):
    server.script.pieces = [(2.0, None)]
    with pytest.raises(UpstreamTimeout, match=r"Loop sent no text within 0.4s") as caught:
        timed(lambda: provider.stream(ask()).drain())
    assert 0.35 < timed.seconds < 0.9
    assert caught.value.retryable is False


def test_keepalive_comments_without_text_fail_at_the_first_text_bound(server, provider):
    # Each comment resets any socket timeout; the bound still holds from the request's sending.
    server.script.pieces = [(0.05, b": OPENROUTER PROCESSING\n\n")] * 40
    server.script.pieces[3:3] = [(0.01, chunk("", role=True)), (0.01, b"data: \n\n")]
    with pytest.raises(UpstreamTimeout, match=r"sent no text within 0\.4s") as caught:
        timed(lambda: provider.stream(ask()).drain())
    assert 0.35 < timed.seconds < 0.9
    assert caught.value.retryable is False
    assert caught.value.requests == 1


def test_slow_headers_count_against_the_first_text_bound(server, provider):
    server.script.header_delay = 2.0
    with pytest.raises(UpstreamTimeout) as caught:
        timed(lambda: provider.stream(ask()))
    assert timed.seconds < 0.9
    assert caught.value.retryable is False
    assert caught.value.requests == 1


def test_silence_after_text_fails_at_the_idle_bound(server, provider):
    server.script.pieces = [(0.0, chunk("Par")), (2.0, None)]
    stream = provider.stream(ask())
    assert next(stream) == TextDelta("Par")
    with pytest.raises(
        UpstreamTimeout, match=r"Loop stream was silent for more than 0.25s"
    ) as caught:
        timed(lambda: next(stream))
    assert 0.2 < timed.seconds < 0.7
    assert caught.value.partial_text == "Par"
    assert caught.value.retryable is False


def test_a_slow_but_steady_stream_outlives_both_bounds(server, provider):
    # Text every 0.15 s for 0.6 s: longer than the first-text and idle bounds, never silent.
    server.script.pieces = [(0.15, chunk(str(i))) for i in range(4)]
    server.script.pieces.append((0.0, chunk(finish="stop")))
    stream = provider.stream(ask())
    assert stream.drain().text == "0123"
    assert stream.state.finished


def test_a_stream_ending_without_done_completes_when_the_response_ends(server, provider):
    server.script.pieces = [(0.0, chunk("ok", finish="stop")), (0.0, chunk(finish=None))]
    stream = provider.stream(ask())
    assert stream.drain().text == "ok"
    assert stream.state.finished and stream.completion.finish_reason == "stop"


# --- Answers --------------------------------------------------------------------------------------


def test_a_silent_answer_fails_at_the_read_timeout_and_is_not_retried(server, provider):
    server.script.content_type = "application/json"
    server.script.pieces = [(2.0, None)]
    with pytest.raises(UpstreamTimeout, match=r"Loop did not answer within 0\.3s") as caught:
        timed(lambda: provider.complete(ask()))
    assert 0.25 < timed.seconds < 0.8
    assert caught.value.retryable is False
    assert caught.value.requests == 1


def test_a_refused_connection_is_retried(bounds, http, sleeps):
    # Nothing listens on the port of a server just closed: the connection is refused.
    loopback = LoopbackServer()
    url = loopback.url
    loopback.close()
    http.add_passthru("http://127.0.0.1")
    cls = custom_provider_class(name="loop", label="Loop", base_url=url, default_model="m")
    with pytest.raises(ProviderUnavailable) as caught:
        cls(KEY).complete(ask())
    assert not isinstance(caught.value, UpstreamTimeout)
    assert caught.value.requests == 4


# --- The deadline ---------------------------------------------------------------------------------


def test_the_deadline_caps_each_wait(server, provider, bounds):
    bounds.LLM_STREAM_IDLE_TIMEOUT = 5.0
    bounds.LLM_FIRST_TOKEN_TIMEOUT = 5.0
    server.script.pieces = [(0.0, chunk("Par")), (2.0, None)]
    cls = type(provider)
    stream = cls(KEY, deadline=time.monotonic() + 0.4).stream(ask())
    assert next(stream) == TextDelta("Par")
    with pytest.raises(UpstreamTimeout):
        timed(lambda: next(stream))
    assert timed.seconds < 0.6


URL = "https://plain.test/v1/chat/completions"
Plain = custom_provider_class(
    name="plain", label="Plain", base_url="https://plain.test/v1", default_model="m"
)


def test_no_time_left_is_an_upstream_timeout_without_a_request(http):
    with pytest.raises(UpstreamTimeout, match="deadline passed") as caught:
        Plain(KEY, deadline=time.monotonic() - 1).complete(ask())
    assert caught.value.retryable is False
    assert caught.value.requests == 0
    assert len(http.calls) == 0


def test_timeouts_passed_to_requests_are_capped_by_the_time_left(http, settings):
    settings.LLM_CONNECT_TIMEOUT = 5.0
    http.add(responses.POST, URL, body=wire.hf_completion("ok"))
    Plain(KEY, deadline=time.monotonic() + 2).complete(ask())
    connect, read = http.calls[0].request.req_kwargs["timeout"]
    assert 1.5 < connect <= 2 and 1.5 < read <= 2


def test_without_deadline_the_settings_are_the_timeouts(http, settings):
    settings.LLM_CONNECT_TIMEOUT = 3.0
    settings.LLM_FIRST_TOKEN_TIMEOUT = 7.0
    http.add(responses.POST, URL, body=wire.hf_stream(["ok"]), content_type=wire.SSE)
    Plain(KEY).stream(ask()).drain()
    assert http.calls[0].request.req_kwargs["timeout"] == (3.0, 7.0)


def test_retries_stop_before_a_wait_that_would_pass_the_deadline(http, clock, sleeps, monkeypatch):
    monkeypatch.setattr(base_provider, "monotonic", clock.monotonic)
    for _ in range(2):
        http.add(
            responses.POST, URL, status=429, headers={"Retry-After": "3"}, json={"error": "slow"}
        )
    http.add(responses.POST, URL, body=wire.hf_completion("ok"))
    with pytest.raises(RateLimited) as caught:
        Plain(KEY, deadline=clock.now + 5).complete(ask())
    assert sleeps == [3.0]  # the second wait would end at +6, past the deadline
    assert len(http.calls) == 2
    assert caught.value.retry_after == 3.0


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_survives_into_the_final_error(http, sleeps, status):
    for _ in range(4):
        http.add(
            responses.POST, URL, status=status, headers={"Retry-After": "2"}, json={"error": "busy"}
        )
    with pytest.raises((RateLimited, ProviderUnavailable)) as caught:
        Plain(KEY).complete(ask())
    assert len(http.calls) == 4
    assert sleeps == [2.0, 2.0, 2.0]
    assert caught.value.retry_after == 2.0
    assert caught.value.as_dict()["code"] in ("rate_limited", "provider_error")


def test_the_pooled_connection_gets_its_timeout_back_after_a_stream(server, provider):
    # The socket goes back to the shared pool; its next request must not inherit a timeout
    # shortened to what was left of the first-text bound.
    server.script.pieces = [(0.05, b": waiting\n\n"), (0.0, chunk("ok", finish="stop"))]
    stream = provider.stream(ask())
    socket = stream._socket
    assert socket is not None
    assert stream.drain().text == "ok"
    assert socket.gettimeout() == 0.4
    assert provider.stream(ask()).drain().text == "ok"
