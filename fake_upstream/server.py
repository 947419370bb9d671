"""A fake of the upstreams (OpenRouter, Gemini, Hugging Face, and a plain OpenAI-compatible
server for custom providers) on one port, over real HTTP.

It speaks their real wire formats (shared/PROVIDERS.md) under one path prefix each, so pointing
a base URL at it is all a client needs::

    OPENROUTER_BASE_URL = {url}/openrouter/api/v1   POST /chat/completions, GET /models, GET /key
    GEMINI_BASE_URL     = {url}/gemini/v1beta       POST /models/{m}:generateContent,
                                                    POST /models/{m}:streamGenerateContent?alt=sse,
                                                    GET /models, GET /models/{m}
    HF_BASE_URL         = {url}/hf/v1               POST /chat/completions, GET /models
    a custom provider's {url}/openai/v1             POST /chat/completions, GET /models
      base_url          {url}/openai/<name>/v1      (the same, one base URL per custom provider)

The OpenAI-compatible route needs no key, like a local Ollama (``dialects.OpenAICompatible``);
its requests are recorded and scripted as provider ``openai``, whichever base URL they used.

Answers are deterministic (``Echo: <first words of the prompt>`` padded to
``completion_words`` words; a JSON object valid for the schema when one is asked for), token
counts are word counts. The same prompt (the last user message's text) and the same
``completion_words`` give the same full text on all four dialects, and a stream's text pieces
joined are exactly the plain answer's text, so a fallback provider produces what the broken one
would have. A conversation ending with an assistant (Gemini: ``model``) message T is a prefill:
the answer is what the full reply has after T when it starts with T (``T + answer == full``),
else the full reply; ``max_tokens`` counts the answer's words only. Streams come in pieces of
``stream_chunk_words`` words, so a fault's ``after_words`` falls on a known chunk.
OpenRouter reports ``usage.cost`` from ``replies.PRICES``. Keys starting with ``bad`` are
rejected the way each provider rejects a bad key. Faults are scripted per provider
(``faults``) and everything is steered through a control API on the same port:

    POST /_fake/script   {"provider": "gemini", "faults": ["reset", {"status": 429, ...}]}
    DELETE /_fake/script drop what is left of the scripts (outage windows too), keep the records
    POST /_fake/reset    clear the scripts and the records (the configuration stays)
    GET  /_fake/requests recorded requests, oldest first (``?provider=gemini`` filters);
                         auth values are never recorded, only whether a key came and its
                         public prefix and last four characters
    GET|POST /_fake/config  {"delay_ms": 1000, "completion_words": 20, ...} (see FakeConfig)
    GET  /_fake/stats    requests served per provider

Run it:

* ``python -m fake_upstream --port 8900 --delay-ms 0`` (``--port 0`` picks a free port) prints
  ``FAKE_UPSTREAM_URL=…``, the three ``*_BASE_URL=…`` lines and
  ``OPENAI_COMPATIBLE_BASE_URL=…``, then serves until interrupted;
* ``with FakeUpstream(delay_ms=0) as fake:`` runs it in a background thread of the current
  process (tests): ``fake.base_urls``, ``fake.script()``, ``fake.requests()`` …;
* ``FakeUpstreamClient(url)`` steers one started elsewhere (the CLI) with the same methods.

Built to never be the bottleneck of a benchmark: no per-request logging (aiohttp's access log is
off), one ``json.dumps`` per body, delays are ``asyncio.sleep`` (thousands wait concurrently),
keep-alive on, a 2048-connection backlog. ``python -m fake_upstream.loadcheck`` measures
it alone (requests/s at 256 connections, and the fake's own CPU time per request: about
0.2-0.3 ms on this 2-core machine, i.e. several thousand requests/s per core).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter, deque
from dataclasses import asdict, dataclass, fields
from typing import Any

from aiohttp import web

from .dialects import (
    DONE,
    Answer,
    Ask,
    Dialect,
    Gemini,
    HuggingFace,
    OpenAICompatible,
    OpenRouter,
    Reply,
    key_info,
)
from .faults import Fault, FaultError, parse_faults
from .replies import (
    NOT_JSON,
    continuation,
    count_words,
    echo_text,
    first_words,
    json_reply,
    split_for_stream,
)

PROVIDERS = ("openrouter", "gemini", "huggingface", "openai")
ALIASES = {"hf": "huggingface", "google": "gemini", "ollama": "openai"}
# Header values never recorded: they carry the key.
SECRET_HEADERS = frozenset({"authorization", "x-goog-api-key", "proxy-authorization", "cookie"})
BACKLOG = 2048
MAX_BODY = 16 * 1024 * 1024


@dataclass
class FakeConfig:
    """What the fake does on every request; ``POST /_fake/config`` changes any of it live."""

    delay_ms: float = 0  # wait before answering a generation (before a stream's first byte)
    completion_words: int = 20  # words (= completion tokens) of a text reply
    stream_chunk_delay_ms: float = 0  # wait between stream events (0: one write for all)
    stream_chunk_words: int = 5  # words per streamed text chunk
    gemini_sse_separator: str = "\r\n\r\n"  # current Gemini models; older ones used "\n\n"
    openrouter_usage_chunk: str = "repeat_finish"  # or "empty_choices" (the docs' shape)
    record_requests: bool = True
    record_limit: int = 10_000  # the oldest records are dropped past this many
    hang_seconds: float = 3600  # how long "hang" waits before dropping the connection

    def update(self, values: dict[str, Any]) -> None:
        known = {f.name: f for f in fields(self)}
        unknown = set(values) - set(known)
        if unknown:
            raise ValueError(f"unknown config keys: {', '.join(sorted(unknown))}")
        checked = {}
        for name, value in values.items():
            kind = type(getattr(self, name))
            if kind is bool:
                ok = isinstance(value, bool)
            elif kind is str:
                ok = isinstance(value, str)
            else:
                ok = isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
            if not ok:
                raise ValueError(f"bad value for {name}: {value!r}")
            checked[name] = int(value) if kind is int else value
        if checked.get("openrouter_usage_chunk", "repeat_finish") not in {
            "repeat_finish",
            "empty_choices",
        }:
            raise ValueError('openrouter_usage_chunk is "repeat_finish" or "empty_choices"')
        if checked.get("gemini_sse_separator", "\n\n") not in {"\r\n\r\n", "\n\n"}:
            raise ValueError('gemini_sse_separator is "\\r\\n\\r\\n" or "\\n\\n"')
        for name, value in checked.items():
            setattr(self, name, value)


def provider_name(name: Any) -> str:
    name = ALIASES.get(str(name).lower(), str(name).lower())
    if name not in PROVIDERS:
        raise ValueError(
            f"unknown provider {name!r}; known: {', '.join(PROVIDERS)} (or {', '.join(ALIASES)})"
        )
    return name


class FakeApp:
    """The aiohttp application and its state. All of it runs on one event loop."""

    def __init__(self, config: FakeConfig | None = None):
        self.config = config or FakeConfig()
        self.dialects: dict[str, Dialect] = {
            d.name: d
            for d in (
                OpenRouter(self.config),
                Gemini(self.config),
                HuggingFace(self.config),
                OpenAICompatible(self.config),
            )
        }
        self.faults: dict[str, deque[Fault]] = {name: deque() for name in PROVIDERS}
        # When the outage window at the head of a provider's script ends (monotonic time).
        self.windows: dict[str, float] = {}
        self.records: deque[dict] = deque(maxlen=self.config.record_limit)
        self.served: Counter[str] = Counter()
        self.hanging: set[asyncio.Task] = set()
        self.app = web.Application(client_max_size=MAX_BODY)
        self.app.add_routes(self.routes())

    def routes(self) -> list[web.AbstractRouteDef]:
        """Extension point: a new provider adds its dialect and its routes here."""
        o, g, h, c = (self.dialects[n] for n in PROVIDERS)
        gen = self._generate_route
        # A custom provider's base URL: /openai/v1, or /openai/<name>/v1 to give each its own.
        custom = (c.prefix, c.prefix.removesuffix("/v1") + "/{server:[A-Za-z0-9][\\w.-]*}/v1")
        return [
            web.post(f"{o.prefix}/chat/completions", gen(o)),
            web.get(f"{o.prefix}/models", self._listing(o)),
            web.get(f"{o.prefix}/key", self._openrouter_key),
            web.get(f"{o.prefix}/auth/key", self._openrouter_key),
            web.post(g.prefix + "/models/{model:[^/:]+}:{action:[A-Za-z]+}", self._gemini_action),
            web.get(f"{g.prefix}/models", self._listing(g, auth=True)),
            web.get(g.prefix + "/models/{model:[^/:]+}", self._gemini_model),
            web.post(f"{h.prefix}/chat/completions", gen(h)),
            web.get(f"{h.prefix}/models", self._listing(h)),
            *(web.post(f"{base}/chat/completions", gen(c)) for base in custom),
            *(web.get(f"{base}/models", self._listing(c)) for base in custom),
            web.post("/_fake/script", self._control_script),
            web.get("/_fake/script", self._control_pending),
            web.delete("/_fake/script", self._control_clear_scripts),
            web.post("/_fake/reset", self._control_reset),
            web.get("/_fake/requests", self._control_requests),
            web.get("/_fake/config", self._control_config),
            web.post("/_fake/config", self._control_config),
            web.get("/_fake/stats", self._control_stats),
            web.get("/_fake/health", self._control_health),
        ]

    # --- state operations (also called by FakeUpstream, on the loop) ---------------------------

    def script(self, provider: str, faults: list) -> int:
        name = provider_name(provider)
        self.faults[name].extend(parse_faults(faults))
        return len(self.faults[name])

    def pending(self) -> dict[str, list[dict]]:
        return {name: [f.as_dict() for f in queue] for name, queue in self.faults.items()}

    def clear_scripts(self) -> None:
        for queue in self.faults.values():
            queue.clear()
        self.windows.clear()

    def reset(self) -> None:
        self.clear_scripts()
        self.records.clear()
        self.served.clear()

    def configure(self, values: dict[str, Any]) -> dict[str, Any]:
        self.config.update(values)
        if self.records.maxlen != self.config.record_limit:
            self.records = deque(self.records, maxlen=self.config.record_limit)
        return asdict(self.config)

    def recorded(self, provider: str | None = None) -> list[dict]:
        name = provider_name(provider) if provider else None
        return [dict(r) for r in self.records if name is None or r["provider"] == name]

    def cancel_hangs(self) -> None:
        for task in list(self.hanging):
            task.cancel()

    # --- the generation pipeline ----------------------------------------------------------------

    def _generate_route(self, dialect: Dialect):
        async def handler(request: web.Request) -> web.StreamResponse:
            return await self._generate(request, dialect)

        return handler

    async def _gemini_action(self, request: web.Request) -> web.StreamResponse:
        dialect = self.dialects["gemini"]
        if request.match_info["action"] not in ("generateContent", "streamGenerateContent"):
            self._record(dialect, request, None)
            return dialect.error(404, message=f"Method {request.match_info['action']} not found.")
        return await self._generate(request, dialect)

    async def _generate(self, request: web.Request, dialect: Dialect) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        record = self._record(dialect, request, body)
        fault = self._next_fault(dialect.name)
        if record is not None and fault is not None:
            record["fault"] = fault.as_dict()
        kind = fault.kind if fault is not None else None
        if kind == "slow":
            delay = fault.delay_ms
        elif kind == "first_token_delay":
            delay = 0  # the headers go at once; the fault's own delay comes after them
        else:
            delay = self.config.delay_ms
        if delay:
            await asyncio.sleep(delay / 1000)
        try:
            response = await self._answer(request, dialect, body, fault)
        except Answer as answer:
            response = answer.response
        if record is not None:
            dropped = kind in ("reset", "hang") or (kind == "stall" and not response.prepared)
            record["status"] = None if dropped else response.status
        return response

    def _next_fault(self, provider: str) -> Fault | None:
        """The fault for this request: the head of the script, which an outage window
        (``for_seconds``) keeps in place until its time is up."""
        queue = self.faults[provider]
        now = time.monotonic()
        while queue:
            head = queue[0]
            if head.for_seconds is None:
                return queue.popleft()
            until = self.windows.setdefault(provider, now + head.for_seconds)
            if now < until:
                return head
            queue.popleft()
            del self.windows[provider]
        return None

    async def _answer(
        self, request: web.Request, dialect: Dialect, body: Any, fault: Fault | None
    ) -> web.StreamResponse:
        kind = fault.kind if fault is not None else None
        if kind == "status":
            return dialect.error(
                fault.status,
                model=dialect.requested_model(body, request),
                retry_after=fault.retry_after,
                message=fault.message,
            )
        if kind == "reset":
            return self._drop(request)
        if kind == "hang":
            return await self._hang(request)
        dialect.check_auth(dialect.raw_key(request)[0])
        if not isinstance(body, dict):
            raise Answer(dialect.error(400, message="The request body is not a JSON object."))
        try:
            ask = dialect.parse(body, request)
        except ValueError as exc:
            raise Answer(dialect.error(400, message=str(exc))) from None
        if kind == "malformed":
            return dialect.malformed(ask)
        if kind == "context_length":
            words = ask.max_tokens or self.config.completion_words
            return dialect.context_length(ask, words, fault.message)
        if kind == "content_policy":
            return dialect.content_policy(ask, fault.message)
        if kind == "refuse_prefill" and ask.prefill is not None:
            return dialect.prefill_refused(ask, fault.message)
        if kind == "midstream_error" and not ask.stream:
            return dialect.error_in_200(ask, fault.status or dialect.midstream_status)
        reply = self._reply(ask, invalid_json=kind == "invalid_json")
        if ask.stream:
            return await self._stream(request, dialect, ask, reply, fault)
        if kind == "first_token_delay":
            await self._silence(fault.delay_ms / 1000)
        elif kind == "stall":
            await self._silence(fault.stall_ms / 1000)
            return self._drop(request)
        response = dialect.completion(ask, reply)
        if kind in ("truncate", "cut"):
            return await self._truncated(request, response)
        return response

    def _reply(self, ask: Ask, *, invalid_json: bool) -> Reply:
        """The reply to ``ask``: the same text for the same prompt whatever the dialect; after a
        prefill only what continues it (see ``replies.continuation``)."""
        if invalid_json:
            text = continuation(NOT_JSON, ask.prefill)
            return Reply(text, count_words(text))
        if ask.schema is not None:
            try:
                text = json_reply(ask.schema)
            except (RecursionError, TypeError, ValueError, AttributeError):
                # A schema the small generator cannot follow still gets an answer; the
                # client's validation then reports the mismatch, as with a real model.
                text = "{}"
            text = continuation(text, ask.prefill)
            return Reply(text, count_words(text))
        text = continuation(echo_text(ask.prompt, self.config.completion_words), ask.prefill)
        truncated = ask.max_tokens is not None and ask.max_tokens < count_words(text)
        if truncated:
            text = first_words(text, ask.max_tokens)
        return Reply(text, count_words(text), truncated)

    async def _stream(
        self, request: web.Request, dialect: Dialect, ask: Ask, reply: Reply, fault: Fault | None
    ) -> web.StreamResponse:
        pieces = split_for_stream(reply.text, self.config.stream_chunk_words)
        plan = dialect.stream_plan(ask, reply, pieces)
        kind = fault.kind if fault is not None else None
        payloads, complete = plan.content + plan.tail, True
        # How the stream ends: "end" (the HTTP response ends), "close" (the connection dies
        # after what was written: no chunked terminator) or "stall" (silence, then "close").
        ending = "end"
        if kind == "truncate":
            payloads, complete = plan.content[:2], False
            ending = "close" if fault.abort else "end"
        elif kind == "midstream_error":
            error = dialect.stream_error(ask, plan, fault.status or dialect.midstream_status)
            payloads = [*plan.content[:1], error]
        elif kind == "stall":
            payloads, complete = plan.content[: _chunks_to(pieces, fault.after_words)], False
            ending = "stall"
        elif kind == "cut":
            payloads, complete = plan.content[: _chunks_to(pieces, fault.after_words)], False
            ending = "end" if fault.abort is False else "close"
        elif kind == "bad_event":
            at = min(_chunks_to(pieces, fault.after_words), len(plan.content))
            payloads = [*plan.content[:at], dialect.broken_event, *plan.content[at:], *plan.tail]
        elif kind == "no_done":
            payloads = [p for p in payloads if p != DONE]
        response = web.StreamResponse(headers=dialect.stream_headers(ask, plan))
        await response.prepare(request)
        if kind == "first_token_delay":
            await self._first_token_delay(response, dialect, ask, fault)
        data = await self._write_events(response, dialect, ask, plan.comments, payloads, complete)
        if ending == "end":
            # Without a chunk delay the whole stream and its end go in one write: one send().
            await response.write_eof(data)
            return response
        if data:
            await response.write(data)
        if ending == "stall":
            await self._silence(fault.stall_ms / 1000)
        if request.transport is not None:
            # close(), not abort(): what was written is flushed, then the connection ends
            # without the chunked terminator, so the client sees a broken transfer.
            request.transport.close()
        return response

    async def _write_events(
        self,
        response: web.StreamResponse,
        dialect: Dialect,
        ask: Ask,
        comments: list[str],
        payloads: list[str],
        complete: bool,
    ) -> bytes:
        """Write a stream's events, each on its own after ``stream_chunk_delay_ms``; or, without
        a delay, frame them all and return the bytes for the caller's single last write."""
        chunk_delay = self.config.stream_chunk_delay_ms / 1000
        if not (chunk_delay and ask.sse):
            return dialect.frame(ask, payloads, comments=comments, complete=complete)
        if comments:
            await response.write(dialect.frame(ask, [], comments=comments, complete=False))
        for i, payload in enumerate(payloads):
            if i:
                await asyncio.sleep(chunk_delay)
            await response.write(dialect.frame(ask, [payload], comments=[], complete=False))
        return b""

    async def _first_token_delay(
        self, response: web.StreamResponse, dialect: Dialect, ask: Ask, fault: Fault
    ) -> None:
        """Silence (or keep-alive comments every ``comment_every_ms``) for ``delay_ms``."""
        end = time.monotonic() + fault.delay_ms / 1000
        every = (fault.comment_every_ms or 0) / 1000
        comment = dialect.comment(ask, dialect.keepalive) if every else b""
        while (left := end - time.monotonic()) > 0:
            if not comment:
                await self._silence(left)
                break
            await self._silence(min(every, left))
            if end - time.monotonic() > 0:
                await response.write(comment)

    async def _silence(self, seconds: float) -> None:
        """Sleep, cancelled with the request (client gone) or when the server stops."""
        task = asyncio.current_task()
        assert task is not None
        self.hanging.add(task)
        try:
            await asyncio.sleep(seconds)
        finally:
            self.hanging.discard(task)

    async def _truncated(self, request: web.Request, full: web.Response) -> web.StreamResponse:
        """Half of ``full``'s body under its whole Content-Length, then the connection closes."""
        body = full.body or b""
        headers = {k: v for k, v in full.headers.items() if k.lower() != "content-length"}
        response = web.StreamResponse(status=full.status, headers=headers)
        response.content_length = len(body)
        await response.prepare(request)
        await response.write(body[: len(body) // 2])
        if request.transport is not None:
            request.transport.close()
        return response

    def _drop(self, request: web.Request) -> web.Response:
        # abort() resets the connection without sending anything; aiohttp then writes nothing.
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=499)

    async def _hang(self, request: web.Request) -> web.Response:
        await self._silence(self.config.hang_seconds)
        return self._drop(request)

    def _record(self, dialect: Dialect, request: web.Request, body: Any) -> dict | None:
        self.served[dialect.name] += 1
        if not self.config.record_requests:
            return None
        raw_key, via = dialect.raw_key(request)
        query = dict(request.query)
        if "key" in query:
            query["key"] = "[redacted]"
        record = {
            "provider": dialect.name,
            "method": request.method,
            "path": request.path,
            "query": query,
            "headers": {
                k: v for k, v in request.headers.items() if k.lower() not in SECRET_HEADERS
            },
            "auth": key_info(raw_key, via).as_dict(),
            "json": body,
            "time": time.time(),
            "fault": None,
            "status": None,
        }
        self.records.append(record)
        return record

    # --- other provider endpoints ----------------------------------------------------------------

    def _listing(self, dialect: Dialect, *, auth: bool = False):
        async def handler(request: web.Request) -> web.Response:
            self._record(dialect, request, None)
            if auth:
                try:
                    dialect.check_auth(dialect.raw_key(request)[0])
                except Answer as answer:
                    return answer.response
            return dialect.list_models(request)

        return handler

    async def _openrouter_key(self, request: web.Request) -> web.Response:
        dialect = self.dialects["openrouter"]
        self._record(dialect, request, None)
        raw_key = dialect.raw_key(request)[0]
        try:
            dialect.check_auth(raw_key)
        except Answer as answer:
            return answer.response
        assert isinstance(dialect, OpenRouter) and raw_key
        return dialect.key_body(raw_key)

    async def _gemini_model(self, request: web.Request) -> web.Response:
        dialect = self.dialects["gemini"]
        self._record(dialect, request, None)
        try:
            dialect.check_auth(dialect.raw_key(request)[0])
        except Answer as answer:
            return answer.response
        assert isinstance(dialect, Gemini)
        return dialect.get_model(request.match_info["model"])

    # --- control API ------------------------------------------------------------------------------

    async def _control_script(self, request: web.Request) -> web.Response:
        try:
            data = await request.json()
            if not isinstance(data, dict):
                raise ValueError('expected {"provider": ..., "faults": [...]}')
            pending = self.script(data.get("provider"), data.get("faults"))
        except (ValueError, FaultError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"provider": provider_name(data["provider"]), "pending": pending})

    async def _control_pending(self, request: web.Request) -> web.Response:
        return web.json_response(self.pending())

    async def _control_clear_scripts(self, request: web.Request) -> web.Response:
        self.clear_scripts()
        return web.json_response({"ok": True})

    async def _control_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"ok": True})

    async def _control_requests(self, request: web.Request) -> web.Response:
        try:
            records = self.recorded(request.query.get("provider"))
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(records)

    async def _control_config(self, request: web.Request) -> web.Response:
        if request.method == "POST":
            try:
                data = await request.json()
                if not isinstance(data, dict):
                    raise ValueError("expected a JSON object")
                return web.json_response(self.configure(data))
            except ValueError as exc:
                return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(asdict(self.config))

    async def _control_stats(self, request: web.Request) -> web.Response:
        return web.json_response({"requests": {name: self.served[name] for name in PROVIDERS}})

    async def _control_health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True})


