"""The sweep: attempts whose process died mid-call become ``interrupted`` (SPEC §7).

A row ``in_flight`` long after ``LLM_REQUEST_DEADLINE`` (plus ``LLM_SWEEP_GRACE``) belongs to a
process that was killed (``kill -9``, out of memory, a deploy) between ``begin_attempt`` and
``finish_attempt``: no one else will settle it. The sweep charges it its estimate (the
request's worst case: what the upstream may have billed) and releases its reservation, so the
user's budget is neither stuck nor undercharged.

``manage.py llm_sweep`` sweeps on demand; ``start_sweeper`` sweeps in the background of every
server process, one process at a time through a lock in the shared cache.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta

from django.core.cache import cache
from django.db import connections, transaction
from django.db import router as db_router
from django.utils import timezone

from ..conf import llm_settings
from .budgets import Reservation, release_deltas
from .ledger import Change, add_to_summaries, summary_deltas
from .models import CallStatus, CostSource, LedgerEntry
from .money import money_str

logger = logging.getLogger(__name__)

# The cache key whose holder sweeps this interval (``cache.add`` is atomic in every backend).
LOCK_KEY = "llm_providers:sweep"


def default_age() -> float:
    """Seconds after which a row still in flight is taken for dead."""
    return float(llm_settings.LLM_REQUEST_DEADLINE) + float(llm_settings.LLM_SWEEP_GRACE)


def sweep(*, now: datetime | None = None, older_than: float | None = None) -> int:
    """Interrupt every row in flight created more than ``older_than`` seconds (default
    ``LLM_REQUEST_DEADLINE`` + ``LLM_SWEEP_GRACE``) before ``now``; return how many."""
    now = now or timezone.now()
    age = default_age() if older_than is None else older_than
    stale = LedgerEntry.objects.filter(
        status=CallStatus.IN_FLIGHT, created_at__lt=now - timedelta(seconds=age)
    ).order_by("pk")
    interrupted = [entry for entry in stale if interrupt(entry, age)]
    if interrupted:
        logger.warning(
            "Interrupted %d LLM attempt(s) still in flight %.0f s after they began (their "
            "process died mid-call): %s",
            len(interrupted),
            age,
            ", ".join(
                f"#{e.pk} {e.provider}/{e.model} user={e.user_id} charged ${money_str(e.cost)}"
                for e in interrupted
            ),
        )
    return len(interrupted)


def interrupt(entry: LedgerEntry, age: float) -> bool:
    """Settle one row in flight as ``interrupted``, in its own transaction: charge its estimate
    to its summary (cost, not a call), release the reservation it holds, and mark the row —
    only if it is still in flight then (a late ``finish_attempt`` or another sweeper may have
    settled it meanwhile: then nothing is written and False is returned)."""
    entry.status = CallStatus.INTERRUPTED
    entry.cost = entry.estimate
    entry.cost_source = CostSource.ESTIMATED
    entry.error_code = "interrupted"
    entry.error_message = (
        f"No outcome {age:.0f} s after the attempt began: the process making the call died "
        "mid-call (killed, out of memory or redeployed). Charged the request's estimate."
    )
    changes: list[Change] = [(entry.user_id, entry.period, summary_deltas([entry]))]
    if entry.reserved:
        held = Reservation(user_id=entry.user_id, period=entry.period, cost=entry.estimate)
        changes.append((entry.user_id, entry.period, release_deltas(held)))
    entry.reserved = False
    try:
        with transaction.atomic(using=db_router.db_for_write(LedgerEntry)):
            add_to_summaries(changes)  # first, in the ledger's lock order
            settled = LedgerEntry.objects.filter(pk=entry.pk, status=CallStatus.IN_FLIGHT).update(
                status=entry.status,
                cost=entry.cost,
                cost_source=entry.cost_source,
                error_code=entry.error_code,
                error_message=entry.error_message,
                reserved=False,
            )
            if not settled:
                raise _AlreadySettled
    except _AlreadySettled:
        return False
    return True


class _AlreadySettled(Exception):
    """Rolls ``interrupt``'s transaction back: someone settled the row first."""


# --- In the background of the server -------------------------------------------------------------


def sweep_if_due(interval: float) -> int | None:
    """Sweep if no process (of the machine, or of the fleet with a shared Redis) has swept in
    the last ``interval`` seconds; return how many rows were interrupted, None if not due."""
    if not cache.add(LOCK_KEY, timezone.now().isoformat(), timeout=interval):
        return None
    return sweep()


def start_sweeper(
    *, interval: float | None = None, stop: threading.Event | None = None
) -> threading.Thread:
    """Start a daemon thread that calls ``sweep_if_due`` every ``interval`` seconds (default
    ``LLM_SWEEP_INTERVAL``) until ``stop`` is set. It never dies of an error: it logs it and
    tries again next interval."""
    thread = threading.Thread(
        target=_sweep_forever, args=(interval, stop or threading.Event()), name="llm-sweeper"
    )
    thread.daemon = True
    thread.start()
    return thread


def _sweep_forever(interval: float | None, stop: threading.Event) -> None:
    while True:
        every = float(llm_settings.LLM_SWEEP_INTERVAL) if interval is None else interval
        if stop.wait(every):
            return
        try:
            sweep_if_due(every)
        except Exception:
            logger.exception("The LLM ledger sweep failed; trying again in %s s.", every)
        finally:
            # This thread's own connection: not held open between sweeps.
            connections.close_all()
