"""The HTTP transport under the providers: one pooled session per process, shared by all users,
so it keeps no cookies and ignores the environment's proxies; requests' own redirects and
errors."""

import pytest
import responses

from llm_providers.exceptions import ProviderUnavailable
from llm_providers.providers import http as transport
from llm_providers.providers.gemini import GeminiProvider
from llm_providers.providers.openrouter import OpenRouterProvider
from llm_providers.results import ChatRequest
from tests.conftest import FAKE_KEYS, GEMINI_URL
from tests.providers import wire


def ask(model="openai/gpt-4o-mini"):
    return ChatRequest.from_prompt("Hi", model=model)


def test_one_session_per_process():
    assert transport.http_session() is transport.http_session()


def test_the_pool_holds_as_many_connections_as_the_setting_says(settings, monkeypatch):
    monkeypatch.setattr(transport, "_session", None)  # built anew, then the old one is back
    settings.LLM_HTTP_POOL_SIZE = 7
    for url in ("https://gemini.test/v1beta", "http://127.0.0.1:8000/v1"):
        adapter = transport.http_session().get_adapter(url)
        assert adapter.poolmanager.connection_pool_kw["maxsize"] == 7
        assert adapter.max_retries.total == 0  # Provider.send decides on retries


def test_no_cookie_is_kept_between_calls(http, openrouter):
    http.add(
        responses.POST,
        wire.OPENROUTER_CHAT,
        body=wire.or_completion(),
        headers={"Set-Cookie": "session=alice; Path=/"},
    )
    http.add(responses.POST, wire.OPENROUTER_CHAT, body=wire.or_completion())
    openrouter.complete(ask())
    openrouter.complete(ask())
    assert "Cookie" not in http.calls[1].request.headers
    assert not transport.http_session().cookies


def test_the_environment_proxies_are_not_used(http, openrouter, monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("ALL_PROXY", "http://proxy.invalid:3128")
    http.add(responses.POST, wire.OPENROUTER_CHAT, body=wire.or_completion())
    openrouter.complete(ask())
    assert http.calls[0].request.req_kwargs["proxies"] == {}


@pytest.mark.parametrize(
    ("name", "provider", "setting", "error"),
    [
        # ":generateContent" makes the whole URL look like one of another scheme: no adapter.
        ("gemini", GeminiProvider, "GEMINI_BASE_URL", "InvalidSchema"),
        ("openrouter", OpenRouterProvider, "OPENROUTER_BASE_URL", "MissingSchema"),
    ],
)
def test_a_base_url_without_scheme_is_a_provider_failure(
    http, settings, name, provider, setting, error
):
    setattr(settings, setting, "upstream.test/v1")
    client = provider(FAKE_KEYS[name])
    model = "gemini-2.5-flash" if name == "gemini" else "openai/gpt-4o-mini"
    with pytest.raises(ProviderUnavailable, match=f"Could not reach {client.label}: {error}"):
        client.complete(ask(model))
    assert len(http.calls) == 0


@pytest.mark.parametrize("status", [307, 308])
def test_a_provider_follows_a_redirect(http, gemini, status):
    moved = f"{GEMINI_URL}/moved"
    http.add(responses.POST, wire.gemini_generate_url(), status=status, headers={"Location": moved})
    http.add(responses.POST, moved, body=wire.gemini_response("moved"))
    completion = gemini.complete(ask("gemini-2.5-flash"))
    assert (completion.text, completion.requests) == ("moved", 1)
    # The method, body and key header are kept on the same host.
    assert http.calls[1].request.method == "POST"
    assert http.calls[1].request.body == http.calls[0].request.body
    assert http.calls[1].request.headers["x-goog-api-key"] == FAKE_KEYS["gemini"]


def test_a_changed_retry_setting_applies_to_the_next_call(http, openrouter, settings):
    http.add(responses.POST, wire.OPENROUTER_CHAT, status=503, body=wire.or_error(503, "busy"))
    http.add(responses.POST, wire.OPENROUTER_CHAT, body=wire.or_completion())
    assert openrouter.complete(ask()).requests == 2
    settings.LLM_MAX_RETRIES = 0
    http.add(responses.POST, wire.OPENROUTER_CHAT, status=503, body=wire.or_error(503, "busy"))
    with pytest.raises(ProviderUnavailable) as caught:
        openrouter.complete(ask())
    assert caught.value.requests == 1
