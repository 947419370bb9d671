"""Circuit breakers of the providers (SPEC §5.1), kept in Django's default cache.

``LLM_CIRCUIT_FAILURES`` consecutive failed calls to a provider open its circuit for
``LLM_CIRCUIT_COOLDOWN`` seconds: ``allow()`` refuses it, and the router moves down the chain
without an upstream request. When the cooldown is over the circuit is *half open*: ``allow()``
lets exactly one caller through, the probe; its success closes the circuit, its failure opens it
again at once. A probe whose process died holds its place for ``LLM_REQUEST_DEADLINE`` (the
longest a call can take) and then another caller becomes the probe.

The state is in the cache, so every process that shares it sees the same circuits: the
processes of a machine with the project's file-based cache, every machine with Redis. Three
keys per provider, each small and with a timeout (nothing lives forever):

- ``llm_providers:circuit:<provider>:failures`` — the consecutive failures counted while closed;
  forgotten ``LLM_REQUEST_DEADLINE`` seconds after the last one, so only failures of calls that
  could have overlapped count as consecutive.
- ``llm_providers:circuit:<provider>:open`` — present while the circuit is open or half open:
  the wall-clock time (``time.time()``, shared by machines) the cooldown ends. It outlives the
  cooldown by two probe leases and is kept two leases past each probe let through; a circuit
  nobody calls for that long after its cooldown is forgotten (closed).
- ``llm_providers:circuit:<provider>:probe`` — the probe's lease, taken with ``cache.add``.

Atomicity is the cache's own: ``add`` and ``incr`` are atomic with Redis (and ``LocMemCache``).
The file-based cache makes them a read then a write: threads of one process are serialized by a
lock here, but two *processes* failing at the same instant may count one failure, and two
reaching a half-open circuit at the same instant may both probe; the bound holds to within one
call. Clocks of different machines are assumed to agree to well within a cooldown.

Costs in cache operations (a ``get_many`` or ``delete_many`` is one round trip with Redis):

- ``allow``: 1 read when closed or open; when half open, 1 read + 1 ``add`` (+ 1 ``touch`` for
  the caller that becomes the probe).
- ``record_success``: 1 ``get_many`` when nothing is counted (the usual case: no write);
  + 1 ``delete_many`` when there were failures or the circuit was open.
- ``record_failure``: 1 read + ``add`` (the first failure) or ``incr`` + ``touch``; opening adds
  1 ``set`` + 1 ``delete_many``. While open: 1 read (a call that started before it opened
  changes nothing). Half open: 1 read + 1 ``set`` + 1 ``delete_many`` (opened again).
- ``state``: 1 read. ``reset``: 1 ``delete_many``.

``LLM_CIRCUIT_FAILURES`` below 1 turns circuits off: failures are not counted.
"""

from __future__ import annotations

import logging
import math
import threading
import time

from django.core.cache import cache

from . import registry
from .conf import llm_settings
from .counting import CountLockTimeout, count_up

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"

logger = logging.getLogger(__name__)

# A probe's claim is not atomic with every backend (see above); this makes it so at least
# among the threads of one process. (A failure's count: ``counting``.)
_lock = threading.Lock()


def _key(provider: str, part: str) -> str:
    return f"llm_providers:circuit:{provider}:{part}"


def _seconds(value: float) -> int:
    # Whole seconds, at least 1: Django's RedisCache truncates a timeout to an int, and a
    # timeout of 0 deletes (or never stores) the key.
    return max(1, math.ceil(value))


def _lease() -> float:
    return float(llm_settings.LLM_REQUEST_DEADLINE)


def allow(provider: str) -> bool:
    """May a request call ``provider`` now? Closed: yes. Open: no. Half open: yes for exactly
    one caller, the probe, until its outcome is recorded or its lease runs out; no for the
    others."""
    reopens_at = cache.get(_key(provider, "open"))
    if reopens_at is None:
        return True
    if time.time() < reopens_at:
        return False
    return _claim_probe(provider)


def _claim_probe(provider: str) -> bool:
    lease = _lease()
    with _lock:
        claimed = cache.add(_key(provider, "probe"), True, timeout=_seconds(lease))
    if claimed:
        # The circuit outlives this probe's lease, so that a dead probe is followed by another
        # rather than by the whole traffic.
        cache.touch(_key(provider, "open"), timeout=_seconds(2 * lease))
    return claimed


def record_success(provider: str) -> None:
    """A call to ``provider`` succeeded: the circuit closes and its failures are forgotten."""
    keys = [_key(provider, "failures"), _key(provider, "open")]
    if cache.get_many(keys):
        cache.delete_many([*keys, _key(provider, "probe")])


def record_failure(provider: str) -> None:
    """A call to ``provider`` failed (a provider failure or a timeout, SPEC §5.1). The
    ``LLM_CIRCUIT_FAILURES``-th in a row opens the circuit; a failure while half open (the
    probe's) opens it again at once."""
    reopens_at = cache.get(_key(provider, "open"))
    now = time.time()
    if reopens_at is not None:
        if now >= reopens_at:
            _open(provider, now)
        return
    threshold = int(llm_settings.LLM_CIRCUIT_FAILURES)
    if threshold < 1:
        return
    try:
        failures = count_up(_key(provider, "failures"), _seconds(_lease()))
    except CountLockTimeout:  # a stalled cache: the next failure counts
        logger.warning("Circuit of %s: its failure count could not be updated.", provider)
        return
    if failures >= threshold:
        _open(provider, now)


def _open(provider: str, now: float) -> None:
    cooldown = float(llm_settings.LLM_CIRCUIT_COOLDOWN)
    lifetime = _seconds(cooldown + 2 * _lease())
    cache.set(_key(provider, "open"), now + cooldown, timeout=lifetime)
    cache.delete_many([_key(provider, "failures"), _key(provider, "probe")])


def state(provider: str) -> str:
    """``"closed"``, ``"open"`` or ``"half_open"`` (shown by the ``providers/`` endpoint)."""
    reopens_at = cache.get(_key(provider, "open"))
    if reopens_at is None:
        return CLOSED
    return OPEN if time.time() < reopens_at else HALF_OPEN


def reset(provider: str | None = None) -> None:
    """Forget the circuit of ``provider``, or of every registered provider (None): closed,
    nothing counted."""
    providers = [provider] if provider is not None else registry.provider_names()
    parts = ("failures", "open", "probe")
    cache.delete_many([_key(name, part) for name in providers for part in parts])
