"""The JSON parser: DRF's answers (data or the same parse error) for every body, also through
its one-call UTF-8 decoding; and a document nested too deeply is a 400, not a 500."""

from __future__ import annotations

import io

import pytest
from rest_framework import parsers as drf_parsers
from rest_framework.exceptions import ParseError

from llm_providers.api.parsers import JSONParser
from tests.api.support import API, assert_error

BODIES = [
    b'{"prompt": "hello"}',
    '{"prompt": "naïve ☃ 😀"}'.encode(),
    b'{"prompt": "\\ud800"}',  # a lone surrogate, escaped: valid JSON
    b'{"prompt": "hi"}\xe2\x82',  # an incomplete sequence at the very end
    b'{"prompt": "\xe2\x82"}',  # ... and in the middle
    b'{"prompt": "\xff"}',
    b"\xef\xbb\xbf{}",  # a BOM
    b'{"t": NaN}',
    b'{"t": Infinity}',
    b'{"t": 1e999}',
    b"",
    b"   ",
    b"{",
    b"[1, 2, 3]",
    b'"just a string"',
    b"null",
    b"[" * 100_000 + b"]" * 100_000,
]


def answer(parser, body: bytes, encoding: str | None):
    context = {} if encoding is None else {"encoding": encoding}
    try:
        return "data", parser.parse(io.BytesIO(body), "application/json", context)
    except ParseError as exc:
        return "error", str(exc.detail)
    except RecursionError:
        return "recursion", None


class DRFJSONParser(drf_parsers.JSONParser):
    """DRF's own parser, with only our guard against deep nesting (the behaviour before)."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - the document is nested too deeply.") from None


@pytest.mark.parametrize("encoding", [None, "utf-8", "UTF-8", "utf8", "latin-1", "utf-16"])
@pytest.mark.parametrize("body", BODIES, ids=range(len(BODIES)))
def test_the_same_answer_as_drfs_parser(body, encoding):
    expected = answer(DRFJSONParser(), body, encoding)
    actual = answer(JSONParser(), body, encoding)
    # NaN compares unequal to itself: compare the reprs
    assert repr(actual) == repr(expected)


def test_a_charset_that_is_no_text_encoding_is_refused():
    assert answer(JSONParser(), b"{}", "bz2_codec") == answer(DRFJSONParser(), b"{}", "bz2_codec")
    assert answer(JSONParser(), b"{}", "bz2_codec")[0] == "error"


def test_a_stream_other_than_a_buffer_goes_through_drf():
    class Stream(io.RawIOBase):
        def __init__(self, data):
            self._data = io.BytesIO(data)

        def readinto(self, buffer):
            return self._data.readinto(buffer)

        def readable(self):
            return True

    assert JSONParser().parse(Stream(b'{"a": 1}'), "application/json", {}) == {"a": 1}


@pytest.mark.django_db
def test_deep_nesting_is_a_400(api):
    body = b"[" * 100_000 + b"]" * 100_000
    response = api.post(API + "generate/", body, content_type="application/json")
    error = assert_error(response, 400, "invalid_request")
    assert "nested too deeply" in error["message"]


@pytest.mark.django_db
def test_malformed_json_is_a_400_with_drfs_message(api):
    response = api.post(API + "generate/", b'{"prompt": ', content_type="application/json")
    error = assert_error(response, 400, "invalid_request")
    assert error["message"].startswith("JSON parse error - Expecting value")
