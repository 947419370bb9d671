"""``make bench``: what the gateway adds to its upstream's latency, over real HTTP on loopback.

    make bench                                   # the full grid, writes bench/RESULTS.md
    make bench BASELINE=<git rev>                # the same grid on this tree and on <rev>
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

With ``BASELINE=<rev>`` (``--baseline``) it also serves that revision, built by
``bench.baseline`` (a git worktree, its own virtualenv, database and port, its own ``make
serve``), against the same fake, and measures the two servers one after the other in each cell,
the order alternating from cell to cell: this machine's speed drifts, so only figures taken
side by side compare. It writes the ratios (current / baseline) in RESULTS.md's "Comparison"
section and leaves the figures above it as they were; a plain run keeps that section.

Each cell runs for ``--warmup`` seconds (not counted: connections open, threads start) and
then ``--duration`` seconds; a request counts when it *finishes* inside that window, so
requests/s is the steady rate. Everything it starts it stops, and it only talks to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench.baseline import MAKE_VARIABLES, baseline_checkout, describe_working_tree

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
    values.pop("OPENAI_COMPATIBLE_BASE_URL", None)  # custom providers: not measured here
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


def server_env(port: int, base: dict[str, str], database_url: str) -> dict[str, str]:
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
            "LLM_CUSTOM_PROVIDERS",
            *MAKE_VARIABLES,
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
            "DATABASE_URL": database_url,
            # Each server its own cache, not the project's var/cache (a developer's make run).
            "CACHE_DIR": str(Path(database_url.removeprefix("sqlite:///")).parent / f"cache-{port}")
            if database_url.startswith("sqlite:///")
            else tempfile.mkdtemp(prefix="bench-cache-"),
            # Per second, so the throttles do their real work (a history of one window per
            # user) without ever refusing one of these requests.
            "LLM_API_GENERATION_RATE": "100000/s",
            "LLM_API_RATE": "100000/s",
            "LLM_LOG_LEVEL": "WARNING",
        }
    )
    return env


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


@dataclass
class Gateway:
    """A server under test: the checkout at ``root`` served by its own ``make serve``.

    The working tree is one; ``make bench BASELINE=<rev>`` adds a checkout of that revision
    (``bench.baseline``) with its own virtualenv (``make_args``), database and port.
    """

    name: str
    root: Path
    python: Path
    env: dict[str, str]
    log_path: Path
    make_args: tuple[str, ...] = ()
    process: subprocess.Popen | None = None
    token: str = ""
    serve_command: str = "make serve"

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.env['PORT']}"

    def manage(self, *args: str) -> str:
        done = subprocess.run(
            [str(self.python), "manage.py", *args],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
        )
        if done.returncode:
            raise SystemExit(
                f"bench: {self.name}: manage.py {args[0]} failed:\n{done.stdout}{done.stderr}"
            )
        return done.stdout

    def make(self, *args: str) -> list[str]:
        return ["make", "-s", "-C", str(self.root), *args, *self.make_args]

    def start(self, provider: str) -> None:
        """A fresh database with a user, a token and a key; ``make serve``; one checked call."""
        print(f"bench: {self.name}: migrating a fresh database, adding a user, a token and a key")
        self.manage("migrate", "--noinput")
        setup = SETUP_CODE.format(provider=provider, secret=KEYS[provider])
        self.token = self.manage("shell", "-c", setup).split("TOKEN=")[1].split()[0]
        self.serve_command = self._serve_command()
        print(f"bench: {self.name}: starting `{self.serve_command}`", flush=True)
        with open(self.log_path, "w") as log:  # the child keeps its own descriptor
            self.process = subprocess.Popen(
                self.make("serve"),
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for(f"{self.url}/api/llm/health/", self.process, self.log_path)
        # One call first: the key reaches the server, and a broken set-up fails loudly.
        url, headers, body = self.generate
        first = http_json("POST", url, body, headers, timeout=30)
        if first.get("provider") != provider:
            raise SystemExit(f"bench: {self.name}: unexpected first answer: {first!r}")

    @property
    def generate(self) -> tuple[str, dict[str, str], dict]:
        """(url, headers, body) of the measured request: ``POST generate/``."""
        return (
            f"{self.url}/api/llm/generate/",
            {"Authorization": f"Token {self.token}"},
            {"prompt": PROMPT},
        )

    def _serve_command(self) -> str:
        """The gunicorn command line ``make serve`` runs with this environment (``make -n``)."""
        done = subprocess.run(
            self.make("-n", "serve"), env=self.env, capture_output=True, text=True
        )
        for line in done.stdout.replace("\\\n", " ").splitlines():
            if "gunicorn" in line and "alwrity.wsgi" in line:
                line = " ".join(line.split())
                command = line.strip().removeprefix("exec ")
                return command.replace(str(self.root) + "/", "").replace(str(ROOT) + "/", "")
        return "make serve"

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)


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
    parser.add_argument(
        "--baseline",
        metavar="REV",
        help="also serve this git revision (its own checkout, venv and database) and compare",
    )
    args = parser.parse_args(argv)
    if args.baseline and args.database_url:
        parser.error("--baseline gives each server its own SQLite file: no --database-url")
    return args


@contextlib.contextmanager
def bench_run() -> Iterator[tuple[Path, subprocess.Popen, str, dict[str, str]]]:
    """A working directory and the fake upstream: (workdir, fake process, its URL, base URLs)."""
    with tempfile.TemporaryDirectory(prefix="alwrity-bench-") as tmp:
        workdir = Path(tmp)
        with open(workdir / "fake.log", "w") as fake_log:
            fake, fake_url, base = start_fake(0, fake_log)
        try:
            yield workdir, fake, fake_url, base
        finally:
            stop(fake)


def current_gateway(workdir: Path, base: dict[str, str], database_url: str = "") -> Gateway:
    """This working tree, served by ``make serve`` with the project's ``.venv``."""
    database_url = database_url or f"sqlite:///{workdir / 'current.sqlite3'}"
    env = server_env(free_port(), base, database_url)
    return Gateway("current", ROOT, Path(sys.executable), env, workdir / "current.log")


