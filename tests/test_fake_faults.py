"""The fake upstream's stream faults, error shapes, outage windows and prefill continuations, seen
from a raw HTTP client on loopback.

A raw socket client (``call``) is used instead of ``requests``: it timestamps every read, so a
test measures the silences the faults promise, and it sees whether a chunked response really
ended (the ``0\\r\\n\\r\\n`` terminator) or the connection died under it.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.parse
from dataclasses import asdict, dataclass, field

import pytest

from fake_upstream import FakeConfig, FakeUpstream, FakeUpstreamClient
from fake_upstream.dialects import CONTENT_POLICY, PREFILL_REFUSED
from fake_upstream.faults import FaultError, parse_faults
from tests.conftest import FAKE_KEYS

PROMPT = "Summarise the paper Attention Is All You Need in one line"
DIALECTS = ["openrouter", "gemini", "huggingface", "openai"]
OPENAI_SHAPED = ["openrouter", "huggingface", "openai"]
# The gap a silence must at least show, and the most that "at once" may take, in seconds.
SILENCE = 0.4
PROMPTLY = 0.25


@dataclass
class Wire:
    """One exchange as the client saw it."""

    status: int
    headers: dict[str, str]
    body: bytes  # de-chunked
    complete: bool  # the response ended properly (chunked terminator / whole Content-Length)
    reads: list[tuple[float, bytes]] = field(default_factory=list)  # (s after sending, raw)
    closed_at: float = 0.0  # when the connection ended (EOF or reset), s after sending

    def arrived(self, marker: bytes) -> float:
        """When the raw bytes holding ``marker`` had all arrived (s after sending)."""
        raw = b"".join(data for _, data in self.reads)
        end = raw.index(marker) + len(marker)
        seen = 0
        for moment, data in self.reads:
            seen += len(data)
            if seen >= end:
                return moment
        raise AssertionError("unreachable")

    @property
    def first_read(self) -> float:
        return self.reads[0][0]

    def json(self):
        return json.loads(self.body)

    def events(self) -> list[str]:
        """SSE events' data (comments kept as ``: …``), in order."""
        text = self.body.decode().replace("\r\n", "\n")
        return [e.removeprefix("data: ") for e in text.split("\n\n") if e]

    def data_events(self) -> list[str]:
        return [e for e in self.events() if not e.startswith(":")]


