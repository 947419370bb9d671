"""``make bench``: what the gateway adds to its upstream's latency, over real HTTP on loopback.

    make bench                                   # the full grid, writes bench/RESULTS.md
    .venv/bin/python -m bench.run --delays 1000 --concurrency 256 --no-write   # one cell

It starts the fake upstream (``python -m fake_upstream``, its own process)
and the production server with the very command ``make serve`` runs (gunicorn, on a free
loopback port, a throwaway SQLite database, the base URLs pointed at the fake, one provider key
stored in the admin's key table, throttle rates high enough never to refuse), creates a user
and a DRF token, and then, for each upstream delay and each concurrency, measures

* through the gateway: ``POST /api/llm/generate/`` with a small prompt and ``Token`` auth;
* directly against the fake: the same upstream request the gateway sends for it;

requests/s, p50 and p99 latency and errors, and the overhead (gateway minus direct). The load
client is plain asyncio (a minimal HTTP/1.1 client, ``_Connection``) with one keep-alive
connection per concurrent request, so it takes little of the CPU it shares with the server;
the direct rows at delay 0 show what client and fake manage together, far above the gateway.

Each cell runs for ``--warmup`` seconds (not counted: connections open, threads start) and
then ``--duration`` seconds; a request counts when it *finishes* inside that window, so
requests/s is the steady rate. Everything it starts it stops, and it only talks to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import secrets
import shlex
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "RESULTS.md"
HOST = "127.0.0.1"
PROMPT = "Write one sentence about benchmarks."
# Shaped like real keys (the fake checks the shape of Gemini's; "bad…" keys are refused).
KEYS = {
    "gemini": "AIzaSyBench0000000000000000000000000000",
    "openrouter": "sk-or-v1-bench000000000000000000000000000000",
    "huggingface": "hf_bench00000000000000000000000000000",
}
MODELS = {
    "gemini": "gemini-2.5-flash",
    "openrouter": "openai/gpt-4o-mini",
    "huggingface": "meta-llama/Llama-3.1-8B-Instruct",
}
# What the gateway sends when the caller gives no temperature/max_tokens (llm_settings).
TEMPERATURE, MAX_TOKENS = 0.7, 2048
# The targets (concurrency, delay): overhead at c=32 delay 0; throughput at c=256, 1 s.
TARGET_OVERHEAD = (32, 0, 10.0, 50.0)  # p50 and p99 overhead under these, in ms
TARGET_THROUGHPUT = (256, 1000, 0.90)  # at least this share of the ideal c / delay


# --- The load client ------------------------------------------------------------------------------


@dataclass
class Cell:
    """One measurement: a target at one concurrency."""

    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds, sorted
    error_kinds: Counter = field(default_factory=Counter)
    server_cpu: float | None = None  # CPU seconds the gateway's processes used in the window
    client_cpu: float = 0.0  # CPU seconds this client used in the window
    others_cpu: float = 0.0  # CPU seconds the machine's other processes used in the window

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def pct(self, p: float) -> float | None:
        """The p-th percentile latency in ms (nearest rank), or None without samples."""
        if not self.latencies:
            return None
        rank = max(1, -(-len(self.latencies) * p // 100))  # ceil(n * p / 100), at least 1
        return self.latencies[int(rank) - 1] * 1000


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

    async def send(self) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        reader = self.reader
        self.writer.write(self.request)
        head = await reader.readuntil(b"\r\n\r\n")
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
        if chunked:
            while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
                await reader.readexactly(size + 2)
            while await reader.readuntil(b"\r\n") != b"\r\n":
                pass  # trailers
        elif length is not None:
            await reader.readexactly(length)
        else:
            await reader.read()  # until the server closes
            close = True
        if close:
            self.close()
        return status

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
) -> Cell:
    """``concurrency`` keep-alive connections, each sending ``body`` to ``url`` back to back.

    ``on_window(start: bool)`` is called when the measured window opens and closes (for the
    server's CPU time). Requests still in flight when it closes finish, uncounted.
    """
    cell = Cell()
    host, port, request = http_request(url, body, headers)
    now = time.perf_counter
    begin = now()
    opens, closes = begin + warmup, begin + warmup + duration
    ramp = min(1.0, warmup / 2)

    async def user(number: int) -> None:
        # Users start spread over the first part of the warm-up (a ramp), not all at one
        # instant: a closed loop with a fixed upstream delay would otherwise keep the whole
        # first wave in step, a burst no real traffic sends.
        await asyncio.sleep(ramp * number / concurrency)
        connection = _Connection(host, port, request)
        while (started := now()) < closes:
            try:
                status = await asyncio.wait_for(connection.send(), timeout)
            except (OSError, EOFError, ValueError, asyncio.IncompleteReadError) as exc:
                connection.close()
                kind = type(exc).__name__
            except TimeoutError:
                connection.close()
                kind = "timeout"
            else:
                kind = None if status == 200 else f"HTTP {status}"
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


# --- Processes ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def start_fake(delay_ms: int, log) -> tuple[subprocess.Popen, str, dict[str, str]]:
    """The fake upstream as its own process (recording off); returns it, its URL, base URLs."""
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "fake_upstream", "--host", HOST),
            *("--port", "0", "--delay-ms", str(delay_ms), "--no-record"),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        start_new_session=True,
    )
    assert process.stdout is not None
    lines = [process.stdout.readline().strip() for _ in range(5)]
    values = dict(line.partition("=")[::2] for line in lines if "=" in line)
    if "FAKE_UPSTREAM_URL" not in values:
        stop(process)
        raise SystemExit(f"bench: the fake upstream did not start: {lines!r}")
    url = values.pop("FAKE_UPSTREAM_URL")
    return process, url, values


def stop(process: subprocess.Popen, grace: float = 40.0) -> None:
    """SIGTERM to the process group we started (make and its gunicorn), then SIGKILL."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def http_json(method: str, url: str, payload=None, headers=None, timeout: float = 10.0):
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=timeout) as response:  # loopback only
        return json.loads(response.read() or b"null")


