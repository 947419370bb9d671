"""Per-user throttling: a rate for every endpoint, and a lower one for generation; a sliding
window over per-window counts; rates that hold across processes (atomic counts in the shared
cache); the deploy check of the cache."""

import json
import os
import subprocess
import sys
import time

import pytest
from django.core import checks
from django.core.cache import cache

from llm_providers.api.throttling import GenerationRateThrottle
from llm_providers.counting import counter
from llm_providers.models import LedgerEntry
from tests.api.support import API, ROOT, assert_error
from tests.providers.wire import gemini_generate_url, gemini_response

pytestmark = pytest.mark.django_db


def generate(client):
    return client.post(API + "generate/", {"prompt": "hi"}, format="json")


def assert_throttled(response) -> None:
    error = assert_error(response, 429, "rate_limited")
    wait = int(response["Retry-After"])
    # Up to two windows: a full window's count still weighs in the next one.
    assert 1 <= wait <= 120
    assert error["message"] == f"Request was throttled. Expected available in {wait} seconds."


def test_generation_over_its_rate_is_429_with_retry_after(api, use_keys, http, rates):
    rates("100/min", "2/min")
    use_keys("gemini")
    http.post(gemini_generate_url(), body=gemini_response())

    assert [generate(api).status_code for _ in range(2)] == [200, 200]
    assert_throttled(generate(api))

    assert len(http.calls) == 2  # the throttled request never reached the upstream
    assert LedgerEntry.objects.count() == 2
    assert api.get(API + "usage/").status_code == 200  # other endpoints have their own rate


def test_throttling_is_per_user(api, other_api, use_keys, http, rates):
    rates("100/min", "1/min")
    use_keys("gemini")
    http.post(gemini_generate_url(), body=gemini_response())
    assert generate(api).status_code == 200
    assert_throttled(generate(api))
    assert generate(other_api).status_code == 200


def test_every_endpoint_shares_the_general_rate(api, staff_api, rates):
    rates("3/min", "100/min")
    assert [api.get(API + p).status_code for p in ("usage/", "calls/", "providers/")] == [200] * 3
    assert_throttled(api.get(API + "usage/"))
    assert_throttled(api.get(API + "calls/"))
    assert staff_api.get(API + "usage/").status_code == 200  # another user: their own count


def test_generation_has_its_own_rate_apart_from_the_general_one(api, use_keys, http, rates):
    """Generations count against ``LLM_API_GENERATION_RATE`` only; the other endpoints against
    ``LLM_API_RATE``: neither spends the other's allowance."""
    rates("2/min", "3/min")
    use_keys("gemini")
    http.post(gemini_generate_url(), body=gemini_response())
    assert [generate(api).status_code for _ in range(3)] == [200, 200, 200]
    assert_throttled(generate(api))
    assert [api.get(API + "usage/").status_code for _ in range(2)] == [200, 200]
    assert_throttled(api.get(API + "usage/"))
    assert len(http.calls) == 3


def test_health_is_never_throttled(anon, rates):
    rates("1/min", "1/min")
    assert [anon.get(API + "health/").status_code for _ in range(3)] == [200] * 3


def test_anonymous_requests_are_refused_before_throttling(anon, rates):
    rates("1/min", "1/min")
    for _ in range(3):
        assert_error(anon.get(API + "usage/"), 401, "not_authenticated")


def test_the_rates_come_from_the_apps_settings_not_rest_framework(api, settings):
    """No ``DEFAULT_THROTTLE_RATES`` is needed: the default ``LLM_API_RATE`` applies."""
    settings.REST_FRAMEWORK = {"DEFAULT_THROTTLE_RATES": {}}
    settings.LLM_API_RATE = None  # unset: the default, 600/min
    assert [api.get(API + "usage/").status_code for _ in range(3)] == [200] * 3


def test_the_rates_can_come_from_the_environment(api, settings, monkeypatch):
    from llm_providers.conf import llm_settings

    settings.LLM_API_RATE = None
    monkeypatch.setenv("LLM_API_RATE", "2/min")
    llm_settings.reload()
    try:
        assert [api.get(API + "usage/").status_code for _ in range(2)] == [200, 200]
        assert_throttled(api.get(API + "usage/"))
    finally:
        monkeypatch.delenv("LLM_API_RATE")
        llm_settings.reload()