def call(url: str, path: str, body: dict, headers: dict[str, str], timeout: float = 5.0) -> Wire:
    """POST ``body`` as JSON over a fresh connection and read until the server closes it."""
    parts = urllib.parse.urlsplit(url)
    payload = json.dumps(body).encode()
    head = [
        f"POST {path} HTTP/1.1",
        f"Host: {parts.netloc}",
        "Content-Type: application/json",
        f"Content-Length: {len(payload)}",
        "Connection: close",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    reads: list[tuple[float, bytes]] = []
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        # The clock starts before the request leaves: the fake may answer before sendall()
        # returns (it runs in a thread of this process).
        start = time.monotonic()
        sock.sendall("\r\n".join(head).encode() + b"\r\n\r\n" + payload)
        while True:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            reads.append((time.monotonic() - start, data))
        closed_at = time.monotonic() - start
    return _parse(reads, closed_at)


def _parse(reads: list[tuple[float, bytes]], closed_at: float) -> Wire:
    if not reads:  # dropped without an answer
        return Wire(0, {}, b"", False, reads, closed_at)
    raw = b"".join(data for _, data in reads)
    head, _, rest = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    if headers.get("transfer-encoding") == "chunked":
        body, complete = _dechunk(rest)
    else:
        length = int(headers.get("content-length", len(rest)))
        body, complete = rest, len(rest) >= length
    return Wire(int(status_line.split()[1]), headers, body, complete, reads, closed_at)


def _dechunk(data: bytes) -> tuple[bytes, bool]:
    body = b""
    while True:
        size_line, sep, data = data.partition(b"\r\n")
        if not sep:
            return body, False
        size = int(size_line, 16)
        if size == 0:
            return body, data.startswith(b"\r\n")
        body += data[:size]
        data = data[size + 2 :]


# --- Speaking each dialect ---------------------------------------------------------------------


def generate(
    fake: FakeUpstream,
    dialect: str,
    *,
    stream: bool = False,
    prefill: str | None = None,
    prompt: str = PROMPT,
    **extra,
) -> Wire:
    """One generation request in ``dialect``'s own format (``prefill``: a trailing assistant
    message)."""
    if dialect == "gemini":
        contents = [{"role": "user", "parts": [{"text": prompt}]}]
        if prefill is not None:
            contents.append({"role": "model", "parts": [{"text": prefill}]})
        action = "streamGenerateContent?alt=sse" if stream else "generateContent"
        path = f"/gemini/v1beta/models/gemini-2.5-flash:{action}"
        body = {"contents": contents, **extra}
        return call(fake.url, path, body, {"x-goog-api-key": FAKE_KEYS["gemini"]})
    messages = [{"role": "user", "content": prompt}]
    if prefill is not None:
        messages.append({"role": "assistant", "content": prefill})
    path, model, key = {
        "openrouter": ("/openrouter/api/v1", "openai/gpt-4o-mini", FAKE_KEYS["openrouter"]),
        "huggingface": ("/hf/v1", "meta-llama/Llama-3.1-8B-Instruct", FAKE_KEYS["huggingface"]),
        "openai": ("/openai/v1", "llama3.2", None),
    }[dialect]
    body = {"model": model, "messages": messages, **extra}
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return call(fake.url, f"{path}/chat/completions", body, headers)


def text_of(dialect: str, wire: Wire) -> str:
    """The reply text of a plain answer."""
    assert wire.status == 200, wire.body
    body = wire.json()
    if dialect == "gemini":
        return "".join(p["text"] for p in body["candidates"][0]["content"]["parts"])
    return body["choices"][0]["message"]["content"]


def chunk_text(dialect: str, event: str) -> str:
    chunk = json.loads(event)
    if dialect == "gemini":
        parts = (chunk.get("candidates") or [{}])[0].get("content", {}).get("parts", [])
        return "".join(p.get("text", "") for p in parts)
    choices = chunk.get("choices") or [{}]
    return choices[0].get("delta", {}).get("content") or ""


def streamed_text(dialect: str, wire: Wire) -> str:
    return "".join(chunk_text(dialect, e) for e in wire.data_events() if e != "[DONE]")


def is_finish(dialect: str, event: str) -> bool:
    chunk = json.loads(event)
    if dialect == "gemini":
        return "finishReason" in chunk["candidates"][0]
    return any(c.get("finish_reason") for c in chunk["choices"])


@pytest.fixture(scope="module")
def upstream():
    with FakeUpstream() as fake:
        yield fake


@pytest.fixture
def fake(upstream):
    upstream.reset()
    upstream.configure(**{**asdict(FakeConfig()), "completion_words": 60})
    return upstream


def words(text: str, n: int) -> str:
    return " ".join(text.split(" ")[:n])


# --- The same text everywhere, and continuations -----------------------------------------------


def test_every_dialect_gives_the_same_text_streamed_or_not(fake):
    texts = set()
    for dialect in DIALECTS:
        plain = text_of(dialect, generate(fake, dialect))
        stream = generate(fake, dialect, stream=True)
        assert stream.complete and streamed_text(dialect, stream) == plain, dialect
        texts.add(plain)
    [text] = texts
    assert text.startswith("Echo: Summarise the paper") and len(text.split()) == 60


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_prefill_is_continued(fake, dialect):
    full = text_of(dialect, generate(fake, dialect))
    for prefill in (words(full, 12), full[:13], words(full, 12) + " "):
        rest = text_of(dialect, generate(fake, dialect, prefill=prefill))
        assert prefill + rest == full, prefill
        stream = generate(fake, dialect, stream=True, prefill=prefill)
        assert prefill + streamed_text(dialect, stream) == full
    assert text_of(dialect, generate(fake, dialect, prefill="Something else")) == full
    assert text_of(dialect, generate(fake, dialect, prefill=full)) == ""


def test_a_continuation_counts_its_own_words(fake):
    full = text_of("openai", generate(fake, "openai"))
    body = generate(fake, "openai", prefill=words(full, 50)).json()
    assert body["usage"]["completion_tokens"] == 10
    short = generate(fake, "openai", prefill=words(full, 50), max_tokens=4).json()
    assert short["choices"][0]["finish_reason"] == "length"
    assert short["choices"][0]["message"]["content"] == " " + " ".join(full.split()[50:54])


@pytest.mark.parametrize("dialect", DIALECTS)
def test_refuse_prefill(fake, dialect):
    fake.script(dialect, ["refuse_prefill", "refuse_prefill"])
    refused = generate(fake, dialect, prefill="Echo: Summarise")
    assert refused.status == 400
    body = refused.json()
    if dialect == "gemini":
        assert body["error"]["status"] == "INVALID_ARGUMENT"
        assert body["error"]["message"] == PREFILL_REFUSED
    elif dialect == "openrouter":
        assert body["error"]["message"] == "Provider returned error"
        raw = json.loads(body["error"]["metadata"]["raw"])
        assert raw["error"]["message"] == PREFILL_REFUSED
    else:
        assert body["error"]["message"] == PREFILL_REFUSED
        assert body["error"]["type"] == "invalid_request_error"
    assert fake.pending()[dialect] == [{"fault": "refuse_prefill"}]
    assert generate(fake, dialect).status == 200  # no prefill: answered, and consumed
    assert fake.pending()[dialect] == []


# --- Silences: first token, stalls --------------------------------------------------------------


@pytest.mark.parametrize("dialect", DIALECTS)
def test_first_token_delay_sends_the_headers_then_waits(fake, dialect):
    fake.script(dialect, [{"fault": "first_token_delay", "delay_ms": SILENCE * 1000}])
    wire = generate(fake, dialect, stream=True)
    assert wire.status == 200 and wire.complete
    assert wire.first_read < PROMPTLY  # the headers, at once
    first = wire.data_events()[0]
    assert wire.arrived(first.encode()) >= SILENCE
    assert wire.body.lstrip().startswith(b"data:" if dialect != "openrouter" else b":")
    assert streamed_text(dialect, wire) == text_of(dialect, generate(fake, dialect))


def test_first_token_delay_can_send_keep_alive_comments(fake):
    fake.script(
        "openrouter", [{"fault": "first_token_delay", "delay_ms": 500, "comment_every_ms": 100}]
    )
    wire = generate(fake, "openrouter", stream=True)
    events = wire.events()
    leading = events[: events.index(wire.data_events()[0])]
    assert len(leading) >= 4 and set(leading) == {": OPENROUTER PROCESSING"}
    comment_times = [t for t, data in wire.reads if b": OPENROUTER PROCESSING" in data]
    assert comment_times and comment_times[0] < 0.3
    assert wire.arrived(wire.data_events()[0].encode()) >= 0.5
    fake.script(
        "openai", [{"fault": "first_token_delay", "delay_ms": 300, "comment_every_ms": 100}]
    )
    assert ": keep-alive" in generate(fake, "openai", stream=True).events()


def test_first_token_delay_on_a_plain_answer(fake):
    fake.script("gemini", [{"fault": "first_token_delay", "delay_ms": SILENCE * 1000}])
    wire = generate(fake, "gemini")
    assert wire.first_read >= SILENCE and wire.status == 200
    assert text_of("gemini", wire).startswith("Echo:")


@pytest.mark.parametrize("dialect", DIALECTS)
def test_stall_sends_some_text_then_silence_then_a_broken_end(fake, dialect):
    fake.script(dialect, [{"fault": "stall", "after_words": 12, "stall_ms": SILENCE * 1000}])
    wire = generate(fake, dialect, stream=True)
    full = text_of(dialect, generate(fake, dialect))
    assert wire.status == 200 and not wire.complete
    events = wire.data_events()
    assert streamed_text(dialect, wire) == words(full, 15)  # three chunks of five words
    assert wire.arrived(events[-1].encode()) < PROMPTLY  # sent, not held back
    assert wire.closed_at >= SILENCE
    assert "[DONE]" not in events and not any(is_finish(dialect, e) for e in events)
    assert not any(json.loads(e).get("usage") for e in events)  # Gemini's: usageMetadata


def test_stall_is_cancelled_when_the_client_hangs_up(fake):
    fake.script("openai", [{"fault": "stall", "after_words": 5, "stall_ms": 30_000}])
    app = fake._server.fake  # the fake's own state: which of its requests are still waiting

    def waiting() -> int:
        return fake._call(lambda: len(app.hanging))

    def until(condition) -> bool:
        deadline = time.monotonic() + 2
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.01)
        return condition()

    body = json.dumps({"model": "llama3.2", "stream": True, "messages": [{"role": "user"}]})
    request = (
        "POST /openai/v1/chat/completions HTTP/1.1\r\nHost: fake\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}"
    )
    with socket.create_connection(("127.0.0.1", fake._server.port), timeout=5) as sock:
        sock.sendall(request.encode())
        received = b""
        while b"Echo:" not in received:
            received += sock.recv(65536)
        assert until(lambda: waiting() == 1)
    assert until(lambda: waiting() == 0)  # the client left: the stall ended with it


