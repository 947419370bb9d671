"""What is particular to the Hugging Face router: ``:provider`` model suffixes, usage that may
be partial or absent, ``error`` as a string, a list or an object, ``model_not_supported``, the
``RateLimit`` header, a model still loading (``estimated_time``), the one-token connection test,
and the seed's ``huggingface_*`` functions. What every provider does is in ``test_contract.py``."""

from decimal import Decimal

import pytest
import responses

from llm_providers.exceptions import (
    AllProvidersFailed,
    ContentPolicyViolation,
    ContextLengthExceeded,
    InsufficientCredits,
    InvalidRequest,
    ModelNotFound,
    ProviderAuthError,
    ProviderNotConfigured,
    ProviderUnavailable,
    RateLimited,
)
from llm_providers.huggingface_provider import (
    huggingface_structured_json_response,
    huggingface_text_response,
)
from llm_providers.providers.huggingface import HuggingFaceProvider
from llm_providers.results import ChatRequest, Usage
from tests.conftest import FAKE_KEYS
from tests.providers import wire

KEY = FAKE_KEYS["huggingface"]
CHAT = wire.HF_CHAT
MODEL = "meta-llama/Llama-3.1-8B-Instruct"
SCHEMA = {
    "title": "PaperAnalysis",
    "type": "object",
    "properties": {"title": {"type": "string"}, "year": {"type": "integer"}},
    "required": ["title", "year"],
}
PAPER = '{"title": "Attention Is All You Need", "year": 2017}'


def ask(prompt="Extract: Attention Is All You Need (2017)", *, model=MODEL, **kwargs):
    return ChatRequest.from_prompt(prompt, model=model, **kwargs)


def answer(http, body=None):
    http.add(responses.POST, CHAT, body=body if body is not None else wire.hf_completion())


def fail(http, status, body=None, *, headers=None):
    http.add(
        responses.POST,
        CHAT,
        body=body if body is not None else wire.HF_ERRORS[status],
        status=status,
        headers=headers or {},
    )


# --- Text completion ------------------------------------------------------------------------------


def test_bearer_token_and_no_openrouter_headers(http, hf, settings):
    settings.OPENROUTER_HTTP_REFERER = "https://alwrity.example"
    settings.OPENROUTER_X_TITLE = "ALwrity"
    answer(http)
    HuggingFaceProvider(KEY).complete(ask())
    headers = http.calls[0].request.headers
    assert headers["Authorization"] == f"Bearer {KEY}"
    assert "HTTP-Referer" not in headers
    assert "X-Title" not in headers
    assert KEY not in http.calls[0].request.url


def test_provider_suffix_is_passed_through(http, hf):
    answer(http)
    hf.complete(ask(model="meta-llama/Llama-3.1-8B-Instruct:novita"))
    assert wire.request_json(http.calls[0])["model"] == "meta-llama/Llama-3.1-8B-Instruct:novita"


def test_completion_text_model_and_usage(http, hf):
    answer(http, wire.hf_completion(PAPER, prompt=45, completion=17))
    completion = hf.complete(ask())
    assert completion.text == PAPER
    assert completion.provider == "huggingface"
    assert completion.model == "meta-llama/llama-3.1-8b-instruct"  # as the router reports it
    assert completion.usage == Usage(45, 17, 62, None)  # no cost: the price table prices it
    assert completion.finish_reason == "stop"
    assert completion.response_id == "chatcmpl-9f2c1a7e0b6d4c3a"
    assert completion.requests == 1


def test_usage_without_total(http, hf):
    answer(
        http,
        '{"id":"x","model":"m/m","choices":[{"index":0,"message":{"role":"assistant",'
        '"content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":4,"completion_tokens":2}}',
    )
    assert hf.complete(ask()).usage == Usage(4, 2, 6)


def test_missing_usage_is_zero(http, hf):
    answer(
        http,
        '{"id":"x","model":"m/m","choices":[{"index":0,"message":{"role":"assistant",'
        '"content":"ok"},"finish_reason":"stop"}]}',
    )
    assert hf.complete(ask()).usage == Usage()


