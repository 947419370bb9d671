"""The writes of the hot path (recording a call, reserving a budget): transactions, INSERTs.

SQLite lets one writer in at a time. A writer that finds the file locked waits in SQLite's busy
handler, which sleeps in growing steps (up to 100 ms) and retries: with a hundred threads of a
few server processes finishing their upstream calls together, that lottery keeps the lock idle
between sleeps and lets some writers wait for seconds while others pass. So on SQLite the
writers queue instead: a process's threads on a lock, in arrival order, and the processes on an
advisory lock file (``flock``), which hands over the moment it is released. SQLite's own
locking still guarantees correctness; this only orders the writers that use it. Other databases
queue writers on row locks themselves: nothing is added for them.

Even queued, one transaction per call is too many on SQLite: each holds the database's only
write lock while its thread takes turns with a hundred others for the GIL between statements.
``GroupCommit`` lets the threads of a process that are waiting to write share one transaction
(group commit): the first in line writes for everyone queued behind it, and each caller returns
only once its own rows are committed, so nothing that was acknowledged can be lost.

``insert`` writes new rows as ``bulk_create`` does, without compiling the same INSERT on every
call: on this path the ORM's compilation costs more CPU than the database takes to run it.
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Generic, TypeVar

from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.models import AutoField, Field, Model

try:
    import fcntl
except ImportError:  # not on Windows: the process lock alone
    fcntl = None

_sqlite_writers = threading.Lock()
# {(process id, database path): descriptor of its lock file}; never closed while the process
# lives, and opened after a fork (a descriptor inherited from the parent would share its lock).
_lock_files: dict[tuple[int, str], int | None] = {}


@contextmanager
def write_transaction(using: str = DEFAULT_DB_ALIAS) -> Iterator[None]:
    """``transaction.atomic()``; on SQLite, one writer at a time, in arrival order.

    Inside an outer transaction no lock is taken: that transaction may already hold the
    database's write lock, and waiting here for a thread that waits for it would stall both
    until the busy timeout. Such callers write as they did before (the busy handler decides).
    """
    connection = connections[using]
    if connection.vendor != "sqlite" or connection.in_atomic_block:
        with transaction.atomic(using=using):
            yield
        return
    with _sqlite_writers:
        fd = _lock_file(connection.settings_dict["NAME"])
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            with transaction.atomic(using=using):
                yield
        finally:
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_UN)


def _lock_file(name) -> int | None:
    """This process's descriptor of the lock file of the SQLite database ``name``, or None
    (an in-memory database, no ``fcntl``, a lock file that cannot be opened).

    The lock file is not the database file: closing any descriptor of that file would drop the
    POSIX locks SQLite holds on it. It lives in the temporary directory, named after the
    database's absolute path, so every process of one machine using the database finds it.
    """
    if fcntl is None or not name or str(name) == ":memory:" or "mode=memory" in str(name):
        return None
    key = (os.getpid(), str(name))
    if key not in _lock_files:
        digest = hashlib.sha256(str(Path(name).resolve()).encode()).hexdigest()[:24]
        path = Path(tempfile.gettempdir()) / f"alwrity-sqlite-writer-{digest}.lock"
        try:
            _lock_files[key] = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            _lock_files[key] = None
    return _lock_files[key]


T = TypeVar("T")


class _Job(Generic[T]):
    __slots__ = ("done", "error", "item", "wake")

    def __init__(self, item: T):
        self.item = item
        self.wake = threading.Event()  # set when done, or when it is this job's turn to lead
        self.done = False
        self.error: BaseException | None = None


class GroupCommit(Generic[T]):
    """Write items in shared transactions: ``submit(item)`` returns once ``write([..., item,
    ...])`` has committed a transaction holding it, or raises the error writing it met.

    ``write(items)`` must write them all or raise (it runs inside ``write_transaction``). The
    thread at the head of the queue writes for everyone queued (at most ``max_batch``), on its
    own connection, then hands the head to the next waiting thread. When a shared transaction
    fails, its items are written again one by one, each in its own transaction, so one bad
    item fails alone. Only where it helps and is safe: on SQLite, and never inside an outer
    transaction (the item must then be part of it); elsewhere ``submit`` writes at once.
    """

    def __init__(self, write: Callable[[Sequence[T]], Any], *, max_batch: int = 100):
        self._write = write
        self._max_batch = max_batch
        self._mutex = threading.Lock()
        self._queues: dict[str, deque[_Job[T]]] = {}

    def submit(self, item: T, using: str = DEFAULT_DB_ALIAS) -> None:
        connection = connections[using]
        if connection.vendor != "sqlite" or connection.in_atomic_block:
            with write_transaction(using):
                self._write([item])
            return
        job = _Job(item)
        with self._mutex:
            queue = self._queues.setdefault(f"{os.getpid()}:{using}", deque())
            queue.append(job)
            leading = len(queue) == 1  # an empty queue has no writer: this thread writes
        if not leading:
            job.wake.wait()
        if not job.done:
            self._lead(queue, using)
        if job.error is not None:
            raise job.error

    def _lead(self, queue: deque[_Job[T]], using: str) -> None:
        with self._mutex:
            batch = [queue[i] for i in range(min(len(queue), self._max_batch))]
        try:
            self._write_batch(batch, using)
        finally:
            with self._mutex:
                for _ in batch:
                    queue.popleft()
                following = queue[0] if queue else None
            for job in batch:
                if not job.done and job.error is None:
                    job.error = RuntimeError("The writing thread stopped before this write.")
                job.done = True
                job.wake.set()
            if following is not None:
                following.wake.set()  # not done: its thread writes the next batch

    def _write_batch(self, batch: list[_Job[T]], using: str) -> None:
        if len(batch) > 1:
            try:
                with write_transaction(using):
                    self._write([job.item for job in batch])
            except Exception:
                pass  # written again one by one below, to find the item that fails
            else:
                for job in batch:
                    job.done = True
                return
        for job in batch:
            try:
                with write_transaction(using):
                    self._write([job.item])
            except Exception as exc:
                job.error = exc
            else:
                job.done = True


def insert(objs: Sequence[Model], using: str = DEFAULT_DB_ALIAS) -> None:
    """``bulk_create(objs)`` for new objects (no primary key yet) of one model whose only column
    computed by the database is its automatic primary key (no ``db_default``, no generated
    field), with the INSERT … RETURNING built once per (database, number of rows) instead of on
    every call. The values are the ORM's, each field's ``get_db_prep_save(pre_save(obj))``, and
    the objects get their primary keys, as from ``bulk_create``. Plain values only: no
    expressions, no unsaved related objects.

    Where the database cannot return the keys of a multi-row INSERT (MySQL, SQLite before 3.35)
    this is ``bulk_create`` itself.
    """
    if not objs:
        return
    model = type(objs[0])
    connection = connections[using]
    if not connection.features.can_return_rows_from_bulk_insert:
        model._base_manager.db_manager(using).bulk_create(objs)
        return
    fields = _insert_fields(model)
    # Rows per statement, within the database's limit of parameters (SQLite's 999).
    size = max(connection.ops.bulk_batch_size(fields, objs), 1) if len(objs) > 1 else 1
    with connection.cursor() as cursor:
        for start in range(0, len(objs), size):
            batch = objs[start : start + size]
            params = [
                field.get_db_prep_save(field.pre_save(obj, True), connection)
                for obj in batch
                for field in fields
            ]
            cursor.execute(_insert_sql(model, using, len(batch)), params)
            rows = connection.ops.fetch_returned_insert_rows(cursor)
            for obj, (pk,) in zip(batch, rows, strict=True):
                obj.pk = pk
                obj._state.adding = False
                obj._state.db = using


@functools.cache
def _insert_fields(model: type[Model]) -> list[Field]:
    """The columns ``bulk_create`` writes for objects without a primary key."""
    meta = model._meta
    assert meta.db_returning_fields == [meta.pk], f"{model.__name__}: not for insert()"
    return [f for f in meta.concrete_fields if not f.generated and not isinstance(f, AutoField)]


@functools.lru_cache(maxsize=256)
def _insert_sql(model: type[Model], using: str, rows: int) -> str:
    """``INSERT INTO table (columns) VALUES (%s, …), … RETURNING table.id`` for ``rows`` rows."""
    ops = connections[using].ops
    quote = ops.quote_name
    fields = _insert_fields(model)
    returning, _ = ops.return_insert_columns([model._meta.pk])
    return " ".join(
        [
            f"{ops.insert_statement()} {quote(model._meta.db_table)}",
            "({})".format(", ".join(quote(field.column) for field in fields)),
            ops.bulk_insert_sql(fields, [["%s"] * len(fields)] * rows),
            returning,
        ]
    )
