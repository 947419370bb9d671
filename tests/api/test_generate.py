"""``POST generate/`` without streaming: the answer, strict validation, and every mapped error."""

import json
from decimal import Decimal

import pytest
import requests

from llm_providers.models import APIKey, LedgerEntry, UsageBudget, UsageSummary, billing_period
from tests.api.support import API, GENERATION_FIELDS, assert_error
from tests.conftest import FAKE_KEYS
from tests.providers.wire import (
    HF_CHAT,
    HF_ERRORS,
    OPENROUTER_CHAT,
    OR_ERRORS,
    gemini_generate_url,
    gemini_response,
    gemini_status_error,
    hf_completion,
    or_completion,
    or_error,
    request_json,
)

pytestmark = pytest.mark.django_db

GENERATE = API + "generate/"
GEMINI = gemini_generate_url()
SCHEMA = {
    "type": "object",
    "properties": {"title": {"type": "string"}, "year": {"type": "integer"}},
    "required": ["title", "year"],
}


def generate(client, **body):
    return client.post(GENERATE, body, format="json")


def assert_nothing_recorded(http):
    assert len(http.calls) == 0
    assert LedgerEntry.objects.count() == 0
    assert UsageSummary.objects.count() == 0


# --- Success ------------------------------------------------------------------------------------


def test_answer_has_exactly_the_spec_fields(api, user, use_keys, http):
    use_keys("gemini", "openrouter")
    http.post(GEMINI, body=gemini_response("Red and blue."))

    response = generate(api, prompt="Name two colours.")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    body = response.json()
    entry = LedgerEntry.objects.get()
    assert body == {
        "id": entry.request_id,
        "provider": "gemini",
        "model": "gemini-2.5-flash",
        "text": "Red and blue.",
        "data": None,
        "usage": {"prompt_tokens": 21, "completion_tokens": 14, "total_tokens": 35},
        # Seeded price of gemini-2.5-flash: $0.30 / $2.50 per million tokens.
        "cost": "0.0000413",
        "attempts": 1,
        "fallback_from": [],
    }
    assert len(body["id"]) == 32
    assert (entry.user, entry.status, entry.cost) == (user, "success", Decimal("0.0000413"))
    summary = UsageSummary.objects.get(user=user, period=billing_period())
    assert (summary.gemini_calls, summary.gemini_tokens, summary.total_cost) == (
        1,
        35,
        Decimal("0.0000413"),
    )


def test_parameters_reach_the_named_provider_and_reported_cost_is_a_decimal_string(
    api, use_keys, http
):
    use_keys("gemini", "openrouter")
    http.post(OPENROUTER_CHAT, body=or_completion("Hi!", model="openai/gpt-4o-mini"))

    response = generate(
        api,
        prompt="Say hi.",
        system_prompt="Be brief.",
        provider="openrouter",
        model="openai/gpt-4o-mini",
        temperature=0.5,
        max_tokens=100,
    )

    assert response.status_code == 200
    body = response.json()
    assert set(body) == set(GENERATION_FIELDS)
    assert (body["provider"], body["model"], body["text"]) == (
        "openrouter",
        "openai/gpt-4o-mini",
        "Hi!",
    )
    assert body["cost"] == "0.00000735"  # OpenRouter's own usage.cost, exactly
    assert body["usage"] == {"prompt_tokens": 9, "completion_tokens": 10, "total_tokens": 19}
    sent = request_json(http.calls[0])
    assert sent["model"] == "openai/gpt-4o-mini"
    assert sent["temperature"] == 0.5
    assert sent["max_tokens"] == 100
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Say hi."},
    ]


def test_provider_alias_is_accepted(api, use_keys, http):
    use_keys("gemini", "huggingface")
    http.post(HF_CHAT, body=hf_completion("Hello!"))
    response = generate(api, prompt="hi", provider="hf")
    assert response.status_code == 200
    assert response.json()["provider"] == "huggingface"
    assert [c.request.url for c in http.calls] == [HF_CHAT]


def test_json_schema_gives_the_parsed_object_in_data(api, use_keys, http):
    use_keys("gemini")
    reply = '```json\n{"title": "AI", "year": 2026}\n```'
    http.post(GEMINI, body=gemini_response(reply))

    response = generate(api, prompt="A title and a year.", json_schema=SCHEMA)

    assert response.status_code == 200
    body = response.json()
    assert body["data"] == {"title": "AI", "year": 2026}
    assert body["text"] == reply
    sent = request_json(http.calls[0])
    assert sent["generationConfig"]["responseJsonSchema"] == SCHEMA
    assert sent["generationConfig"]["responseMimeType"] == "application/json"


