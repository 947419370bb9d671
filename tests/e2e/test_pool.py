"""End to end: calls in flight share a few pooled PostgreSQL connections (SPEC §13).

One ``make serve`` (two workers of 150 threads) on a PostgreSQL database of this module's own,
``DATABASE_POOL_SIZE=4``, in front of a fake upstream that answers after 3 seconds. 240 calls at
once: while they all wait on the upstream, the server holds at most its two pools' eight
connections (each call gives its connection back before it waits), and every call succeeds,
each with its ledger row. Without the pool, each call in flight held a connection for its whole
duration: 240 here, more than CI's server allows (``max_connections`` 100).

Skipped unless the session's database is PostgreSQL (CI's second run).
"""

from __future__ import annotations

import time
import urllib.parse

import pytest

from fake_upstream import FakeUpstream
from tests.conftest import FAKE_KEYS
from tests.e2e import crash_support
from tests.e2e.conftest import server_env
from tests.e2e.crash_support import create_account, in_parallel
from tests.e2e.fleet_support import migrate, on_postgresql
from tests.e2e.harness import Server, manage, server_database

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not on_postgresql(), reason="pooling is PostgreSQL's (DATABASE_URL)"),
]

WORKERS, THREADS, POOL = 2, 150, 4
CALLS = 240
DELAY_MS = 3000


@pytest.fixture
def reporting():
    yield from crash_support.reporting()


@pytest.fixture(scope="module")
def pooled(make_command, e2e_dir):
    """(server, environment, database) with its own slow fake upstream and database."""
    database = server_database(e2e_dir)
    try:
        with FakeUpstream(host="127.0.0.1", port=0, delay_ms=DELAY_MS) as fake:
            env = server_env(
                fake,
                database,
                e2e_dir,
                GEMINI_API_KEY=FAKE_KEYS["gemini"],
                LLM_TIMEOUT="30",
                GUNICORN_WORKERS=str(WORKERS),
                GUNICORN_THREADS=str(THREADS),
                DATABASE_POOL_SIZE=str(POOL),
                CACHE_DIR=str(e2e_dir / "pooled-cache"),
            )
            migrate(env)
            server = Server("pooled", env, e2e_dir / "pooled.log")
            server.start(make_command, 60)
            try:
                yield server, env, database
            finally:
                server.stop()
    finally:
        database.drop()


def connections_to(database_url: str) -> int:
    """The connections open to the database of ``database_url`` (``pg_stat_activity``), not
    counting the one asking."""
    import psycopg

    parts = urllib.parse.urlsplit(database_url)
    name = parts.path.lstrip("/")
    admin_url = parts._replace(scheme="postgresql", path="/postgres").geturl()
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (name,)
        ).fetchone()
    return row[0]


def ledger_rows(env: dict[str, str], user_id: int) -> int:
    code = (
        "from llm_providers.models import LedgerEntry; "
        f"print(LedgerEntry.objects.filter(user_id={user_id}, status='success').count())"
    )
    return int(manage(env, code).split()[-1])


def test_calls_in_flight_share_the_pools_connections(pooled, reporting):
    server, env, database = pooled
    reporting(server)
    account = create_account(env, "pooled")
    client = server.client(account.token)

    started = time.monotonic()
    futures = in_parallel(
        [lambda: client.post("/api/llm/generate/", {"prompt": "hi"}) for _ in range(CALLS)]
    )
    # Sampled while the calls wait on the upstream (its delay is 3 s).
    samples = []
    while time.monotonic() - started < DELAY_MS / 1000 - 0.5:
        samples.append(connections_to(database.url))
        time.sleep(0.2)
    replies = [f.result(timeout=60) for f in futures]

    assert [r.status for r in replies] == [200] * CALLS, [r.body[:200] for r in replies]
    assert ledger_rows(env, account.user_id) == CALLS
    # Two pools of four, and nothing else of the server's: not a connection per call.
    assert samples and max(samples) <= WORKERS * POOL, samples
