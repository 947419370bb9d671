"""Chains (SPEC §5.1): the request's own, the configured one, checked before any call; what
moves along them; circuits; the deadline; broken streams continued."""

import json
from decimal import Decimal

import pytest

from llm_providers import circuits
from llm_providers.exceptions import (
    AllProvidersFailed,
    ContentPolicyViolation,
    InvalidRequest,
    StreamInterrupted,
)
from llm_providers.main_text_generation import llm_generate, llm_stream
from llm_providers.models import LedgerEntry, UsageSummary
from llm_providers.results import Generation, TextDelta
from tests.test_router import (
    GEMINI_GENERATE,
    GEMINI_STREAM,
    HF_CHAT,
    OPENROUTER_CHAT,
    gemini_chunk,
    gemini_error,
    gemini_ok,
    openai_ok,
    openrouter_stream,
    sse,
)

pytestmark = pytest.mark.django_db


def bodies(http, url):
    return [json.loads(c.request.body) for c in http.calls if c.request.url.split("?")[0] == url]


def called(http):
    return [c.request.url.split("?")[0] for c in http.calls]


# --- Building the chain ----------------------------------------------------------------------


def test_the_requests_own_chain_is_followed_in_order(use_keys, http):
    use_keys("gemini", "openrouter", "huggingface")
    http.post(GEMINI_GENERATE, status=503, json=gemini_error(503, "overloaded", "UNAVAILABLE"))
    http.post(HF_CHAT, status=503, json={"error": "busy"})
    http.post(OPENROUTER_CHAT, json=openai_ok("from or", "anthropic/claude-3-haiku"))
    out = llm_generate(
        "hi", fallback_models=["hf/meta-llama/Llama-3.1-8B-Instruct", "anthropic/claude-3-haiku"]
    )
    assert (out.provider, out.text) == ("openrouter", "from or")
    assert bodies(http, OPENROUTER_CHAT)[0]["model"] == "anthropic/claude-3-haiku"
    order = [u for i, u in enumerate(called(http)) if u not in called(http)[:i]]
    assert order == [GEMINI_GENERATE, HF_CHAT, OPENROUTER_CHAT]


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ("hf/llama-without-org", "Model not found"),  # a malformed Hugging Face id
        ("openrouter/gpt-4o", "Model not found"),  # OpenRouter ids are vendor/name
        ("gemini/gemini-2.5-pro", "GEMINI_API_KEY not found"),  # no key for it
        ("auto", "names no model"),
    ],
)
def test_a_bad_entry_is_a_400_before_any_upstream_request(use_keys, http, entry, says):
    use_keys("openrouter", "huggingface")
    with pytest.raises(InvalidRequest) as caught:
        llm_generate("hi", fallback_models=[entry])
    assert says in caught.value.message
    assert caught.value.field == "fallback_models"
    assert len(http.calls) == 0


def test_a_malformed_default_fallback_model_is_reported_before_any_call(use_keys, http, settings):
    # The provider outage would otherwise reach the caller as a late model_not_found.
    use_keys("gemini", "huggingface")
    settings.HF_MODEL = "llama-without-org"
    with pytest.raises(InvalidRequest) as caught:
        llm_generate("hi")
    assert "HF_MODEL" in caught.value.message
    assert len(http.calls) == 0


def test_the_configured_chain_replaces_the_automatic_one(use_keys, http, settings):
    use_keys("gemini", "openrouter", "huggingface")
    settings.LLM_FALLBACKS = {
        "gemini/gemini-2.5-flash": ["openrouter/openai/gpt-4o-mini", "gemini/gemini-2.5-pro"]
    }
    http.post(GEMINI_GENERATE, status=503, json=gemini_error(503, "overloaded", "UNAVAILABLE"))
    http.post(OPENROUTER_CHAT, status=503, json={"error": {"message": "down", "code": 503}})
    pro = GEMINI_GENERATE.replace("gemini-2.5-flash", "gemini-2.5-pro")
    http.post(pro, json=gemini_ok("from pro"))
    out = llm_generate("hi")
    assert (out.provider, out.text) == ("gemini", "from pro")
    assert HF_CHAT not in called(http)
    assert bodies(http, OPENROUTER_CHAT)[0]["model"] == "openai/gpt-4o-mini"


def test_without_fallback_the_chain_is_the_first_model_only(use_keys, http):
    use_keys("gemini", "openrouter")
    http.post(GEMINI_GENERATE, status=503, json=gemini_error(503, "overloaded", "UNAVAILABLE"))
    with pytest.raises(AllProvidersFailed):
        llm_generate("hi", fallback=False)
    assert set(called(http)) == {GEMINI_GENERATE}


