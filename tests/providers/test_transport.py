"""The HTTP layer under the providers: the request they send and how it is sent.

``prepare_request`` and ``transmit`` stand in for ``PreparedRequest.prepare`` and
``Session.send`` (less their per-request work that cannot change the answer), and
``UpstreamAdapter`` for requests' ``HTTPAdapter``. These tests hold them to requests' own
result: the same request (to the byte, on a real socket), the same adapter arguments, the same
redirects, the same pools.
"""

import re
import socketserver
import threading

import pytest
import requests
import responses
from requests.adapters import HTTPAdapter

from llm_providers.exceptions import LLMError, ProviderUnavailable
from llm_providers.providers.base import (
    HTTPCall,
    UpstreamAdapter,
    http_session,
    prepare_request,
    transmit,
)
from llm_providers.providers.gemini import GeminiProvider
from llm_providers.providers.huggingface import HuggingFaceProvider
from llm_providers.providers.openrouter import OpenRouterProvider
from llm_providers.results import ChatRequest, Message
from tests.conftest import FAKE_KEYS, GEMINI_URL
from tests.providers import wire

PROVIDERS = {
    "gemini": GeminiProvider,
    "openrouter": OpenRouterProvider,
    "huggingface": HuggingFaceProvider,
}
MODELS = {
    "gemini": "gemini-2.5-flash",
    "openrouter": "openai/gpt-4o-mini",
    "huggingface": "meta-llama/Llama-3.1-8B-Instruct",
}
SCHEMA = {"title": "Answer", "type": "object", "properties": {"a": {"type": "string"}}}


def requests_of(name: str) -> dict[str, ChatRequest]:
    model = MODELS[name]
    return {
        "plain": ChatRequest.from_prompt("Hi", model=model),
        "full": ChatRequest(
            messages=(
                Message("user", 'Héllo ✓ \u2028 "quoted" </script>'),
                Message("assistant", "Hi!"),
                Message("user", "Again"),
            ),
            model=model,
            system_prompt="Be brief.",
            temperature=0.7,
            max_tokens=2048,
            json_schema=SCHEMA,
        ),
    }


def calls_of(name: str) -> list[tuple[str, HTTPCall]]:
    """Every kind of call the provider makes: completion, stream, structured, key test."""
    provider = PROVIDERS[name](FAKE_KEYS[name])
    calls = []
    for label, request in requests_of(name).items():
        calls.append((f"{label}-complete", provider.build_call(request, stream=False)))
        calls.append((f"{label}-stream", provider.build_call(request, stream=True)))
    calls.append(("connection-test", provider.connection_test_call()))
    return calls


def reference(session: requests.Session, call: HTTPCall) -> requests.PreparedRequest:
    """The request as ``PreparedRequest.prepare`` builds it (what the providers sent before)."""
    prepared = requests.PreparedRequest()
    prepared.prepare(
        method=call.method,
        url=call.url,
        headers={**session.headers, **call.headers},
        json=call.json,
        params=call.params,
    )
    return prepared


def as_sent(prepared: requests.PreparedRequest) -> tuple:
    """Everything of a prepared request that reaches the wire or the adapter."""
    return (
        prepared.method,
        prepared.url,
        list(prepared.headers.items()),  # names as written, in order
        prepared.body,
        prepared.hooks,
        prepared._body_position,
        list(prepared._cookies or []),
    )


@pytest.fixture
def with_attribution(settings):
    settings.OPENROUTER_HTTP_REFERER = "https://alwrity.example"
    settings.OPENROUTER_X_TITLE = "ALwrity"


# --- The prepared request -------------------------------------------------------------------------


@pytest.mark.parametrize("name", PROVIDERS)
def test_prepared_request_is_what_prepare_builds(name, with_attribution):
    session = http_session()
    for label, call in calls_of(name):
        assert as_sent(prepare_request(session, call)) == as_sent(reference(session, call)), label


def test_every_header_kind_is_covered(with_attribution):
    # The calls above carry each provider's auth and extra headers and the stream Accept.
    names = {k.lower() for n in PROVIDERS for _, c in calls_of(n) for k in c.headers}
    assert {"x-goog-api-key", "authorization", "accept", "http-referer", "x-title"} <= names


