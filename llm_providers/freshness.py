"""How a process knows its caches of rarely changed rows (provider keys, API tokens, budgets) are
still fresh, so the hot path can skip their queries without serving stale rows.

A cached answer is used only while it is younger than its time to live *and* nothing it was
read from has changed since. Changes are seen two ways:

* in this process at once: the models' ``post_save``/``post_delete`` signals bump a counter
  (again when the saving transaction commits, for readers that raced with it);
* in every other process of this machine (the server's other workers, ``manage.py`` commands)
  at their next request: after the change commits, the same signal handler touches a marker
  file beside the system's other temporary files, named after the database, and a reader
  compares the file's modification time with the one it saw when it read the rows (one
  ``stat``, about a microsecond).

Processes on other machines (a scaled-out deployment sharing one PostgreSQL) and changes that
bypass the models' signals (``QuerySet.update()``, raw SQL) are caught by the time to live.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from pathlib import Path

from django.db import DEFAULT_DB_ALIAS, connections, transaction

_lock = threading.Lock()
_local = 0  # bumped by every change seen in this process
_markers: dict[tuple, Path] = {}


def current() -> tuple[int, int]:
    """A stamp to keep with a cached answer, taken *before* the rows are read; the answer is
    fresh while ``current()`` still returns the same stamp."""
    return _local, _marker_mtime()


def changed(**kwargs) -> None:
    """Signal receiver: some cached rows changed (``using`` names the database)."""
    _bump()
    using = kwargs.get("using") or DEFAULT_DB_ALIAS
    # After the commit too: a reader of another thread (or process) that read the old rows
    # between the save and the commit would otherwise keep them until the time to live.
    transaction.on_commit(_committed, using=using)


def watch_models() -> None:
    """Connect ``changed`` to the models whose rows are cached (called by the app's ready())."""
    from django.apps import apps
    from django.contrib.auth import get_user_model
    from django.db.models.signals import post_delete, post_save

    from .models import APIKey, UsageBudget

    models = [APIKey, UsageBudget, get_user_model()]
    if apps.is_installed("rest_framework.authtoken"):
        from rest_framework.authtoken.models import Token

        models.append(Token)
    for model in models:
        for signal in (post_save, post_delete):
            signal.connect(changed, sender=model, dispatch_uid=f"llm-freshness-{model._meta}")


def invalidate_all() -> None:
    """Forget every cached answer of this process (tests; a changed setting)."""
    _bump()


def _bump() -> None:
    global _local
    with _lock:
        _local += 1


def _committed() -> None:
    _bump()
    path = _marker_path()
    try:
        path.touch()
        os.utime(path)  # touch() of an existing file may keep a coarse timestamp
    except OSError:
        pass  # no shared marker: other processes rely on the time to live


def _marker_mtime() -> int:
    try:
        return os.stat(_marker_path()).st_mtime_ns
    except OSError:
        return 0


def _marker_path() -> Path:
    settings = connections[DEFAULT_DB_ALIAS].settings_dict
    identity = (
        settings["ENGINE"],
        str(settings["NAME"]),
        settings.get("HOST"),
        settings.get("PORT"),
    )
    path = _markers.get(identity)
    if path is None:
        engine, name, host, port = identity
        if engine.endswith("sqlite3") and name != ":memory:":
            name = str(Path(name).resolve())  # one file, however a process names it
        digest = hashlib.sha256(repr((engine, name, host, port)).encode()).hexdigest()[:24]
        path = Path(tempfile.gettempdir()) / f"alwrity-changes-{digest}"
        _markers[identity] = path
    return path
