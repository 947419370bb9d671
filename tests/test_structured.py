"""Structured JSON: checking a caller's schema, parsing and validating a model's reply."""

import contextlib
import json
import signal

import pytest
import responses

from llm_providers import structured
from llm_providers.exceptions import InvalidRequest, InvalidStructuredOutput
from llm_providers.providers.openrouter import OpenRouterProvider
from llm_providers.results import ChatRequest
from llm_providers.structured import SchemaMismatch, check_schema, parse_reply
from tests.conftest import FAKE_KEYS, OPENROUTER_URL
from tests.providers import wire

SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string"},
        "year": {"type": "integer"},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["title", "year"],
    "additionalProperties": False,
}
PAPER = {"title": "Attention Is All You Need", "year": 2017}
PAPER_TEXT = '{"title": "Attention Is All You Need", "year": 2017}'


# --- check_schema ---------------------------------------------------------------------------------


def test_a_valid_schema_passes():
    check_schema(SCHEMA)
    check_schema({})
    check_schema({"$schema": "http://json-schema.org/draft-07/schema#", "type": "array"})


@pytest.mark.parametrize("schema", [None, [], "object", 3, [{"type": "object"}]])
def test_a_schema_must_be_an_object(schema):
    with pytest.raises(InvalidRequest) as caught:
        check_schema(schema)
    assert caught.value.field == "json_schema"
    assert caught.value.message == "The JSON schema must be a JSON object."


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "objekt"},
        {"type": "object", "required": "title"},
        {"type": "object", "properties": {"a": {"minLength": -1}}},
    ],
)
def test_an_invalid_schema_is_a_caller_error(schema):
    with pytest.raises(InvalidRequest) as caught:
        check_schema(schema)
    assert caught.value.field == "json_schema"
    assert caught.value.message.startswith("The JSON schema is not valid: ")
    assert caught.value.code == "invalid_request"


# --- parse_reply ----------------------------------------------------------------------------------


def test_plain_json():
    assert parse_reply(PAPER_TEXT, SCHEMA) == PAPER


@pytest.mark.parametrize(
    "text",
    [
        f"```json\n{PAPER_TEXT}\n```",
        f"```\n{PAPER_TEXT}\n```",
        f"```JSON\n{PAPER_TEXT}\n```\n",
        f"  ```json\n{PAPER_TEXT}```  ",
        f"```json {PAPER_TEXT} ```",
        '\n```json\n{\n  "title": "Attention Is All You Need",\n  "year": 2017\n}\n```',
    ],
    ids=["json-fence", "bare-fence", "upper-tag", "no-newline-before-close", "one-line", "pretty"],
)
def test_a_markdown_code_fence_is_tolerated(text):
    assert parse_reply(text, SCHEMA) == PAPER


def test_surrounding_whitespace_is_fine():
    assert parse_reply(f"\n  {PAPER_TEXT}  \n", SCHEMA) == PAPER


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Sure! Here it is.",
        "{'title': 'x', 'year': 1}",
        '{"title": "x", "year": 1',
        "```json\n```",
    ],
)
def test_not_json_is_a_mismatch(text):
    with pytest.raises(SchemaMismatch) as caught:
        parse_reply(text, SCHEMA)
    assert str(caught.value).startswith("the reply is not JSON")


def test_json_that_breaks_the_schema_is_a_mismatch_naming_the_paths():
    with pytest.raises(SchemaMismatch) as caught:
        parse_reply('{"title": 5, "year": "2017", "extra": true}', SCHEMA)
    message = str(caught.value)
    assert message.startswith("the reply does not match the schema (")
    assert "title: 5 is not of type 'string'" in message
    assert "year: '2017' is not of type 'integer'" in message
    assert "(root): Additional properties are not allowed ('extra' was unexpected)" in message


def test_a_missing_required_property():
    with pytest.raises(SchemaMismatch, match="'year' is a required property"):
        parse_reply('{"title": "x"}', SCHEMA)


def test_nested_paths():
    with pytest.raises(SchemaMismatch, match=r"tags/1: 2 is not of type 'string'"):
        parse_reply('{"title": "x", "year": 1, "tags": ["a", 2]}', SCHEMA)