@pytest.mark.parametrize(
    "params",
    [
        {"alt": "sse"},
        {"pageSize": "1", "q": "a b&c=d/é"},
        {"n": 1},
        {"n": True},
        {"n": 1.0},
        {"n": ["a", "b"]},
        {},
        None,
    ],
)
def test_query_parameters_are_encoded_as_prepare_does(params):
    session = http_session()
    call = HTTPCall("GET", f"{GEMINI_URL}/models?x=1", {}, params=params)
    assert as_sent(prepare_request(session, call)) == as_sent(reference(session, call))


def test_equal_parameter_values_of_other_types_are_not_confused():
    session = http_session()
    urls = [
        prepare_request(session, HTTPCall("GET", f"{GEMINI_URL}/models", params={"n": v})).url
        for v in ("1", 1, True, 1.0)
    ]
    assert urls == [f"{GEMINI_URL}/models?n={v}" for v in ("1", "1", "True", "1.0")]


@pytest.mark.parametrize(
    "url",
    [
        "https://user:secret@gemini.test/v1beta/models",
        "https://user@gemini.test/v1beta/models",
        "https://GEMINI.test:443/v1beta/models/../models/%7Efoo bar?a=b#frag",
        "https://bücher.test/v1",
        "http://gemini.test",
        "  https://gemini.test/v1",
    ],
)
def test_unusual_urls_are_prepared_as_prepare_does(url):
    # Credentials in the URL become Basic auth (over the provider's own Authorization).
    session = http_session()
    call = HTTPCall("POST", url, {"Authorization": "Bearer k"}, {"a": 1})
    assert as_sent(prepare_request(session, call)) == as_sent(reference(session, call))


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("gemini.test/v1beta", requests.exceptions.MissingSchema),
        ("https://", requests.exceptions.InvalidURL),
        ("https://*.test/v1", requests.exceptions.InvalidURL),
        ("https://gemini.test:99999/v1", requests.exceptions.InvalidURL),
    ],
)
def test_an_invalid_url_fails_as_prepare_does_every_time(url, error):
    session = http_session()
    call = HTTPCall("POST", url, {}, {"a": 1})
    with pytest.raises(error):
        reference(session, call)
    for _ in range(2):  # failures are not cached as answers
        with pytest.raises(error):
            prepare_request(session, call)


@pytest.mark.parametrize(
    ("name", "setting", "error"),
    [
        # ":generateContent" makes the whole URL look like one of another scheme: no adapter.
        ("gemini", "GEMINI_BASE_URL", "InvalidSchema"),
        ("openrouter", "OPENROUTER_BASE_URL", "MissingSchema"),
    ],
)
def test_a_base_url_without_scheme_is_a_provider_failure(http, settings, name, setting, error):
    setattr(settings, setting, "upstream.test/v1")
    provider = PROVIDERS[name](FAKE_KEYS[name])
    with pytest.raises(ProviderUnavailable, match=f"Could not reach {provider.label}: {error}"):
        provider.complete(requests_of(name)["plain"])
    assert len(http.calls) == 0


@pytest.mark.parametrize(
    ("headers", "payload", "error"),
    [
        ({"x-goog-api-key": "bad\nkey"}, {"a": 1}, requests.exceptions.InvalidHeader),
        ({}, {"a": float("nan")}, requests.exceptions.InvalidJSONError),
    ],
)
def test_a_bad_header_or_body_fails_as_prepare_does(headers, payload, error):
    session = http_session()
    call = HTTPCall("POST", f"{GEMINI_URL}/models", headers, payload)
    with pytest.raises(error):
        reference(session, call)
    with pytest.raises(error):
        prepare_request(session, call)


# --- On the wire ----------------------------------------------------------------------------------


