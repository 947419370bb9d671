"""What the bench starts and measures: the fake upstream, this project's ``make serve``
(``Gateway``), and the ``Target``s a cell sends requests to, with their processes' CPU time and
memory read from Linux ``/proc``."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.baseline import MAKE_VARIABLES
from bench.client import GEMINI_EVENTS, GENERATE_EVENTS, OPENAI_CHUNKS, StreamShape

ROOT = Path(__file__).resolve().parent.parent
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
# The OpenAI-shaped request (``v1/chat/completions``) a peer comparison sends to every
# gateway: a model OpenRouter serves, which this project routes to OpenRouter (SPEC §8) and
# LiteLLM is configured to send to the same fake route.
CHAT_PROVIDER = "openrouter"


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
    """SIGTERM to the process group we started (make and its server), then SIGKILL."""
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


def server_pids(root: int) -> list[int]:
    """The server's processes: the tree under ``root`` without a ``make`` at its top (``make
    serve`` waits for the server it started; it is not part of it)."""
    pids = process_tree(root)
    try:
        with open(f"/proc/{root}/comm") as comm:
            if comm.read().strip() == "make":
                pids.remove(root)
    except OSError:
        pass
    return pids


PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def resident_bytes(pids: list[int]) -> int:
    """The processes' resident memory added up (``/proc/<pid>/statm``; pages that forked
    workers share are counted in each, as ``ps`` and ``top`` show them)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm") as statm:
                total += int(statm.read().split()[1]) * PAGE_SIZE
        except (OSError, ValueError, IndexError):
            continue
    return total


class PeakMemory:
    """The highest resident memory of a server's processes while the ``with`` block runs,
    sampled every ``every`` seconds by a thread (the tree is read again at each sample: workers
    may be restarted). ``peak`` is in bytes, None without a process to watch."""

    def __init__(self, process: subprocess.Popen | None, every: float = 0.5):
        self.process, self.every = process, every
        self.peak: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample_until_stopped, daemon=True)

    def sample(self) -> None:
        if self.process is not None:
            self.peak = max(self.peak or 0, resident_bytes(server_pids(self.process.pid)))

    def _sample_until_stopped(self) -> None:
        while not self._stop.wait(self.every):
            self.sample()

    def __enter__(self) -> PeakMemory:
        self.sample()
        if self.process is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.sample()


def busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (all processes; Linux ``/proc/stat``)."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


# --- What a cell sends ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One request a cell sends again and again (``body`` None: a GET)."""

    url: str
    headers: dict[str, str]
    body: dict | None
    shape: StreamShape | None = None  # a streamed request's events


@dataclass
class Target:
    """What a cell measures: a server under test, or (``process`` None) the fake upstream
    called directly. ``request(stream)`` is what to send it; ``health`` its do-nothing probe
    (the server's floor), if it has one; ``expect`` what its first answer must contain."""

    name: str
    process: subprocess.Popen | None
    request: Callable[[bool], Request]
    health: str | None = None
    expect: dict = field(default_factory=dict)


def chat_body(stream: bool) -> dict:
    """The OpenAI-shaped request of a peer comparison, every gateway alike."""
    body = {
        "model": MODELS[CHAT_PROVIDER],
        "messages": [{"role": "user", "content": PROMPT}],
        "temperature": TEMPERATURE,
        "max_tokens": MAX_TOKENS,
    }
    return {**body, "stream": True} if stream else body


def upstream_request(provider: str, base: dict[str, str], stream: bool = False) -> Request:
    """The upstream call the gateway makes for ``PROMPT`` (``generate/`` with the default
    temperature and max_tokens, or the peer comparison's chat request)."""
    key = KEYS[provider]
    if provider == "gemini":
        body = {
            "contents": [{"role": "user", "parts": [{"text": PROMPT}]}],
            "generationConfig": {"temperature": TEMPERATURE, "maxOutputTokens": MAX_TOKENS},
        }
        model_url = f"{base['GEMINI_BASE_URL']}/models/{MODELS[provider]}"
        if stream:
            url = f"{model_url}:streamGenerateContent?alt=sse"
            headers = {"x-goog-api-key": key, "Accept": "text/event-stream"}
            return Request(url, headers, body, GEMINI_EVENTS)
        return Request(f"{model_url}:generateContent", {"x-goog-api-key": key}, body)
    body = {
        "model": MODELS[provider],
        "messages": [{"role": "user", "content": PROMPT}],
        "temperature": TEMPERATURE,
        "max_tokens": MAX_TOKENS,
    }
    setting = "OPENROUTER_BASE_URL" if provider == "openrouter" else "HF_BASE_URL"
    url = f"{base[setting]}/chat/completions"
    if stream:
        body = {**body, "stream": True, "stream_options": {"include_usage": True}}
        headers = {"Authorization": f"Bearer {key}", "Accept": "text/event-stream"}
        return Request(url, headers, body, OPENAI_CHUNKS)
    return Request(url, {"Authorization": f"Bearer {key}"}, body)


