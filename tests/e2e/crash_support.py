"""Helpers of the crash and circuit end-to-end tests (test_crash.py, test_circuits_e2e.py):
the gunicorn processes behind a ``Server``, the sockets a worker holds, users made with
``manage.py shell``, and calls run side by side.

These tests start servers of their own (their own settings, their own fake upstream) and kill
or stop them on purpose, so they keep them out of the session's ``RUNNING`` list between tests:
``reporting`` puts a server there only while the test runs, so that a failure's report shows
its log, and ``e2e_invariants`` (which runs after the test's own fixtures are torn down) never
checks a server that was killed, stopped or restarted a worker on purpose.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import secrets
import signal
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.conftest import RUNNING
from tests.e2e.harness import Client, Reply, Server, manage

# --- Processes -----------------------------------------------------------------------------------


def _stat(pid: int) -> tuple[str, int] | None:
    """(command name, parent pid) of a process, from /proc; None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses; it ends at the last ")".
    name = raw[raw.index("(") + 1 : raw.rindex(")")]
    return name, int(raw[raw.rindex(")") + 2 :].split()[1])


def children(pid: int) -> list[int]:
    """The live child processes of ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None and stat[1] == pid:
                found.append(int(entry.name))
    return sorted(found)


def gunicorn_master(server: Server) -> int:
    """The gunicorn master of a running ``make serve``: make's child (the recipe ``exec``s it)."""
    assert server.process is not None, f"{server.name} is not running"
    kids = children(server.process.pid)
    assert len(kids) == 1, f"{server.name}: make has children {kids}, expected gunicorn only"
    return kids[0]


def workers(server: Server) -> list[int]:
    """The gunicorn worker processes of ``server`` (the master's children)."""
    return children(gunicorn_master(server))


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(int(target[8:-1]))
    return inodes


def connections_to(pid: int, port: int) -> int:
    """How many established TCP connections (IPv4 loopback) process ``pid`` holds to ``port``:
    for a worker and the fake's port, the upstream calls it has under way."""
    mine = _socket_inodes(pid)
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote_port = int(fields[2].split(":")[1], 16)
        established = fields[3] == "01"
        if established and remote_port == port and int(fields[9]) in mine:
            count += 1
    return count


def kill_busiest_worker(server: Server, upstream_port: int) -> tuple[int, int]:
    """SIGKILL the worker with the most upstream calls under way; return (its pid, their count)."""
    loads = {pid: connections_to(pid, upstream_port) for pid in workers(server)}
    pid = max(loads, key=loads.get)
    assert loads[pid] > 0, f"no worker of {server.name} has an upstream call under way: {loads}"
    os.kill(pid, signal.SIGKILL)
    return pid, loads[pid]


def reporting() -> Iterator[Callable[[Server], Server]]:
    """The body of a function-scoped fixture (``yield from reporting()``) that gives the test
    ``report(server)``: ``server`` stays in ``RUNNING`` until the test's teardown, so a
    failure's report (made after the test's call, before teardown) shows its log, and the
    session's checks (``e2e_invariants``, torn down after this fixture) do not see it."""
    added: list[Server] = []

    def report(server: Server) -> Server:
        added.append(server)
        RUNNING.append(server)
        return server

    yield report
    for server in added:
        if server in RUNNING:
            RUNNING.remove(server)


# --- Users ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Account:
    username: str
    user_id: int
    token: str


def create_account(env: dict[str, str], prefix: str, *, cost_limit: str | None = None) -> Account:
    """A new user (name ``prefix-<random>``) with a DRF token and, with ``cost_limit``, a
    monthly cost limit (UsageBudget), made by ``manage.py shell`` in the server's environment."""
    username = f"{prefix}-{secrets.token_hex(4)}"
    code = f"""
import json
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from llm_providers.models import UsageBudget
user = get_user_model().objects.create(username={username!r})
if {cost_limit!r} is not None:
    UsageBudget.objects.create(user=user, monthly_cost_limit={cost_limit!r})
print("E2E_ACCOUNT=" + json.dumps([user.pk, Token.objects.create(user=user).key]))
"""
    user_id, token = _marked_json(manage(env, code), "E2E_ACCOUNT=")
    return Account(username, user_id, token)


def summary_of(env: dict[str, str], user_id: int) -> list[dict]:
    """The user's UsageSummary rows as the database has them (costs as strings)."""
    code = f"""
import json
from llm_providers.models import UsageSummary
rows = UsageSummary.objects.filter(user_id={user_id}).values(
    "period", "total_calls", "total_cost", "reserved_cost", "reserved_calls")
print("E2E_SUMMARY=" + json.dumps([{{k: str(v) for k, v in r.items()}} for r in rows]))
"""
    return _marked_json(manage(env, code), "E2E_SUMMARY=")


def ledger_of(env: dict[str, str], user_id: int) -> list[dict]:
    """The user's ledger rows as the database has them, oldest first — for a server that is
    no longer running (``calls/`` needs one)."""
    code = f"""
import json
from llm_providers.models import LedgerEntry
rows = LedgerEntry.objects.filter(user_id={user_id}).order_by("pk").values(
    "pk", "provider", "status", "error_code", "cost", "cost_source", "estimate", "reserved",
    "retries")
print("E2E_LEDGER=" + json.dumps([{{k: str(v) for k, v in r.items()}} for r in rows]))
"""
    return _marked_json(manage(env, code), "E2E_LEDGER=")


def _marked_json(out: str, marker: str):
    line = next((x for x in out.splitlines() if x.startswith(marker)), None)
    assert line, f"manage.py shell printed no {marker!r} line:\n{out}"
    return json.loads(line.removeprefix(marker))


# --- Calls side by side --------------------------------------------------------------------------


def in_parallel(calls: list) -> list[Future]:
    """Start every ``call`` (a no-argument callable) at once, a thread each; return their
    futures. The pool is shut down (without waiting) once they are submitted."""
    pool = ThreadPoolExecutor(max_workers=len(calls))
    try:
        return [pool.submit(call) for call in calls]
    finally:
        pool.shutdown(wait=False)


def post_or_error(client: Client, path: str, body: dict) -> Reply | Exception:
    """``client.post``, or the exception of a connection the server dropped (a killed worker)."""
    try:
        return client.post(path, body)
    except (OSError, http.client.HTTPException) as exc:
        return exc
