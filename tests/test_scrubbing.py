"""Keys masked in whatever leaves the server: a fragment of 8 or more characters of a key, echoed
by an upstream whole, cut short or partly masked, never reaches an error message, the ledger or
a log line."""

import io
import json
import logging

import pytest
import responses

from llm_providers.exceptions import InvalidRequest, LLMError, ProviderAuthError
from llm_providers.log import SecretsFilter
from llm_providers.main_text_generation import llm_generate
from llm_providers.models import APIKey, LedgerEntry
from llm_providers.providers.gemini import GeminiProvider
from llm_providers.providers.openrouter import OpenRouterProvider
from llm_providers.results import ChatRequest
from llm_providers.scrubbing import KEY_FRAGMENT_LENGTH, Scrubber, without_secrets
from tests.conftest import FAKE_KEYS, GEMINI_URL, OPENROUTER_URL
from tests.providers import wire

OR_KEY = FAKE_KEYS["openrouter"]  # sk-or-v1-fake00p3nr0ut3r0k3y000000000wxyz
GEMINI_KEY = FAKE_KEYS["gemini"]
OPENROUTER_CHAT = f"{OPENROUTER_URL}/chat/completions"
GEMINI_GENERATE = f"{GEMINI_URL}/models/gemini-2.5-flash:generateContent"


def fragments(secret: str, text: str) -> list[str]:
    """Every piece of ``secret`` of KEY_FRAGMENT_LENGTH characters that ``text`` contains."""
    n = KEY_FRAGMENT_LENGTH
    return [secret[i : i + n] for i in range(len(secret) - n + 1) if secret[i : i + n] in text]


# --- Scrubber -------------------------------------------------------------------------------------


def test_the_whole_key_and_the_key_cut_short_are_masked():
    scrub = Scrubber([OR_KEY])
    assert scrub(f"bad key {OR_KEY}.") == "bad key [key]."
    assert scrub(f"bad key {OR_KEY[:-1]}.") == "bad key [key]."
    assert scrub(f"bad key {OR_KEY[1:]}") == "bad key [key]"
    assert scrub(f"{OR_KEY} and {OR_KEY[5:20]}") == "[key] and [key]"


def test_a_masked_echo_keeps_only_the_last_four():
    # The upstream's own mask: its prefix (public sk-or-v1- and 3 secret characters) is 12
    # characters of the key, masked; the last four are what the admin's mask shows anyway.
    assert Scrubber([OR_KEY])("Invalid key sk-or-v1-fak****wxyz") == "Invalid key [key]****wxyz"


def test_pieces_shorter_than_eight_are_left():
    scrub = Scrubber([OR_KEY])
    assert scrub("wxyz fake0op sk-or-v") == "wxyz fake0op sk-or-v"
    assert scrub(OR_KEY[10:17] + " " + OR_KEY[17:24]) == OR_KEY[10:17] + " " + OR_KEY[17:24]


def test_fragments_that_overlap_without_continuing_each_other_are_one_run():
    # "FGHIJKLM" starts inside "ABCDEFGH" but is another part of the key: none of the windows
    # between them is, and the whole text must still go.
    key = "ABCDEFGHxyzFGHIJKLMNOP"
    assert Scrubber([key])("<ABCDEFGHIJKLM>") == "<[key]>"


def test_several_secrets_and_short_ones():
    scrub = Scrubber([OR_KEY, GEMINI_KEY, "short", ""])
    text = f"a {OR_KEY[3:30]} b {GEMINI_KEY[:-1]} c short d"
    assert scrub(text) == "a [key] b [key] c [key] d"
    assert not Scrubber(["", ""])
    assert Scrubber([])("anything") == "anything"


def test_non_ascii_text_around_a_fragment():
    assert without_secrets(f"clé « {OR_KEY[2:-2]} » ✓", [OR_KEY]) == "clé « [key] » ✓"


# --- Provider errors ------------------------------------------------------------------------------


def ask(model="openai/gpt-4o"):
    return ChatRequest.from_prompt("Hi", model=model)


@responses.activate
def test_an_upstream_400_echoing_the_key_minus_its_last_character():
    responses.post(
        OPENROUTER_CHAT,
        status=400,
        body=wire.or_error(400, f"Malformed header: Bearer {OR_KEY[:-1]}"),
    )
    with pytest.raises(InvalidRequest) as caught:
        OpenRouterProvider(OR_KEY).complete(ask())
    message = caught.value.message
    assert message == "OpenRouter answered HTTP 400: Malformed header: Bearer [key]"
    assert fragments(OR_KEY, message) == []
    assert fragments(OR_KEY, str(caught.value)) == []


@responses.activate
def test_a_401_echoing_prefix_and_last_four():
    responses.post(
        OPENROUTER_CHAT, status=401, body=wire.or_error(401, "Invalid key sk-or-v1-fak****wxyz")
    )
    with pytest.raises(ProviderAuthError) as caught:
        OpenRouterProvider(OR_KEY).complete(ask())
    assert "(HTTP 401: Invalid key [key]****wxyz)" in caught.value.message
    assert fragments(OR_KEY, caught.value.message) == []


