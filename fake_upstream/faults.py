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

Any item may add ``"times": n`` to repeat it n times. Extension point: add a kind to ``KINDS``
and handle it in ``fake_upstream.FakeApp._generate``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

KINDS = frozenset(
    {"status", "reset", "hang", "malformed", "truncate", "midstream_error", "invalid_json", "slow"}
)


class FaultError(ValueError):
    """A fault script that cannot be understood (the control API answers 400)."""


@dataclass(frozen=True)
class Fault:
    kind: str
    status: int | None = None
    retry_after: float | None = None
    message: str | None = None
    delay_ms: float | None = None
    abort: bool = False

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"fault": self.kind}
        for name in ("status", "retry_after", "message", "delay_ms"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.abort:
            out["abort"] = True
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
    retry_after = _number(item.pop("retry_after", None), "retry_after")
    delay_ms = _number(item.pop("delay_ms", None), "delay_ms")
    message = item.pop("message", None)
    if message is not None and not isinstance(message, str):
        raise FaultError("message must be a string")
    abort = bool(item.pop("abort", False))
    if item:
        raise FaultError(f"unknown fault fields: {', '.join(sorted(item))}")
    return Fault(kind, status, retry_after, message, delay_ms, abort), times


def _number(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise FaultError(f"{name} must be a non-negative number")
    return value
