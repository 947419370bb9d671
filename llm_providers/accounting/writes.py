"""One writer per process at a time on SQLite.

SQLite has one write lock for the whole database file. A thread that finds it taken waits in
SQLite's busy handler, which polls: it sleeps 1, 2, 5, … and then 100 ms between tries, so with
a hundred threads of a gunicorn worker recording calls at once, the lock sits free while its
waiters sleep (under load, most of the threads' time went to waiting in ``BEGIN IMMEDIATE``:
see docs/design.md). Here the threads of one process queue on a ``threading.Lock`` instead —
woken the moment it is free — and only one of them at a time goes to SQLite's lock, where it
meets at most the other processes' one writer each. Every other database (PostgreSQL locks rows,
not the file) gets a plain ``transaction.atomic``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connections, transaction

_locks: dict[str, threading.Lock] = {}
_locks_lock = threading.Lock()


@contextmanager
def one_writer(using: str) -> Iterator[None]:
    """On SQLite, let one thread of the process at a time through; elsewhere, everyone.

    Inside a transaction the lock is not taken: that transaction may already hold SQLite's
    lock, and waiting here for a thread that waits for it would stall both. The wait is bounded
    by the database's busy timeout; past it the statement goes ahead and SQLite decides.
    """
    connection = connections[using]
    if connection.vendor != "sqlite" or connection.in_atomic_block:
        yield
        return
    with _locks_lock:
        lock = _locks.setdefault(using, threading.Lock())
    acquired = lock.acquire(timeout=float(connection.settings_dict["OPTIONS"].get("timeout", 5)))
    try:
        yield
    finally:
        if acquired:
            lock.release()


@contextmanager
def write_transaction(using: str) -> Iterator[None]:
    """``transaction.atomic(using=using)``, begun by one writer of the process at a time."""
    with one_writer(using), transaction.atomic(using=using):
        yield
