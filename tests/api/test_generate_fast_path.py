"""``generate/``'s request validation without a serializer instance (``plain_generate_args``).

It may only ever say what ``GenerateRequestSerializer`` says: for any body it either declines
(None: the serializer decides) or gives exactly the serializer's ``validated_data``, values
and their types. Checked over generated bodies, and for the requests clients really send
(which it must not decline, or it saves nothing).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llm_providers.api import serializers as s
from tests.api.support import API, assert_error

pytestmark = pytest.mark.django_db

FIELDS = sorted(s.GenerateRequestSerializer._declared_fields)
PROVIDERS = [*s.PROVIDER_INPUTS, "Gemini", "GOOGLE", "openai", "", " gemini"]
MODELS = [
    "openai/gpt-4-turbo",
    " openai/gpt-4-turbo ",
    "gemini-2.5-flash",
    "no-slash",
    "a/" + "b" * 197,
    "a/" + "b" * 198,
    " " + "a/" + "b" * 197 + " ",
    "",
    "  ",
]
TEXTS = ["hello", " hi ", "", " ", "\n\t", "naïve ☃", "a\x00b", "\ud800", "x" * 300]

values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-3, max_value=70_000),
    st.sampled_from([0, 1, 2, 3, 65_536, 65_537, 10**30, 2**64]),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1, max_value=3),
    st.sampled_from([0.0, -0.0, 2.0, 2.0000001, 1e-300, 1.5]),
    st.sampled_from(TEXTS + PROVIDERS + MODELS),
    st.text(max_size=20),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.just({"type": "object"}),
)
# Mostly the shape clients send (a prompt and a few options, most of them well typed), so
# that many bodies are valid; and anything at all, so that many are not.
common = st.fixed_dictionaries(
    {"prompt": st.one_of(st.sampled_from(TEXTS), st.text(max_size=30))},
    optional={
        "system_prompt": st.one_of(st.none(), st.sampled_from(TEXTS), st.text(max_size=5)),
        "provider": st.one_of(st.none(), st.sampled_from(PROVIDERS)),
        "model": st.one_of(st.none(), st.sampled_from(MODELS)),
        "temperature": st.one_of(st.none(), st.integers(-1, 3), st.floats(-0.5, 2.5), values),
        "max_tokens": st.one_of(st.none(), st.integers(-1, 70_000), values),
        "json_schema": st.one_of(st.none(), st.just({"type": "object"})),
        "stream": st.one_of(st.booleans(), values),
    },
)
# Valid bodies, edge values included (bounds, -0.0, integer temperatures, padded models).
valid = st.fixed_dictionaries(
    {"prompt": st.text(min_size=1, max_size=30).filter(str.strip)},
    optional={
        "system_prompt": st.one_of(st.none(), st.text(max_size=10)),
        "provider": st.one_of(st.none(), st.sampled_from(s.PROVIDER_INPUTS)),
        "model": st.one_of(st.none(), st.sampled_from(MODELS[:3])),
        "temperature": st.one_of(
            st.none(), st.integers(0, 2), st.floats(0, 2), st.sampled_from([-0.0, 2.0])
        ),
        "max_tokens": st.one_of(st.none(), st.integers(1, 65_536)),
        "json_schema": st.none(),
        "stream": st.booleans(),
    },
)
anything = st.one_of(
    st.dictionaries(st.sampled_from([*FIELDS, "temprature", "extra"]), values, max_size=6),
    st.sampled_from([[], "hello", 42, None, [{"prompt": "hi"}]]),
)
bodies = st.one_of(valid, common, anything)


def typed(data: dict) -> dict:
    """The values with their types: 1 and 1.0 (and False and 0) are not the same answer."""
    return {name: (type(value), value) for name, value in data.items()}


def serializer_answer(data):
    params = s.GenerateRequestSerializer(data=data)
    return dict(params.validated_data) if params.is_valid() else None


@pytest.fixture
def primary_openrouter(use_keys):
    use_keys("openrouter")  # a primary whose model ids have a form to check


@settings(
    max_examples=400,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=bodies)
def test_the_fast_path_gives_the_serializers_answer_or_none(primary_openrouter, data):
    fast = s.plain_generate_args(data)
    if fast is not None:
        expected = serializer_answer(data)
        assert expected is not None, (data, fast)
        assert typed(fast) == typed(expected)


TRICKY = [
    {"prompt": "hi", "temperature": True},
    {"prompt": "hi", "temperature": False},
    {"prompt": "hi", "max_tokens": True},
    {"prompt": "hi", "max_tokens": 1.0},
    {"prompt": "hi", "max_tokens": 65_537},
    {"prompt": "hi", "temperature": 2.0000001},
    {"prompt": "hi", "temperature": -0.0},
    {"prompt": "hi", "temperature": "1"},
    {"prompt": "hi", "stream": 1},
    {"prompt": "hi", "stream": "true"},
    {"prompt": "hi", "provider": ""},
    {"prompt": "hi", "provider": "Gemini"},
    {"prompt": "hi", "model": ""},
    {"prompt": "hi", "model": "   "},
    {"prompt": "hi", "model": 42},
    {"prompt": "hi", "system_prompt": 42},
    {"prompt": "hi", "system_prompt": "a\x00b"},
    {"prompt": "a\ud800b"},
    {"prompt": "a\x00b"},
    {"prompt": 42},
    {"prompt": None},
    {"prompt": "   "},
    {"prompt": ""},
    {"prompt": "hi", "json_schema": {"type": "object"}, "stream": True},
    {"prompt": "hi", "json_schema": None, "stream": True},
    {},
]


@pytest.mark.parametrize("data", TRICKY)
def test_tricky_bodies(primary_openrouter, data):
    fast = s.plain_generate_args(data)
    if fast is not None:
        assert typed(fast) == typed(serializer_answer(data))


@pytest.mark.parametrize(
    "data",
    [
        {"prompt": "Write a blog post about AI"},
        {"prompt": "hi", "stream": True},
        {"prompt": "hi", "stream": False, "json_schema": None},
        {"prompt": " hi ", "system_prompt": "", "provider": "google", "temperature": 1},
        {"prompt": "hi", "system_prompt": None, "provider": None, "model": None},
        {"prompt": "hi", "provider": "openrouter", "model": " openai/gpt-4-turbo "},
        {"prompt": "naïve ☃", "temperature": 0.7, "max_tokens": 2048},
        {"prompt": "hi", "temperature": None, "max_tokens": None},
    ],
)
def test_ordinary_requests_take_the_fast_path(primary_openrouter, data):
    fast = s.plain_generate_args(data)
    assert fast is not None
    assert typed(fast) == typed(serializer_answer(data))


@pytest.mark.parametrize(
    "data",
    [
        {"prompt": "hi", "json_schema": {"type": "object"}},  # the schema check words its errors
        {"prompt": "hi", "provider": "openrouter", "model": "no-slash"},  # malformed id
        {"prompt": "hi", "temprature": 1},
        {"prompt": "hi", "stream": None},
    ],
)
def test_the_rest_is_left_to_the_serializer(primary_openrouter, data):
    assert s.plain_generate_args(data) is None


def test_limits_are_read_per_request(primary_openrouter, settings):
    settings.LLM_MAX_PROMPT_CHARS = 5
    settings.LLM_MAX_OUTPUT_TOKENS = 10
    assert s.plain_generate_args({"prompt": "hello"}) is not None
    assert s.plain_generate_args({"prompt": "hello!"}) is None
    assert s.plain_generate_args({"prompt": "hi", "max_tokens": 10}) is not None
    assert s.plain_generate_args({"prompt": "hi", "max_tokens": 11}) is None


def test_errors_still_come_from_the_serializer(api, primary_openrouter):
    response = api.post(API + "generate/", {"prompt": "hi", "max_tokens": 0}, format="json")
    error = assert_error(response, 400, "invalid_request")
    assert error["fields"] == {"max_tokens": ["Ensure this value is greater than or equal to 1."]}
