"""End to end: a flood from one user against ``make serve`` with its default workers meets
exactly its generation rate (SPEC §13: throttle rates hold across all processes).

A server of this module's own (``make serve``: three gunicorn workers by default, a cache
directory of its own — the file cache the processes of one machine share — and
``LLM_API_GENERATION_RATE=60/min``) and a fake upstream of its own; 200 generations from one
user at once. Each worker used to keep its own idea of the history, and 148 of 200 got through.
"""

from __future__ import annotations

import time

import pytest

from fake_upstream import FakeUpstream
from tests.conftest import FAKE_KEYS
from tests.e2e import crash_support
from tests.e2e.conftest import server_env
from tests.e2e.crash_support import create_account, in_parallel
from tests.e2e.harness import Server, within_one_rate_window

pytestmark = pytest.mark.e2e

RATE, FLOOD = 60, 200


@pytest.fixture
def reporting():
    """``reporting(server)``: the server's log in the report of a failing test."""
    yield from crash_support.reporting()


@pytest.fixture(scope="module")
def flood_fake():
    with FakeUpstream(host="127.0.0.1", port=0) as fake:
        yield fake


@pytest.fixture(scope="module")
def throttled(make_command, flood_fake, database, e2e_dir, main):
    """``make serve`` with its default number of workers and the generation rate at 60/min.
    After ``main``, which has migrated the database."""
    env = server_env(
        flood_fake,
        database,
        e2e_dir,
        GEMINI_API_KEY=FAKE_KEYS["gemini"],
        CACHE_DIR=str(e2e_dir / "throttle-flood-cache"),
        LLM_API_GENERATION_RATE=f"{RATE}/min",
    )
    del env["GUNICORN_WORKERS"]  # the Makefile's default
    # 3 x 20 threads take the 200 requests concurrently enough to race, and keep the
    # connections to CI's PostgreSQL (a pool per process) well within what it allows.
    env["GUNICORN_THREADS"] = "20"
    server = Server("throttle-flood", env, e2e_dir / "throttle-flood.log")
    server.start(make_command, timeout=60)
    try:
        yield server
    finally:
        server.stop()


def test_a_flood_from_one_user_gets_exactly_the_rate(throttled, flood_fake, reporting):
    server = reporting(throttled)
    assert len(crash_support.workers(server)) == 3  # the default, as deployed
    api = server.client(create_account(server.env, "flood").token)
    flood_fake.reset()

    within_one_rate_window(20)
    started = time.monotonic()
    replies = [
        future.result()
        for future in in_parallel(
            [lambda n=n: api.post("generate/", {"prompt": f"flood {n}"}) for n in range(FLOOD)]
        )
    ]
    elapsed = time.monotonic() - started

    statuses = sorted(r.status for r in replies)
    assert statuses.count(200) == RATE, statuses
    assert statuses.count(429) == FLOOD - RATE, statuses
    assert elapsed < 20, f"the flood took {elapsed:.1f}s"
    for reply in replies:
        if reply.status == 429:
            assert reply.json()["error"]["code"] == "rate_limited", reply
            # Up to two windows: a full window still weighs in the next one.
            assert 1 <= int(reply.header("Retry-After")) <= 120, reply
    # Only the admitted ones reached the upstream.
    generations = [r for r in flood_fake.requests("gemini") if "generateContent" in r["path"]]
    assert len(generations) == RATE