def test_fallback_reports_the_failed_providers_and_counts_every_request(api, use_keys, http):
    use_keys("gemini", "openrouter", "huggingface")
    http.post(GEMINI, status=503, body=gemini_status_error(503))
    http.post(OPENROUTER_CHAT, status=401, body=or_error(401, OR_ERRORS[401]))
    http.post(HF_CHAT, body=hf_completion("from hf"))

    response = generate(api, prompt="hello")

    assert response.status_code == 200
    body = response.json()
    assert body["provider"] == "huggingface"
    assert body["text"] == "from hf"
    assert body["fallback_from"] == ["gemini", "openrouter"]
    # Gemini: 1 + LLM_MAX_RETRIES (3) requests; OpenRouter's 401 is not retried; HF answers.
    assert body["attempts"] == 4 + 1 + 1 == len(http.calls)
    rows = LedgerEntry.objects.order_by("id")
    assert [(r.provider, r.status, r.retries, r.is_fallback) for r in rows] == [
        ("gemini", "error", 3, False),
        ("openrouter", "error", 0, True),
        ("huggingface", "success", 0, True),
    ]
    assert {r.request_id for r in rows} == {body["id"]}


# --- Validation: 400, no upstream call, nothing recorded ----------------------------------------

INVALID = [
    pytest.param({}, {"prompt": ["This field is required."]}, id="missing-prompt"),
    pytest.param({"prompt": ""}, {"prompt": ["This field may not be blank."]}, id="empty-prompt"),
    pytest.param({"prompt": "  \n "}, {"prompt": ["The prompt is empty."]}, id="blank-prompt"),
    pytest.param({"prompt": 42}, {"prompt": ["Not a valid string."]}, id="int-prompt"),
    pytest.param({"prompt": ["hi"]}, {"prompt": ["Not a valid string."]}, id="list-prompt"),
    pytest.param({"prompt": None}, {"prompt": ["This field may not be null."]}, id="null-prompt"),
    pytest.param(
        {"prompt": "hi", "system_prompt": 7},
        {"system_prompt": ["Not a valid string."]},
        id="int-system-prompt",
    ),
    pytest.param(
        {"prompt": "hi", "temperature": 2.01},
        {"temperature": ["Ensure this value is less than or equal to 2."]},
        id="temperature-above-2",
    ),
    pytest.param(
        {"prompt": "hi", "temperature": -0.1},
        {"temperature": ["Ensure this value is greater than or equal to 0."]},
        id="temperature-below-0",
    ),
    pytest.param(
        {"prompt": "hi", "temperature": "0.5"},
        {"temperature": ["A valid number is required."]},
        id="temperature-string",
    ),
    pytest.param(
        {"prompt": "hi", "temperature": True},
        {"temperature": ["A valid number is required."]},
        id="temperature-bool",
    ),
    pytest.param(
        {"prompt": "hi", "max_tokens": 0},
        {"max_tokens": ["Ensure this value is greater than or equal to 1."]},
        id="max-tokens-0",
    ),
    pytest.param(
        {"prompt": "hi", "max_tokens": -5},
        {"max_tokens": ["Ensure this value is greater than or equal to 1."]},
        id="max-tokens-negative",
    ),
    pytest.param(
        {"prompt": "hi", "max_tokens": 65537}, {"max_tokens": ["At most 65536."]}, id="too-big"
    ),
    pytest.param(
        {"prompt": "hi", "max_tokens": 10.5},
        {"max_tokens": ["A valid integer is required."]},
        id="max-tokens-float",
    ),
    pytest.param(
        {"prompt": "hi", "max_tokens": True},
        {"max_tokens": ["A valid integer is required."]},
        id="max-tokens-bool",
    ),
    pytest.param(
        {"prompt": "hi", "max_tokens": "100"},
        {"max_tokens": ["A valid integer is required."]},
        id="max-tokens-string",
    ),
    pytest.param(
        {"prompt": "hi", "provider": "anthropic"},
        {"provider": ['"anthropic" is not a valid choice.']},
        id="unknown-provider",
    ),
    pytest.param(
        {"prompt": "hi", "provider": "openrouter", "model": "gpt4"},
        {
            "model": [
                "Model not found: 'gpt4' is not an OpenRouter model id. Use the form "
                "provider/model-name, e.g. openai/gpt-4-turbo."
            ]
        },
        id="malformed-openrouter-model",
    ),
    pytest.param(
        {"prompt": "hi", "model": ""}, {"model": ["This field may not be blank."]}, id="no-model"
    ),
    pytest.param(
        {"prompt": "hi", "json_schema": ["not", "an", "object"]},
        {"json_schema": ["The JSON schema must be a JSON object."]},
        id="schema-list",
    ),
    pytest.param(
        {"prompt": "hi", "json_schema": '{"type": "object"}'},
        {"json_schema": ["The JSON schema must be a JSON object."]},
        id="schema-string",
    ),
    pytest.param(
        {"prompt": "hi", "json_schema": {"type": "nonsense"}},
        {
            "json_schema": [
                "The JSON schema is not valid: 'nonsense' is not valid under any of the given "
                "schemas"
            ]
        },
        id="schema-invalid",
    ),
    pytest.param(
        {"prompt": "hi", "temprature": 1},
        {"temprature": ["Unknown field."]},
        id="unknown-field",
    ),
    pytest.param(
        {"prompt": "hi", "messages": [], "user_id": 1},
        {"messages": ["Unknown field."], "user_id": ["Unknown field."]},
        id="unknown-fields",
    ),
    pytest.param(
        {"prompt": "hi", "stream": True, "json_schema": SCHEMA},
        {"stream": ["Streaming returns text; json_schema needs stream: false."]},
        id="stream-and-schema",
    ),
    pytest.param(
        {"prompt": "hi", "stream": "true"}, {"stream": ["Must be a valid boolean."]}, id="stream"
    ),
]


