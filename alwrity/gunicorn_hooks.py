"""Gunicorn configuration and server hooks for ``make serve`` (``--config
python:alwrity.gunicorn_hooks``).

The command line in the Makefile holds most settings (workers, threads, timeouts); this module
sets what derives from the app's settings, and prepares each worker once it has loaded the
application, before its first request.
"""

import gc
import math
import os

# Gunicorn reads this module before it loads the application, so Django is not set up yet;
# the settings are: reading llm_settings needs only them (the app's settings helper: Django
# setting, else environment variable, else default), as the workers will see them.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "alwrity.settings")

from llm_providers.conf import llm_settings  # after DJANGO_SETTINGS_MODULE is set

# On a stop signal (SIGTERM, a deploy), let every call in flight finish before the workers are
# killed: a call may last LLM_REQUEST_DEADLINE, plus time to record it and answer. (Gunicorn
# takes whole seconds.)
graceful_timeout = math.ceil(float(llm_settings.LLM_REQUEST_DEADLINE)) + 30

# Young-generation collections every 50,000 allocations instead of 700. One API request
# allocates tens of thousands of objects, and with a hundred requests in flight per worker
# the default thresholds ran a collection several times per request, about a fifth of the
# worker's CPU under load (measured with gc.callbacks). Memory stays bounded: cycles are still
# collected, only in larger batches.
GC_THRESHOLDS = (50_000, 20, 20)


def post_worker_init(worker):
    """Import the URLconf (and with it every view) now, not on the first request; then move
    everything loaded so far out of the collector's sight (``gc.freeze``): modules, classes
    and settings live as long as the worker, and full collections no longer walk them.
    Then start the ledger sweeper (SPEC §7): every worker runs one, and the shared cache's
    lock lets one of them sweep per interval."""
    from django.urls import get_resolver

    from llm_providers.accounting.sweeper import start_sweeper

    get_resolver().url_patterns  # noqa: B018 (imports the views)
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    start_sweeper()


def child_exit(server, worker):
    """A worker is gone (stopped, crashed or killed): its requests are no longer in flight.
    prometheus-client's multiprocess mode (``make serve`` sets PROMETHEUS_MULTIPROC_DIR) sums
    the in-flight gauge over the workers' files; this drops the dead worker's. Its counters
    stay: what it counted still happened."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