def run(args: argparse.Namespace) -> int:
    if args.baseline:
        return run_comparison(args)
    info = machine()
    rows: list[dict] = []
    floor: list[dict] = []  # GET health/ per concurrency: what the server costs doing nothing
    with bench_run() as (workdir, fake, fake_url, base):
        gateway = current_gateway(workdir, base, args.database_url)
        try:
            gateway.start(args.provider)
            upstream_url, upstream_headers, upstream_body = upstream_request(args.provider, base)
            info.update(
                command=args.command,
                provider=args.provider,
                upstream_path=upstream_url.removeprefix(fake_url),
                database=database_description(args),
                serve_command=gateway.serve_command,
            )
            server = gateway.process
            for delay in args.delays:
                http_json("POST", f"{fake_url}/_fake/config", {"delay_ms": delay})
                for concurrency in args.concurrency:
                    row = {"delay": delay, "concurrency": concurrency}
                    targets = [("gateway", *gateway.generate)]
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
                    health = f"{gateway.url}/api/llm/health/"
                    cell = measure_quietly(
                        args, server, fake, "floor", health, {}, None, concurrency
                    )
                    print(f"bench: {describe(0, concurrency, 'floor', cell)}", flush=True)
                    floor.append({"concurrency": concurrency, "floor": cell})
        finally:
            gateway.stop()
    print()
    print("\n".join(table(rows)))
    print("\n".join(floor_table(floor)))
    print("\n".join(verdicts(rows, floor)))
    if not args.no_write:
        write_results(report(args, rows, floor, info), COMPARISON_HEADING, keep="after")
    return 0


