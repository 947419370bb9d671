"""End to end: ``/metrics`` of ``make serve`` with three workers (SPEC §14).

Each worker counts in its own files (prometheus-client's multiprocess mode, the directory
``make serve`` prepares); a scrape, answered by whichever worker, sums them all. Known traffic
goes through the server, some of it at once (so several workers serve it), some of it failing
on scripted faults; then one scrape over loopback, parsed as Prometheus parses it, must say
exactly what was sent: requests by endpoint and status, attempts by provider and outcome (and
as the ledger has them), tokens and cost as the ledger sums them, nothing in flight.

A worker killed with a request in flight takes its in-flight count with it (gunicorn's
``child_exit`` hook), and what it counted before stays counted.

The server and its fake upstream are this module's own (the session's checks see neither);
its user is new, so the ledger rows of that user are exactly this test's attempts.
"""

from __future__ import annotations

import http.client
import os
import signal
from collections import Counter
from collections.abc import Callable
from decimal import Decimal

import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from fake_upstream import FakeUpstream
from tests.conftest import FAKE_KEYS
from tests.e2e import crash_support
from tests.e2e.conftest import server_env
from tests.e2e.crash_support import create_account, in_parallel, workers
from tests.e2e.harness import ROOT, Client, Server, money, read_events, rows_since, wait_until

pytestmark = pytest.mark.e2e

WORKERS = 3
CHAT_MODEL = "openai/gpt-4o-mini"  # routed to OpenRouter
GENERATION_ENDPOINTS = ("generate", "chat-completions")  # their URL names
GENERATION_PATHS = ("/chat/completions", ":generateContent", ":streamGenerateContent")


@pytest.fixture
def reporting():
    """``reporting(server)``: the server's log in the report of a failing test."""
    yield from crash_support.reporting()


@pytest.fixture(scope="module")
def metrics_fake():
    with FakeUpstream(host="127.0.0.1", port=0) as fake:
        yield fake


def dead_pid() -> int:
    """A process id no process has now."""
    pid = 4_000_000
    while os.path.exists(f"/proc/{pid}"):
        pid -= 1
    return pid


@pytest.fixture
def server(make_command, metrics_fake, database, e2e_dir, reporting):
    """``make serve`` with three workers, Gemini (the primary) and OpenRouter keys. Before it
    starts, a metrics directory left by a server that is gone."""
    stale = ROOT / "var" / "metrics" / str(dead_pid())
    stale.mkdir(parents=True, exist_ok=True)
    (stale / "counter_1.db").write_bytes(b"")
    cache_dir = e2e_dir / "metrics-cache"
    cache_dir.mkdir(exist_ok=True)
    env = server_env(
        metrics_fake,
        database,
        e2e_dir,
        GEMINI_API_KEY=FAKE_KEYS["gemini"],
        OPENROUTER_API_KEY=FAKE_KEYS["openrouter"],
        CACHE_DIR=str(cache_dir),
        GUNICORN_WORKERS=str(WORKERS),
        GUNICORN_THREADS="16",
        LLM_TIMEOUT="60",  # the request of the killed worker waits for its upstream
    )
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # make serve's own directory
    metrics_fake.reset()
    metrics_fake.configure(delay_ms=0)
    started = Server("metrics", env, e2e_dir / "metrics.log")
    started.start(make_command, timeout=60)
    reporting(started)
    assert not stale.exists(), "make serve left a dead server's metrics directory"
    yield started
    started.stop()
    metrics_fake.configure(delay_ms=0)


# --- Reading a scrape ----------------------------------------------------------------------------


def scrape(server: Server) -> list:
    """``GET /metrics`` over loopback, parsed with prometheus-client's own parser."""
    reply = server.client().get("/metrics")
    assert reply.status == 200, reply
    assert reply.header("Content-Type") == "text/plain; version=0.0.4; charset=utf-8"
    return [s for family in text_string_to_metric_families(reply.text) for s in family.samples]