def direct_target(provider: str, base: dict[str, str]) -> Target:
    """The fake upstream itself, sent what the gateway sends it: the floor of every cell."""
    return Target("direct", None, lambda stream: upstream_request(provider, base, stream))


# --- This project's server ------------------------------------------------------------------------


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
            # make serve empties it at start: each server under test gets its own.
            "PROMETHEUS_MULTIPROC_DIR",
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
for provider, secret in {keys!r}.items():
    key = APIKey(provider=provider, label="bench", active=True)
    key.set_secret(secret)
    key.save()
print("TOKEN=" + token.key)
"""


def exec_line(make_dry_run: str) -> str | None:
    """The command ``make serve`` execs, from ``make -n serve``'s output (continuation lines
    joined, spaces collapsed, ``exec`` dropped): whatever the server, its recipe's last line
    starts with ``exec`` so that the server gets make's signals."""
    for line in make_dry_run.replace("\\\n", " ").splitlines():
        words = line.lstrip("@ \t").split()
        if words[:1] == ["exec"] and len(words) > 1:
            return " ".join(words[1:])
    return None


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

    def start(self, providers: list[str]) -> None:
        """A fresh database with a user, a token and a key per provider; ``make serve``."""
        print(f"bench: {self.name}: migrating a fresh database, adding a user, a token and keys")
        self.manage("migrate", "--noinput")
        setup = SETUP_CODE.format(keys={p: KEYS[p] for p in providers})
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

    def generate(self, stream: bool = False) -> Request:
        """``POST generate/`` with ``PROMPT`` (SPEC §8): the request of the plain bench."""
        body = {"prompt": PROMPT, "stream": True} if stream else {"prompt": PROMPT}
        headers = {"Authorization": f"Token {self.token}"}
        url = f"{self.url}/api/llm/generate/"
        return Request(url, headers, body, GENERATE_EVENTS if stream else None)

    def chat(self, stream: bool = False) -> Request:
        """``POST v1/chat/completions``: the peer comparison's request."""
        headers = {"Authorization": f"Bearer {self.token}"}
        url = f"{self.url}/api/llm/v1/chat/completions"
        return Request(url, headers, chat_body(stream), OPENAI_CHUNKS if stream else None)

    def target(self, api: str, provider: str) -> Target:
        """This server measured through ``api`` ("generate" or "chat"), answered by
        ``provider``."""
        if api == "chat":
            expect = {"model": MODELS[CHAT_PROVIDER]}
            return Target(self.name, self.process, self.chat, self.health_url, expect)
        expect = {"provider": provider}
        return Target(self.name, self.process, self.generate, self.health_url, expect)

    @property
    def health_url(self) -> str:
        return f"{self.url}/api/llm/health/"

    def _serve_command(self) -> str:
        """The server command line ``make serve`` runs with this environment (``make -n``)."""
        done = subprocess.run(
            self.make("-n", "serve"), env=self.env, capture_output=True, text=True
        )
        command = exec_line(done.stdout)
        if command is None:
            return "make serve"
        return command.replace(str(self.root) + "/", "").replace(str(ROOT) + "/", "")

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)


def first_call(target: Target) -> None:
    """One call before measuring: the keys reach the server, and a broken set-up fails loudly."""
    request = target.request(False)
    answer = http_json("POST", request.url, request.body, request.headers, timeout=60)
    if not isinstance(answer, dict) or any(answer.get(k) != v for k, v in target.expect.items()):
        raise SystemExit(f"bench: {target.name}: unexpected first answer: {answer!r}")


def peer_target(proxy) -> Target:
    """A peer gateway (``bench.peer``) measured with the chat request, as this project is in a
    peer comparison."""
    headers = {"Authorization": f"Bearer {proxy.master_key}"}

    def chat(stream: bool = False) -> Request:
        url = f"{proxy.url}/v1/chat/completions"
        return Request(url, headers, chat_body(stream), OPENAI_CHUNKS if stream else None)

    expect = {"model": MODELS[CHAT_PROVIDER]}
    return Target(proxy.name, proxy.process, chat, proxy.url + proxy.health_path, expect)