def _chunks_to(pieces: list[str], words: int | None) -> int:
    """How many of a stream's text pieces carry at least ``words`` words (all if fewer)."""
    if not words:
        return 0
    sent = 0
    for i, piece in enumerate(pieces):
        sent += count_words(piece)
        if sent >= words:
            return i + 1
    return len(pieces)


# --- Serving -------------------------------------------------------------------------------------


def base_urls(url: str) -> dict[str, str]:
    """The three built-in providers' base-URL settings pointed at a fake served at ``url``."""
    url = url.rstrip("/")
    return {
        "OPENROUTER_BASE_URL": f"{url}{OpenRouter.prefix}",
        "GEMINI_BASE_URL": f"{url}{Gemini.prefix}",
        "HF_BASE_URL": f"{url}{HuggingFace.prefix}",
    }


def openai_base_url(url: str, server: str | None = None) -> str:
    """A custom provider's ``base_url`` on a fake served at ``url``: the plain OpenAI-compatible
    route, or with ``server`` one of its own (records tell them apart by ``path``)."""
    prefix = OpenAICompatible.prefix
    if server:
        prefix = f"{prefix.removesuffix('/v1')}/{server}/v1"
    return url.rstrip("/") + prefix


class FakeServer:
    """Start and stop a ``FakeApp`` on the running event loop."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, config: FakeConfig | None = None):
        self.host = host
        self.port = port
        self.fake = FakeApp(config)
        self._runner: web.AppRunner | None = None

    async def start(self) -> str:
        # No access log: logging each request would cost more than answering it. handler
        # cancellation: a client that hangs up cancels its handler (its delay, its hang).
        self._runner = web.AppRunner(
            self.fake.app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, backlog=BACKLOG, reuse_address=True)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self.url

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def stop(self) -> None:
        self.fake.cancel_hangs()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


class FakeUpstream:
    """The fake in a background thread with its own event loop, for tests::

        with FakeUpstream(delay_ms=0) as fake:
            settings.GEMINI_BASE_URL = fake.base_urls["GEMINI_BASE_URL"]
            fake.script("gemini", [{"status": 429, "retry_after": 1}])
            ...
            assert fake.requests("gemini")[0]["auth"]["present"]

    Keyword arguments are ``FakeConfig`` fields. Stopping cancels hanging requests.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, **config: Any):
        cfg = FakeConfig()
        cfg.update(config)
        self._server = FakeServer(host, port, cfg)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    # --- lifecycle ---

    def start(self) -> FakeUpstream:
        if self._thread is not None:
            return self
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="fake-upstream", daemon=True)
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("the fake upstream did not start within 10 s")
        if self._error is not None:
            self._thread.join()
            self._thread = None
            raise self._error
        return self

    def _run(self) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._server.start())
        except BaseException as exc:  # reported to start()'s caller
            self._error = exc
            self._started.set()
            loop.close()
            return
        self._started.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._server.stop())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(15)
        self._thread = None

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    # --- where it is ---

    @property
    def url(self) -> str:
        return self._server.url

    @property
    def base_urls(self) -> dict[str, str]:
        return base_urls(self.url)

    def openai_base_url(self, server: str | None = None) -> str:
        return openai_base_url(self.url, server)

    # --- steering (thread-safe: each runs on the fake's loop) ---

    def _call(self, fn, *args: Any) -> Any:
        if self._loop is None or self._thread is None:
            raise RuntimeError("the fake upstream is not running")

        async def run() -> Any:
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)

    def script(self, provider: str, faults: list) -> int:
        """Queue ``faults`` for ``provider``'s next generation requests; return the queue length."""
        return self._call(self._server.fake.script, provider, faults)

    def pending(self) -> dict[str, list[dict]]:
        return self._call(self._server.fake.pending)

    def configure(self, **values: Any) -> dict[str, Any]:
        return self._call(self._server.fake.configure, values)

    def requests(self, provider: str | None = None) -> list[dict]:
        return self._call(self._server.fake.recorded, provider)

    def stats(self) -> dict[str, int]:
        return self._call(lambda: dict(self._server.fake.served))

    def clear_scripts(self) -> None:
        """Drop the faults still queued (and open outage windows); the records stay."""
        self._call(self._server.fake.clear_scripts)

    def reset(self) -> None:
        self._call(self._server.fake.reset)


