"""Redis, the documented scale-out cache (``REDIS_URL``): a real redis-server on loopback.

Debian's ``redis-server`` (``.ci/run`` installs it when missing); without it the module is
skipped. The server runs with no persistence, on a free port, for this module only.
"""

import shutil
import socket
import subprocess
import time

import pytest
from django.core.cache import cache

from tests.api.support import API, project_process
from tests.api.test_throttling import assert_throttled, generate
from tests.providers.wire import gemini_generate_url, gemini_response

REDIS_SERVER = shutil.which("redis-server")
NO_DISK = ("--appendonly", "no")

pytestmark = pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def redis_url():
    port = _free_port()
    process = subprocess.Popen(
        # Nothing written to disk: no snapshots, no append-only file.
        [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "", *NO_DISK],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import redis

    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                pytest.fail("redis-server did not start")
            time.sleep(0.05)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        client.close()
        process.terminate()
        process.wait(10)


@pytest.fixture
def redis_cache(settings, redis_url):
    """The default cache on the test Redis, as ``REDIS_URL`` configures it."""
    import redis

    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": redis_url}
    }
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def test_redis_url_configures_the_redis_cache(redis_url):
    """The project's own settings: REDIS_URL selects Django's RedisCache, and its client is
    installed (it was not, once, so REDIS_URL failed at the first cache use)."""
    code = (
        "from django.core.cache import cache; from django.conf import settings; "
        "cache.set('probe', 41); print(settings.CACHES['default']['BACKEND'], cache.get('probe'))"
    )
    printed = project_process(code, REDIS_URL=redis_url)
    assert printed.split() == ["django.core.cache.backends.redis.RedisCache", "41"]


def test_a_change_in_one_server_is_seen_by_another(redis_cache, redis_url):
    """The version of the rows processes keep in memory is in Redis: a key saved on one server
    makes the copies of every other server stale at their next call."""
    from llm_providers import cache_version

    before = cache_version.current()
    code = "from llm_providers import cache_version as v; v.bump(); print(v.current())"
    bumped = int(project_process(code, REDIS_URL=redis_url))
    assert cache_version.current() == bumped != before


@pytest.mark.django_db
def test_throttles_count_in_redis(api, user, use_keys, http, rates, redis_cache):
    rates("100/min", "2/min")
    use_keys("gemini")
    http.post(gemini_generate_url(), body=gemini_response())

    assert [generate(api).status_code for _ in range(2)] == [200, 200]
    assert_throttled(generate(api))
    assert len(http.calls) == 2

    # The counts are in Redis, where every process and machine sees them.
    assert throttle_keys(redis_cache) == {f"throttle_llm_generation_{user.pk}"}
    # Another process (a fresh cache connection) sees the same count: still throttled.
    cache.close()
    assert_throttled(generate(api))
    assert api.get(API + "usage/").status_code == 200
    assert throttle_keys(redis_cache) == {
        f"throttle_llm_api_{user.pk}",
        f"throttle_llm_generation_{user.pk}",
    }


def throttle_keys(redis_cache) -> set[str]:
    """The throttle counts in Redis, without their windows (``<prefix>:1:<key>:<window>``)."""
    return {key.decode().split(":")[-2] for key in redis_cache.keys("*throttle_*")}