@pytest.mark.parametrize(("body", "fields"), INVALID)
def test_invalid_input_is_400_with_field_messages(api, use_keys, http, body, fields):
    use_keys("gemini", "openrouter", "huggingface")
    http.post(GEMINI, body=gemini_response())
    http.post(OPENROUTER_CHAT, body=or_completion())
    http.post(HF_CHAT, body=hf_completion())

    response = api.post(GENERATE, body, format="json")

    error = assert_error(response, 400, "invalid_request")
    assert error["fields"] == fields
    first_field, messages = next(iter(fields.items()))
    assert error["message"] == f"{first_field}: {messages[0]}"
    assert_nothing_recorded(http)


def test_too_long_prompt_is_refused(api, use_keys, http, settings):
    settings.LLM_MAX_PROMPT_CHARS = 10
    use_keys("gemini")
    error = assert_error(generate(api, prompt="x" * 11), 400, "invalid_request")
    assert error["fields"] == {"prompt": ["At most 10 characters."]}
    assert_nothing_recorded(http)


def test_max_tokens_ceiling_follows_the_setting(api, use_keys, http, settings):
    settings.LLM_MAX_OUTPUT_TOKENS = 1000
    use_keys("gemini")
    error = assert_error(generate(api, prompt="hi", max_tokens=1001), 400, "invalid_request")
    assert error["fields"] == {"max_tokens": ["At most 1000."]}
    assert_nothing_recorded(http)


def test_malformed_model_for_the_primary_provider_is_refused(api, use_keys, http):
    use_keys("openrouter")  # the primary, so "gpt-4" would go to OpenRouter
    error = assert_error(generate(api, prompt="hi", model="gpt-4"), 400, "invalid_request")
    assert list(error["fields"]) == ["model"]
    assert "provider/model-name" in error["fields"]["model"][0]
    assert_nothing_recorded(http)


@pytest.mark.parametrize(
    ("content", "content_type", "status", "message"),
    [
        (
            "not json",
            "application/json",
            400,
            "JSON parse error - Expecting value: line 1 column 1",
        ),
        ("[1, 2]", "application/json", 400, "Invalid data. Expected a dictionary, but got list."),
        ('"hello"', "application/json", 400, "Invalid data. Expected a dictionary, but got str."),
    ],
)
def test_body_that_is_not_a_json_object_is_refused(
    api, use_keys, http, content, content_type, status, message
):
    use_keys("gemini")
    response = api.post(GENERATE, content, content_type=content_type)
    error = assert_error(response, status, "invalid_request")
    assert error["message"].startswith(message)
    assert_nothing_recorded(http)


def test_form_encoded_body_is_refused(api, use_keys, http):
    use_keys("gemini")
    response = api.post(GENERATE, "prompt=hi", content_type="application/x-www-form-urlencoded")
    assert_error(response, 415, "invalid_request")
    assert_nothing_recorded(http)


# --- Mapped errors ------------------------------------------------------------------------------