def wait_for(url: str, process: subprocess.Popen, log_path: Path, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"bench: the server exited ({process.returncode}):\n{tail(log_path)}")
        try:
            http_json("GET", url, timeout=2)
            return
        except (OSError, ValueError):
            time.sleep(0.2)
    raise SystemExit(f"bench: the server did not answer {url} in {seconds:g}s:\n{tail(log_path)}")


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (Linux ``/proc``)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{current}/task/{task}/children") as children:
                    todo += [int(c) for c in children.read().split()]
            except OSError:
                pass
    return found


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rpartition(")")[2].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def server_env(args, port: int, base: dict[str, str], workdir: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        # Nothing of a developer's configuration: no keys, no primary, no other database.
        if k
        not in {
            "GEMINI_API_KEY",
            "OPENROUTER_API_KEY",
            "HF_TOKEN",
            "GPT_PROVIDER",
            "DATABASE_URL",
            "REDIS_URL",
            "LLM_ENCRYPTION_KEYS",
            "LLM_DEFAULT_MONTHLY_COST_LIMIT",
            "LLM_DEFAULT_MONTHLY_CALL_LIMIT",
            "MAKEFLAGS",
            "MFLAGS",
            "MAKELEVEL",
        }
    }
    env.update(base)
    env.update(
        {
            "ALWRITY_ENV_FILE": "",
            "HOST": HOST,
            "PORT": str(port),
            "SECRET_KEY": secrets.token_urlsafe(40),
            "DEBUG": "false",
            "DATABASE_URL": args.database_url or f"sqlite:///{workdir / 'bench.sqlite3'}",
            # Per second, so the throttles do their real work (a history of one window per
            # user) without ever refusing one of these requests.
            "LLM_API_GENERATION_RATE": "100000/s",
            "LLM_API_RATE": "100000/s",
            "LLM_LOG_LEVEL": "WARNING",
        }
    )
    return env


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if done.returncode:
        raise SystemExit(f"bench: manage.py {args[0]} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


SETUP_CODE = """
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from llm_providers.models import APIKey
user, _ = get_user_model().objects.get_or_create(username="bench")
token, _ = Token.objects.get_or_create(user=user)
key = APIKey(provider={provider!r}, label="bench", active=True)
key.set_secret({secret!r})
key.save()
print("TOKEN=" + token.key)
"""


def serve_command(env: dict[str, str]) -> str:
    """The gunicorn command line ``make serve`` runs with this environment (``make -n``)."""
    done = subprocess.run(
        ["make", "-s", "-n", "serve"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    for line in done.stdout.replace("\\\n", " ").splitlines():
        if "gunicorn" in line and "alwrity.wsgi" in line:
            line = " ".join(line.split())
            command = line.strip().removeprefix("exec ")
            return command.replace(str(ROOT) + "/", "")
    return "make serve"


# --- The upstream request the gateway makes -------------------------------------------------------


def upstream_request(provider: str, base: dict[str, str]) -> tuple[str, dict, dict]:
    """(url, headers, body) of the upstream call ``generate/`` makes for ``PROMPT``."""
    key = KEYS[provider]
    if provider == "gemini":
        body = {
            "contents": [{"role": "user", "parts": [{"text": PROMPT}]}],
            "generationConfig": {"temperature": TEMPERATURE, "maxOutputTokens": MAX_TOKENS},
        }
        url = f"{base['GEMINI_BASE_URL']}/models/{MODELS[provider]}:generateContent"
        return url, {"x-goog-api-key": key}, body
    body = {
        "model": MODELS[provider],
        "messages": [{"role": "user", "content": PROMPT}],
        "temperature": TEMPERATURE,
        "max_tokens": MAX_TOKENS,
    }
    setting = "OPENROUTER_BASE_URL" if provider == "openrouter" else "HF_BASE_URL"
    return f"{base[setting]}/chat/completions", {"Authorization": f"Bearer {key}"}, body


# --- Machine and report ---------------------------------------------------------------------------


def machine() -> dict[str, str]:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    memory = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return {
        "cpu": f"{model}, {os.cpu_count()} cores",
        "memory": memory,
        "os": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
    }


def database_description(args) -> str:
    if args.database_url:
        return args.database_url.split("://", 1)[0] + " (DATABASE_URL)"
    return f"SQLite {sqlite3.sqlite_version} (WAL, synchronous=NORMAL), a fresh file"


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def table(rows: list[dict]) -> list[str]:
    head = (
        "| delay ms | conc. | gateway req/s | gateway p50 ms | gateway p99 ms | errors "
        "| direct req/s | direct p50 ms | direct p99 ms | overhead p50 ms | overhead p99 ms "
        "| gateway CPU ms/req | client CPU ms/req |"
    )
    lines = [head, "|" + "---:|" * 13]
    for row in rows:
        g, d = row["gateway"], row["direct"]
        cpu = None
        if g.server_cpu is not None and g.requests:
            cpu = g.server_cpu / g.requests * 1000
        errors = str(g.errors) + (f" ({d.errors} direct)" if d.errors else "")
        lines.append(
            f"| {row['delay']} | {row['concurrency']} | {g.rps:.1f} | {fmt(g.pct(50))} "
            f"| {fmt(g.pct(99))} | {errors} | {d.rps:.1f} | {fmt(d.pct(50))} "
            f"| {fmt(d.pct(99))} | {fmt(diff(g.pct(50), d.pct(50)))} "
            f"| {fmt(diff(g.pct(99), d.pct(99)))} | {fmt(cpu, 2)} "
            f"| {fmt(g.client_cpu / g.requests * 1000 if g.requests else None, 2)} |"
        )
    return lines


def floor_table(floor: list[dict]) -> list[str]:
    if not floor:
        return []
    lines = [
        "| conc. | req/s | p50 ms | p99 ms | errors | server CPU ms/req |",
        "|" + "---:|" * 6,
    ]
    for row in floor:
        f = row["floor"]
        cpu = f.server_cpu / f.requests * 1000 if f.server_cpu is not None and f.requests else None
        lines.append(
            f"| {row['concurrency']} | {f.rps:.1f} | {fmt(f.pct(50))} | {fmt(f.pct(99))} "
            f"| {f.errors} | {fmt(cpu, 2)} |"
        )
    return lines


def verdicts(rows: list[dict], floor: list[dict] = ()) -> list[str]:
    out = []
    by = {(r["concurrency"], r["delay"]): r for r in rows}
    c, d, p50_max, p99_max = TARGET_OVERHEAD
    if (c, d) in by:
        g, direct = by[(c, d)]["gateway"], by[(c, d)]["direct"]
        p50, p99 = diff(g.pct(50), direct.pct(50)), diff(g.pct(99), direct.pct(99))
        ok = p50 is not None and p99 is not None and p50 < p50_max and p99 < p99_max
        out.append(
            f"- Overhead at concurrency {c}, delay {d} ms: p50 {fmt(p50)} ms (target < "
            f"{p50_max:g}), p99 {fmt(p99)} ms (target < {p99_max:g}): "
            f"**{'met' if ok else 'MISSED'}**."
        )
        bare = next((r["floor"] for r in floor if r["concurrency"] == c), None)
        if bare is not None and bare.requests:
            out.append(
                f"  For scale, the same server answering `GET /api/llm/health/` (no "
                f"authentication, no upstream, one `SELECT 1`) at concurrency {c}: "
                f"{bare.rps:.0f} req/s, p50 {fmt(bare.pct(50))} ms, p99 {fmt(bare.pct(99))} ms."
            )
    c, d, share = TARGET_THROUGHPUT
    if (c, d) in by:
        g = by[(c, d)]["gateway"]
        ideal = c / (d / 1000)
        ok = g.rps >= share * ideal and not g.errors
        out.append(
            f"- Throughput at concurrency {c}, delay {d} ms: {g.rps:.1f} req/s = "
            f"{g.rps / ideal:.1%} of the ideal {ideal:g} (target ≥ {share:.0%}, no errors): "
            f"**{'met' if ok else 'MISSED'}**."
        )
    return out


def report(args, rows: list[dict], floor: list[dict], info: dict[str, str]) -> str:
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    busiest = max(
        (
            (r[n].others_cpu / r[n].seconds, r, n)
            for r in rows
            for n in ("gateway", "direct")
            if r[n].seconds
        ),
        default=None,
        key=lambda t: t[0],
    )
    others = (
        "nothing measurable"
        if busiest is None or busiest[0] < 0.05
        else (
            f"up to {busiest[0]:.2f} of the {os.cpu_count()} cores during the measured windows "
            f"(most in delay {busiest[1]['delay']} ms, concurrency {busiest[1]['concurrency']}, "
            f"{busiest[2]}): figures from such a run understate the gateway"
        )
    )
    errors = [
        f"- delay {r['delay']} ms, concurrency {r['concurrency']}, {name}: "
        + ", ".join(f"{k} x{n}" for k, n in r[name].error_kinds.most_common())
        for r in rows
        for name in ("gateway", "direct")
        if r[name].errors
    ]
    lines = [
        "# Benchmark results",
        "",
        f"Made by `{info['command']}` on {when}. Written by `bench/run.py`; do not edit by hand.",
        "",
        "## Figures",
        "",
        *table(rows),
        "",
        *verdicts(rows, floor),
        "",
        "Gateway: `POST /api/llm/generate/` with a small prompt (Token auth), through the "
        "whole stack — authentication, throttles, validation, key resolution, budget check, the "
        "upstream call, and the ledger row and summary update in the database. Direct: the same "
        f"upstream request ({info['provider']}, `{info['upstream_path']}`) sent straight to the "
        "fake. Overhead: gateway minus direct, per percentile. Gateway CPU: the server's "
        "processes' CPU time in the window, per request (it includes their idle background "
        "work, which dominates at 1 request/s); client CPU: the load client's, per gateway "
        "request.",
        "",
        "The client keeps `concurrency` requests in flight, so once the gateway is saturated "
        "its latency is concurrency / throughput (Little's law): the delay-0 rows at "
        "concurrency 32 and 256 measure the gateway's throughput on this machine; the "
        "concurrency-1 rows show what one request adds. The direct rows at delay 0 show what "
        "the client and the fake manage together: far more than the gateway, so neither is "
        "the bottleneck.",
        "",
        *(
            [
                "### The server's floor",
                "",
                "`GET /api/llm/health/` on the same server: a DRF view with no authentication, "
                "no throttle and no upstream, one `SELECT 1` — what gunicorn, Django and DRF "
                "cost on this machine before the gateway does anything.",
                "",
                *floor_table(floor),
                "",
            ]
            if floor
            else []
        ),
        *(["Errors:", "", *errors, ""] if errors else []),
        "## Conditions",
        "",
        f"- Machine: {info['cpu']}; {info['memory']} memory; {info['os']}.",
        f"- Python: {info['python']}. Database: {info['database']}.",
        f"- Server: the command `make serve` runs, `{info['serve_command']}`.",
        "- Upstream: the fake (`python -m fake_upstream --no-record "
        "--delay-ms N`) in its own process; 20-word answers.",
        f"- Client: plain asyncio (a minimal HTTP/1.1 client) in one process, one keep-alive "
        f"connection per concurrent "
        f"request, the users starting over the first {min(1.0, args.warmup / 2):g} s; per cell "
        f"{args.warmup:g} s warm-up (not counted), then {args.duration:g} s "
        "measured (a request counts when it finishes inside the window); all on 127.0.0.1, "
        "client, fake and server sharing the machine's cores.",
        "- Throttle rates 100000/s (they count every request but refuse none); "
        "per-user accounting on, as in production.",
        "- The machine may be shared: before each cell the bench waits (up to "
        f"{QUIET_WAIT:g} s) for it to be idle, and a cell during which other processes used "
        f"more than {OTHERS_LIMIT:g} cores is measured again (up to {ATTEMPTS} times, the "
        f"quietest kept). Other processes (not the server, fake or client) used {others}.",
        "",
    ]
    return "\n".join(lines)


# --- Main -----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32, 256])
    parser.add_argument("--delays", type=int, nargs="+", default=[0, 1000], help="upstream ms")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds per cell, not counted")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per cell")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    parser.add_argument("--provider", default="gemini", choices=sorted(KEYS))
    parser.add_argument("--gateway-only", action="store_true", help="skip the direct rows")
    parser.add_argument("--database-url", help="default: a fresh SQLite file")
    parser.add_argument("--no-floor", action="store_true", help="skip GET health/ rows")
    parser.add_argument("--no-write", action="store_true", help=f"do not write {RESULTS.name}")
    parser.add_argument("--command", default="make bench", help="how this run was started")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    info = machine()
    rows: list[dict] = []
    floor: list[dict] = []  # GET health/ per concurrency: what the server costs doing nothing
    with tempfile.TemporaryDirectory(prefix="alwrity-bench-") as tmp:
        workdir = Path(tmp)
        fake_log = open(workdir / "fake.log", "w")  # noqa: SIM115 (closed below)
        server_log_path = workdir / "server.log"
        server_log = open(server_log_path, "w")  # noqa: SIM115
        fake = server = None
        try:
            fake, fake_url, base = start_fake(args.delays[0], fake_log)
            port = free_port()
            env = server_env(args, port, base, workdir)
            print("bench: migrating a fresh database, adding a user, a token and a key", flush=True)
            manage(env, "migrate", "--noinput")
            token = (
                manage(
                    env,
                    "shell",
                    "-c",
                    SETUP_CODE.format(provider=args.provider, secret=KEYS[args.provider]),
                )
                .split("TOKEN=")[1]
                .split()[0]
            )
            info["serve_command"] = serve_command(env)
            print(f"bench: starting `{info['serve_command']}`", flush=True)
            server = subprocess.Popen(
                ["make", "-s", "serve"],
                cwd=ROOT,
                env=env,
                stdout=server_log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            gateway_url = f"http://{HOST}:{port}"
            wait_for(f"{gateway_url}/api/llm/health/", server, server_log_path)
            upstream_url, upstream_headers, upstream_body = upstream_request(args.provider, base)
            gateway = (
                f"{gateway_url}/api/llm/generate/",
                {"Authorization": f"Token {token}"},
                {"prompt": PROMPT},
            )
            # One call first: the key reaches the server, and a broken set-up fails loudly.
            first = http_json("POST", gateway[0], gateway[2], gateway[1], timeout=30)
            if first.get("provider") != args.provider:
                raise SystemExit(f"bench: unexpected first answer: {first!r}")
            info.update(
                command=args.command,
                provider=args.provider,
                upstream_path=upstream_url.removeprefix(fake_url),
                database=database_description(args),
            )
            for delay in args.delays:
                http_json("POST", f"{fake_url}/_fake/config", {"delay_ms": delay})
                for concurrency in args.concurrency:
                    row = {"delay": delay, "concurrency": concurrency}
                    targets = [("gateway", *gateway)]
                    if not args.gateway_only:
                        targets.append(("direct", upstream_url, upstream_headers, upstream_body))
                    else:
                        row["direct"] = Cell()
                    for name, url, headers, body in targets:
                        row[name] = measure_quietly(
                            args, server, fake, name, url, headers, body, concurrency
                        )
                        print(f"bench: {describe(delay, concurrency, name, row[name])}", flush=True)
                    rows.append(row)
            if not args.no_floor:
                for concurrency in args.concurrency:
                    cell = measure_quietly(
                        args,
                        server,
                        fake,
                        "floor",
                        f"{gateway_url}/api/llm/health/",
                        {},
                        None,
                        concurrency,
                    )
                    print(f"bench: {describe(0, concurrency, 'floor', cell)}", flush=True)
                    floor.append({"concurrency": concurrency, "floor": cell})
        finally:
            for process in (server, fake):
                if process is not None:
                    stop(process)
            fake_log.close()
            server_log.close()
    text = report(args, rows, floor, info)
    print()
    print("\n".join(table(rows)))
    print("\n".join(floor_table(floor)))
    print("\n".join(verdicts(rows, floor)))
    if not args.no_write:
        RESULTS.write_text(text)
        print(f"bench: wrote {RESULTS.relative_to(ROOT)}")
    return 0


def measure(args, server, fake, name, url, headers, body, concurrency) -> Cell:
    marks: list[tuple[float, float, float]] = []
    pids = process_tree(server.pid) if name != "direct" else []

    def on_window(start: bool) -> None:
        marks.append((cpu_seconds(pids), cpu_seconds([fake.pid]), busy_seconds()))

    cell = asyncio.run(
        load(
            url,
            body,
            headers,
            concurrency=concurrency,
            warmup=args.warmup,
            duration=args.duration,
            timeout=args.timeout,
            on_window=on_window,
        )
    )
    if len(marks) == 2:
        (server0, fake0, busy0), (server1, fake1, busy1) = marks
        if pids:
            cell.server_cpu = server1 - server0
        ours = (server1 - server0) + (fake1 - fake0) + cell.client_cpu
        cell.others_cpu = max(0.0, (busy1 - busy0) - ours)
    return cell


# The machine may be shared (a test suite, another build): a cell during which other processes
# used more than this many cores is measured again, up to ATTEMPTS times in all (the quietest
# attempt is kept), after waiting up to QUIET_WAIT seconds for the machine to calm down.
OTHERS_LIMIT, ATTEMPTS, QUIET_WAIT = 0.15, 3, 30.0


def measure_quietly(args, server, fake, name, url, headers, body, concurrency) -> Cell:
    best: Cell | None = None
    for attempt in range(ATTEMPTS):
        wait_for_quiet(QUIET_WAIT)
        cell = measure(args, server, fake, name, url, headers, body, concurrency)
        if best is None or cell.others_cpu < best.others_cpu:
            best = cell
        if cell.others_cpu / args.duration <= OTHERS_LIMIT:
            break
        if attempt + 1 < ATTEMPTS:
            print(
                f"bench: other processes used {cell.others_cpu / args.duration:.2f} cores "
                f"during {name} c={concurrency}: measuring it again",
                flush=True,
            )
    assert best is not None
    return best


def wait_for_quiet(seconds: float) -> None:
    """Wait until the machine is nearly idle for a second (our server idles between cells),
    at most ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        before = busy_seconds()
        time.sleep(1.0)
        if busy_seconds() - before < OTHERS_LIMIT:
            return


def busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (all processes; Linux ``/proc/stat``)."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def describe(delay: int, concurrency: int, name: str, cell: Cell) -> str:
    text = (
        f"delay={delay}ms c={concurrency} {name}: {cell.rps:.1f} req/s "
        f"p50={fmt(cell.pct(50))}ms p99={fmt(cell.pct(99))}ms errors={cell.errors}"
    )
    if cell.server_cpu is not None and cell.requests:
        text += f" cpu={cell.server_cpu / cell.requests * 1000:.2f}ms/req"
    if cell.requests:
        text += f" client_cpu={cell.client_cpu / cell.requests * 1000:.2f}ms/req"
    text += f" others={cell.others_cpu / cell.seconds:.2f} cores" if cell.seconds else ""
    return text


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    try:
        code = run(args)
    except KeyboardInterrupt:
        return 130
    print(f"bench: done in {time.monotonic() - started:.0f} s ({shlex.join(sys.argv)})")
    return code


if __name__ == "__main__":
    sys.exit(main())
