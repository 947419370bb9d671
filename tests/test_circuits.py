"""Circuit breakers (SPEC §5.1) with a process-local cache (LocMemCache) and the project's own
file-based cache. Cooldowns are a few tenths of a second and the tests wait them out; the probe
lease (``LLM_REQUEST_DEADLINE``) is whole seconds, as the caches store it."""

from __future__ import annotations

import threading
import time

import pytest
from django.core.cache import caches
from django.core.cache.backends.filebased import FileBasedCache

from llm_providers import circuits

COOLDOWN = 0.3
BACKENDS = {
    "locmem": "django.core.cache.backends.locmem.LocMemCache",
    "file": "django.core.cache.backends.filebased.FileBasedCache",
}


@pytest.fixture(params=sorted(BACKENDS), autouse=True)
def backend(request, settings, tmp_path):
    """Each test runs once per cache backend, on an empty cache of its own."""
    settings.CACHES = {
        "default": {"BACKEND": BACKENDS[request.param], "LOCATION": str(tmp_path / "cache")}
    }
    settings.LLM_CIRCUIT_FAILURES = 3
    settings.LLM_CIRCUIT_COOLDOWN = COOLDOWN
    settings.LLM_REQUEST_DEADLINE = 1.0
    return request.param


@pytest.fixture
def operations(monkeypatch):
    """The names of the cache methods called, in order (the real cache still does the work;
    a method that a backend builds on others, such as ``get_many`` on ``get``, counts once)."""
    called: list[str] = []
    depth = [0]
    cache = caches["default"]
    for name in ("get", "get_many", "add", "set", "incr", "touch", "delete", "delete_many"):
        method = getattr(cache, name)

        def spy(*args, _name=name, _method=method, **kwargs):
            if not depth[0]:
                called.append(_name)
            depth[0] += 1
            try:
                return _method(*args, **kwargs)
            finally:
                depth[0] -= 1

        monkeypatch.setattr(cache, name, spy)
    return called


def fail(provider: str, times: int) -> None:
    for _ in range(times):
        circuits.record_failure(provider)