def test_stall_on_a_plain_answer_drops_the_connection(fake):
    fake.script("huggingface", [{"fault": "stall", "stall_ms": 300}])
    wire = generate(fake, "huggingface")
    assert wire.reads == [] and wire.closed_at >= 0.3


# --- Cuts, bad events, missing [DONE] -----------------------------------------------------------


@pytest.mark.parametrize("dialect", DIALECTS)
def test_cut_kills_the_connection_after_some_text(fake, dialect):
    full = text_of(dialect, generate(fake, dialect))
    fake.script(
        dialect,
        [{"fault": "cut", "after_words": 10}, {"fault": "cut", "after_words": 10, "abort": False}],
    )
    cut = generate(fake, dialect, stream=True)
    assert cut.status == 200 and not cut.complete
    assert streamed_text(dialect, cut) == words(full, 10)
    ended = generate(fake, dialect, stream=True)
    assert ended.complete  # the HTTP response ended, the stream did not
    assert streamed_text(dialect, ended) == words(full, 10)
    for wire in (cut, ended):
        events = wire.data_events()
        assert "[DONE]" not in events and not any(is_finish(dialect, e) for e in events)


def test_cut_before_any_text_and_on_a_plain_answer(fake):
    fake.script("openrouter", [{"fault": "cut", "after_words": 0}, "cut"])
    wire = generate(fake, "openrouter", stream=True)
    assert not wire.complete and wire.data_events() == []
    plain = generate(fake, "openrouter")
    assert plain.status == 200 and not plain.complete


