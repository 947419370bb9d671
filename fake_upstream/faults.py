"""Scripted faults: what the fake upstream does instead of (or to) its next answers.

A script is a list per provider, consumed in order, one fault per generation request (chat
completions, ``generateContent``, ``streamGenerateContent``; the ``/models`` and ``/key``
endpoints never consume one). Each item is a string or an object:

``{"status": 429, "retry_after": 1}``
    That status in the provider's real error format. 429s carry the wait (``Retry-After``
    header for OpenRouter and Hugging Face, ``RetryInfo.retryDelay`` in Gemini's body); an
    optional ``"message"`` replaces the real message. Any 4xx/5xx works.
``"reset"``
    Read the request, then abort the connection: no response at all.
``"hang"``
    Never answer (sleeps ``hang_seconds``; cancelled when the client hangs up or the server
    stops).
``"malformed"``
    200 with a body that is not JSON (streams: an event that is not JSON).
``"truncate"``
    A stream sends its first two content chunks and ends without the final chunk / ``[DONE]``;
    a plain answer sends half its body under the full ``Content-Length`` and closes.
    ``{"fault": "truncate", "abort": true}`` cuts a stream's connection instead of ending it.
``"midstream_error"``
    A stream sends one content chunk, then the provider's in-stream error event (``"status"``
    sets its code, 502/503 by default; Hugging Face's TGI-style event has none); a plain answer
    gets the error inside a 200 body.
``"invalid_json"``
    A normal answer, but with prose where JSON was asked for.
``{"delay_ms": 3000}``
    A normal answer after this delay instead of the configured ``delay_ms``.
``{"fault": "first_token_delay", "delay_ms": 20000, "comment_every_ms": 0}``
    A stream sends its response headers at once (200), then nothing until ``delay_ms`` has
    passed, then the normal stream. With ``comment_every_ms`` > 0 an SSE comment line is sent
    that often while waiting (``: OPENROUTER PROCESSING`` for OpenRouter, ``: keep-alive`` for
    the others; nothing for Gemini's JSON-array stream, which has no comments). A plain answer
    comes after ``delay_ms``. The configured ``delay_ms`` does not apply on top. Defaults:
    ``delay_ms`` 20000, ``comment_every_ms`` 0.
``{"fault": "stall", "after_words": 20, "stall_ms": 30000}``
    A stream sends its content chunks until at least ``after_words`` words of text are out
    (written, so the client has them), stays silent for ``stall_ms``, then closes the
    connection without the stream's end (no final chunk, usage, ``[DONE]`` or chunked
    terminator). Cancelled when the client hangs up. A plain answer: ``stall_ms`` of silence,
    then the connection is dropped. Defaults: ``after_words`` 20, ``stall_ms`` 30000.
``{"fault": "cut", "after_words": 40}``
    A stream sends its content chunks until at least ``after_words`` words are out, then the
    connection dies (no final chunk/usage/``[DONE]``, no chunked terminator). With
    ``"abort": false`` the HTTP response ends cleanly instead, still without the stream's end
    (like ``truncate``). A plain answer: half its body, then the connection closes. Defaults:
    ``after_words`` 40, ``abort`` true. ``after_words`` 0 cuts before any text.
``{"fault": "bad_event", "after_words": 20}``
    A complete, normal stream with one extra event whose data is not JSON (a JSON text cut
    short) right after the chunk that reaches ``after_words`` words (after the last content
    chunk if the reply is shorter). A plain answer is normal. Default ``after_words`` 20.
``"no_done"``
    A complete stream (text, finish chunk, usage) that ends without ``data: [DONE]``; the HTTP
    response then ends normally. Gemini streams have no ``[DONE]``: a normal stream. A plain
    answer is normal.
``"context_length"``
    HTTP 400, the provider's context-length error. OpenRouter: its recorded body ("This
    endpoint's maximum context length is N tokens. However, you requested about M tokens
    ...", ``metadata.previous_errors``, ``user_id``); Hugging Face and OpenAI-compatible:
    OpenAI's ``{"error": {"message": "This model's maximum context length is N tokens.
    However, you requested M tokens ...", "type": "invalid_request_error", "param":
    "messages", "code": "context_length_exceeded"}}``; Gemini: its recorded 400
    ``INVALID_ARGUMENT`` "The input token count exceeds the maximum number of tokens allowed
    (N).". ``"message"`` replaces the message.
``"content_policy"``
    The provider's refusal of the prompt. Hugging Face and OpenAI-compatible: 400
    ``{"error": {"message": "Your request was rejected as a result of our safety system. ...",
    "type": "invalid_request_error", "param": null, "code": "content_policy_violation"}}``;
    OpenRouter: 400 ``"Provider returned error"`` with that OpenAI body as a JSON string in
    ``metadata.raw`` and ``metadata.provider_name`` (the recorded shape of a relayed 400);
    Gemini: what Gemini really does (PROVIDERS.md §2.3 and the prompt-blocked recording): HTTP
    200 without ``candidates``, ``promptFeedback.blockReason: "SAFETY"`` and usage; a stream
    is that one event, then its end.
``"refuse_prefill"``
    If the conversation ends with an assistant message (OpenAI shape: ``messages[-1].role ==
    "assistant"``; Gemini: ``contents[-1].role == "model"``), HTTP 400 "This model does not
    support assistant message prefill. The conversation must end with a user message." in the
    provider's format (OpenRouter: ``"Provider returned error"`` with the upstream body in
    ``metadata.raw``, as it relays a provider's 400); otherwise a normal answer. Consumed
    either way.

Any item may add ``"times": n`` to repeat it n times, and ``"for_seconds": s`` to make it an
outage window: it then applies to every generation request of that provider until ``s``
seconds after the first request it hit, without being consumed; the first request after
the window drops it and gets the next item (or normal service). E.g.
``{"status": 503, "for_seconds": 60}``.

Extension point: add a kind to ``KINDS`` and handle it in ``fake_upstream.FakeApp._answer``
(or ``_stream`` for a stream's shape).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

KINDS = frozenset(
    {
        "status",
        "reset",
        "hang",
        "malformed",
        "truncate",
        "midstream_error",
        "invalid_json",
        "slow",
        "first_token_delay",
        "stall",
        "cut",
        "bad_event",
        "no_done",
        "context_length",
        "content_policy",
        "refuse_prefill",
    }
)
# Defaults of the optional fields, per kind: scripts may leave them out.
DEFAULTS: dict[str, dict[str, float]] = {
    "first_token_delay": {"delay_ms": 20_000, "comment_every_ms": 0},
    "stall": {"after_words": 20, "stall_ms": 30_000},
    "cut": {"after_words": 40},
    "bad_event": {"after_words": 20},
}


class FaultError(ValueError):
    """A fault script that cannot be understood (the control API answers 400)."""


@dataclass(frozen=True)
class Fault:
    kind: str
    status: int | None = None
    retry_after: float | None = None
    message: str | None = None
    delay_ms: float | None = None
    abort: bool | None = None  # None: the kind's default (truncate: false, cut: true)
    after_words: int | None = None
    stall_ms: float | None = None
    comment_every_ms: float | None = None
    for_seconds: float | None = None  # an outage window (see the module docstring)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"fault": self.kind}
        for name in (
            "status",
            "retry_after",
            "message",
            "delay_ms",
            "abort",
            "after_words",
            "stall_ms",
            "comment_every_ms",
            "for_seconds",
        ):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out


def parse_faults(items: Any) -> list[Fault]:
    """Turn a script (strings and objects, see the module docstring) into Faults, expanded."""
    if not isinstance(items, list):
        raise FaultError('"faults" must be a list')
    faults: list[Fault] = []
    for item in items:
        fault, times = _parse_one(item)
        faults.extend([fault] * times)
    return faults


def _parse_one(item: Any) -> tuple[Fault, int]:
    if isinstance(item, str):
        item = {"fault": item}
    if not isinstance(item, dict):
        raise FaultError(f"a fault is a string or an object, not {item!r}")
    item = dict(item)
    times = item.pop("times", 1)
    if not isinstance(times, int) or isinstance(times, bool) or not 0 <= times <= 100_000:
        raise FaultError(f"bad times: {times!r}")
    kind = item.pop("fault", None) or item.pop("kind", None)
    status = item.pop("status", None)
    if kind is None:
        if status is not None:
            kind = "status"
        elif "delay_ms" in item:
            kind = "slow"
        else:
            raise FaultError(f"cannot tell which fault {item!r} is")
    if kind not in KINDS:
        raise FaultError(f"unknown fault {kind!r}; known: {', '.join(sorted(KINDS))}")
    if status is not None and (not isinstance(status, int) or not 400 <= status <= 599):
        raise FaultError(f"status must be an integer 400-599, not {status!r}")
    if kind == "status" and status is None:
        raise FaultError("a status fault needs a status")
    item = {**DEFAULTS.get(kind, {}), **item}
    retry_after = _number(item.pop("retry_after", None), "retry_after")
    delay_ms = _number(item.pop("delay_ms", None), "delay_ms")
    message = item.pop("message", None)
    if message is not None and not isinstance(message, str):
        raise FaultError("message must be a string")
    abort = item.pop("abort", None)
    if abort is not None and not isinstance(abort, bool):
        raise FaultError("abort must be true or false")
    after_words = _number(item.pop("after_words", None), "after_words")
    if after_words is not None and not isinstance(after_words, int):
        raise FaultError("after_words must be a whole number")
    stall_ms = _number(item.pop("stall_ms", None), "stall_ms")
    comment_every_ms = _number(item.pop("comment_every_ms", None), "comment_every_ms")
    for_seconds = _number(item.pop("for_seconds", None), "for_seconds")
    if item:
        raise FaultError(f"unknown fault fields: {', '.join(sorted(item))}")
    fault = Fault(
        kind,
        status,
        retry_after,
        message,
        delay_ms,
        abort,
        after_words,
        stall_ms,
        comment_every_ms,
        for_seconds,
    )
    return fault, times


def _number(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise FaultError(f"{name} must be a non-negative number")
    return value