@responses.activate
def test_a_fragment_inside_a_json_error_body():
    # Gemini's details carry the request's fields; OpenRouter's metadata.raw the upstream's body.
    raw = json.dumps({"error": {"message": f"key={OR_KEY[4:-3]} refused", "type": "auth"}})
    responses.post(
        OPENROUTER_CHAT,
        status=400,
        body=wire.or_error(400, "Provider returned error", {"raw": raw, "provider_name": "X"}),
    )
    with pytest.raises(LLMError) as caught:
        OpenRouterProvider(OR_KEY).complete(ask())
    assert "[key]" in caught.value.message
    assert fragments(OR_KEY, caught.value.message) == []


@responses.activate
def test_a_fragment_in_a_gemini_error_and_a_non_json_body():
    body = {
        "error": {
            "code": 400,
            "message": f"API key not valid: {GEMINI_KEY[:20]}… Please pass a valid API key.",
            "status": "INVALID_ARGUMENT",
        }
    }
    responses.post(GEMINI_GENERATE, status=400, json=body)
    with pytest.raises(LLMError) as caught:
        GeminiProvider(GEMINI_KEY).complete(ask("gemini-2.5-flash"))
    assert "API key not valid: [key]…" in caught.value.message
    assert fragments(GEMINI_KEY, caught.value.message) == []

    responses.post(OPENROUTER_CHAT, status=400, body=f"<html>bad key {OR_KEY[:-2]}</html>")
    with pytest.raises(LLMError) as caught:
        OpenRouterProvider(OR_KEY).complete(ask())
    assert fragments(OR_KEY, caught.value.message) == []


@responses.activate
def test_a_fragment_in_a_stream_error():
    body = wire.sse(
        [wire.or_chunk("Hel", model="openai/gpt-4o"), wire.or_stream_error(401, OR_KEY[:-1])]
    )
    responses.post(OPENROUTER_CHAT, body=body, content_type="text/event-stream")
    stream = OpenRouterProvider(OR_KEY).stream(ask())
    with pytest.raises(LLMError) as caught:
        list(stream)
    assert "[key]" in caught.value.message
    assert fragments(OR_KEY, caught.value.message) == []
    assert caught.value.partial_text == "Hel"


# --- The ledger -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_ledger_row_of_a_failed_call_holds_no_fragment(use_keys, http):
    use_keys("openrouter")
    http.post(
        OPENROUTER_CHAT, status=400, body=wire.or_error(400, f"Bad header {OR_KEY[:-1]} here")
    )
    with pytest.raises(InvalidRequest) as caught:
        llm_generate("hi", provider="openrouter")
    [entry] = LedgerEntry.objects.all()
    assert entry.status == "error"
    assert "Bad header [key] here" in entry.error_message
    assert fragments(OR_KEY, entry.error_message) == []
    assert fragments(OR_KEY, caught.value.message) == []


# --- Logs -----------------------------------------------------------------------------------------


@pytest.fixture
def log_output():
    """What the ``llm_providers`` logger writes, through a handler with the filter (as LOGGING
    installs it)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(SecretsFilter())
    logger = logging.getLogger("llm_providers")
    logger.addHandler(handler)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)


@pytest.mark.django_db
def test_a_log_record_of_a_child_logger_is_masked(use_keys, log_output):
    use_keys("openrouter", "gemini")
    logger = logging.getLogger("llm_providers.providers.base")
    logger.warning("upstream said %s and %r", OR_KEY[:-1], {"k": GEMINI_KEY[3:]})
    try:
        raise ValueError(f"bad key {OR_KEY[2:]}")
    except ValueError:
        logger.exception("failed with %s", OR_KEY[:12] + "****wxyz")
    written = log_output.getvalue()
    assert "upstream said [key] and {'k': '[key]'}" in written
    assert "failed with [key]****wxyz" in written
    assert "ValueError: bad key [key]" in written  # the traceback too
    assert fragments(OR_KEY, written) == []
    assert fragments(GEMINI_KEY, written) == []


@pytest.mark.django_db
def test_a_stored_key_is_masked_in_logs_and_a_new_one_at_once(log_output):
    row = APIKey(provider="huggingface", label="prod")
    row.set_secret("hf_databasetoken00000000000000001234")
    row.save()
    logger = logging.getLogger("llm_providers.router")
    logger.info("echo hf_databasetoken0000")
    row.set_secret("hf_rotatedsecret77777777777777775678")
    row.save()
    logger.info("echo rotatedsecret7777")
    written = log_output.getvalue()
    assert written.splitlines()[-2:] == ["echo [key]", "echo [key]"]


def test_the_filter_never_fails_nor_drops_a_record():
    # No database here: the keys cannot be read, and the record passes as it is.
    record = logging.LogRecord("llm_providers", logging.INFO, __file__, 1, "%s %s", ("one",), None)
    assert SecretsFilter().filter(record) is True


def test_without_the_database_the_configured_keys_are_still_masked(settings, log_output):
    # No database access in this test: the stored keys cannot be read, the settings' can.
    settings.OPENROUTER_API_KEY = OR_KEY
    logging.getLogger("llm_providers.router").warning("echo %s", OR_KEY[4:20])
    assert log_output.getvalue().splitlines()[-1] == "echo [key]"