def total(samples: list, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    return sum(
        s.value
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def by(samples: list, name: str, *keys: str) -> Counter:
    """``name``'s samples summed by the values of ``keys`` (zeros left out)."""
    sums: Counter = Counter()
    for s in samples:
        if s.name == name and s.value:
            sums[tuple(s.labels[k] for k in keys)] += s.value
    return sums


def worker_in_flight(directory) -> int:
    """The worker whose own file has a request in flight (each live worker has its
    ``gauge_livesum_<pid>.db``)."""
    busy = []
    for path in directory.glob("gauge_livesum_*.db"):
        [family] = MultiProcessCollector.merge([str(path)], accumulate=False)
        if any(s.value for s in family.samples):
            busy.append(int(path.stem.rsplit("_", 1)[1]))
    assert len(busy) == 1, busy
    return busy[0]


def generations(samples: list) -> Counter:
    """Requests to ``generate/`` and ``v1/chat/completions`` by (endpoint, method, status): the
    test's traffic (``health/`` and ``calls/`` also count the harness's own requests)."""
    requests = by(samples, "llm_api_requests_total", "endpoint", "method", "status")
    return Counter({k: v for k, v in requests.items() if k[0] in GENERATION_ENDPOINTS})


# --- Traffic -------------------------------------------------------------------------------------


def generate(api: Client, prompt: str, **extra) -> int:
    return api.post("generate/", {"prompt": prompt, **extra}).status


def chat(api: Client, prompt: str) -> int:
    body = {"model": CHAT_MODEL, "messages": [{"role": "user", "content": prompt}]}
    return api.post("v1/chat/completions", body).status


def stream(api: Client, prompt: str) -> int:
    conn, response = api.stream("generate/", {"prompt": prompt, "stream": True})
    try:
        events = list(read_events(response))
    finally:
        conn.close()
    assert events[-1].event == "done", events
    return response.status


def all_at_once(calls: list[Callable[[], int]]) -> list[int]:
    return [future.result(timeout=60) for future in in_parallel(calls)]


def upstream_requests(fake) -> list[dict]:
    return [r for r in fake.requests() if r["path"].endswith(GENERATION_PATHS)]


# --- The test ------------------------------------------------------------------------------------


def test_a_scrape_sums_every_worker_exactly(server, metrics_fake):
    fake = metrics_fake
    account = create_account(server.env, "metrics")
    api = server.client(account.token)
    bearer = Client(server.host, server.port, account.token, keyword="Bearer")
    assert len(workers(server)) == WORKERS

    # 1. At once, so that every worker serves some (each call waits 0.4 s upstream): 6
    #    generations and 2 streams on Gemini, 3 chat completions on OpenRouter, 1 refused body.
    fake.configure(delay_ms=400)
    statuses = all_at_once(
        [lambda i=i: generate(api, f"Plain {i}") for i in range(6)]
        + [lambda i=i: stream(api, f"Streamed {i}") for i in range(2)]
        + [lambda i=i: chat(bearer, f"Chat {i}") for i in range(3)]
        + [lambda: generate(api, "")]
    )
    assert statuses == [200] * 11 + [400], statuses
    fake.configure(delay_ms=0)

    # 2. One at a time: two generations whose Gemini attempt fails (503, then its one retry),
    #    answered by OpenRouter.
    fake.script("gemini", [{"status": 503}] * 4)
    assert [generate(api, f"Fallback {i}") for i in range(2)] == [200, 200]

    # 3. A chat completion no provider of its chain answers: OpenRouter, then Gemini, refuse.
    fake.script("openrouter", [{"status": 401}])
    fake.script("gemini", [{"status": 401}])
    assert chat(bearer, "Nobody answers") == 502
    assert not {k: v for k, v in fake.pending().items() if v}, fake.pending()

    samples = scrape(server)

    # Requests by endpoint and status.
    requests = generations(samples)
    assert requests == {
        ("generate", "POST", "200"): 6 + 2 + 2,
        ("generate", "POST", "400"): 1,
        ("chat-completions", "POST", "200"): 3,
        ("chat-completions", "POST", "502"): 1,
    }, requests
    assert total(samples, "llm_api_requests_in_flight") == 0

    # Attempts by provider and outcome: what was sent, and what the ledger says.
    attempts = by(samples, "llm_upstream_attempts_total", "provider", "outcome")
    failures = {k: v for k, v in attempts.items() if k[1] != "success"}
    assert attempts[("gemini", "success")] == 6 + 2
    assert attempts[("openrouter", "success")] == 3 + 2
    assert sum(v for (provider, _), v in failures.items() if provider == "gemini") == 2 + 1
    assert sum(v for (provider, _), v in failures.items() if provider == "openrouter") == 1
    rows = rows_since(api, 0)
    assert not [r for r in rows if r["status"] == "in_flight"], rows
    ledger = Counter((r["provider"], r["error_code"] or "success") for r in rows)
    assert attempts == ledger, (attempts, ledger)
    assert sum(r["retries"] + 1 for r in rows) == len(upstream_requests(fake))
    durations = by(samples, "llm_upstream_attempt_duration_seconds_count", "provider", "outcome")
    assert durations == attempts
    models = by(samples, "llm_upstream_attempts_total", "provider", "model", "outcome")
    assert models[("openrouter", CHAT_MODEL, "success")] == 3  # the chat completions' model
    assert models[("openrouter", "openai/gpt-4-turbo", "success")] == 2  # OpenRouter's default
    assert models[("gemini", "gemini-2.5-flash", "success")] == 8

    # Tokens and cost by provider, as the ledger sums them.
    for provider in ("gemini", "openrouter"):
        mine = [r for r in rows if r["provider"] == provider]
        prompt = sum(r["prompt_tokens"] for r in mine)
        completion = sum(r["completion_tokens"] for r in mine)
        cost = sum((money(r["cost"]) for r in mine), Decimal(0))
        assert prompt > 0 and completion > 0 and cost > 0, mine
        tokens = "llm_tokens_total"
        assert total(samples, tokens, provider=provider, type="prompt") == prompt
        assert total(samples, tokens, provider=provider, type="completion") == completion
        counted = total(samples, "llm_cost_usd_total", provider=provider)
        assert counted == pytest.approx(float(cost), rel=1e-9)

    # Several workers counted: each writes its own files.
    directory = ROOT / "var" / "metrics" / str(server.process.pid)
    counters = sorted(p.name for p in directory.glob("counter_*.db"))
    assert len(counters) >= 2, counters

    # 4. A worker killed with a request in flight: the request shows in flight while it waits,
    #    then the worker's gauge goes with it; its counts stay.
    fake.configure(delay_ms=30_000)
    doomed = in_parallel([lambda: generate(api, "Never answered")])[0]
    wait_until(lambda: len(upstream_requests(fake)) == sum(r["retries"] + 1 for r in rows) + 1)
    assert total(scrape(server), "llm_api_requests_in_flight", endpoint="generate") == 1
    killed = worker_in_flight(directory)
    os.kill(killed, signal.SIGKILL)
    with pytest.raises((OSError, http.client.HTTPException)):
        doomed.result(timeout=30)
    fake.configure(delay_ms=0)
    wait_until(
        lambda: total(scrape(server), "llm_api_requests_in_flight") == 0,
        timeout=10,
        what="the killed worker's request out of flight",
    )
    after = scrape(server)
    assert generations(after) == requests
    assert by(after, "llm_upstream_attempts_total", "provider", "outcome") == attempts
    assert killed not in workers(server)
    wait_until(lambda: len(workers(server)) == WORKERS, timeout=20, what="a new worker")
    assert not (directory / f"gauge_livesum_{killed}.db").exists()
    assert server.client().get("health/").status == 200
