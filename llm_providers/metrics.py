"""The app's Prometheus metrics (SPEC §14), recorded where things happen and exposed at
``/metrics`` (``api.monitoring``).

- ``llm_api_requests_total{endpoint, method, status}``: requests to the REST API, by URL name
  (``generate``, ``chat-completions``, ``usage`` …), counted when the response starts;
- ``llm_api_requests_in_flight{endpoint}``: requests being served; a streamed response counts
  until its stream ends or is closed;
- ``llm_upstream_attempts_total{provider, model, outcome}``: provider attempts (a ledger row
  each: retries inside one attempt are one), ``outcome`` ``success`` or the ledger's error code
  (``provider_error``, ``rate_limited``, ``upstream_timeout``, ``client_disconnected`` …);
- ``llm_upstream_attempt_duration_seconds{provider, model, outcome}``: their latency (SPEC §14:
  by provider, model and outcome; the model label is bounded as on the counter, as each label
  set is fifteen series here);
- ``llm_tokens_total{provider, type}``: prompt and completion tokens of those attempts;
- ``llm_cost_usd_total{provider}``: their cost in USD as the ledger priced it (a float: the
  ledger keeps the exact Decimal);
- ``llm_provider_circuit_state{provider, state}``: computed at scrape time (``api.monitoring``).

The API's base view records requests (``api.base``), the router records attempts
(``router.Tracker``), so a host project gets them without a setting or a middleware. Recording
is a few in-memory operations, no database or cache access.

Several server processes (gunicorn's workers) are counted together with prometheus-client's
multiprocess mode: with ``PROMETHEUS_MULTIPROC_DIR`` set before the first import (``make
serve`` sets it) every process writes its values to files there and a scrape sums them; the
in-flight gauge is ``livesum``, and the server's ``child_exit`` hook drops a dead worker's
(``alwrity.gunicorn_hooks``). Without it, the default in-process registry holds them.
"""

from __future__ import annotations

import os
from decimal import Decimal

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "APIRequest",
    "multiprocess_dir",
    "record_attempt",
]

API_REQUESTS = Counter(
    "llm_api_requests",
    "Requests to the LLM API, by endpoint (URL name), method and HTTP status.",
    ["endpoint", "method", "status"],
)
API_IN_FLIGHT = Gauge(
    "llm_api_requests_in_flight",
    "Requests to the LLM API being served (a stream until it ends or is closed).",
    ["endpoint"],
    multiprocess_mode="livesum",
)
UPSTREAM_ATTEMPTS = Counter(
    "llm_upstream_attempts",
    "Attempts at a provider (one ledger row each), by provider, model and outcome "
    "(success or the error code).",
    ["provider", "model", "outcome"],
)
UPSTREAM_DURATION = Histogram(
    "llm_upstream_attempt_duration_seconds",
    "Duration of attempts at a provider (a stream's until its end), by provider, model and "
    "outcome.",
    ["provider", "model", "outcome"],
    # From a local model's fraction of a second to a long stream; LLM_REQUEST_DEADLINE is 300.
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300),
)
TOKENS = Counter(
    "llm_tokens",
    "Tokens of the attempts at a provider, by type (prompt or completion).",
    ["provider", "type"],
)
COST = Counter(
    "llm_cost_usd",
    "Cost in USD of the attempts at a provider, as the ledger priced them.",
    ["provider"],
)

#: Distinct values of the ``model`` label a process keeps before it says ``other``: a model
#: is the caller's choice, and each value is a series for as long as the process lives.
MODEL_LABELS_LIMIT = 200
OTHER_MODEL = "other"
_model_labels: set[str] = set()


def multiprocess_dir() -> str | None:
    """The directory of prometheus-client's multiprocess mode, or None (in-process values)."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class APIRequest:
    """One request to the API, counted in flight from its creation until ``end()`` (called
    once the response is over: at once, or when a stream ends or is closed)."""

    __slots__ = ("_ended", "_in_flight", "endpoint")

    def __init__(self, endpoint: str):
        self.endpoint = endpoint
        self._in_flight = API_IN_FLIGHT.labels(endpoint)
        self._in_flight.inc()
        self._ended = False

    def answered(self, method: str, status: int) -> None:
        """The response starts with ``status``."""
        API_REQUESTS.labels(self.endpoint, method, str(status)).inc()

    def end(self) -> None:
        """No longer in flight; later calls do nothing."""
        if not self._ended:
            self._ended = True
            self._in_flight.dec()


def record_attempt(
    provider: str,
    model: str,
    outcome: str,
    seconds: float,
    prompt_tokens: int,
    completion_tokens: int,
    cost: Decimal | None,
) -> None:
    """One attempt at a provider is over. ``cost`` None: not priced (its ledger row could not
    be written; the log says so). Counters only go up: a negative count or cost (no provider
    reports one) is left out rather than raised, as recording must never fail a call."""
    model = _model_label(model, outcome)
    UPSTREAM_ATTEMPTS.labels(provider, model, outcome).inc()
    UPSTREAM_DURATION.labels(provider, model, outcome).observe(seconds)
    TOKENS.labels(provider, "prompt").inc(max(prompt_tokens, 0))
    TOKENS.labels(provider, "completion").inc(max(completion_tokens, 0))
    if cost is not None and cost > 0:
        COST.labels(provider).inc(float(cost))


def _model_label(model: str, outcome: str) -> str:
    """``model``, unless it may be any string a caller typed (the upstream did not know it),
    or this process has seen ``MODEL_LABELS_LIMIT`` models already: then ``other``."""
    if outcome == "model_not_found" or not model:
        return OTHER_MODEL
    if model not in _model_labels:
        if len(_model_labels) >= MODEL_LABELS_LIMIT:
            return OTHER_MODEL
        _model_labels.add(model)
    return model