@pytest.mark.parametrize("dialect", DIALECTS)
def test_bad_event_sits_inside_a_complete_stream(fake, dialect):
    fake.script(dialect, [{"fault": "bad_event", "after_words": 8}])
    wire = generate(fake, dialect, stream=True)
    assert wire.complete
    events = wire.data_events()
    bad = []
    for i, event in enumerate(events):
        try:
            json.loads(event)
        except ValueError:
            bad.append(i)
    assert bad == (
        [2, len(events) - 1] if dialect != "gemini" else [2]
    )  # [DONE] is no JSON  # after the second five-word chunk
    good = events[:2] + events[3:]
    text = "".join(chunk_text(dialect, e) for e in good if e != "[DONE]")
    assert text == text_of(dialect, generate(fake, dialect))
    assert any(is_finish(dialect, e) for e in good if e != "[DONE]")
    assert (events[-1] == "[DONE]") == (dialect != "gemini")


@pytest.mark.parametrize("dialect", DIALECTS)
def test_no_done(fake, dialect):
    normal = generate(fake, dialect, stream=True).data_events()
    fake.script(dialect, ["no_done"])
    wire = generate(fake, dialect, stream=True)
    assert wire.complete
    events = wire.data_events()
    assert "[DONE]" not in events
    if dialect == "gemini":
        assert len(events) == len(normal)
    else:
        assert normal[-1] == "[DONE]" and len(events) == len(normal) - 1
        assert json.loads(events[-1])["usage"]["completion_tokens"] == 60


# --- Refusals in the providers' formats ---------------------------------------------------------


def test_context_length_errors(fake):
    for dialect in DIALECTS:
        fake.script(dialect, ["context_length"])
    body = generate(fake, "openrouter").json()
    assert body["error"]["code"] == 400
    assert body["error"]["message"].startswith("This endpoint's maximum context length is 128000")
    assert body["error"]["metadata"]["previous_errors"][0]["code"] == 400
    for dialect in ("huggingface", "openai"):
        wire = generate(fake, dialect, stream=True)
        assert wire.status == 400
        error = wire.json()["error"]
        assert error["code"] == "context_length_exceeded"
        assert (error["type"], error["param"]) == ("invalid_request_error", "messages")
        assert "maximum context length is" in error["message"]
    wire = generate(fake, "gemini")
    assert wire.status == 400
    assert wire.json()["error"] == {
        "code": 400,
        "message": "The input token count exceeds the maximum number of tokens allowed (1048576).",
        "status": "INVALID_ARGUMENT",
    }


