"""Circuits shared across machines: two project processes on one real Redis (``REDIS_URL``) see
the same circuit, and only one of them gets the probe. Skipped without ``redis-server``."""

from __future__ import annotations

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
# The processes pace themselves on the shared cache, not on fixed delays, so a slow start of
# either cannot make the circuit's cooldown run out before it is looked at.
HELPERS = """
import time
from django.core.cache import cache
from llm_providers import circuits

def wait_for(condition):
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)
"""
# A records the failures once B is watching, then asks for the probe when the cooldown is over.
PROCESS_A = """
wait_for(lambda: cache.get("test:b-watching"))
for _ in range(3):
    circuits.record_failure("openrouter")
wait_for(lambda: circuits.state("openrouter") == "half_open")
print(circuits.allow("openrouter"))
"""
# B watches the circuit, reports what it sees when it leaves "closed", then asks too.
PROCESS_B = """
cache.set("test:b-watching", True, 60)
wait_for(lambda: circuits.state("openrouter") != "closed")
print(circuits.state("openrouter"), circuits.allow("openrouter"))
wait_for(lambda: circuits.state("openrouter") == "half_open")
print(circuits.allow("openrouter"))
"""


def test_processes_share_one_circuit_and_one_probe(redis_cache, redis_url):  # noqa: F811
    def run(code: str) -> list[str]:
        return project_process(HELPERS + code, REDIS_URL=redis_url, **CIRCUIT_ENV).splitlines()

    with ThreadPoolExecutor(2) as pool:
        a, b = pool.map(run, [PROCESS_A, PROCESS_B])

    # B saw A's failures open the circuit, and was refused.
    assert b[0] == "open False"
    # After the cooldown, exactly one of the two got the probe.
    assert sorted([a[0], b[1]]) == ["False", "True"]
    # Every key of the circuit is namespaced and has a timeout.
    keys = redis_cache.keys("*llm_providers:circuit:openrouter:*")
    assert {key.decode().rsplit(":", 1)[-1] for key in keys} == {"open", "probe"}
    assert all(redis_cache.ttl(key) > 0 for key in keys)
    assert circuits.state("openrouter") == "half_open"

    # The probe's success, recorded by another process, closes the circuit for all.
    assert (
        project_process(
            "from llm_providers import circuits; circuits.record_success('openrouter')",
            REDIS_URL=redis_url,
        )
        == ""
    )
    assert circuits.state("openrouter") == "closed"
    assert circuits.allow("openrouter") is True
    assert not redis_cache.keys("*llm_providers:circuit:*")