def test_at_most_five_errors_are_listed():
    schema = {"type": "object", "properties": {k: {"type": "string"} for k in "abcdefg"}}
    with pytest.raises(SchemaMismatch) as caught:
        parse_reply('{"a":1,"b":1,"c":1,"d":1,"e":1,"f":1,"g":1}', schema)
    assert str(caught.value).count("is not of type") == 5


def test_an_array_schema():
    assert parse_reply('["a", "b"]', {"type": "array", "items": {"type": "string"}}) == ["a", "b"]


def test_an_empty_schema_accepts_any_json():
    assert parse_reply("42", {}) == 42


def test_the_schemas_own_draft_is_used():
    # Draft 4 writes exclusiveMaximum as a boolean; the latest draft would refuse 10 here too,
    # but only draft 4 reads it as "strictly below maximum".
    schema = {
        "$schema": "http://json-schema.org/draft-04/schema#",
        "type": "number",
        "maximum": 10,
        "exclusiveMaximum": True,
    }
    assert parse_reply("9.5", schema) == 9.5
    with pytest.raises(SchemaMismatch):
        parse_reply("10", schema)


# --- Patterns in linear time (RE2) ---------------------------------------------------------------

# Catastrophic for a backtracking engine: Python's re takes about 10 s on 28 x's and twice as
# long with each more, so days on 40; RE2 answers at once.
EVIL = "^a example(x+x+)+y$"
EVIL_TEXT = "a example" + "x" * 40


@contextlib.contextmanager
def cut_off_after(seconds: int):
    """Fail (instead of hanging the suite) if the block runs away; no bound on the time taken."""

    def runaway(signum, frame):
        raise AssertionError(f"still running after {seconds}s: backtracking regex?")

    previous = signal.signal(signal.SIGALRM, runaway)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_a_catastrophic_pattern_is_evaluated_in_linear_time():
    schema = {"type": "string", "pattern": EVIL}
    check_schema(schema)  # RE2 can run it: accepted
    with cut_off_after(20), pytest.raises(SchemaMismatch) as caught:
        parse_reply(json.dumps(EVIL_TEXT), schema)
    assert "does not match '^a example(x+x+)+y$'" in str(caught.value)
    assert parse_reply(json.dumps(EVIL_TEXT + "y"), schema) == EVIL_TEXT + "y"


def test_a_catastrophic_pattern_deep_in_a_schema():
    schema = {
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": {"$ref": "#/$defs/word"}},
        },
        "$defs": {"word": {"type": "string", "pattern": EVIL}},
    }
    check_schema(schema)
    with cut_off_after(20), pytest.raises(SchemaMismatch) as caught:
        parse_reply(json.dumps({"items": ["a examplexxy", EVIL_TEXT]}), schema)
    assert str(caught.value).startswith("the reply does not match the schema (items/1: ")


def test_pattern_properties_match_property_names_in_linear_time():
    schema = {
        "type": "object",
        "patternProperties": {EVIL: {"type": "integer"}, "^n_": {"type": "string"}},
        "additionalProperties": False,
    }
    check_schema(schema)
    with cut_off_after(20):
        # A property name the model wrote is matched against every pattern.
        with pytest.raises(SchemaMismatch) as caught:
            parse_reply(json.dumps({EVIL_TEXT: 1}), schema)
        assert "does not match any of the regexes" in str(caught.value)
        with pytest.raises(SchemaMismatch) as caught:
            parse_reply(json.dumps({EVIL_TEXT + "y": "one", "n_a": "b"}), schema)
        assert "'one' is not of type 'integer'" in str(caught.value)
        assert parse_reply(json.dumps({EVIL_TEXT + "y": 1, "n_a": "b"}), schema)


