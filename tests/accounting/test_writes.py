"""accounting.writes: on SQLite the threads of a process take turns at the write lock."""

import threading
import time

import pytest
from django.db import connection, transaction

from llm_providers.accounting.writes import one_writer

pytestmark = pytest.mark.skipif(
    connection.vendor != "sqlite", reason="other databases get no lock of the process's"
)


def test_one_thread_at_a_time_goes_through():
    inside, peak, lock = 0, 0, threading.Lock()
    started = threading.Barrier(8)

    def write():
        nonlocal inside, peak
        started.wait()
        for _ in range(20):
            with one_writer("default"):
                with lock:
                    inside += 1
                    peak = max(peak, inside)
                time.sleep(0.0005)  # the others get their chance to come in
                with lock:
                    inside -= 1

    threads = [threading.Thread(target=write) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert peak == 1


@pytest.mark.django_db
def test_inside_a_transaction_it_does_not_wait():
    """A transaction may already hold SQLite's lock: waiting for a thread that waits for that
    lock would stall both, so inside one the statement goes straight on."""
    held, release = threading.Event(), threading.Event()

    def hold():
        with one_writer("default"):
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(10)
    try:
        passed = threading.Event()
        with transaction.atomic(), one_writer("default"):
            passed.set()
        assert passed.is_set() and holder.is_alive()
    finally:
        release.set()
        holder.join()