# --- Comparing with another revision (make bench BASELINE=<rev>) ----------------------------------

COMPARISON_HEADING = "## Comparison"
# The bound for a comparison: no cell more than this much worse in requests/s or p50.
WORSE_LIMIT = 0.15


def run_comparison(args: argparse.Namespace) -> int:
    """Serve the working tree and ``args.baseline`` side by side against one fake upstream and
    measure them alternately, cell by cell, so drift in the machine's speed hits both alike."""
    info = machine()
    rows: list[dict] = []
    with baseline_checkout(args.baseline) as checkout, bench_run() as (workdir, fake, url, base):
        current = current_gateway(workdir, base)
        env = server_env(free_port(), base, f"sqlite:///{workdir / 'baseline.sqlite3'}")
        baseline = Gateway(
            "baseline",
            checkout.root,
            checkout.python,
            env,
            workdir / "baseline.log",
            checkout.make_args,
        )
        gateways = {"baseline": baseline, "current": current}
        try:
            for gateway in gateways.values():
                gateway.start(args.provider)
            info.update(
                command=args.command,
                provider=args.provider,
                current=describe_working_tree(),
                baseline=f"{checkout.rev} ({checkout.short}, “{shorten(checkout.subject, 80)}”)",
                current_serve=current.serve_command,
                baseline_serve=baseline.serve_command,
            )
            cells = [
                ("generate/", delay, concurrency)
                for delay in args.delays
                for concurrency in args.concurrency
            ]
            if not args.no_floor:
                cells += [("health/", 0, concurrency) for concurrency in args.concurrency]
            for index, (target, delay, concurrency) in enumerate(cells):
                http_json("POST", f"{url}/_fake/config", {"delay_ms": delay})
                order = ("baseline", "current") if index % 2 == 0 else ("current", "baseline")
                row = {"target": target, "delay": delay, "concurrency": concurrency}
                for name in order:
                    gateway = gateways[name]
                    request = (
                        gateway.generate
                        if target == "generate/"
                        else (f"{gateway.url}/api/llm/health/", {}, None)
                    )
                    row[name] = measure_quietly(
                        args, gateway.process, fake, target, *request, concurrency
                    )
                    label = f"{target} {name}"
                    print(f"bench: {describe(delay, concurrency, label, row[name])}", flush=True)
                rows.append(row)
        finally:
            for gateway in gateways.values():
                gateway.stop()
    text = comparison_report(args, rows, info)
    print()
    print("\n".join(comparison_table(rows)))
    print("\n".join(comparison_verdict(rows)))
    if not args.no_write:
        write_results(text, COMPARISON_HEADING, keep="before")
    return 0


def shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"


def ratio(current: float | None, baseline: float | None) -> float | None:
    return None if current is None or not baseline else current / baseline


def cpu_per_request(cell: Cell) -> float | None:
    if cell.server_cpu is None or not cell.requests:
        return None
    return cell.server_cpu / cell.requests * 1000


def comparison_table(rows: list[dict]) -> list[str]:
    lines = [
        "| target | delay ms | conc. | req/s base → current | req/s ratio "
        "| p50 ms base → current | p50 ratio | p99 ms base → current | p99 ratio "
        "| errors base / current | server CPU ms/req base → current |",
        "|---|" + "---:|" * 10,
    ]
    for row in rows:
        b, c = row["baseline"], row["current"]
        lines.append(
            f"| {row['target']} | {row['delay']} | {row['concurrency']} "
            f"| {b.rps:.1f} → {c.rps:.1f} | {fmt(ratio(c.rps, b.rps), 2)} "
            f"| {fmt(b.pct(50))} → {fmt(c.pct(50))} | {fmt(ratio(c.pct(50), b.pct(50)), 2)} "
            f"| {fmt(b.pct(99))} → {fmt(c.pct(99))} | {fmt(ratio(c.pct(99), b.pct(99)), 2)} "
            f"| {b.errors} / {c.errors} "
            f"| {fmt(cpu_per_request(b), 2)} → {fmt(cpu_per_request(c), 2)} |"
        )
    return lines


