"""Server-sent events, read the way the three upstreams send them.

OpenRouter sends comment lines (``: OPENROUTER PROCESSING``) while it waits and ends with
``data: [DONE]``; Gemini frames events with ``\\r\\n\\r\\n`` and sends no sentinel; Hugging Face
follows OpenAI. One parser covers all: it yields the data of each event, joining multi-line data
with ``\\n`` as the SSE standard says, and ignores comments and ``event:``/``id:`` fields.
https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation
"""

from collections.abc import Iterable, Iterator


def iter_sse_data(lines: Iterable[bytes | str]) -> Iterator[str]:
    """Yield the ``data`` of each event in a stream given line by line (without line ends)."""
    data: list[str] = []
    for raw in lines:
        line = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        # requests' iter_lines may hand over a stray "\r" when "\r\n" straddles two chunks.
        line = line.rstrip("\r")
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if name == "data":
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        # A stream cut off without the final blank line still delivers what it sent.
        yield "\n".join(data)
