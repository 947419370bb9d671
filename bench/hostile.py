"""Hostile connections against a server (SPEC §13): clients that trickle their headers
(slowloris), clients that trickle their body, and idle keep-alive connections, all at once,
while a health probe and one generation measure what the server's other clients see.

Bounded: every connection is closed when the attack's seconds are over, and it all runs on
loopback against the bench's own server.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

from bench.client import percentile

PROBE_EVERY = 0.1  # seconds between health probes
SETTLE = 3.0  # seconds the attack runs before the probes and the generation start


@dataclass
class HostileResult:
    slowloris: int = 0  # connections opened of each kind
    slow_bodies: int = 0
    idle: int = 0
    probes: list[float] = field(default_factory=list)  # health latencies, seconds (answered)
    probe_failures: int = 0
    generation_status: int | None = None
    generation_seconds: float | None = None

    def probe_pct(self, p: float) -> float | None:
        """The p-th percentile of the health probes in ms (a failed probe counts as slowest)."""
        return percentile(sorted(self.probes) + [float("inf")] * self.probe_failures, p)


async def attack(
    host: str,
    port: int,
    token: str,
    *,
    seconds: float,
    slowloris: int,
    slow_bodies: int,
    idle: int,
) -> HostileResult:
    """Open the hostile connections, then probe ``GET /api/llm/health/`` (a new connection
    each time) and make one generation while they are open; all closed after ``seconds``."""
    result = HostileResult()
    stop = time.monotonic() + seconds
    head = f"Host: {host}:{port}\r\n"

    async def hold(writer: asyncio.StreamWriter, trickle: bytes | None) -> None:
        try:
            while time.monotonic() < stop:
                await asyncio.sleep(min(1.0, max(0.0, stop - time.monotonic())))
                if trickle is not None and time.monotonic() < stop:
                    writer.write(trickle)
                    await writer.drain()
        except OSError:
            pass  # the server closed it: a timeout doing its work
        finally:
            writer.close()

    async def slow_headers(n: int) -> None:
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            return
        result.slowloris += 1
        writer.write(f"GET /api/llm/health/ HTTP/1.1\r\n{head}".encode())
        await hold(writer, f"X-Slow-{n}: 1\r\n".encode())

    async def slow_body() -> None:
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            return
        result.slow_bodies += 1
        writer.write(
            (
                f"POST /api/llm/generate/ HTTP/1.1\r\n{head}Authorization: Token {token}\r\n"
                "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"
            ).encode()
        )
        await hold(writer, b" ")

    async def idle_connection() -> None:
        try:
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(f"GET /api/llm/health/ HTTP/1.1\r\n{head}\r\n".encode())
            await writer.drain()
            await reader.readuntil(b"\r\n\r\n")
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            return
        result.idle += 1
        await hold(writer, None)

    async def request(raw: bytes, timeout: float) -> tuple[int, float]:
        started = time.monotonic()
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(raw)
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(), timeout)
        finally:
            writer.close()
        return int(answer[9:12]), time.monotonic() - started

    async def probe() -> None:
        await asyncio.sleep(SETTLE)
        raw = f"GET /api/llm/health/ HTTP/1.1\r\n{head}Connection: close\r\n\r\n".encode()
        while time.monotonic() < stop - 1:
            try:
                status, took = await request(raw, max(1.0, stop - time.monotonic()))
            except (OSError, TimeoutError, ValueError):
                status, took = 0, 0.0
            if status == 200:
                result.probes.append(took)
            else:
                result.probe_failures += 1
            await asyncio.sleep(PROBE_EVERY)

    async def generation() -> None:
        await asyncio.sleep(SETTLE + 2)
        body = json.dumps({"prompt": "Write one sentence during an attack."}).encode()
        raw = (
            f"POST /api/llm/generate/ HTTP/1.1\r\n{head}Connection: close\r\n"
            f"Authorization: Token {token}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        try:
            result.generation_status, result.generation_seconds = await request(
                raw, max(1.0, stop - time.monotonic())
            )
        except (OSError, TimeoutError, ValueError):
            result.generation_status = 0

    await asyncio.gather(
        *(slow_headers(n) for n in range(slowloris)),
        *(slow_body() for _ in range(slow_bodies)),
        *(idle_connection() for _ in range(idle)),
        probe(),
        generation(),
    )
    return result


HEALTH_P99_MS = 200.0  # SPEC §13's target for the probe during the attack


def hostile_line(result: HostileResult | None, *, slowloris: int, slow_bodies: int, idle: int):
    """The target's line: MET when the probe's p99 is under 200 ms and the generation answered
    200."""
    label = (
        f"- During {slowloris:,} slowloris + {slow_bodies:,} slow-body + {idle:,} idle "
        "connections: health p99 < 200 ms and a generation completes normally"
    )
    if result is None:
        return f"{label}: not measured in this run."
    p50, p99 = result.probe_pct(50), result.probe_pct(99)
    ok = p99 is not None and p99 < HEALTH_P99_MS and result.generation_status == 200
    generation = (
        f"the generation answered {result.generation_status} in "
        f"{(result.generation_seconds or 0) * 1000:.0f} ms"
        if result.generation_status
        else "the generation got no answer"
    )

    def ms(value: float | None) -> str:
        return "-" if value is None else ("none" if value == float("inf") else f"{value:.1f}")

    return (
        f"{label}: {result.slowloris:,} + {result.slow_bodies:,} + {result.idle:,} opened; "
        f"health p50 {ms(p50)} ms, p99 {ms(p99)} ms over {len(result.probes)} probes "
        f"({result.probe_failures} failed); {generation}: "
        f"{'**MET**' if ok else '**MISSED**'}."
    )
