"""Content negotiation: the shortcut for everyday ``Accept`` and ``Content-Type`` headers
answers as DRF does."""

from __future__ import annotations

import itertools

import pytest
from django.http import Http404
from rest_framework.exceptions import NotAcceptable
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from llm_providers.api.negotiation import PlainContentNegotiation
from llm_providers.api.streaming import StreamingContentNegotiation
from llm_providers.api.views import CSVRenderer, FormatParameterWins
from tests.api.support import API


class CharsetJSONRenderer(JSONRenderer):
    media_type = "application/json; charset=utf-8"


class AnyRenderer(BaseRenderer):
    media_type = "*/*"
    format = "any"


ACCEPTS = [
    None,
    "*/*",
    "application/json",
    "text/csv",
    "application/json; indent=4",
    "application/*",
    "text/html",
    "",
    "*/*;q=0.8, text/csv",
    "application/json, */*",
    "Application/JSON",
]
QUERIES = ["", "format=csv", "format=json", "format=", "format=xml", "other=1"]
RENDERER_SETS = [
    [JSONRenderer],
    [JSONRenderer, CSVRenderer],
    [CSVRenderer, JSONRenderer],
    [CharsetJSONRenderer],
    [AnyRenderer, JSONRenderer],
]


def outcome(negotiator, accept, query, renderer_classes, format_suffix=None):
    headers = {} if accept is None else {"HTTP_ACCEPT": accept}
    request = Request(APIRequestFactory().get("/x/?" + query, **headers))
    renderers = [cls() for cls in renderer_classes]
    try:
        renderer, media_type = negotiator.select_renderer(request, renderers, format_suffix)
    except (NotAcceptable, Http404) as exc:
        return type(exc)
    return type(renderer), media_type


def test_the_same_answer_as_drf():
    for accept, query, classes in itertools.product(ACCEPTS, QUERIES, RENDERER_SETS):
        expected = outcome(DefaultContentNegotiation(), accept, query, classes)
        actual = outcome(PlainContentNegotiation(), accept, query, classes)
        assert actual == expected, (accept, query, classes)


class ParamJSONParser(JSONParser):
    media_type = "application/json; version=2"


CONTENT_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "APPLICATION/JSON",
    "application/jsonx",
    "application/json-patch+json",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/json; version=2",
    "text/plain",
    "",
    "application/" + "j" * 300,
]
PARSER_SETS = [
    [JSONParser],
    [FormParser, JSONParser],
    [JSONParser, FormParser, MultiPartParser],
    [ParamJSONParser, JSONParser],
    [],
]


def chosen_parser(negotiator, content_type, parser_classes):
    request = Request(APIRequestFactory().generic("POST", "/x/", b"{}", content_type))
    parser = negotiator.select_parser(request, [cls() for cls in parser_classes])
    return type(parser) if parser else None


def test_the_same_parser_as_drf():
    for content_type, classes in itertools.product(CONTENT_TYPES, PARSER_SETS):
        expected = chosen_parser(DefaultContentNegotiation(), content_type, classes)
        actual = chosen_parser(PlainContentNegotiation(), content_type, classes)
        assert actual == expected, (content_type, classes)


@pytest.mark.parametrize("suffix", ["json", "csv", "xml"])
def test_a_format_suffix_goes_through_drf(suffix):
    classes = [JSONRenderer, CSVRenderer]
    expected = outcome(DefaultContentNegotiation(), None, "", classes, suffix)
    assert outcome(PlainContentNegotiation(), None, "", classes, suffix) == expected


def test_the_api_negotiators_build_on_it():
    assert issubclass(StreamingContentNegotiation, PlainContentNegotiation)
    assert issubclass(FormatParameterWins, PlainContentNegotiation)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("accept", "status"),
    [(None, 200), ("*/*", 200), ("application/json", 200), ("text/html", 406)],
)
def test_the_api_answers_as_before(api, accept, status):
    headers = {} if accept is None else {"HTTP_ACCEPT": accept}
    response = api.get(API + "providers/", **headers)
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