def test_unknown_openrouter_model_is_404_model_not_found_without_fallback(api, use_keys, http):
    use_keys("openrouter", "huggingface")
    http.post(OPENROUTER_CHAT, status=400, body=or_error(400, OR_ERRORS[400]))
    http.post(HF_CHAT, body=hf_completion())

    response = generate(api, prompt="hi", model="acme/fake-1.0")

    error = assert_error(response, 404, "model_not_found")
    assert "Model not found" in error["message"]
    assert "openai/gpt-4-turbo" in error["message"]  # the expected form, by example
    assert error["provider"] == "openrouter"
    assert [c.request.url for c in http.calls] == [OPENROUTER_CHAT]
    entry = LedgerEntry.objects.get()
    assert (entry.status, entry.error_code, entry.model) == (
        "error",
        "model_not_found",
        "acme/fake-1.0",
    )


def test_unknown_gemini_model_is_404_model_not_found(api, use_keys, http):
    use_keys("gemini", "openrouter")
    url = gemini_generate_url("gemini-1.5-flash")
    http.post(url, status=404, body=gemini_status_error(404))
    error = assert_error(
        generate(api, prompt="hi", model="gemini-1.5-flash"), 404, "model_not_found"
    )
    assert "Model not found" in error["message"]
    assert [c.request.url for c in http.calls] == [url]


def test_upstream_refusing_the_request_is_400_without_fallback(api, use_keys, http):
    use_keys("gemini", "openrouter")
    http.post(GEMINI, status=400, body=gemini_status_error(400))
    error = assert_error(generate(api, prompt="hi"), 400, "invalid_request")
    assert error["provider"] == "gemini"
    assert len(http.calls) == 1


def test_spent_call_budget_is_402_before_any_upstream_call(api, user, use_keys, http):
    use_keys("gemini")
    http.post(GEMINI, body=gemini_response())
    UsageBudget.objects.create(user=user, monthly_call_limit=0)

    error = assert_error(generate(api, prompt="hi"), 402, "budget_exceeded")

    assert error["message"].startswith(
        f"Monthly call limit reached: 0 of 0 calls used in {billing_period()}"
    )
    # Why it was blocked (SPEC §7), beside code and message.
    assert (error["limit"], error["limit_value"], error["used"], error["reserved"]) == (
        "calls",
        0,
        0,
        0,
    )
    assert error["needed"] == 1 and error["resets_at"].endswith("T00:00:00Z")
    assert len(http.calls) == 0
    assert LedgerEntry.objects.count() == 0


def test_spent_cost_budget_is_402_before_any_upstream_call(api, user, use_keys, http):
    use_keys("gemini")
    http.post(GEMINI, body=gemini_response())
    UsageBudget.objects.create(user=user, monthly_cost_limit=Decimal("0"))

    error = assert_error(generate(api, prompt="hi"), 402, "budget_exceeded")

    assert error["message"].startswith("Monthly budget exceeded: $0 of $0 spent in ")
    assert len(http.calls) == 0
    assert LedgerEntry.objects.count() == 0


def test_budget_of_another_user_does_not_apply(api, other_user, use_keys, http):
    use_keys("gemini")
    http.post(GEMINI, body=gemini_response())
    UsageBudget.objects.create(user=other_user, monthly_call_limit=0)
    assert generate(api, prompt="hi").status_code == 200


def test_upstream_rate_limit_is_429_with_retry_after(api, use_keys, http, settings):
    settings.LLM_MAX_RETRIES = 0
    use_keys("openrouter")
    http.post(
        OPENROUTER_CHAT,
        status=429,
        headers={"Retry-After": "30"},
        body=or_error(429, OR_ERRORS[429]),
    )

    response = generate(api, prompt="hi")

    error = assert_error(response, 429, "rate_limited")
    assert response["Retry-After"] == "30"
    assert error["retry_after"] == 30
    assert [(a["provider"], a["code"]) for a in error["attempts"]] == [
        ("openrouter", "rate_limited")
    ]
    assert len(http.calls) == 1


def test_upstream_rate_limit_without_a_hint_still_says_when_to_retry(api, use_keys, http, settings):
    settings.LLM_MAX_RETRIES = 0
    use_keys("huggingface")
    http.post(HF_CHAT, status=429, body=HF_ERRORS[429])
    response = generate(api, prompt="hi")
    assert_error(response, 429, "rate_limited")
    assert response["Retry-After"] == "1"


def test_no_provider_configured_is_503_naming_every_variable(api, http):
    error = assert_error(generate(api, prompt="hi"), 503, "provider_not_configured")
    for variable in ("GEMINI_API_KEY", "OPENROUTER_API_KEY", "HF_TOKEN"):
        assert variable in error["message"]
    assert ".env" in error["message"] and "admin" in error["message"]
    assert_nothing_recorded(http)


