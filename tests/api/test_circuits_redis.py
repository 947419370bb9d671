"""Circuits shared across machines: two project processes on one real Redis (``REDIS_URL``) see
the same circuit, and only one of them gets the probe. Skipped without ``redis-server``."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from llm_providers import circuits
from tests.api.support import project_process
from tests.api.test_redis import REDIS_SERVER, redis_cache, redis_url  # noqa: F401 (fixtures)

pytestmark = pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed")

COOLDOWN = 1.0
# Both processes read the circuit settings from the environment, as a deployment's do.
CIRCUIT_ENV = {
    "LLM_CIRCUIT_FAILURES": "3",
    "LLM_CIRCUIT_COOLDOWN": str(COOLDOWN),
    "LLM_REQUEST_DEADLINE": "30",
}


def in_process(url: str, code: str, start_at: float | None = None) -> str:
    """Run ``code`` (with ``circuits`` imported) in another project process on Redis ``url``;
    it starts at the wall-clock time ``start_at`` when given, so that processes race."""
    wait = f"time.sleep(max(0, {start_at} - time.time())); " if start_at else ""
    setup = "import time; from llm_providers import circuits; "
    return project_process(setup + wait + code, REDIS_URL=url, **CIRCUIT_ENV)


def test_processes_share_one_circuit_and_one_probe(redis_cache, redis_url):  # noqa: F811
    assert in_process(redis_url, "print(circuits.state('openrouter'))") == "closed"

    # Process A: three failed calls.
    code = "[circuits.record_failure('openrouter') for _ in range(3)]; print('failed')"
    assert in_process(redis_url, code) == "failed"

    # Process B sees the circuit open and is refused.
    code = "print(circuits.state('openrouter'), circuits.allow('openrouter'))"
    assert in_process(redis_url, code) == "open False"

    # Every key in Redis is the circuit's, namespaced, and has a timeout.
    keys = redis_cache.keys("*llm_providers:circuit:openrouter:*")
    assert keys
    assert all(redis_cache.ttl(key) > 0 for key in keys)

    # After the cooldown, A and B ask at the same instant: exactly one gets the probe.
    start_at = time.time() + COOLDOWN + 4  # after both have started Django
    code = "print(circuits.allow('openrouter'), circuits.state('openrouter'))"
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: in_process(redis_url, code, start_at), "AB"))
    assert sorted(answers) == ["False half_open", "True half_open"]
    probe = redis_cache.keys("*llm_providers:circuit:openrouter:probe")
    assert len(probe) == 1 and redis_cache.ttl(probe[0]) > 0

    # The probe's success, recorded by either process, closes the circuit for all.
    assert in_process(redis_url, "circuits.record_success('openrouter')") == ""
    assert circuits.state("openrouter") == "closed"
    assert circuits.allow("openrouter") is True
    assert not redis_cache.keys("*llm_providers:circuit:*")
