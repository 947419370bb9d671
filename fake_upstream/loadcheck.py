"""How fast the fake upstream answers on its own: a load check to run by hand (not a test).

    python -m fake_upstream.loadcheck                      # starts its own fake
    python -m fake_upstream.loadcheck --concurrency 256 --requests 20000 --stream
    python -m fake_upstream.loadcheck --url http://127.0.0.1:8900 --provider gemini

Without ``--url`` it starts the fake as a separate process (the CLI, recording off), so the
fake and this client each get a core, as the fake and the gateway do in ``make bench``. It
sends ``--requests`` generation requests over ``--concurrency`` keep-alive connections (bounded
by ``--max-seconds``) to loopback only, and prints requests/s and latency percentiles.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time

import aiohttp

from .server import base_urls

KEYS = {
    "openrouter": ("Authorization", "Bearer sk-or-v1-loadcheck0000000000000000"),
    "gemini": ("x-goog-api-key", "AIzaSyLoadcheck00000000000000000000000"),
    "huggingface": ("Authorization", "Bearer hf_loadcheck000000000000000000000"),
}
PROMPT = "Write one sentence about load testing a fake upstream server."


def request_for(url: str, provider: str, stream: bool) -> tuple[str, dict, dict]:
    urls = base_urls(url)
    header, value = KEYS[provider]
    headers = {header: value}
    if provider == "gemini":
        action = "streamGenerateContent?alt=sse" if stream else "generateContent"
        body = {"contents": [{"role": "user", "parts": [{"text": PROMPT}]}]}
        return f"{urls['GEMINI_BASE_URL']}/models/gemini-2.5-flash:{action}", headers, body
    base = urls["OPENROUTER_BASE_URL" if provider == "openrouter" else "HF_BASE_URL"]
    model = "openai/gpt-4o-mini" if provider == "openrouter" else "meta-llama/Llama-3.1-8B-Instruct"
    body = {"model": model, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 200}
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    return f"{base}/chat/completions", headers, body


async def run_load(
    url: str,
    *,
    provider: str = "openrouter",
    stream: bool = False,
    concurrency: int = 256,
    total: int = 20000,
    max_seconds: float = 60.0,
) -> dict:
    """Send ``total`` requests with ``concurrency`` in flight; return counts and latencies."""
    target, headers, body = request_for(url, provider, stream)
    latencies: list[float] = []
    errors = 0
    sent = 0
    deadline = time.monotonic() + max_seconds
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal sent, errors
            while sent < total and time.monotonic() < deadline:
                sent += 1
                started = time.perf_counter()
                try:
                    async with session.post(target, json=body, headers=headers) as response:
                        await response.read()
                        ok = response.status == 200
                except aiohttp.ClientError:
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()

    def pct(p: float) -> float:
        return (
            latencies[min(len(latencies) - 1, int(len(latencies) * p))] * 1000 if latencies else 0
        )

    return {
        "provider": provider,
        "stream": stream,
        "concurrency": concurrency,
        "requests": len(latencies),
        "errors": errors,
        "seconds": round(elapsed, 2),
        "rps": round(len(latencies) / elapsed, 1) if elapsed else 0.0,
        "p50_ms": round(pct(0.50), 2),
        "p99_ms": round(pct(0.99), 2),
    }


def start_fake(delay_ms: float) -> tuple[subprocess.Popen, str]:
    """The fake as its own process (recording off); returns it and its URL."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fake_upstream",
            "--port",
            "0",
            "--no-record",
            "--delay-ms",
            str(delay_ms),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if not line.startswith("FAKE_UPSTREAM_URL="):
        process.kill()
        raise RuntimeError(f"the fake upstream did not start: {line!r}")
    return process, line.partition("=")[2]


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time a process has used (Linux ``/proc``), or None elsewhere."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except OSError:
        return None
    # After the command name: state is field 3, utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fake_upstream.loadcheck")
    parser.add_argument("--url", help="a running fake (default: start one)")
    parser.add_argument(
        "--provider", default="all", choices=["all", "openrouter", "gemini", "huggingface"]
    )
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--max-seconds", type=float, default=60.0)
    parser.add_argument("--delay-ms", type=float, default=0, help="for the fake it starts")
    parser.add_argument("--pid", type=int, help="the fake's process id, to report its CPU time")
    args = parser.parse_args(argv)
    process = None
    url = args.url
    pid = args.pid
    if url is None:
        process, url = start_fake(args.delay_ms)
        pid = process.pid
    providers = (
        ["openrouter", "gemini", "huggingface"] if args.provider == "all" else [args.provider]
    )
    try:
        for provider in providers:
            cpu_before = cpu_seconds(pid) if pid else None
            result = asyncio.run(
                run_load(
                    url,
                    provider=provider,
                    stream=args.stream,
                    concurrency=args.concurrency,
                    total=args.requests,
                    max_seconds=args.max_seconds,
                )
            )
            cpu_after = cpu_seconds(pid) if pid else None
            if cpu_before is not None and cpu_after is not None and result["requests"]:
                # The fake's own cost, whatever limits this client: its capacity on one core
                # is about 1 / (CPU seconds per request).
                used = cpu_after - cpu_before
                result["fake_cpu_us_per_req"] = round(used / result["requests"] * 1e6)
                result["fake_cpu_share"] = round(used / result["seconds"], 2)
            print(" ".join(f"{k}={v}" for k, v in result.items()), flush=True)
    finally:
        if process is not None:
            process.terminate()
            process.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
