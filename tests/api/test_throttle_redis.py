"""Throttles on Redis (``REDIS_URL``), the cache shared by several machines: processes standing
for the servers of several machines, on a real redis-server, admit exactly the rate between them.

Skipped without ``redis-server`` (see test_redis.py, whose server this module shares).
"""

import pytest
from django.core import checks

from tests.api.test_redis import REDIS_SERVER, redis_cache, redis_url  # noqa: F401 (fixtures)
from tests.api.test_throttling import hammer

pytestmark = pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed")


def test_the_rate_holds_across_processes_sharing_redis(redis_cache, redis_url):  # noqa: F811
    """Four processes (no shared disk needed: they meet only in Redis), 320 attempts at once:
    exactly the rate is admitted, counted in one key per window."""
    admitted, waits = hammer("50/min", REDIS_URL=redis_url, CACHE_DIR="/nonexistent")
    assert admitted == 50
    assert len(waits) == 4 * 8 * 10 - 50
    assert all(0 < w <= 120 for w in waits)
    keys = {key.decode().split(":", 2)[-1] for key in redis_cache.keys("*throttle_*")}
    assert {key.rpartition(":")[0] for key in keys} == {"throttle_llm_generation_4242"}
    assert len(keys) == 1  # one window


def test_deploy_check_is_quiet_with_redis(redis_cache):  # noqa: F811
    assert "llm_providers.W002" not in {
        m.id for m in checks.run_checks(include_deployment_checks=True)
    }