def test_content_policy(fake):
    for dialect in DIALECTS:
        fake.script(dialect, ["content_policy", "content_policy"])
    for dialect in ("huggingface", "openai"):
        wire = generate(fake, dialect)
        assert wire.status == 400
        assert wire.json()["error"]["code"] == "content_policy_violation"
        assert wire.json()["error"]["message"] == CONTENT_POLICY
    relayed = generate(fake, "openrouter").json()["error"]
    assert relayed["code"] == 400 and relayed["metadata"]["provider_name"] == "OpenAI"
    assert json.loads(relayed["metadata"]["raw"])["error"]["code"] == "content_policy_violation"
    blocked = generate(fake, "gemini")
    assert blocked.status == 200
    assert "candidates" not in blocked.json()
    assert blocked.json()["promptFeedback"] == {"blockReason": "SAFETY"}
    streamed = generate(fake, "gemini", stream=True)
    [event] = streamed.data_events()
    assert streamed.complete and json.loads(event)["promptFeedback"]["blockReason"] == "SAFETY"


# --- Outage windows, chunk delays, scripts ------------------------------------------------------


def test_an_outage_window_holds_then_gives_way(fake):
    # Long enough that a request slowed down by a loaded machine still lands inside it.
    window = 1.0
    fake.script("gemini", [{"status": 503, "for_seconds": window}, {"status": 429}])
    sent = time.monotonic()
    statuses = [generate(fake, "gemini").status]
    answered = time.monotonic()
    # The window opened when the fake received that first request: between sent and answered.
    while time.monotonic() - sent < window / 2:
        statuses.append(generate(fake, "gemini").status)
    assert len(statuses) >= 3 and set(statuses) == {503}
    assert fake.pending()["gemini"][0] == {"fault": "status", "status": 503, "for_seconds": window}
    time.sleep(max(0.0, answered + window + 0.05 - time.monotonic()))
    assert generate(fake, "gemini").status == 429
    assert generate(fake, "gemini").status == 200
    assert fake.pending()["gemini"] == []


def test_outage_windows_apply_to_any_fault(fake):
    fake.script("openai", [{"fault": "cut", "after_words": 5, "for_seconds": 0.3}])
    assert not generate(fake, "openai", stream=True).complete
    assert not generate(fake, "openai", stream=True).complete
    time.sleep(0.35)
    assert generate(fake, "openai", stream=True).complete


def test_clear_scripts_keeps_the_records(fake):
    remote = FakeUpstreamClient(fake.url)
    fake.script("openai", [{"status": 503, "for_seconds": 60}, "hang"])
    assert generate(fake, "openai").status == 503
    remote.clear_scripts()
    assert fake.pending()["openai"] == []
    assert generate(fake, "openai").status == 200
    assert [r["status"] for r in fake.requests("openai")] == [503, 200]
    fake.script("gemini", [{"status": 500, "for_seconds": 60}])
    assert generate(fake, "gemini").status == 500
    fake.clear_scripts()
    assert generate(fake, "gemini").status == 200


def test_a_chunk_delay_sends_the_cut_stream_piece_by_piece(fake):
    fake.configure(stream_chunk_delay_ms=150)
    fake.script("huggingface", [{"fault": "cut", "after_words": 10}])
    wire = generate(fake, "huggingface", stream=True)
    first, second = wire.data_events()
    # 150 ms apart when sent; the client may notice the first a little late (a busy thread).
    assert wire.arrived(second.encode()) - wire.arrived(first.encode()) >= 0.1
    assert not wire.complete


def test_new_fault_scripts_are_validated():
    cut, stall, first, bad = parse_faults(
        ["cut", {"fault": "stall", "stall_ms": 5}, "first_token_delay", "bad_event"]
    )
    assert cut.as_dict() == {"fault": "cut", "after_words": 40}
    assert stall.as_dict() == {"fault": "stall", "after_words": 20, "stall_ms": 5}
    assert first.as_dict() == {
        "fault": "first_token_delay",
        "delay_ms": 20000,
        "comment_every_ms": 0,
    }
    assert bad.after_words == 20
    for name in ("no_done", "context_length", "content_policy", "refuse_prefill"):
        assert parse_faults([name])[0].kind == name
    for wrong in (
        {"fault": "cut", "after_words": 1.5},
        {"fault": "cut", "abort": "yes"},
        {"fault": "stall", "stall_ms": -1},
        {"status": 503, "for_seconds": "long"},
        {"fault": "cut", "words": 3},
    ):
        with pytest.raises(FaultError):
            parse_faults([wrong])
