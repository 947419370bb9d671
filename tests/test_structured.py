"""Structured JSON: checking a caller's schema, parsing and validating a model's reply."""

import pytest

from llm_providers.exceptions import InvalidRequest
from llm_providers.structured import SchemaMismatch, check_schema, parse_reply

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
