"""End to end: two servers share their circuits through Redis (SPEC §5.1).

Two ``make serve`` servers (two workers each) with the same ``REDIS_URL`` — the project's
settings then keep the default cache, and with it the circuits, in Redis — and circuits at
LLM_CIRCUIT_FAILURES=3, LLM_CIRCUIT_COOLDOWN=2. Gemini is the primary (detected by priority),
OpenRouter the fallback. Gemini failing through server A opens its circuit for both servers:
server B then skips it without an upstream request; after the cooldown exactly one probe
reaches Gemini, whichever server its callers came through, and its success closes the circuit
for both.

The servers, the Redis server (no persistence, a free port) and the fake upstream are this
module's own; the servers stay out of the session's ``RUNNING`` between tests (see
crash_support.reporting), so the session's checks see neither them nor their upstream requests.
Skipped without ``redis-server``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from fake_upstream import FakeUpstream
from tests.api.test_redis import REDIS_SERVER, redis_url  # noqa: F401 (a fixture)
from tests.conftest import FAKE_KEYS
from tests.e2e import crash_support
from tests.e2e.conftest import server_env
from tests.e2e.crash_support import create_account, in_parallel
from tests.e2e.harness import Client, Server, rows_since, wait_until

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed"),
]

FAILURES, COOLDOWN = 3, 2
PRIMARY, FALLBACK = "gemini", "openrouter"
REQUESTS_PER_CALL = 2  # LLM_MAX_RETRIES=1 (the session's server settings): two per provider


@pytest.fixture
def reporting():
    """``reporting(server)``: the server's log in the report of a failing test."""
    yield from crash_support.reporting()


@pytest.fixture(scope="module")
def circuit_fake():
    with FakeUpstream(host="127.0.0.1", port=0) as fake:
        yield fake


@pytest.fixture(scope="module")
def pair(make_command, circuit_fake, database, e2e_dir, redis_url, main):  # noqa: F811
    """Servers A and B: the same Redis, Gemini and OpenRouter keys, circuits at 3 failures and
    a 2-second cooldown. Started side by side: ``main`` has migrated the database already, so
    their ``migrate`` has nothing to do and cannot race."""
    env = server_env(
        circuit_fake,
        database,
        e2e_dir,
        REDIS_URL=redis_url,
        GEMINI_API_KEY=FAKE_KEYS["gemini"],
        OPENROUTER_API_KEY=FAKE_KEYS["openrouter"],
        LLM_CIRCUIT_FAILURES=str(FAILURES),
        LLM_CIRCUIT_COOLDOWN=str(COOLDOWN),
        GUNICORN_WORKERS="2",
        GUNICORN_THREADS="16",
    )
    servers = [Server(f"circuits-{n}", env, e2e_dir / f"circuits-{n}.log") for n in "ab"]
    try:
        with ThreadPoolExecutor(2) as pool:
            for started in [pool.submit(s.start, make_command, 60) for s in servers]:
                started.result()
        yield servers
    finally:
        for server in servers:
            server.stop()


def generations(fake, provider: str) -> list[dict]:
    return [
        r
        for r in fake.requests(provider)
        if r["path"].endswith((":generateContent", "/chat/completions"))
    ]


def circuit(client: Client, provider: str = PRIMARY) -> str:
    reply = client.get("providers/")
    assert reply.status == 200, reply
    [entry] = [p for p in reply.json() if p["name"] == provider]
    return entry["circuit"]


def everywhere(clients: list[Client], state: str, timeout: float = 5.0) -> None:
    """Every worker of every server shows the primary's circuit in ``state``: each server
    asked several times in a row (a new connection each, so both its workers answer)."""
    for client in clients:
        wait_until(
            lambda client=client: circuit(client) == state,
            timeout=timeout,
            consecutive=6,
            what=f"port {client.port}: {PRIMARY}'s circuit {state}",
        )


def test_a_circuit_opened_through_one_server_is_open_on_the_other(pair, circuit_fake, reporting):
    """Opened by failures through A, open on B (no upstream request there); one probe after
    the cooldown; closed for both by its success."""
    a, b = map(reporting, pair)
    fake = circuit_fake
    fake.reset()
    account = create_account(a.env, "circuits")
    api_a, api_b = a.client(account.token), b.client(account.token)
    both = [api_a, api_b]
    everywhere(both, "closed")

    # Gemini fails (503, retried once) on three calls through A: each falls back.
    fake.script(PRIMARY, [{"status": 503, "times": FAILURES * REQUESTS_PER_CALL}])
    for i in range(FAILURES):
        assert circuit(api_a) == "closed" and circuit(api_b) == "closed"
        reply = api_a.post("generate/", {"prompt": f"Failing {i}"})
        assert reply.status == 200, reply
        assert (reply.json()["provider"], reply.json()["fallback_from"]) == (
            FALLBACK,
            [PRIMARY],
        ), reply
    assert not fake.pending().get(PRIMARY)
    everywhere(both, "open")

    # Through B, the open circuit is skipped: no request to Gemini, OpenRouter answers.
    failed = len(generations(fake, PRIMARY))
    assert failed == FAILURES * REQUESTS_PER_CALL
    reply = api_b.post("generate/", {"prompt": "Skip it"})
    assert reply.status == 200, reply
    assert reply.json()["provider"] == FALLBACK, reply
    assert len(generations(fake, PRIMARY)) == failed

    # After the cooldown, one probe: of four callers at once on both servers, one reaches
    # Gemini (healthy again, slow enough that the others ask while it is under way).
    everywhere(both, "half_open", timeout=COOLDOWN + 3)
    fake.script(PRIMARY, [{"delay_ms": 1500}])
    prompts = [(api, f"Probe {i}") for i, api in enumerate([api_a, api_b, api_a, api_b])]
    calls = in_parallel([lambda c=c, p=p: c.post("generate/", {"prompt": p}) for c, p in prompts])
    replies = [call.result(timeout=30) for call in calls]
    assert all(r.status == 200 for r in replies), replies
    answered = sorted(r.json()["provider"] for r in replies)
    assert answered == sorted([PRIMARY] + [FALLBACK] * 3), replies
    assert len(generations(fake, PRIMARY)) == failed + 1

    # The probe's success closed the circuit for both servers: Gemini answers again.
    everywhere(both, "closed")
    for api in (api_a, api_b):
        reply = api.post("generate/", {"prompt": "Back"})
        assert reply.status == 200 and reply.json()["provider"] == PRIMARY, reply
    assert len(generations(fake, PRIMARY)) == failed + 3

    # Every upstream request is in the ledger; the skipped attempts wrote no row.
    rows = rows_since(api_a, 0)
    seen = generations(fake, PRIMARY) + generations(fake, FALLBACK)
    assert sum(r["retries"] + 1 for r in rows) == len(seen), rows
    assert not [r for r in rows if r["status"] not in ("success", "error")], rows
