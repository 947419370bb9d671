"""Fixtures of the provider tests: provider clients with the fake keys, and a fake clock."""

import pytest
import tenacity

from llm_providers.providers import base as base_provider
from llm_providers.providers.gemini import GeminiProvider
from llm_providers.providers.huggingface import HuggingFaceProvider
from llm_providers.providers.openrouter import OpenRouterProvider
from tests.conftest import FAKE_KEYS


@pytest.fixture
def openrouter():
    return OpenRouterProvider(FAKE_KEYS["openrouter"])


@pytest.fixture
def gemini():
    return GeminiProvider(FAKE_KEYS["gemini"])


@pytest.fixture
def hf():
    return HuggingFaceProvider(FAKE_KEYS["huggingface"])


class FakeClock:
    """A monotonic clock that only moves when the retry policy "sleeps". It stands in for the
    ``time`` module inside tenacity, whose retry state reads ``time.monotonic()``."""

    def __init__(self):
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch, sleeps):
    """Make the retry policy's total-time bound see the recorded waits as elapsed time (the
    waits are still recorded in ``sleeps``)."""
    fake = FakeClock()

    def record(seconds: float) -> None:
        sleeps.append(seconds)
        fake.sleep(seconds)

    monkeypatch.setattr(tenacity, "time", fake)
    monkeypatch.setattr(base_provider, "sleep", record)
    return fake