def test_base_url_setting_is_used(http, settings):
    settings.HF_BASE_URL = "https://hf-proxy.test/v1"
    http.add(
        responses.POST, "https://hf-proxy.test/v1/chat/completions", body=wire.hf_completion("hi")
    )
    assert HuggingFaceProvider(KEY).complete(ask()).text == "hi"


# --- Streaming ------------------------------------------------------------------------------------


def open_stream(http, hf, transcript, request=None):
    http.add(responses.POST, CHAT, body=transcript, content_type=wire.SSE)
    return hf.stream(request or ask())


def test_stream_asks_for_usage(http, hf):
    open_stream(http, hf, wire.hf_stream(["Hi"])).drain()
    body = wire.request_json(http.calls[0])
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert http.calls[0].request.headers["Accept"] == "text/event-stream"
    assert http.calls[0].request.headers["Authorization"] == f"Bearer {KEY}"


def test_stream_when_the_provider_ignores_include_usage(http, hf):
    stream = open_stream(http, hf, wire.hf_stream(["Hello", "!"], usage=None))
    assert stream.drain().text == "Hello!"
    assert stream.completion.usage == Usage()


def test_stream_without_done_after_finish(http, hf):
    stream = open_stream(http, hf, wire.hf_stream(["a"], done=False))
    assert stream.drain().text == "a"


def test_stream_error_event_object_with_code(http, hf):
    events = [wire.hf_chunk("Hi"), '{"error":{"message":"Too many requests","code":429}}']
    stream = open_stream(http, hf, wire.sse(events))
    with pytest.raises(RateLimited) as caught:
        stream.drain()
    assert caught.value.partial_text == "Hi"


def test_stream_open_model_not_supported(http, hf):
    fail(http, 400, wire.hf_model_not_supported("acme/nothing"))
    with pytest.raises(ModelNotFound):
        hf.stream(ask(model="acme/nothing"))
    assert len(http.calls) == 1


# --- Errors ---------------------------------------------------------------------------------------


def test_model_not_supported_is_model_not_found(http, hf):
    fail(http, 400, wire.hf_model_not_supported("acme/nothing"))
    with pytest.raises(ModelNotFound) as caught:
        hf.complete(ask(model="acme/nothing"))
    message = caught.value.message
    assert "Model not found" in message
    assert "The requested model 'acme/nothing' is not supported" in message
    assert MODEL in message
    assert len(http.calls) == 1


def test_legacy_not_supported_string_is_model_not_found(http, hf):
    fail(http, 400)
    with pytest.raises(ModelNotFound, match="Model not supported by provider hf-inference"):
        hf.complete(ask())


def test_gated_model_403_is_auth_error(http, hf):
    fail(
        http,
        403,
        wire.hf_error(
            "You cannot access this model unless the model owner gives you access. You can do "
            "so by accepting the terms."
        ),
    )
    with pytest.raises(ProviderAuthError) as caught:
        hf.complete(ask())
    assert "the environment variable HF_TOKEN" in caught.value.message
    assert len(http.calls) == 1


def test_402_insufficient_quota_object(http, hf):
    fail(http, 402, wire.hf_error_object("You exceeded your credits.", type_="insufficient_quota"))
    with pytest.raises(InsufficientCredits, match=r"You exceeded your credits\."):
        hf.complete(ask())


def test_error_list_body(http, hf):
    fail(http, 400, '{"error": ["Input validation error", "inputs must be non-empty"]}')
    with pytest.raises(InvalidRequest) as caught:
        hf.complete(ask())
    assert caught.value.message.endswith("Input validation error; inputs must be non-empty")


def test_429_ratelimit_header_reset_is_the_wait(http, hf, sleeps):
    fail(
        http,
        429,
        headers={
            "RateLimit": '"api";r=0;t=55',
            "RateLimit-Policy": '"fixed window";"api";q=500;w=300',
        },
    )
    answer(http)
    assert hf.complete(ask()).requests == 2
    assert sleeps == [55.0]