def comparison_verdict(rows: list[dict]) -> list[str]:
    """The cells where the working tree is more than WORSE_LIMIT worse (req/s or p50)."""
    worse = []
    for row in rows:
        b, c = row["baseline"], row["current"]
        rps, p50 = ratio(c.rps, b.rps), ratio(c.pct(50), b.pct(50))
        reasons = []
        if rps is not None and rps < 1 - WORSE_LIMIT:
            reasons.append(f"req/s x{rps:.2f}")
        if p50 is not None and p50 > 1 + WORSE_LIMIT:
            reasons.append(f"p50 x{p50:.2f}")
        if c.errors > b.errors:
            reasons.append(f"{c.errors} errors (baseline {b.errors})")
        if reasons:
            where = f"{row['target']} delay {row['delay']} ms, concurrency {row['concurrency']}"
            worse.append(f"  - {where}: {', '.join(reasons)}")
    limit = f"{WORSE_LIMIT:.0%}"
    if not worse:
        return [f"- No cell more than {limit} worse than the baseline in req/s or p50: **met**."]
    return [f"- Cells more than {limit} worse than the baseline (req/s or p50): **MISSED**", *worse]


def comparison_report(args, rows: list[dict], info: dict[str, str]) -> str:
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    most = max(
        (r[n].others_cpu / r[n].seconds for r in rows for n in ("baseline", "current")), default=0
    )
    return "\n".join(
        [
            COMPARISON_HEADING,
            "",
            f"Made by `{info['command']}` on {when}: the working tree ({info['current']}) "
            f"against {info['baseline']}. Written by `bench/run.py`; do not edit by hand.",
            "",
            *comparison_table(rows),
            "",
            *comparison_verdict(rows),
            "",
            "Ratios are current / baseline: above 1 is better for req/s, below 1 is better "
            "for p50 and p99. generate/: `POST /api/llm/generate/` (Token auth, "
            f"{info['provider']} against the fake upstream); health/: `GET /api/llm/health/`, "
            "the server's floor.",
            "",
            "How: both servers run at once, each from its own checkout with its own "
            "virtualenv (the baseline's made by its own `make venv` from its own "
            "requirements.txt), its own fresh SQLite database and its own port, started by "
            "its own `make serve`; one fake upstream (this tree's) serves both. Each cell is "
            "measured on one server and then the other, the order alternating from cell to "
            f"cell; per server and cell {args.warmup:g} s warm-up, then {args.duration:g} s "
            "measured, with the same load client, retries on a busy machine and throttle "
            "rates as the figures above.",
            "",
            f"- Machine: {info['cpu']}; {info['memory']} memory; {info['os']}; {info['python']}.",
            f"- Current: `{info['current_serve']}`.",
            f"- Baseline: `{info['baseline_serve']}`.",
            f"- Other processes used up to {most:.2f} cores during the measured windows.",
            "",
        ]
    )


def write_results(section: str, heading: str, *, keep: str) -> None:
    """Write ``section`` into RESULTS.md, keeping the part of the file ``keep`` ("before" or
    "after") ``heading``: a plain run rewrites the figures and keeps the last comparison, a
    comparison rewrites its own section and keeps the figures."""
    old = RESULTS.read_text() if RESULTS.exists() else ""
    before, found, after = old.partition(f"\n{heading}\n")
    if keep == "before":
        head = before.rstrip("\n") if found or old else "# Benchmark results"
        text = f"{head}\n\n{section}"
    else:
        text = section.rstrip("\n") + "\n" + (f"\n{heading}\n{after}" if found else "")
    RESULTS.write_text(text)
    print(f"bench: wrote {RESULTS.relative_to(ROOT)}")


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
