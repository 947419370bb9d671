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
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # tell nginx-style proxies not to buffer the stream
    return response


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
                yield sse(done, event="done")
    except LLMError as exc:
        yield sse({"error": exc.as_dict()}, event="error")
    finally:
        items.close()