def test_429_retry_after_wins_over_ratelimit(http, hf, sleeps):
    fail(http, 429, headers={"Retry-After": "5", "RateLimit": '"api";r=0;t=55'})
    answer(http)
    hf.complete(ask())
    assert sleeps == [5.0]


def test_429_exhausted_carries_the_reset(http, hf, sleeps):
    fail(http, 429, headers={"RateLimit": '"api";r=0;t=9'})
    with pytest.raises(RateLimited) as caught:
        hf.complete(ask())
    assert caught.value.retry_after == 9.0
    assert sleeps == [9.0, 9.0, 9.0]


def test_503_loading_estimated_time_is_the_wait(http, hf, sleeps):
    fail(http, 503, wire.hf_loading(MODEL, Decimal("23.4")))
    answer(http)
    assert hf.complete(ask()).text == "Hello!"
    assert sleeps == [23.4]


def test_503_loading_exhausted(http, hf, sleeps, settings):
    settings.LLM_MAX_RETRIES = 1
    fail(http, 503, wire.hf_loading(MODEL, Decimal("4")))
    with pytest.raises(ProviderUnavailable) as caught:
        hf.complete(ask())
    assert caught.value.message == (
        f"Hugging Face is loading the model: Model {MODEL} is currently loading"
    )
    assert caught.value.requests == 2
    assert sleeps == [4.0]


def test_503_loading_longer_than_the_total_timeout_stops(http, hf, sleeps, settings):
    settings.LLM_RETRY_TOTAL_TIMEOUT = 20.0
    fail(http, 503, wire.hf_loading(MODEL, Decimal("300")))
    with pytest.raises(ProviderUnavailable):
        hf.complete(ask())
    assert len(http.calls) == 1
    assert sleeps == []


# --- Model ids ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model",
    [
        MODEL,
        "meta-llama/Llama-3.1-8B-Instruct:novita",
        "deepseek-ai/DeepSeek-V3-0324:fireworks-ai",
        "openai/gpt-oss-20b:fastest",
        "Qwen/Qwen2.5-7B-Instruct",
    ],
)
def test_check_model_accepts_hub_ids(model):
    HuggingFaceProvider.check_model(model)


@pytest.mark.parametrize(
    "model", ["", "llama", "meta-llama/", "/Llama", "meta-llama/Llama 3", "a/b/c", "a/b:c:d"]
)
def test_check_model_refuses_malformed_ids(model):
    with pytest.raises(ModelNotFound) as caught:
        HuggingFaceProvider.check_model(model)
    assert "Model not found" in caught.value.message
    assert MODEL in caught.value.message


# --- test_connection ------------------------------------------------------------------------------


def test_test_connection_asks_for_one_token(http, hf):
    answer(http, wire.hf_completion("p", prompt=1, completion=1))
    assert hf.test_connection().startswith("Hugging Face accepted the key (")
    call = http.calls[0]
    assert call.request.method == "POST"
    assert call.request.url == CHAT
    assert call.request.headers["Authorization"] == f"Bearer {KEY}"
    assert wire.request_json(call) == {
        "model": MODEL,
        "messages": [{"role": "user", "content": "ping"}],
        "max_tokens": 1,
    }


def test_test_connection_is_not_retried(http, hf):
    fail(http, 503)
    with pytest.raises(ProviderUnavailable):
        hf.test_connection()
    assert len(http.calls) == 1


# --- The seed's public functions, through the router ----------------------------------------------


@pytest.mark.django_db
def test_huggingface_text_response(http, use_keys):
    use_keys("huggingface")
    answer(http, wire.hf_completion("A blog post."))
    text = huggingface_text_response("Write a blog post about AI", system_prompt="Be brief.")
    assert text == "A blog post."
    assert wire.request_json(http.calls[0]) == {
        "model": MODEL,  # HF_MODEL by default
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Write a blog post about AI"},
        ],
        "temperature": 0.7,
        "max_tokens": 2048,
    }
    assert http.calls[0].request.headers["Authorization"] == f"Bearer {KEY}"