# --- What moves along it -----------------------------------------------------------------------


def test_a_context_length_error_moves_on_without_retrying(use_keys, http):
    use_keys("openrouter", "gemini")
    too_long = {
        "error": {
            "message": "This model's maximum context length is 8192 tokens.",
            "type": "invalid_request_error",
            "code": "context_length_exceeded",
        }
    }
    http.post(OPENROUTER_CHAT, status=400, json=too_long)
    http.post(GEMINI_GENERATE, json=gemini_ok("a larger window"))
    out = llm_generate("hi", provider="openrouter")
    assert (out.provider, out.text) == ("gemini", "a larger window")
    assert called(http).count(OPENROUTER_CHAT) == 1
    codes = list(LedgerEntry.objects.order_by("id").values_list("error_code", flat=True))
    assert codes == ["context_length_exceeded", ""]


def test_a_content_policy_refusal_stops_with_its_reason(use_keys, http):
    use_keys("openrouter", "gemini")
    refused = {
        "error": {
            "message": "Your request was rejected as a result of our safety system.",
            "type": "invalid_request_error",
            "code": "content_policy_violation",
        }
    }
    http.post(OPENROUTER_CHAT, status=400, json=refused)
    with pytest.raises(ContentPolicyViolation) as caught:
        llm_generate("hi", provider="openrouter")
    assert "safety system" in caught.value.message
    assert called(http) == [OPENROUTER_CHAT]


# --- Circuits ----------------------------------------------------------------------------------


def test_an_open_circuit_is_skipped_without_an_upstream_request(use_keys, http, settings):
    use_keys("gemini", "openrouter")
    settings.LLM_CIRCUIT_FAILURES = 2
    http.post(GEMINI_GENERATE, status=503, json=gemini_error(503, "overloaded", "UNAVAILABLE"))
    http.post(OPENROUTER_CHAT, json=openai_ok("backup", "openai/gpt-4-turbo"))
    for _ in range(2):
        assert llm_generate("hi").provider == "openrouter"
    assert circuits.state("gemini") == "open"
    before = called(http).count(GEMINI_GENERATE)
    out = llm_generate("hi")
    assert out.provider == "openrouter"
    assert called(http).count(GEMINI_GENERATE) == before  # skipped: no request
    assert out.fallback_from == []  # nothing tried and failed; the skip is not an attempt


def test_a_chain_of_open_circuits_tries_its_first_entry_anyway(use_keys, http, settings):
    use_keys("gemini")
    settings.LLM_CIRCUIT_FAILURES = 1
    http.post(GEMINI_GENERATE, status=503, json=gemini_error(503, "overloaded", "UNAVAILABLE"))
    with pytest.raises(AllProvidersFailed):
        llm_generate("hi")
    assert circuits.state("gemini") == "open"
    http.replace("POST", GEMINI_GENERATE, json=gemini_ok("back"))
    assert llm_generate("hi").text == "back"
    assert circuits.state("gemini") == "closed"


def test_caller_errors_do_not_open_a_circuit(use_keys, http, settings):
    use_keys("openrouter")
    settings.LLM_CIRCUIT_FAILURES = 1
    http.post(OPENROUTER_CHAT, status=400, json={"error": {"message": "bad temperature"}})
    with pytest.raises(InvalidRequest):
        llm_generate("hi")
    assert circuits.state("openrouter") == "closed"


# --- The deadline ------------------------------------------------------------------------------


def test_no_entry_starts_after_the_deadline(use_keys, http, settings, monkeypatch):
    use_keys("gemini", "openrouter")
    settings.LLM_REQUEST_DEADLINE = 0
    with pytest.raises(AllProvidersFailed) as caught:
        llm_generate("hi")
    assert "LLM_REQUEST_DEADLINE" in caught.value.message
    assert len(http.calls) == 0
    assert not LedgerEntry.objects.exists()


# --- Broken streams ----------------------------------------------------------------------------


def gemini_cut_after(text):
    """A Gemini stream that sends ``text`` and breaks off: no finish reason."""
    return sse(gemini_chunk(text))


def last_message(body):
    return body["messages"][-1]


