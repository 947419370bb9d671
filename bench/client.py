"""The bench's load client: plain asyncio, one keep-alive connection per concurrent request.

``load()`` keeps ``concurrency`` requests in flight for a warm-up and a measured window (a
``Cell``); ``load_streams()`` opens one wave of streamed requests and times each one's first
token and end (a ``StreamCell``). Both only talk to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import re
import resource
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field


def percentile(values: list[float], p: float) -> float | None:
    """The p-th percentile of sorted ``values`` (seconds) in ms, nearest rank; None if empty."""
    if not values:
        return None
    rank = max(1, -(-len(values) * p // 100))  # ceil(n * p / 100), at least 1
    return values[int(rank) - 1] * 1000


@dataclass
class Cell:
    """One measurement: a target at one concurrency."""

    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds, sorted
    error_kinds: Counter = field(default_factory=Counter)
    server_cpu: float | None = None  # CPU seconds the server's processes used in the window
    client_cpu: float = 0.0  # CPU seconds this client used in the window
    fake_cpu: float = 0.0  # CPU seconds the fake upstream used in the window
    others_cpu: float = 0.0  # CPU seconds the machine's other processes used in the window
    peak_rss: int | None = None  # bytes: the server's processes' resident memory at its peak

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def pct(self, p: float) -> float | None:
        """The p-th percentile latency in ms (nearest rank), or None without samples."""
        return percentile(self.latencies, p)


@dataclass(frozen=True)
class StreamShape:
    """How to read one kind of event stream: the first event that carries text (``token``,
    searched in the body received so far) and what only a complete stream contains (``done``)."""

    name: str
    token: re.Pattern[bytes]
    done: bytes


# The gateway's generate/ (SPEC §8): ``data: {"delta": …}`` events, then ``event: done``.
GENERATE_EVENTS = StreamShape("generate/", re.compile(rb'data: \{"delta":\s*"[^"]'), b"event: done")
# OpenAI's chat.completion.chunk events (this gateway's v1/, LiteLLM, OpenRouter): a non-empty
# ``content`` (the first chunk may carry only the role), and ``data: [DONE]`` last.
OPENAI_CHUNKS = StreamShape("chat", re.compile(rb'"content":\s*"[^"]'), b"data: [DONE]")
# Gemini's streamGenerateContent?alt=sse: text parts; the last event has a finishReason.
GEMINI_EVENTS = StreamShape("gemini", re.compile(rb'"text":\s*"[^"]'), b'"finishReason"')


@dataclass
class StreamCell:
    """One wave of streamed requests through one target."""

    streams: int = 0  # started
    completed: int = 0  # answered 200 and ended normally with the shape's ``done``
    seconds: float = 0.0  # from the first request sent to the last stream's end
    ttft: list[float] = field(default_factory=list)  # seconds to the first token, sorted
    durations: list[float] = field(default_factory=list)  # whole completed streams, sorted
    error_kinds: Counter = field(default_factory=Counter)
    server_cpu: float | None = None
    client_cpu: float = 0.0
    fake_cpu: float = 0.0
    others_cpu: float = 0.0
    peak_rss: int | None = None

    @property
    def errors(self) -> int:
        return self.streams - self.completed

    @property
    def completion(self) -> float:
        return self.completed / self.streams if self.streams else 0.0

    def ttft_pct(self, p: float) -> float | None:
        return percentile(self.ttft, p)

    def duration_pct(self, p: float) -> float | None:
        return percentile(self.durations, p)


class _Connection:
    """One keep-alive HTTP/1.1 connection sending the same request again and again.

    A few lines of asyncio instead of an HTTP client library: the client shares the machine's
    two cores with the server it measures, and this costs a fraction of what aiohttp's client
    does per request (status line, headers, a Content-Length or chunked body; reconnects when
    the server closes the connection).
    """

    def __init__(self, host: str, port: int, request: bytes):
        self.host, self.port, self.request = host, port, request
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _head(self) -> tuple[int, int | None, bool, bool]:
        """Send the request; (status, Content-Length, chunked, the server closes after)."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(self.request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length, chunked, close = None, False, head.startswith(b"HTTP/1.0")
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value
            elif name == b"connection":
                close = value == b"close"
        return status, length, chunked, close

    async def send(self) -> tuple[int, bytes]:
        """One request: its status, and its body if the status is not 200 (else dropped)."""
        status, length, chunked, close = await self._head()
        reader, body = self.reader, b""
        if chunked:
            while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
                chunk = await reader.readexactly(size + 2)
                if status != 200:
                    body += chunk[:-2]
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass  # trailers
        elif length is not None:
            body = await reader.readexactly(length)
        else:
            body = await reader.read()  # until the server closes
            close = True
        if close:
            self.close()
        return status, (body if status != 200 else b"")

    async def stream(self, shape: StreamShape) -> tuple[int, float | None, bool, bytes]:
        """One streamed request read as it arrives: (status, when the first token came
        (``time.perf_counter()``) or None, whether the body ended normally with ``done``, the
        body of an answer without any token)."""
        status, length, chunked, _ = await self._head()
        reader = self.reader
        first, seen, done = None, bytearray(), False
        keep = len(shape.done) - 1  # a marker split between two reads is still found

        def take(data: bytes) -> None:
            nonlocal first, seen, done
            if first is None:
                seen += data
                if shape.token.search(seen):
                    first = time.perf_counter()
                    done = shape.done in seen
                    del seen[:-keep]
                return
            if not done:
                seen += data
                done = shape.done in seen
                del seen[:-keep]

        if chunked:
            while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
                take((await reader.readexactly(size + 2))[:-2])
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass
        elif length is not None:
            while length > 0:
                data = await reader.read(min(length, 65536))
                if not data:
                    raise asyncio.IncompleteReadError(b"", length)
                length -= len(data)
                take(data)
        else:
            while data := await reader.read(65536):
                take(data)
        self.close()
        return status, first, done and status == 200, bytes(seen) if first is None else b""

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def http_request(url: str, body: dict | None, headers: dict[str, str]) -> tuple[str, int, bytes]:
    """(host, port, the bytes of a keep-alive ``POST url`` with ``body`` as JSON; a ``GET``
    when ``body`` is None)."""
    parts = urllib.parse.urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    data = b"" if body is None else json.dumps(body).encode()
    lines = [
        f"{'GET' if body is None else 'POST'} {path} HTTP/1.1",
        f"Host: {parts.netloc}",
        *(
            []
            if body is None
            else ["Content-Type: application/json", f"Content-Length: {len(data)}"]
        ),
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return parts.hostname, parts.port, ("\r\n".join(lines) + "\r\n\r\n").encode() + data


def raise_fd_limit() -> int:
    """Raise this process's open-file limit to its hard limit (a thousand connections need
    more than the usual soft 1,024; the servers the bench starts inherit it); the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            return soft
    return hard


_FAILURES = (OSError, EOFError, ValueError, asyncio.IncompleteReadError)


def failure(status: int, body: bytes) -> str:
    """How a refused request is counted: its status, and the error code of a JSON body shaped
    ``{"error": {"code": "…"}}`` (the gateway's envelope; OpenAI's ``type`` without a code), so
    that a run says why."""
    try:
        error = json.loads(body).get("error")
        code = error.get("code") or error.get("type") if isinstance(error, dict) else None
    except (ValueError, AttributeError):
        code = None
    return f"HTTP {status}" + (f" {code}" if isinstance(code, str) and code else "")


async def load(
    url: str,
    body: dict | None,
    headers: dict[str, str],
    *,
    concurrency: int,
    warmup: float,
    duration: float,
    timeout: float,
    on_window=None,
    ramp: float = 1.0,
) -> Cell:
    """``concurrency`` keep-alive connections, each sending ``body`` to ``url`` back to back,
    the first requests of the connections spread evenly over ``ramp`` seconds.

    ``on_window(start: bool)`` is called when the measured window opens and closes (for the
    server's CPU time). Requests still in flight when it closes finish, uncounted.
    """
    cell = Cell()
    host, port, request = http_request(url, body, headers)
    now = time.perf_counter
    begin = now()
    opens, closes = begin + warmup, begin + warmup + duration
    ramp = min(ramp, warmup / 2)

    async def user(number: int) -> None:
        # Users start spread over the first part of the warm-up (a ramp), not all at one
        # instant: a closed loop with a fixed upstream delay keeps the first wave in step, so
        # users started within a second of each other with 5 s calls arrive as a burst every
        # 5 s, which no real traffic of that many users sends.
        await asyncio.sleep(ramp * number / concurrency)
        connection = _Connection(host, port, request)
        while (started := now()) < closes:
            try:
                status, body = await asyncio.wait_for(connection.send(), timeout)
            except _FAILURES as exc:
                connection.close()
                kind = type(exc).__name__
            except TimeoutError:
                connection.close()
                kind = "timeout"
            else:
                kind = None if status == 200 else failure(status, body)
            finished = now()
            if opens <= finished < closes:
                if kind is None:
                    cell.latencies.append(finished - started)
                else:
                    cell.errors += 1
                    cell.error_kinds[kind] += 1
            elif kind is not None and finished < opens:
                await asyncio.sleep(0.05)  # refusals during warm-up: do not spin
        connection.close()

    async def window() -> None:
        await asyncio.sleep(max(0.0, opens - now()))
        if on_window:
            on_window(True)
        client_cpu = time.process_time()
        await asyncio.sleep(max(0.0, closes - now()))
        cell.client_cpu = time.process_time() - client_cpu
        if on_window:
            on_window(False)

    await asyncio.gather(window(), *(user(n) for n in range(concurrency)))
    cell.latencies.sort()
    cell.requests = len(cell.latencies)
    cell.seconds = duration
    return cell


async def load_streams(
    url: str,
    body: dict,
    headers: dict[str, str],
    shape: StreamShape,
    *,
    streams: int,
    ramp: float,
    timeout: float,
    on_window=None,
) -> StreamCell:
    """``streams`` streamed requests, started evenly over ``ramp`` seconds, each on its own
    connection and read to its end (or ``timeout``). The window (``on_window``) is the whole
    wave: from before the first request to after the last stream ends."""
    cell = StreamCell(streams=streams)
    host, port, request = http_request(url, body, headers)
    now = time.perf_counter
    ends: list[float] = []

    async def one(number: int) -> None:
        await asyncio.sleep(ramp * number / streams)
        connection = _Connection(host, port, request)
        started, first = now(), None
        try:
            status, first, complete, body = await asyncio.wait_for(
                connection.stream(shape), timeout
            )
        except _FAILURES as exc:
            kind = type(exc).__name__
        except TimeoutError:
            kind = "timeout"
        else:
            kind = None if complete else failure(status, body) if status != 200 else "incomplete"
        finally:
            connection.close()
        ended = now()
        ends.append(ended)
        if first is not None:
            cell.ttft.append(first - started)
        if kind is None:
            cell.completed += 1
            cell.durations.append(ended - started)
        else:
            cell.error_kinds[kind] += 1

    if on_window:
        on_window(True)
    client_cpu, begin = time.process_time(), now()
    await asyncio.gather(*(one(n) for n in range(streams)))
    cell.seconds = max(ends, default=begin) - begin
    cell.client_cpu = time.process_time() - client_cpu
    if on_window:
        on_window(False)
    cell.ttft.sort()
    cell.durations.sort()
    return cell


def stream_ramp(args) -> float:
    """Seconds over which the stream cell's streams start (``--stream-ramp``, by default one
    stream's length, at least 2 s)."""
    if args.stream_ramp is not None:
        return args.stream_ramp
    return max(2.0, args.stream_tokens * args.stream_interval_ms / 1000)
