"""Helpers of the Failover Bench tests (test_failover_bench.py): the benchmark's settings at a
scale, the two streamed client paths reduced to one ``Outcome``, and the fake's records.

Both paths end in the same ``Outcome`` so that every scenario states its expectations once:
``generate/`` with ``stream: true`` (our SSE events) and ``v1/chat/completions`` streamed
through the official ``openai`` SDK.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai
from openai import OpenAI

from fake_upstream.replies import echo_text
from tests.e2e.harness import Client, Server, read_events

PRIMARY = "openrouter"
FALLBACK = "gemini"
PRIMARY_MODEL = "openai/gpt-4-turbo"  # OPENROUTER_MODEL's default
FALLBACK_MODEL = "gemini-2.5-flash"  # GEMINI_MODEL's default
ANSWER_WORDS = 60
PATHS = ("generate", "sdk")


@dataclass(frozen=True)
class Bench:
    """The benchmark's settings and durations at ``scale`` (1: the published benchmark).

    Every duration — timeouts, the faults' delays, stalls and outage window, the request
    interval, the cooldown, the retry delays and the bounds asserted — is multiplied by
    ``scale``; ``slack`` (not scaled) is added to elapsed-time bounds for what does not scale:
    a process answering HTTP, a database write per attempt."""

    scale: float
    slack: float

    def s(self, seconds: float) -> float:
        """A duration of the benchmark, in seconds, at this scale."""
        return seconds * self.scale

    def ms(self, seconds: float) -> float:
        """A duration of the benchmark, in milliseconds (the fake's unit), at this scale."""
        return seconds * 1000 * self.scale

    def bound(self, seconds: float) -> float:
        """An upper bound on elapsed time: the benchmark's, scaled, plus the slack."""
        return self.s(seconds) + self.slack

    def settings(self) -> dict[str, str]:
        """The server's environment: the benchmark's settings (LLM_TIMEOUT=30,
        LLM_MAX_RETRIES=2, LLM_FIRST_TOKEN_TIMEOUT=10, LLM_STREAM_IDLE_TIMEOUT=10) and the
        defaults of the rest (circuits 3 failures / 30 s, retries 1-30 s), scaled."""
        seconds = {
            "LLM_TIMEOUT": 30,
            "LLM_FIRST_TOKEN_TIMEOUT": 10,
            "LLM_STREAM_IDLE_TIMEOUT": 10,
            "LLM_CONNECT_TIMEOUT": 5,
            "LLM_REQUEST_DEADLINE": 300,
            "LLM_CIRCUIT_COOLDOWN": 30,
            "LLM_RETRY_BASE_DELAY": 1,
            "LLM_RETRY_MAX_DELAY": 30,
            "LLM_RETRY_TOTAL_TIMEOUT": 120,
        }
        return {
            **{name: f"{self.s(value):g}" for name, value in seconds.items()},
            "LLM_MAX_RETRIES": "2",
            "LLM_CIRCUIT_FAILURES": "3",
        }

    def fake_config(self) -> dict[str, Any]:
        """A streamed 60-word answer in chunks of 5 words, one chunk every 0.1 s (scaled), so
        that a cut or a stall leaves text already delivered; a hang lasts 120 s (scaled)."""
        return {
            "completion_words": ANSWER_WORDS,
            "stream_chunk_words": 5,
            "stream_chunk_delay_ms": self.ms(0.1),
            "hang_seconds": self.s(120),
        }


def expected_answer(prompt: str) -> str:
    """The fake's answer to ``prompt``: the same on every provider, whole or continued."""
    return echo_text(prompt, ANSWER_WORDS)


def reset_cache(cache_dir: Path) -> None:
    """Empty the server's file-based cache: circuits (and throttle histories) start afresh for
    every process of that server."""
    if not cache_dir.exists():
        return
    for entry in cache_dir.iterdir():
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


# --- One streamed generation, on either path -----------------------------------------------------


@dataclass
class Outcome:
    """What the caller saw of one streamed generation.

    ``done`` is the end of a successful stream: ``generate/``'s ``done`` data, or for the SDK
    ``{"model", "usage", "finish_reason"}`` of its last chunks. ``error`` is a clean failure:
    ``{"status", "code", "message"}`` (HTTP error before the stream, ``event: error``, or the
    SDK's exception); ``status`` is None for an error inside a 200 stream."""

    path: str
    text: str = ""
    done: dict | None = None
    error: dict | None = None
    started: float = 0.0  # time.time() when the request was sent
    elapsed: float = 0.0
    raw: list[Any] = field(default_factory=list)

    @property
    def ended(self) -> float:
        return self.started + self.elapsed

    def describe(self) -> str:
        return (
            f"{self.path}: {self.elapsed:.2f}s, {len(self.text.split())} words, "
            f"done={self.done!r}, error={self.error!r}, text={self.text[:120]!r}…"
        )


def run_stream(
    path: str,
    server: Server,
    token: str,
    prompt: str,
    *,
    timeout: float,
) -> Outcome:
    """One streamed generation of ``prompt`` on ``path`` ("generate" or "sdk"), the fallback
    model given by the request (``fallback_models`` / ``models``)."""
    if path == "generate":
        return stream_generate(server.client(token), prompt, timeout=timeout)
    return stream_sdk(server, token, prompt, timeout=timeout)


def stream_generate(client: Client, prompt: str, *, timeout: float) -> Outcome:
    """``POST generate/`` with ``stream: true``, read to its end. ``timeout`` bounds each read."""
    body = {
        "prompt": prompt,
        "stream": True,
        "fallback_models": [f"{FALLBACK}/{FALLBACK_MODEL}"],
    }
    outcome = Outcome("generate", started=time.time())
    began = time.monotonic()
    conn, response = client.stream("generate/", body, timeout=timeout)
    try:
        if response.status != 200:
            reply = _json_or_text(response.read())
            error = reply.get("error", {}) if isinstance(reply, dict) else {}
            outcome.error = {"status": response.status, **error}
            outcome.raw.append(reply)
            return outcome
        try:
            for event in read_events(response):
                outcome.raw.append((event.event, event.data))
                data = event.json()
                if event.event is None:
                    outcome.text += data["delta"]
                elif event.event == "done":
                    outcome.done = data
                elif event.event == "error":
                    outcome.error = {"status": None, **data["error"]}
        except (OSError, ValueError) as exc:  # a broken or unreadable stream: not clean
            outcome.raw.append(repr(exc))
        return outcome
    finally:
        outcome.elapsed = time.monotonic() - began
        response.close()
        conn.close()


def stream_sdk(server: Server, token: str, prompt: str, *, timeout: float) -> Outcome:
    """``v1/chat/completions`` with ``stream=True`` through the official SDK; the chain given
    as OpenRouter's ``models`` (the first entry repeats ``model``)."""
    outcome = Outcome("sdk", started=time.time())
    began = time.monotonic()
    client = OpenAI(
        base_url=f"{server.url}/api/llm/v1", api_key=token, max_retries=0, timeout=timeout
    )
    model = f"{PRIMARY}/{PRIMARY_MODEL}"
    try:
        stream = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": prompt}],
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"models": [model, f"{FALLBACK}/{FALLBACK_MODEL}"]},
        )
        finish = None
        with stream:
            for chunk in stream:
                outcome.raw.append(chunk.model_dump())
                for choice in chunk.choices:
                    if choice.delta.content:
                        outcome.text += choice.delta.content
                    if choice.finish_reason:
                        finish = {"model": chunk.model, "finish_reason": choice.finish_reason}
                if chunk.usage is not None and finish is not None:
                    finish["usage"] = chunk.usage.model_dump(exclude_none=True)
        outcome.done = finish
    except openai.APIStatusError as exc:  # an HTTP error before the stream
        outcome.error = _sdk_error(exc, exc.status_code)
    except openai.APIConnectionError as exc:  # a hang, a broken stream (timeouts included)
        outcome.raw.append(repr(exc))
    except openai.APIError as exc:  # an error event inside the stream
        outcome.error = _sdk_error(exc, None)
    finally:
        outcome.elapsed = time.monotonic() - began
        client.close()
    return outcome


def _sdk_error(exc: openai.APIError, status: int | None) -> dict:
    return {"status": status, "code": exc.code, "message": exc.message, "type": type(exc).__name__}


def _json_or_text(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace")


# --- The fake's records --------------------------------------------------------------------------


def generation_requests(fake, provider: str) -> list[dict]:
    """The fake's generation requests to ``provider``, oldest first (not ``/models`` etc.)."""
    return [
        r
        for r in fake.requests(provider)
        if r["path"].endswith(("/chat/completions", ":generateContent", ":streamGenerateContent"))
    ]


def within(records: list[dict], start: float, seconds: float) -> list[dict]:
    """The records made in the ``seconds`` after ``start`` (``time.time()``)."""
    return [r for r in records if start <= r["time"] < start + seconds]


def has_prefill(record: dict) -> bool:
    """Whether the request ended with an assistant message (OpenAI or Gemini shape)."""
    body = record.get("json") or {}
    if "contents" in body:
        contents = body["contents"] or [{}]
        return contents[-1].get("role") == "model"
    messages = body.get("messages") or [{}]
    return messages[-1].get("role") == "assistant"