@pytest.mark.parametrize(
    ("provider", "variable", "name"),
    [
        ("openrouter", "OPENROUTER_API_KEY", "openrouter"),
        ("gemini", "GEMINI_API_KEY", "gemini"),
        ("google", "GEMINI_API_KEY", "gemini"),
        ("hf", "HF_TOKEN", "huggingface"),
    ],
)
def test_named_provider_without_its_key_is_503(api, use_keys, http, provider, variable, name):
    others = {"openrouter", "gemini", "huggingface"} - {name}
    use_keys(*sorted(others))
    error = assert_error(
        generate(api, prompt="hi", provider=provider), 503, "provider_not_configured"
    )
    assert f"{variable} not found" in error["message"]
    assert error["provider"] == name
    assert_nothing_recorded(http)


def test_gpt_provider_without_its_key_is_503(api, use_keys, http, settings):
    settings.GPT_PROVIDER = "openrouter"
    use_keys("gemini")
    error = assert_error(generate(api, prompt="hi"), 503, "provider_not_configured")
    assert "OPENROUTER_API_KEY not found" in error["message"]
    assert_nothing_recorded(http)


def test_every_provider_failing_is_502_listing_each_attempt_without_keys(api, use_keys, http):
    use_keys("gemini", "openrouter", "huggingface")
    http.post(GEMINI, status=500, body=gemini_status_error(500))
    http.post(OPENROUTER_CHAT, status=402, body=or_error(402, OR_ERRORS[402]))
    http.post(HF_CHAT, status=401, body=HF_ERRORS[401])

    response = generate(api, prompt="hi")

    error = assert_error(response, 502, "provider_error")
    attempts = error["attempts"]
    assert [set(a) for a in attempts] == [{"provider", "model", "code", "message"}] * 3
    assert [(a["provider"], a["model"], a["code"]) for a in attempts] == [
        ("gemini", "gemini-2.5-flash", "provider_error"),
        ("openrouter", "openai/gpt-4-turbo", "provider_error"),
        ("huggingface", "meta-llama/Llama-3.1-8B-Instruct", "provider_error"),
    ]
    assert all(a["message"] for a in attempts)
    assert "HF_TOKEN" in attempts[2]["message"]  # the key's source, never the key
    content = response.content.decode()
    assert not [key for key in FAKE_KEYS.values() if key in content]
    assert len(http.calls) == 4 + 1 + 1
    assert LedgerEntry.objects.filter(status="error").count() == 3


def test_stored_keys_never_appear_in_a_failure(api, use_keys, http):
    secrets = {
        "gemini": "AIzaSyStoredGeminiKey00000000000000zz",
        "openrouter": "sk-or-v1-stored0openrouter0key0000000yy",
    }
    for provider, secret in secrets.items():
        key = APIKey(provider=provider, label="db")
        key.set_secret(secret)
        key.save()
    http.post(GEMINI, status=403, body=gemini_status_error(403))
    http.post(OPENROUTER_CHAT, status=401, body=or_error(401, OR_ERRORS[401]))

    response = generate(api, prompt="hi")

    assert_error(response, 502, "provider_error")
    content = response.content.decode()
    for secret in secrets.values():
        assert secret not in content
        assert secret[4:-4] not in content
    # The stored keys were the ones sent upstream.
    assert http.calls[0].request.headers["x-goog-api-key"] == secrets["gemini"]


def test_upstream_timeout_is_504(api, use_keys, http):
    use_keys("gemini")
    http.post(GEMINI, body=requests.exceptions.ReadTimeout("read timed out"))

    response = generate(api, prompt="hi")

    error = assert_error(response, 504, "upstream_timeout")
    assert [(a["provider"], a["code"]) for a in error["attempts"]] == [
        ("gemini", "upstream_timeout")
    ]
    assert len(http.calls) == 1  # a silent provider is not retried (SPEC §5.1)
    entry = LedgerEntry.objects.get()
    assert (entry.status, entry.error_code, entry.retries) == ("error", "upstream_timeout", 0)


def test_invalid_structured_output_is_502_carrying_the_raw_text(api, use_keys, http):
    use_keys("gemini", "openrouter")
    http.post(GEMINI, body=gemini_response('{"title": "AI"}'))

    response = generate(api, prompt="hi", json_schema=SCHEMA)

    error = assert_error(response, 502, "invalid_structured_output")
    assert error["raw_text"] == '{"title": "AI"}'
    assert error["provider"] == "gemini"
    assert [c.request.url for c in http.calls] == [GEMINI, GEMINI]  # one retry, no fallback
    assert json.loads(response.content)["error"].get("attempts") is None