class FakeUpstreamClient:
    """Steer a fake started elsewhere (e.g. the CLI) through its control API; same methods."""

    def __init__(self, url: str, timeout: float = 10.0):
        self.url = url.rstrip("/")
        self.timeout = timeout

    @property
    def base_urls(self) -> dict[str, str]:
        return base_urls(self.url)

    def openai_base_url(self, server: str | None = None) -> str:
        return openai_base_url(self.url, server)

    def _request(self, method: str, path: str, data: Any = None) -> Any:
        body = None if data is None else json.dumps(data).encode()
        request = urllib.request.Request(
            self.url + path, data=body, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            return json.loads(response.read())

    def script(self, provider: str, faults: list) -> int:
        return self._request("POST", "/_fake/script", {"provider": provider, "faults": faults})[
            "pending"
        ]

    def pending(self) -> dict[str, list[dict]]:
        return self._request("GET", "/_fake/script")

    def configure(self, **values: Any) -> dict[str, Any]:
        return self._request("POST", "/_fake/config", values)

    def requests(self, provider: str | None = None) -> list[dict]:
        query = f"?{urllib.parse.urlencode({'provider': provider})}" if provider else ""
        return self._request("GET", f"/_fake/requests{query}")

    def stats(self) -> dict[str, int]:
        return self._request("GET", "/_fake/stats")["requests"]

    def clear_scripts(self) -> None:
        self._request("DELETE", "/_fake/script")

    def reset(self) -> None:
        self._request("POST", "/_fake/reset", {})


# --- CLI -----------------------------------------------------------------------------------------


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m fake_upstream",
        description="Serve fake OpenRouter, Gemini, Hugging Face and OpenAI-compatible APIs "
        "on one port.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8900, help="0 picks a free port")
    parser.add_argument("--delay-ms", type=float, default=0, help="wait before each answer")
    parser.add_argument("--completion-words", type=int, default=20)
    parser.add_argument("--stream-chunk-delay-ms", type=float, default=0)
    parser.add_argument(
        "--no-record", action="store_true", help="do not keep the requests (long benchmarks)"
    )
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    config = FakeConfig()
    config.update(
        {
            "delay_ms": args.delay_ms,
            "completion_words": args.completion_words,
            "stream_chunk_delay_ms": args.stream_chunk_delay_ms,
            "record_requests": not args.no_record,
        }
    )
    server = FakeServer(args.host, args.port, config)
    url = await server.start()
    lines = [f"FAKE_UPSTREAM_URL={url}"] + [f"{k}={v}" for k, v in base_urls(url).items()]
    lines.append(f"OPENAI_COMPATIBLE_BASE_URL={openai_base_url(url)}")
    print("\n".join(lines), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.stop()


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        asyncio.run(_serve(args))
    except OSError as exc:  # e.g. the port is taken
        print(f"fake upstream: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
