"""The JSON parser: DRF's, with a document nested too deeply refused as a 400, not a 500."""

from __future__ import annotations

import io

import pytest
from rest_framework.exceptions import ParseError

from llm_providers.api.parsers import JSONParser
from tests.api.support import API, assert_error


def test_deep_nesting_is_a_parse_error():
    body = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(ParseError, match="nested too deeply"):
        JSONParser().parse(io.BytesIO(body), "application/json", {})


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
