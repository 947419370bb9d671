"""Gunicorn server hooks for ``make serve`` (``--config python:alwrity.gunicorn_hooks``).

The command line in the Makefile holds the settings (workers, threads, timeouts); this module
only prepares each worker once it has loaded the application, before its first request.
"""

import gc

# Young-generation collections every 50,000 allocations instead of 700. One API request
# allocates tens of thousands of objects, and with a hundred requests in flight per worker
# the default thresholds ran a collection several times per request, about a fifth of the
# worker's CPU under load (measured with gc.callbacks). Memory stays bounded: cycles are still
# collected, only in larger batches.
GC_THRESHOLDS = (50_000, 20, 20)


def post_worker_init(worker):
    """Import the URLconf (and with it every view) now, not on the first request; then move
    everything loaded so far out of the collector's sight (``gc.freeze``): modules, classes
    and settings live as long as the worker, and full collections no longer walk them."""
    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018 (imports the views)
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
