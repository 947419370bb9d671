"""Server-sent events out of the router's streams.

The first item is pulled before the response starts, so a failure before any text (no provider
answered) is an ordinary HTTP error with its status; after that, errors travel as events. When
the client goes away the server closes the response, which closes the router's stream, which
records the usage (``router._abandoned``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from django.http import StreamingHttpResponse
from rest_framework.exceptions import NotAcceptable
from rest_framework.negotiation import DefaultContentNegotiation

from ..exceptions import LLMError
from ..results import Generation, TextDelta
from .serializers import GenerationSerializer


def sse(data: Any, event: str | None = None) -> str:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data, separators=(',', ':'))}\n\n"


def event_stream_response(
    items: Iterator, encode: Callable[[Iterator], Iterator[str]] | None = None
) -> StreamingHttpResponse:
    """Stream ``items`` (the router's stream) as SSE, encoded by ``encode``."""
    first = next(items, None)  # may raise: then the error gets its HTTP status
    encode = encode or generate_events
    response = StreamingHttpResponse(
        encode(_first_then_rest(first, items)), content_type="text/event-stream"
    )
    # Closing the response closes the router's stream too, also when the server closes it
    # before iterating it (a generator that never started ignores ``close()``, and the
    # stream, whose first item was already pulled, would be accounted only when
    # garbage-collected).
    when_over(response, items.close)
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # tell nginx-style proxies not to buffer the stream
    return response


def when_over(response: StreamingHttpResponse, callback: Callable[[], None]) -> None:
    """Call ``callback`` once ``response``'s stream is over: read to its end, or closed by the
    server (the response sent, or its client gone). Django's way of wrapping a streaming
    response: a new iterator around its content, whose ``close()`` the response calls."""
    response.streaming_content = _Over(response.streaming_content, callback)


class _Over:
    """An iterator that calls ``callback`` when it is exhausted or closed, whichever comes
    first (a class, not a generator: a generator closed before it started would not run its
    ``finally``)."""

    def __init__(self, content: Iterator[bytes], callback: Callable[[], None]):
        self._content = content
        self._callback = callback

    def __iter__(self):
        return self

    def __next__(self) -> bytes:
        try:
            return next(self._content)
        except StopIteration:
            self._callback()
            raise

    def close(self) -> None:
        self._callback()


class StreamingContentNegotiation(DefaultContentNegotiation):
    """The generation endpoints answer whatever the ``Accept`` header says (SPEC §8): an event
    stream for ``stream: true``, JSON otherwise and for every error. An ``Accept`` that no
    renderer matches (``text/event-stream``, what SSE clients send) gets JSON, not a 406."""

    def select_renderer(self, request, renderers, format_suffix=None):
        try:
            return super().select_renderer(request, renderers, format_suffix)
        except NotAcceptable:
            return renderers[0], renderers[0].media_type


def _first_then_rest(first, items: Iterator) -> Iterator:
    try:
        if first is not None:
            yield first
        yield from items
    finally:
        items.close()


def generate_events(items: Iterator) -> Iterator[str]:
    """``generate/``'s events: ``data: {"delta"}``…, then ``event: done`` or ``event: error``."""
    try:
        for item in items:
            if isinstance(item, TextDelta):
                yield sse({"delta": item.text})
            elif isinstance(item, Generation):
                done = dict(GenerationSerializer(item).data)
                done.pop("text", None)
                done.pop("data", None)
                if item.resumed:  # a broken stream continued by the next model (SPEC §5.1)
                    done["resumed"] = True
                yield sse(done, event="done")
    except LLMError as exc:
        yield sse({"error": exc.as_dict()}, event="error")
    finally:
        items.close()