def test_additional_properties_beside_pattern_properties():
    schema = {
        "type": "object",
        "properties": {"id": {"type": "integer"}},
        "patternProperties": {"^x-": {"type": "string"}},
        "additionalProperties": {"type": "boolean"},
    }
    assert parse_reply('{"id": 1, "x-a": "b", "other": true}', schema)
    with pytest.raises(SchemaMismatch) as caught:
        parse_reply('{"id": 1, "x-a": "b", "other": "yes"}', schema)
    assert "other: 'yes' is not of type 'boolean'" in str(caught.value)
    closed = {**schema, "additionalProperties": False, "patternProperties": {}}
    with pytest.raises(SchemaMismatch) as caught:
        parse_reply('{"id": 1, "b": 2, "a": 3}', closed)
    assert "('a', 'b' were unexpected)" in str(caught.value)


def test_the_patterns_of_older_drafts_run_in_linear_time_too():
    schema = {
        "$schema": "http://json-schema.org/draft-04/schema#",
        "type": "object",
        "properties": {"a": {"type": "string", "pattern": EVIL}},
    }
    check_schema(schema)
    with cut_off_after(20), pytest.raises(SchemaMismatch):
        parse_reply(json.dumps({"a": EVIL_TEXT}), schema)


@pytest.mark.parametrize(
    ("schema", "pattern"),
    [
        ({"type": "string", "pattern": r"^(a+)\1$"}, r"^(a+)\1$"),
        ({"type": "string", "pattern": "^(?=.*x)"}, "^(?=.*x)"),
        ({"type": "object", "patternProperties": {"(?<!a)b": {}}}, "(?<!a)b"),
        (
            {"type": "array", "items": {"properties": {"a": {"pattern": "(?!x)"}}}},
            "(?!x)",
        ),
        ({"$defs": {"unused": {"pattern": r"(a)\1"}}}, r"(a)\1"),
    ],
)
def test_a_pattern_that_needs_backtracking_is_refused_up_front(schema, pattern):
    with pytest.raises(InvalidRequest) as caught:
        check_schema(schema)
    error = caught.value
    assert error.code == "invalid_request"
    assert error.field == "json_schema"
    assert f"The JSON schema's pattern {pattern!r} cannot be used: " in error.message
    assert "backreferences and lookaround are not supported" in error.message


def test_a_refused_schema_is_never_run_even_when_not_checked_first():
    with pytest.raises(SchemaMismatch) as caught:
        parse_reply('"aa"', {"type": "string", "pattern": r"^(a)\1$"})
    assert "the schema cannot be used" in str(caught.value)


def test_pattern_properties_with_unevaluated_properties_is_refused():
    schema = {
        "type": "object",
        "allOf": [{"patternProperties": {"^x": {}}}],
        "unevaluatedProperties": False,
    }
    with pytest.raises(InvalidRequest) as caught:
        check_schema(schema)
    assert "patternProperties together with unevaluatedProperties" in caught.value.message
    # Either alone is fine.
    check_schema({"type": "object", "unevaluatedProperties": False})
    check_schema({"type": "object", "patternProperties": {"^x": {}}})


def test_a_property_named_pattern_is_not_a_pattern():
    schema = {"type": "object", "properties": {"pattern": {"const": r"(a)\1"}}}
    check_schema(schema)
    assert parse_reply(r'{"pattern": "(a)\\1"}', schema) == {"pattern": r"(a)\1"}


# --- One validation per reply ---------------------------------------------------------------------


def test_a_repeated_failing_reply_is_validated_once(monkeypatch):
    searched = []
    search = structured._search
    monkeypatch.setattr(
        structured, "_search", lambda pattern, text: searched.append(text) or search(pattern, text)
    )
    reply = wire.or_completion(json.dumps(EVIL_TEXT), model="a/b", usage=wire.or_usage(5, 7))
    with responses.RequestsMock() as http:
        for _ in range(2):  # the answer, and the retry's: the same text
            http.add(responses.POST, f"{OPENROUTER_URL}/chat/completions", body=reply)
        request = ChatRequest.from_prompt(
            "Hi", model="a/b", json_schema={"type": "string", "pattern": EVIL}
        )
        with cut_off_after(20), pytest.raises(InvalidStructuredOutput) as caught:
            OpenRouterProvider(FAKE_KEYS["openrouter"]).complete(request)
    assert searched == [EVIL_TEXT]
    assert caught.value.requests == 2
    assert caught.value.raw_text == json.dumps(EVIL_TEXT)
    assert caught.value.partial_usage.prompt_tokens == 10