class _Capture(socketserver.ThreadingTCPServer):
    """An HTTP/1.1 server that keeps the bytes of each request and answers ``{}``."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _CaptureHandler)
        self.seen: list[bytes] = []
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


class _CaptureHandler(socketserver.BaseRequestHandler):
    def handle(self):
        buffer = b""
        while True:  # keep-alive: one request after another on the connection
            while b"\r\n\r\n" not in buffer:
                chunk = self.request.recv(65536)
                if not chunk:
                    return
                buffer += chunk
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            match = re.search(rb"(?im)^content-length:\s*(\d+)\s*$", head)
            length = int(match.group(1)) if match else 0
            while len(buffer) < length:
                buffer += self.request.recv(65536)
            body, buffer = buffer[:length], buffer[length:]
            self.server.seen.append(head + b"\r\n\r\n" + body)
            self.request.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
            )


@pytest.fixture
def capture(http, settings):
    server = _Capture()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    http.add_passthru(server.url)
    settings.GEMINI_BASE_URL = f"{server.url}/v1beta"
    settings.OPENROUTER_BASE_URL = f"{server.url}/api/v1"
    settings.HF_BASE_URL = f"{server.url}/v1"
    yield server
    server.shutdown()
    server.server_close()


def plain_session() -> requests.Session:
    """A session set up as ``http_session`` is, with requests' own adapter."""
    session = requests.Session()
    session.mount("http://", HTTPAdapter(max_retries=0))
    session.trust_env = False
    return session


@pytest.mark.parametrize("name", PROVIDERS)
def test_the_request_on_the_wire_is_byte_identical(name, capture, with_attribution):
    session, before = http_session(), plain_session()
    for label, call in calls_of(name):
        stream = label.endswith("stream")
        old = before.send(reference(session, call), timeout=5.0, stream=stream)
        new = transmit(session, prepare_request(session, call), timeout=5.0, stream=stream)
        assert (old.status_code, old.content) == (new.status_code, new.content) == (200, b"{}")
        sent_before, sent_now = capture.seen[-2:]
        assert sent_now == sent_before, label
        assert sent_now.startswith(f"{call.method} /".encode()), label


def test_a_provider_call_sends_those_bytes(capture):
    provider = GeminiProvider(FAKE_KEYS["gemini"])
    call = provider.build_call(requests_of("gemini")["full"], stream=False)
    plain_session().send(reference(http_session(), call), timeout=5.0)
    with pytest.raises(LLMError):  # "{}" is no answer; what counts here is what was sent
        provider.complete(requests_of("gemini")["full"])
    assert capture.seen[1] == capture.seen[0]


def test_the_adapter_gets_what_session_send_gives_it(http, settings):
    settings.LLM_TIMEOUT = 42.5
    http.add(responses.POST, wire.OPENROUTER_CHAT, body=wire.or_completion())
    session = http_session()
    provider = OpenRouterProvider(FAKE_KEYS["openrouter"])
    call = provider.build_call(requests_of("openrouter")["plain"], stream=False)
    before = session.send(reference(session, call), timeout=provider.timeout, stream=False)
    provider.complete(requests_of("openrouter")["plain"])
    sent_before, sent_now = (c.request for c in http.calls)
    assert sent_now.req_kwargs == sent_before.req_kwargs
    assert sent_now.req_kwargs == {
        "timeout": 42.5,
        "stream": False,
        "verify": True,
        "cert": None,
        "proxies": {},
    }
    assert as_sent(sent_now) == as_sent(sent_before)
    assert before.content == http.calls[1].response.content


def test_a_redirect_is_followed_as_session_send_does(http):
    moved = f"{GEMINI_URL}/moved"
    http.add(responses.POST, wire.gemini_generate_url(), status=307, headers={"Location": moved})
    http.add(responses.POST, moved, body=wire.gemini_response())
    session = http_session()
    call = GeminiProvider(FAKE_KEYS["gemini"]).build_call(
        requests_of("gemini")["plain"], stream=False
    )
    answers = [
        session.send(reference(session, call), timeout=5.0, stream=False),
        transmit(session, prepare_request(session, call), timeout=5.0, stream=False),
    ]
    for response in answers:
        assert (response.status_code, response.url) == (200, moved)
        assert [(r.status_code, r.url) for r in response.history] == [
            (307, wire.gemini_generate_url())
        ]
        assert response.content == wire.gemini_response().encode()
    # The second request of each: POST kept (307), same headers and body.
    assert as_sent(http.calls[3].request) == as_sent(http.calls[1].request)