def test_a_broken_stream_is_continued_with_a_prefill(use_keys, http):
    use_keys("gemini", "openrouter")
    http.post(GEMINI_STREAM, body=gemini_cut_after("Once upon"), content_type="text/event-stream")
    http.post(OPENROUTER_CHAT, body=openrouter_stream(" a time."), content_type="text/event-stream")
    items = list(llm_stream("tell me"))
    texts = [i.text for i in items if isinstance(i, TextDelta)]
    final = items[-1]
    assert texts == ["Once upon", " a time."]
    assert isinstance(final, Generation) and final.resumed
    assert final.text == "Once upon a time."
    assert last_message(bodies(http, OPENROUTER_CHAT)[0]) == {
        "role": "assistant",
        "content": "Once upon",
    }
    rows = list(LedgerEntry.objects.order_by("id").values_list("provider", "status", "resumed"))
    assert rows == [("gemini", "error", False), ("openrouter", "success", True)]
    summary = UsageSummary.objects.get()
    assert summary.total_calls == 1 and summary.reserved_calls == 0


def test_a_refused_prefill_restarts_and_passes_on_only_what_extends(use_keys, http):
    use_keys("gemini", "openrouter")
    http.post(GEMINI_STREAM, body=gemini_cut_after("Once upon"), content_type="text/event-stream")
    refusal = {"error": {"message": "This model does not support assistant message prefill."}}
    http.post(OPENROUTER_CHAT, status=400, json=refusal)
    http.post(
        OPENROUTER_CHAT,
        body=openrouter_stream("Once", " upon a", " time."),
        content_type="text/event-stream",
    )
    items = list(llm_stream("tell me"))
    texts = [i.text for i in items if isinstance(i, TextDelta)]
    assert "".join(texts) == "Once upon a time."
    assert texts[0] == "Once upon"
    assert items[-1].resumed
    first, second = bodies(http, OPENROUTER_CHAT)
    assert last_message(first)["role"] == "assistant"
    assert last_message(second)["role"] == "user"


def test_a_restart_that_diverges_ends_with_stream_interrupted(use_keys, http):
    use_keys("gemini", "openrouter")
    http.post(GEMINI_STREAM, body=gemini_cut_after("Once upon"), content_type="text/event-stream")
    http.post(OPENROUTER_CHAT, status=400, json={"error": {"message": "no prefill"}})
    http.post(
        OPENROUTER_CHAT,
        body=openrouter_stream("In a land", " far away."),
        content_type="text/event-stream",
    )
    stream = llm_stream("tell me")
    assert next(stream).text == "Once upon"
    with pytest.raises(StreamInterrupted) as caught:
        list(stream)
    assert caught.value.code == "stream_interrupted" and caught.value.status == 502
    summary = UsageSummary.objects.get()
    assert summary.total_calls == 0 and summary.reserved_calls == 0 and summary.reserved_cost == 0
    assert not LedgerEntry.objects.filter(status="in_flight").exists()


def test_a_stream_broken_with_no_entry_left_is_interrupted_never_done(use_keys, http):
    use_keys("gemini")
    http.post(GEMINI_STREAM, body=gemini_cut_after("Once upon"), content_type="text/event-stream")
    stream = llm_stream("tell me")
    assert next(stream).text == "Once upon"
    with pytest.raises(StreamInterrupted):
        next(stream)


def test_a_stream_failing_before_any_text_moves_on_unchanged(use_keys, http):
    use_keys("gemini", "openrouter")
    http.post(GEMINI_STREAM, status=503, json=gemini_error(503, "overloaded", "UNAVAILABLE"))
    http.post(OPENROUTER_CHAT, body=openrouter_stream("Hi", "!"), content_type="text/event-stream")
    final = list(llm_stream("hi"))[-1]
    assert (final.text, final.resumed) == ("Hi!", False)
    assert last_message(bodies(http, OPENROUTER_CHAT)[0])["role"] == "user"


def test_budget_reservation_follows_the_attempts_and_is_released(
    use_keys, http, django_user_model, settings
):
    settings.LLM_DEFAULT_MONTHLY_COST_LIMIT = "5"
    user = django_user_model.objects.create(username="u")
    use_keys("gemini", "openrouter")
    http.post(GEMINI_STREAM, body=gemini_cut_after("Once upon"), content_type="text/event-stream")
    http.post(OPENROUTER_CHAT, body=openrouter_stream(" a time."), content_type="text/event-stream")
    list(llm_stream("tell me", user_id=user))
    summary = UsageSummary.objects.get(user=user)
    assert (summary.reserved_calls, summary.reserved_cost) == (0, Decimal("0"))
    assert summary.total_cost == sum(e.cost for e in LedgerEntry.objects.filter(user=user))