@pytest.mark.django_db
def test_huggingface_text_response_model_setting(http, use_keys, settings):
    use_keys("huggingface")
    settings.HF_MODEL = "Qwen/Qwen2.5-7B-Instruct"
    answer(http)
    answer(http)
    huggingface_text_response("Hi")
    huggingface_text_response("Hi", model="deepseek-ai/DeepSeek-V3-0324:novita", max_tokens=5)
    first, second = (wire.request_json(c) for c in http.calls)
    assert first["model"] == "Qwen/Qwen2.5-7B-Instruct"
    assert (second["model"], second["max_tokens"]) == ("deepseek-ai/DeepSeek-V3-0324:novita", 5)


@pytest.mark.django_db
def test_huggingface_structured_json_response(http, use_keys):
    use_keys("huggingface")
    answer(http, wire.hf_completion(PAPER))
    data = huggingface_structured_json_response("Extract the paper", SCHEMA)
    assert data == {"title": "Attention Is All You Need", "year": 2017}
    body = wire.request_json(http.calls[0])
    assert (body["temperature"], body["max_tokens"]) == (0.2, 8192)
    assert body["response_format"]["json_schema"]["schema"] == SCHEMA


@pytest.mark.django_db
def test_huggingface_functions_do_not_fall_back(http, use_keys):
    use_keys("gemini", "openrouter", "huggingface")
    fail(http, 502)
    with pytest.raises(AllProvidersFailed) as caught:
        huggingface_text_response("Hi")
    assert [f.provider for f in caught.value.failures] == ["huggingface"]
    assert len(http.calls) == 4
    assert all(c.request.url == CHAT for c in http.calls)


@pytest.mark.django_db
def test_huggingface_structured_does_not_fall_back(http, use_keys):
    use_keys("gemini", "openrouter", "huggingface")
    fail(http, 402)
    with pytest.raises(AllProvidersFailed) as caught:
        huggingface_structured_json_response("Hi", SCHEMA)
    assert isinstance(caught.value.failures[0].error, InsufficientCredits)
    assert [c.request.url for c in http.calls] == [CHAT]


@pytest.mark.django_db
def test_huggingface_model_not_supported_does_not_fall_back(http, use_keys):
    use_keys("gemini", "huggingface")
    fail(http, 400, wire.hf_model_not_supported("acme/nothing"))
    with pytest.raises(ModelNotFound):
        huggingface_text_response("Hi", model="acme/nothing")
    assert len(http.calls) == 1


@pytest.mark.django_db
def test_huggingface_malformed_model_refused_before_any_request(http, use_keys):
    use_keys("huggingface")
    with pytest.raises(ModelNotFound):
        huggingface_text_response("Hi", model="Llama-3.1-8B-Instruct")
    assert len(http.calls) == 0


@pytest.mark.django_db
def test_huggingface_missing_key(http, use_keys):
    use_keys("gemini", "openrouter")
    with pytest.raises(ProviderNotConfigured) as caught:
        huggingface_text_response("Hi")
    assert "HF_TOKEN not found" in caught.value.message
    assert len(http.calls) == 0


# --- OpenAI-compatible error codes (SPEC §5.1) ---------------------------------------------------


@pytest.mark.parametrize(
    ("code", "error"),
    [
        ("context_length_exceeded", ContextLengthExceeded),
        ("content_policy_violation", ContentPolicyViolation),
    ],
)
def test_openai_error_codes_are_read(http, hf, code, error):
    fail(http, 400, wire.hf_error_object("Rejected.", type_="invalid_request_error", code=code))
    with pytest.raises(error):
        hf.complete(ask())
    assert len(http.calls) == 1


def test_tgi_input_validation_error_is_context_length_exceeded(http, hf):
    message = (
        "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096. "
        "Given: 4000 `inputs` tokens and 500 `max_new_tokens`"
    )
    fail(http, 422, wire.dumps({"error": message, "error_type": "validation"}))
    with pytest.raises(ContextLengthExceeded, match="must be <= 4096"):
        hf.complete(ask())
