"""The SSE reader, fed the way requests' ``iter_lines`` feeds it and the three upstreams frame."""

import io

import pytest
import requests

from llm_providers.providers.sse import iter_sse_data
from tests.providers import wire


def lines_of(transcript: bytes, chunk_size: int = 512):
    """``transcript`` as requests' ``iter_lines`` hands it over, read ``chunk_size`` at a time."""
    response = requests.Response()
    response.raw = io.BytesIO(transcript)
    response.status_code = 200
    return response.iter_lines(chunk_size=chunk_size)


def test_data_of_each_event():
    assert list(iter_sse_data([b"data: one", b"", b"data: two", b""])) == ["one", "two"]


def test_str_lines_too():
    assert list(iter_sse_data(["data: one", ""])) == ["one"]


def test_comment_lines_are_skipped():
    lines = [b": OPENROUTER PROCESSING", b"", b": OPENROUTER PROCESSING", b"", b"data: x", b""]
    assert list(iter_sse_data(lines)) == ["x"]


def test_multi_line_data_is_joined_with_newlines():
    assert list(iter_sse_data([b"data: a", b"data: b", b"data:c", b""])) == ["a\nb\nc"]


def test_only_one_leading_space_is_removed():
    assert list(iter_sse_data([b"data:  two spaces", b""])) == [" two spaces"]


def test_other_fields_are_ignored():
    lines = [b"event: message", b"id: 7", b"retry: 1000", b"data: payload", b""]
    assert list(iter_sse_data(lines)) == ["payload"]


def test_event_without_data_yields_nothing():
    assert list(iter_sse_data([b"event: ping", b"", b"id: 1", b""])) == []


def test_a_field_without_colon_counts_as_its_name():
    # "data" alone is the data field with an empty value.
    assert list(iter_sse_data([b"data", b"data: x", b""])) == ["\nx"]


def test_stray_carriage_returns_are_dropped():
    assert list(iter_sse_data([b"data: x\r", b"\r"])) == ["x"]


def test_last_event_without_blank_line_is_delivered():
    assert list(iter_sse_data([b"data: a", b"", b"data: tail"])) == ["a", "tail"]


def test_utf8_payloads():
    assert list(iter_sse_data(["data: картофель ジャガイモ".encode(), b""])) == [
        "картофель ジャガイモ"
    ]


def test_openrouter_transcript_through_iter_lines():
    transcript = wire.or_stream(["Hello", " there!"])
    events = list(iter_sse_data(lines_of(transcript)))
    assert events[-1] == "[DONE]"
    assert len(events) == 6  # role, 2 deltas, finish, usage, [DONE]; comments skipped
    assert '"content":"Hello"' in events[1]


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 7, 64, 512])
def test_gemini_crlf_framing_survives_any_chunking(chunk_size):
    # Google frames events with \r\n\r\n; a read may split a \r\n pair.
    transcript = wire.gemini_stream(["Here", " you go"])
    events = list(iter_sse_data(lines_of(transcript, chunk_size)))
    assert len(events) == 3
    assert all(e.startswith('{"candidates": ') for e in events)
    assert '"text": "Here"' in events[0]
    assert '"text": " you go"' in events[1]
    assert '"finishReason": "STOP"' in events[2]


@pytest.mark.parametrize("sep", ["\n\n", "\r\n\r\n", "\r\r"])
def test_every_line_ending_the_standard_allows(sep):
    transcript = f"data: a{sep}data: b{sep}".encode()
    assert list(iter_sse_data(lines_of(transcript, 3))) == ["a", "b"]