def race_allow(provider: str, callers: int = 16) -> list[bool]:
    """``allow(provider)`` from ``callers`` threads released at the same instant."""
    barrier = threading.Barrier(callers)
    answers: list[bool] = []

    def call() -> None:
        barrier.wait()
        answers.append(circuits.allow(provider))

    threads = [threading.Thread(target=call) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def open_circuit(provider: str = "openrouter") -> None:
    fail(provider, 3)
    assert circuits.state(provider) == "open"


def wait_cooldown(seconds: float = COOLDOWN) -> None:
    time.sleep(seconds + 0.05)


def test_a_circuit_starts_closed():
    assert circuits.state("openrouter") == "closed"
    assert circuits.allow("openrouter") is True


def test_consecutive_failures_open_the_circuit():
    fail("openrouter", 2)
    assert circuits.state("openrouter") == "closed"
    assert circuits.allow("openrouter") is True

    circuits.record_failure("openrouter")
    assert circuits.state("openrouter") == "open"
    assert circuits.allow("openrouter") is False
    # Another provider's circuit is its own.
    assert circuits.state("gemini") == "closed"
    assert circuits.allow("gemini") is True


def test_a_success_in_between_resets_the_count():
    fail("openrouter", 2)
    circuits.record_success("openrouter")
    fail("openrouter", 2)
    assert circuits.state("openrouter") == "closed"
    circuits.record_failure("openrouter")
    assert circuits.state("openrouter") == "open"


def test_an_open_circuit_refuses_until_the_cooldown_is_over():
    open_circuit()
    assert [circuits.allow("openrouter") for _ in range(5)] == [False] * 5
    # Failures of calls that started before it opened change nothing (no longer cooldown).
    fail("openrouter", 3)
    wait_cooldown()
    assert circuits.state("openrouter") == "half_open"


def test_after_the_cooldown_exactly_one_probe_is_let_through():
    open_circuit()
    wait_cooldown()

    answers = race_allow("openrouter")
    assert answers.count(True) == 1
    assert len(answers) == 16
    # The others keep being refused while the probe is out.
    assert circuits.allow("openrouter") is False
    assert circuits.state("openrouter") == "half_open"


def test_a_successful_probe_closes_the_circuit():
    open_circuit()
    wait_cooldown()
    assert circuits.allow("openrouter") is True

    circuits.record_success("openrouter")
    assert circuits.state("openrouter") == "closed"
    assert race_allow("openrouter") == [True] * 16
    # The count starts again from nothing.
    fail("openrouter", 2)
    assert circuits.state("openrouter") == "closed"


def test_a_failed_probe_opens_the_circuit_again_at_once():
    open_circuit()
    wait_cooldown()
    assert circuits.allow("openrouter") is True

    circuits.record_failure("openrouter")
    assert circuits.state("openrouter") == "open"
    assert circuits.allow("openrouter") is False
    # A full cooldown again, then a new probe.
    wait_cooldown()
    assert circuits.state("openrouter") == "half_open"
    assert race_allow("openrouter").count(True) == 1


def test_a_probe_that_never_reports_gives_way_when_its_lease_expires():
    open_circuit()
    wait_cooldown()
    assert circuits.allow("openrouter") is True  # the probe, whose process then dies
    assert circuits.allow("openrouter") is False

    time.sleep(1.1)  # LLM_REQUEST_DEADLINE, the lease
    assert circuits.state("openrouter") == "half_open"
    assert race_allow("openrouter").count(True) == 1


def test_the_failure_setting_is_honoured(settings):
    settings.LLM_CIRCUIT_FAILURES = 1
    circuits.record_failure("gemini")
    assert circuits.state("gemini") == "open"

    settings.LLM_CIRCUIT_FAILURES = 5
    fail("huggingface", 4)
    assert circuits.state("huggingface") == "closed"
    circuits.record_failure("huggingface")
    assert circuits.state("huggingface") == "open"


def test_circuits_are_off_below_one_failure(settings):
    settings.LLM_CIRCUIT_FAILURES = 0
    fail("gemini", 10)
    assert circuits.state("gemini") == "closed"
    assert circuits.allow("gemini") is True


def test_the_cooldown_setting_is_honoured(settings):
    settings.LLM_CIRCUIT_COOLDOWN = 0.8
    open_circuit()
    wait_cooldown(COOLDOWN)
    assert circuits.state("openrouter") == "open"
    assert circuits.allow("openrouter") is False
    wait_cooldown(0.8 - COOLDOWN)
    assert circuits.state("openrouter") == "half_open"


def test_reset_forgets_one_circuit():
    open_circuit("openrouter")
    open_circuit("gemini")
    circuits.reset("openrouter")
    assert circuits.state("openrouter") == "closed"
    assert circuits.allow("openrouter") is True
    assert circuits.state("gemini") == "open"


@pytest.mark.django_db
def test_reset_forgets_every_circuit():
    open_circuit("openrouter")
    open_circuit("gemini")
    fail("huggingface", 2)
    circuits.reset()
    assert {circuits.state(p) for p in ("openrouter", "gemini", "huggingface")} == {"closed"}
    # huggingface's two failures are forgotten too.
    circuits.record_failure("huggingface")
    assert circuits.state("huggingface") == "closed"


def test_the_hot_path_costs_one_read_and_no_write(operations):
    """A closed circuit with nothing counted: ``allow`` reads once, a success only reads."""
    assert circuits.allow("openrouter") is True
    circuits.record_success("openrouter")
    assert operations == ["get", "get_many"]


def test_a_success_after_failures_deletes_them(operations):
    circuits.record_failure("openrouter")
    operations.clear()
    circuits.record_success("openrouter")
    assert operations == ["get_many", "delete_many"]
    operations.clear()
    circuits.record_failure("openrouter")  # counted from 1 again: one add, no incr
    if isinstance(caches["default"], FileBasedCache):  # a read and a write, under a file lock
        assert operations == ["get", "get", "set"]
    else:
        assert operations == ["get", "add"]
