"""The end-to-end harness: the production server (``make serve``) in a subprocess, its own
database, and a small HTTP client on the standard library.

Nothing here imports Django or touches the test database: the server is a separate process
with its own database (a SQLite file, or a database created for it on the PostgreSQL server of
``DATABASE_URL``), and the tests reach it only over HTTP. The client uses ``http.client``, not
``requests``, so the suite's ``responses`` mock (tests/conftest.py) never sees its traffic.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"  # the Makefile's VENV (default .venv)
API = "/api/llm/"

# Environment variables a developer's shell (or `make test`) may hold that must not reach the
# server: its configuration is exactly what the fixtures give it.
_LEAKY_PREFIXES = ("LLM_", "GEMINI_", "OPENROUTER_", "HF_", "GUNICORN_", "DJANGO_SUPERUSER_")
_LEAKY_NAMES = {
    "GPT_PROVIDER",
    "REDIS_URL",
    "DEBUG",
    "ALLOWED_HOSTS",
    "CSRF_TRUSTED_ORIGINS",
    "SECRET_KEY",
    "DATABASE_URL",
    "DJANGO_SETTINGS_MODULE",  # the production default (alwrity.settings), whatever pytest had
    "HOST",
    "PORT",
    # make serve empties it at start: a developer's value would be shared by every test server.
    "PROMETHEUS_MULTIPROC_DIR",
    # make's own: a nested make must not inherit the outer one's flags or jobserver.
    "MAKEFLAGS",
    "MFLAGS",
    "MAKELEVEL",
    "MAKEOVERRIDES",
    "VENV",
}
POSTGRES_SCHEMES = ("postgres", "postgresql", "pgsql")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def base_environment() -> dict[str, str]:
    """``os.environ`` without anything that configures the app, the Makefile or make."""
    return {
        name: value
        for name, value in os.environ.items()
        if name not in _LEAKY_NAMES and not name.startswith(_LEAKY_PREFIXES)
    }


# --- The server's database -------------------------------------------------------------------


@dataclass
class Database:
    """Where the servers keep their data: ``url`` for DATABASE_URL; ``drop()`` when done."""

    url: str
    description: str
    _drop: Any = None

    def drop(self) -> None:
        if self._drop is not None:
            self._drop()
            self._drop = None


def server_database(directory: Path) -> Database:
    """A database of its own for the servers.

    When the test run is on PostgreSQL (``DATABASE_URL`` postgres://…, as in CI's second run),
    a fresh database on that server, dropped afterwards; otherwise a SQLite file in
    ``directory``.
    """
    outer = os.environ.get("DATABASE_URL", "")
    parts = urllib.parse.urlsplit(outer)
    if parts.scheme not in POSTGRES_SCHEMES:
        path = directory / "e2e.sqlite3"
        return Database(f"sqlite:///{path}", f"SQLite file {path}")

    import psycopg
    from psycopg import sql

    admin_url = parts._replace(scheme="postgresql").geturl()
    name = f"alwrity_e2e_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def drop() -> None:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
            try:  # WITH (FORCE): PostgreSQL 13+; ends connections a server left behind
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )
            except psycopg.Error:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))

    url = parts._replace(path=f"/{name}").geturl()
    return Database(url, f"PostgreSQL database {name} at {parts.hostname}:{parts.port}", drop)


# --- HTTP ------------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes
    elapsed: float

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            raise AssertionError(
                f"HTTP {self.status}: the body is not JSON: {self.text[:500]!r}"
            ) from None

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def __repr__(self) -> str:
        return f"<HTTP {self.status} {self.text[:800]!r}>"


@dataclass
class Event:
    """One server-sent event."""

    event: str | None
    data: str

    def json(self) -> Any:
        return json.loads(self.data)


def read_events(response: http.client.HTTPResponse) -> Iterator[Event]:
    """The events of an ``text/event-stream`` response, as they arrive."""
    name: str | None = None
    data: list[str] = []
    while True:
        raw = response.readline()
        if not raw:
            if data:
                yield Event(name, "\n".join(data))
            return
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:
            if data or name:
                yield Event(name, "\n".join(data))
            name, data = None, []
        elif line.startswith(":"):
            continue
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))


@dataclass
class Client:
    """Requests to one server as one user (``token`` None: anonymous)."""

    host: str
    port: int
    token: str | None = None
    keyword: str = "Token"
    timeout: float = 30.0

    def with_token(self, token: str | None, keyword: str = "Token") -> Client:
        return Client(self.host, self.port, token, keyword, self.timeout)

    def _headers(self, extra: dict[str, str] | None) -> dict[str, str]:
        headers = {"Accept": "*/*"}
        if self.token:
            headers["Authorization"] = f"{self.keyword} {self.token}"
        return {**headers, **(extra or {})}

    def connect(self, timeout: float | None = None) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout or self.timeout)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> Reply:
        path = path if path.startswith("/") else API + path
        data = None
        extra = dict(headers or {})
        if body is not None:
            data = json.dumps(body).encode()
            extra.setdefault("Content-Type", "application/json")
        conn = self.connect(timeout)
        started = time.monotonic()
        try:
            conn.request(method, path, body=data, headers=self._headers(extra))
            response = conn.getresponse()
            payload = response.read()
            return Reply(response.status, response.headers, payload, time.monotonic() - started)
        finally:
            conn.close()

    def get(self, path: str, **params: Any) -> Reply:
        if params:
            path = f"{path}?{urllib.parse.urlencode(params)}"
        return self.request("GET", path)

    def post(self, path: str, body: Any, **kwargs: Any) -> Reply:
        return self.request("POST", path, body, **kwargs)

    def stream(
        self, path: str, body: Any, *, timeout: float | None = None
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """POST and return the open connection and response, to read events as they come."""
        conn = self.connect(timeout)
        conn.request(
            "POST",
            API + path,
            body=json.dumps(body).encode(),
            headers=self._headers({"Content-Type": "application/json"}),
        )
        return conn, conn.getresponse()

    def pages(self, path: str, **params: Any) -> list[dict]:
        """Every result of a paginated list (DRF ``results``/``next``), following ``next``."""
        reply = self.get(path, **params)
        results: list[dict] = []
        for _ in range(1000):  # bounded: at most 1000 pages
            assert reply.status == 200, reply
            page = reply.json()
            results.extend(page["results"])
            if not page.get("next"):
                return results
            target = urllib.parse.urlsplit(page["next"])
            reply = self.get(f"{target.path}?{target.query}")
        raise AssertionError(f"{path}: more than 1000 pages")


# --- The production server ---------------------------------------------------------------------


@dataclass
class Server:
    """``make serve`` in its own process group, its output in ``log_path``."""

    name: str
    env: dict[str, str]
    log_path: Path
    host: str = "127.0.0.1"
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def client(self, token: str | None = None) -> Client:
        return Client(self.host, self.port, token)

    def full_env(self) -> dict[str, str]:
        return {**self.env, "HOST": self.host, "PORT": str(self.port)}

    def start(self, make: str, timeout: float = 60.0) -> None:
        """Run the production command and wait (bounded) until ``health/`` answers 200."""
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [make, "--no-print-directory", "serve"],
                cwd=ROOT,
                env=self.full_env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() ends all of it
            )
        deadline = time.monotonic() + timeout
        health = self.client()
        last = "no answer yet"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name}: `make serve` exited with {self.process.returncode} before "
                    f"answering.\n{self.log_tail()}"
                )
            try:
                reply = health.request("GET", API + "health/", timeout=2)
                if reply.status == 200:
                    return
                last = repr(reply)
            except OSError as exc:
                last = repr(exc)
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(
            f"{self.name}: health/ did not answer 200 within {timeout:g}s (last: {last}).\n"
            f"{self.log_tail()}"
        )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        """SIGTERM to the process group (make, gunicorn and its workers), SIGKILL if it lingers."""
        if self.process is None:
            return
        pgid = self.process.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            self.process.wait(5)
        # make is gone; nothing of its group may survive it (a worker mid-shutdown, say).
        deadline = time.monotonic() + 10
        while _group_exists(pgid):
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pgid, signal.SIGKILL)
                break
            time.sleep(0.05)
        self.process = None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text("utf-8", "replace")
        except OSError:
            return ""

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def log_since(self, offset: int) -> str:
        try:
            with open(self.log_path, "rb") as log:
                log.seek(offset)
                return log.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        tail = self.log_text().splitlines()[-lines:]
        return f"--- last {len(tail)} lines of {self.name}'s log ({self.log_path}) ---\n" + (
            "\n".join(tail)
        )


def _group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def find_make() -> str | None:
    return shutil.which("make")


def manage(env: dict[str, str], code: str, timeout: float = 120.0) -> str:
    """Run ``code`` in ``manage.py shell`` with the server's environment; return its stdout."""
    result = subprocess.run(
        [str(VENV_PYTHON), "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"manage.py shell failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result.stdout


# --- Ledger arithmetic ---------------------------------------------------------------------------


def money(value: str) -> Decimal:
    assert isinstance(value, str), f"money must be a decimal string, not {value!r}"
    return Decimal(value)


def totals(rows: list[dict]) -> dict[str, Any]:
    """What ``usage/`` and the cost report must say about these ledger rows."""
    return {
        "calls": sum(r["status"] == "success" for r in rows),
        "tokens": sum(r["total_tokens"] for r in rows),
        "cost": sum((money(r["cost"]) for r in rows), Decimal(0)),
    }


def ledger_mark(client: Client) -> int:
    """The newest ledger id the client's user has (0: none): rows after it are new."""
    reply = client.get("calls/")
    assert reply.status == 200, reply
    results = reply.json()["results"]
    return max((r["id"] for r in results), default=0)


def rows_since(client: Client, mark: int) -> list[dict]:
    """The user's ledger rows newer than ``mark``, oldest first."""
    return sorted((r for r in client.pages("calls/") if r["id"] > mark), key=lambda r: r["id"])


def wait_for_rows(client: Client, mark: int, count: int, timeout: float = 15.0) -> list[dict]:
    """Poll ``calls/`` (bounded) until ``count`` settled rows newer than ``mark`` exist (an
    attempt is in the ledger, ``in_flight``, from its start); returns the settled rows."""
    deadline = time.monotonic() + timeout
    while True:
        rows = [r for r in rows_since(client, mark) if r["status"] != "in_flight"]
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def assert_error(reply: Reply, status: int, code: str) -> dict:
    """``reply`` is the SPEC's error body with ``status`` and ``code``; returns the error."""
    assert reply.status == status, f"expected HTTP {status} {code}, got {reply!r}"
    assert reply.header("Content-Type") == "application/json", reply.header("Content-Type")
    body = reply.json()
    assert list(body) == ["error"], body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"], body
    return body["error"]


def wait_until(check, *, timeout: float = 10.0, consecutive: int = 1, what: str = "") -> None:
    """Poll ``check()`` (bounded) until it holds ``consecutive`` times in a row: with a new
    connection per request, several answers in a row come from all of a server's workers."""
    deadline = time.monotonic() + timeout
    streak = 0
    while streak < consecutive:
        streak = streak + 1 if check() else 0
        if streak < consecutive:
            assert time.monotonic() < deadline, f"not within {timeout:g}s: {what or check}"
            time.sleep(0.05)


def within_one_rate_window(seconds: float, window: float = 60.0) -> None:
    """Wait, if need be, until ``seconds`` fit before the end of the current throttle window
    (windows of the rate's length, from the epoch, on this machine's clock, which the servers
    share). A throttle counts per window and weighs the previous window's count by how much of
    it the sliding window still covers: a flood that crossed into the next window would have
    part of it judged by that estimate instead of by its exact count."""
    left = window - time.time() % window
    if left < seconds:
        time.sleep(left + 0.2)