def test_counts_are_per_window_counts_in_djangos_cache(api, user, rates):
    rates("100/min", "100/min")
    assert api.get(API + "usage/").status_code == 200
    window = int(time.time() // 60)
    counts = [counter().get(f"throttle_llm_api_{user.pk}:{w}") for w in (window - 1, window)]
    assert counts in ([0, 1], [1, 0])  # [1, 0]: the window turned meanwhile


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


def check(clock, user_id: int = 7) -> tuple[bool, float | None]:
    from types import SimpleNamespace

    throttle = GenerationRateThrottle()
    throttle.timer = clock
    request = SimpleNamespace(user=SimpleNamespace(pk=user_id, is_authenticated=True))
    allowed = throttle.allow_request(request, None)
    return allowed, throttle.wait()


def test_the_window_slides_over_the_previous_windows_count(settings):
    """10/min: ten at the end of one minute fill it; half-way through the next, the previous
    minute still weighs half (5), so five more fit, and the refusal says when the sixth will."""
    settings.LLM_API_GENERATION_RATE = "10/min"
    clock = Clock(600 * 60 + 59.0)  # the last second of a window
    assert [check(clock)[0] for _ in range(10)] == [True] * 10
    allowed, wait = check(clock)
    assert not allowed
    # This window alone is full: its end (1 s), then until its 10 weigh no more than 9 in the
    # next one (a tenth of a minute).
    assert wait == pytest.approx(1 + 6, abs=0.01)

    clock.now = 601 * 60 + 30.0  # half-way through the next window
    assert [check(clock)[0] for _ in range(5)] == [True] * 5
    allowed, wait = check(clock)
    assert not allowed
    # 10 * (1 - x) + 5 + 1 <= 10 from x = 0.6: 6 s after this instant (x = 0.5).
    assert wait == pytest.approx(6, abs=0.01)
    clock.now += 6
    assert check(clock)[0]
    assert not check(clock)[0]


def test_refused_requests_are_not_counted(settings):
    settings.LLM_API_GENERATION_RATE = "3/min"
    clock = Clock(700 * 60 + 1.0)
    assert [check(clock)[0] for _ in range(10)] == [True] * 3 + [False] * 7
    assert counter().get(f"throttle_llm_generation_7:{700}") == 3
    clock.now = 702 * 60 + 1.0  # two windows on: nothing weighs any more
    assert [check(clock)[0] for _ in range(4)] == [True] * 3 + [False]


# --- Across processes -----------------------------------------------------------------------

# One process of the project hitting GenerationRateThrottle as a server worker does: its threads
# wait for a common start time, then each makes its attempts; it prints what was admitted.
HAMMER = """
import json, sys, threading, time
from types import SimpleNamespace
import django
django.setup()
from llm_providers.api.throttling import GenerationRateThrottle

user_id, start_at, threads, attempts = int(sys.argv[1]), float(sys.argv[2]), *map(int, sys.argv[3:])
request = SimpleNamespace(user=SimpleNamespace(pk=user_id, is_authenticated=True))
admitted, waits, lock = [], [], threading.Lock()

def hit():
    for _ in range(attempts):
        throttle = GenerationRateThrottle()
        allowed = throttle.allow_request(request, None)
        with lock:
            (admitted if allowed else waits).append(None if allowed else throttle.wait())

workers = [threading.Thread(target=hit) for _ in range(threads)]
time.sleep(max(0.0, start_at - time.time()))
for w in workers:
    w.start()
for w in workers:
    w.join()
print(json.dumps({"admitted": len(admitted), "waits": waits}))
"""


def hammer(
    rate: str, *, processes: int = 4, threads: int = 8, attempts: int = 10, **environ: str
) -> tuple[int, list[float]]:
    """``processes`` processes of the project (``environ`` over this one's environment), each
    with ``threads`` threads making ``attempts`` generation-throttle checks for one user, all
    at once; returns how many were admitted in all, and the ``wait()`` of each refusal."""
    env = {
        **os.environ,
        "ALWRITY_ENV_FILE": "",
        "DJANGO_SETTINGS_MODULE": "alwrity.settings",
        "LLM_API_GENERATION_RATE": rate,
        **environ,
    }
    start_at = time.time() + 3  # every process has set Django up by then
    if start_at % 60 > 50:  # all within one minute's window: counted exactly (no estimate)
        start_at += 60 - start_at % 60 + 0.5
    argv = ["4242", repr(start_at), str(threads), str(attempts)]
    children = [
        subprocess.Popen(
            [sys.executable, "-c", HAMMER, *argv],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    results = []
    for child in children:
        out, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
        results.append(json.loads(out.splitlines()[-1]))
    return sum(r["admitted"] for r in results), [w for r in results for w in r["waits"]]


def test_the_rate_holds_across_processes_sharing_the_file_cache(cache_dir):
    """Four processes, 320 attempts at once, on the file cache of one machine: exactly the rate
    is admitted (the file cache's incr is a read and a write: without the lock, concurrent
    increments were lost)."""
    admitted, waits = hammer("50/min", CACHE_DIR=str(cache_dir), REDIS_URL="")
    assert admitted == 50
    assert len(waits) == 4 * 8 * 10 - 50
    assert all(0 < w <= 120 for w in waits)


def test_other_caches_count_with_atomic_add_and_incr(api, user, use_keys, http, rates, settings):
    """A cache whose ``add`` and ``incr`` are atomic (locmem here; Redis, memcached) counts
    without a lock, and the rate holds there too."""
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    rates("100/min", "2/min")
    use_keys("gemini")
    http.post(gemini_generate_url(), body=gemini_response())
    assert [generate(api).status_code for _ in range(2)] == [200, 200]
    assert_throttled(generate(api))
    window = int(time.time() // 60)
    counts = [cache.get(f"throttle_llm_generation_{user.pk}:{w}") for w in (window - 1, window)]
    assert 2 in counts  # the refused one was taken back out


# --- manage.py check --deploy ------------------------------------------------------------------


def deploy_warnings() -> list:
    return [
        m for m in checks.run_checks(include_deployment_checks=True) if m.id == "llm_providers.W002"
    ]


@pytest.mark.parametrize(
    "backend, named",
    [
        ("django.core.cache.backends.locmem.LocMemCache", "LocMemCache"),
        ("django.core.cache.backends.dummy.DummyCache", "DummyCache"),
    ],
)
def test_deploy_check_warns_of_a_per_process_cache(settings, backend, named):
    settings.CACHES = {"default": {"BACKEND": backend}}
    [warning] = deploy_warnings()
    assert warning.level == checks.WARNING
    assert named in warning.msg and "LLM_API_GENERATION_RATE" in warning.msg
    assert "REDIS_URL" in warning.hint and "single-process" in warning.hint
    assert "llm_providers.W002" not in {m.id for m in checks.run_checks()}  # --deploy only


def test_deploy_check_is_quiet_with_the_shared_file_cache(cache_dir):
    """The project's default without REDIS_URL (with it: test_throttle_redis)."""
    assert deploy_warnings() == []