def test_a_provider_follows_a_redirect(http, gemini):
    moved = f"{GEMINI_URL}/moved"
    http.add(responses.POST, wire.gemini_generate_url(), status=308, headers={"Location": moved})
    http.add(responses.POST, moved, body=wire.gemini_response("moved"))
    completion = gemini.complete(requests_of("gemini")["plain"])
    assert (completion.text, completion.requests) == ("moved", 1)


# --- The adapter ----------------------------------------------------------------------------------


ADAPTER_URLS = [
    "https://gemini.test/v1beta/models/gemini-2.5-flash:generateContent",
    "https://gemini.test/v1beta/models/x:streamGenerateContent?alt=sse",
    "https://GEMINI.test:8443/v1",
    "http://127.0.0.1:8000/v1/chat/completions",
    "http://[::1]:9/a//b?c=d",
]


def _prepared(url: str) -> requests.PreparedRequest:
    prepared = requests.PreparedRequest()
    prepared.prepare(method="POST", url=url, json={})
    return prepared


@pytest.mark.parametrize("url", ADAPTER_URLS)
def test_the_adapter_finds_the_pool_and_target_requests_would(url):
    adapter = UpstreamAdapter(max_retries=0)
    request = _prepared(url)
    for _ in range(2):  # the first answer is worked out, the second remembered
        assert adapter.request_url(request, {}) == HTTPAdapter.request_url(adapter, request, {})
        pool = adapter.get_connection_with_tls_context(request, True, {}, None)
        assert pool is HTTPAdapter.get_connection_with_tls_context(adapter, request, True, {}, None)


@pytest.mark.parametrize(
    ("verify", "cert", "proxies"),
    [
        (False, None, {}),
        ("/nonexistent/ca.pem", None, {}),
        (True, "/nonexistent/client.pem", {}),
        (True, None, {"https": "http://proxy.test:3128", "http": "http://proxy.test:3128"}),
    ],
)
def test_other_tls_or_proxy_settings_are_requests_own(verify, cert, proxies):
    adapter, plain = UpstreamAdapter(max_retries=0), HTTPAdapter(max_retries=0)
    for url in [*ADAPTER_URLS[:2], "http://127.0.0.1:8000/v1/chat/completions"]:
        request = _prepared(url)
        assert adapter.request_url(request, proxies) == plain.request_url(request, proxies)
        ours = adapter.get_connection_with_tls_context(request, verify, proxies, cert)
        theirs = plain.get_connection_with_tls_context(request, verify, proxies, cert)
        assert type(ours) is type(theirs)
        assert (ours.scheme, ours.host, ours.port) == (theirs.scheme, theirs.host, theirs.port)
        for attribute in ("cert_reqs", "ca_certs", "cert_file", "proxy"):
            assert getattr(ours, attribute, None) == getattr(theirs, attribute, None)


def test_the_session_uses_the_adapter():
    session = http_session()
    assert type(session.get_adapter("https://gemini.test/v1")) is UpstreamAdapter
    assert type(session.get_adapter("http://127.0.0.1:1/v1")) is UpstreamAdapter


# --- Settings -------------------------------------------------------------------------------------


def test_a_changed_retry_setting_applies_to_the_next_call(http, openrouter, settings):
    http.add(responses.POST, wire.OPENROUTER_CHAT, status=503, body=wire.or_error(503, "busy"))
    http.add(responses.POST, wire.OPENROUTER_CHAT, body=wire.or_completion())
    assert openrouter.complete(requests_of("openrouter")["plain"]).requests == 2
    settings.LLM_MAX_RETRIES = 0
    http.add(responses.POST, wire.OPENROUTER_CHAT, status=503, body=wire.or_error(503, "busy"))
    with pytest.raises(ProviderUnavailable) as caught:
        openrouter.complete(requests_of("openrouter")["plain"])
    assert caught.value.requests == 1
