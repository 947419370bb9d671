"""Counts shared by every process of the cache (``llm_providers.counting``): ``count_up``'s file
lock (bounded, freed by a dead holder, a fixed set of files) and the lock-free ``AppendCounter``
of the file cache (exact across processes, swept when stale)."""

import json
import os
import subprocess
import sys
import time

import pytest

from llm_providers.counting import (
    LOCK_STRIPES,
    AppendCounter,
    CountLockTimeout,
    count_up,
    counter,
    file_lock,
    lock_file_path,
)
from tests.api.support import ROOT, project_process

# Another process holding a lock file until it is killed.
HOLD = (
    "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
    "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)"
)


def hold(path: str) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", HOLD, path], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_count_up_counts_and_forgets(cache_dir):
    assert [count_up("k", 60) for _ in range(3)] == [1, 2, 3]
    assert count_up("k", 60, delta=-1) == 2
    assert count_up("other", 60) == 1


def test_a_lock_not_had_in_time_raises_and_a_killed_holder_frees_it(cache_dir):
    path = lock_file_path(str(cache_dir), "k")
    holder = hold(path)
    try:
        started = time.monotonic()
        with pytest.raises(CountLockTimeout):
            count_up("k", 60, wait=0.05)
        assert time.monotonic() - started < 0.5
        with pytest.raises(CountLockTimeout), file_lock(path, wait=0.05):
            pass
    finally:
        holder.kill()
        holder.wait()
    assert count_up("k", 60, wait=0.5) == 1  # the kernel released it with its holder


def test_lock_files_are_a_fixed_set_beside_the_cache_files(cache_dir):
    paths = {lock_file_path(str(cache_dir), f"llm_providers:circuit:{n}") for n in range(5000)}
    assert len(paths) <= LOCK_STRIPES
    assert {os.path.dirname(p) for p in paths} == {str(cache_dir)}
    assert not any(p.endswith(".djcache") for p in paths)  # clear() and culling skip them
    # The same stripe in every process (a salted hash() would differ).
    code = "from llm_providers.counting import lock_file_path as f; print(f('d', 'k'))"
    assert project_process(code) == lock_file_path("d", "k")


# --- AppendCounter -------------------------------------------------------------------------------


def test_the_file_cache_counts_by_appending(cache_dir):
    counts = counter()
    assert isinstance(counts, AppendCounter)
    assert counts.get("w") == 0
    assert [counts.add("w", 1, 60) for _ in range(3)] == [1, 2, 3]
    assert counts.add("w", -1, 60) == 2
    assert counts.add("w", 1, 60) == 3
    assert counts.get("w") == 3
    assert counts.get("another") == 0
    assert os.path.dirname(counts._path("w", "up")) == str(cache_dir / "counts")


def test_stale_count_files_are_swept(cache_dir):
    counts = counter()
    counts.add("old", 1, 60)
    counts.add("new", 1, 60)
    past = time.time() - 120
    os.utime(counts._path("old", "up"), (past, past))
    counts.sweep(time.time() - 60)
    assert counts.get("old") == 0
    assert counts.get("new") == 1


# Processes adding to one count at once, as server workers do; each prints what it saw.
ADD = """
import json, sys, threading, time
import django
django.setup()
from llm_providers.counting import counter

start_at, threads, adds = float(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
seen, lock = [], threading.Lock()

def add():
    counts = counter()
    for n in range(adds):
        value = counts.add("shared", 1, 60)
        if n % 2:
            counts.add("shared", -1, 60)
        with lock:
            seen.append(value)

workers = [threading.Thread(target=add) for _ in range(threads)]
time.sleep(max(0.0, start_at - time.time()))
for w in workers:
    w.start()
for w in workers:
    w.join()
print(json.dumps(seen))
"""


def test_appended_counts_are_exact_across_processes(cache_dir):
    """Four processes of eight threads, 40 adds each (every other one taken back): the count is
    exactly the adds kept, with no lock."""
    env = {**os.environ, "ALWRITY_ENV_FILE": "", "CACHE_DIR": str(cache_dir), "REDIS_URL": ""}
    env["DJANGO_SETTINGS_MODULE"] = "alwrity.settings"
    start_at = time.time() + 3
    children = [
        subprocess.Popen(
            [sys.executable, "-c", ADD, repr(start_at), "8", "40"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    for child in children:
        out, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
        assert len(json.loads(out.splitlines()[-1])) == 8 * 40
    assert counter().get("shared") == 4 * 8 * 40 // 2
