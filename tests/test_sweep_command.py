"""``manage.py llm_sweep``, and what ``make serve``'s gunicorn configuration does for SPEC §7."""

import os
import subprocess
import sys
import threading
import time
from datetime import timedelta
from decimal import Decimal
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from llm_providers.accounting import ledger
from llm_providers.models import CallStatus, LedgerEntry, UsageSummary

ROOT = Path(__file__).resolve().parent.parent


def begun(seconds_ago: float) -> LedgerEntry:
    entry = ledger.begin_attempt(
        f"r{seconds_ago}",
        None,
        provider="gemini",
        model="gemini-2.5-flash",
        is_fallback=False,
        estimate=Decimal("0.25"),
        reservation=None,
    )
    LedgerEntry.objects.filter(pk=entry.pk).update(
        created_at=timezone.now() - timedelta(seconds=seconds_ago)
    )
    return entry


def sweep(*args: str) -> str:
    out = StringIO()
    call_command("llm_sweep", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_llm_sweep_interrupts_what_is_older_than_the_default_age(settings):
    settings.LLM_REQUEST_DEADLINE = 100.0
    settings.LLM_SWEEP_GRACE = 20.0
    old, recent = begun(121), begun(60)

    assert sweep() == "Interrupted 1 attempt(s) in flight for more than 120 s.\n"
    assert LedgerEntry.objects.get(pk=old.pk).status == CallStatus.INTERRUPTED
    assert LedgerEntry.objects.get(pk=recent.pk).status == CallStatus.IN_FLIGHT
    assert UsageSummary.objects.get(user=None).total_cost == Decimal("0.25")
    assert sweep() == "Nothing to sweep: no attempt in flight for more than 120 s.\n"


@pytest.mark.django_db
def test_llm_sweep_older_than(settings):
    begun(30)
    assert sweep("--older-than", "10") == "Interrupted 1 attempt(s) in flight for more than 10 s.\n"
    with pytest.raises(CommandError):
        sweep("--older-than", "-1")


def gunicorn_config(**environ: str) -> dict[str, str]:
    """The configuration gunicorn builds from ``make serve``'s ``--config`` module, read as
    gunicorn reads it (before the application, without Django set up)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLM_", "DJANGO_"))}
    env |= {"ALWRITY_ENV_FILE": "", "SECRET_KEY": "test-only", **environ}
    done = subprocess.run(
        [
            str(Path(sys.executable).with_name("gunicorn")),
            "--print-config",
            "--config",
            "python:alwrity.gunicorn_hooks",
            "alwrity.wsgi:application",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return dict(
        (part.strip() for part in line.split("=", 1))
        for line in done.stdout.splitlines()
        if "=" in line
    )


def test_graceful_timeout_lets_calls_in_flight_finish():
    assert gunicorn_config()["graceful_timeout"] == "330"  # the default deadline, 300 s, + 30
    config = gunicorn_config(LLM_REQUEST_DEADLINE="120.5")
    assert config["graceful_timeout"] == "151"
    assert config["post_worker_init"] == "<post_worker_init()>"


def test_the_server_sweeps_by_itself(tmp_path):
    """A row left in flight by a dead process is interrupted while gunicorn runs, with no one
    asking: each worker's sweeper thread, started by ``post_worker_init``."""
    database = tmp_path / "db.sqlite3"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLM_", "DJANGO_"))}
    env |= {
        "ALWRITY_ENV_FILE": "",
        "SECRET_KEY": "test-only",
        "DATABASE_URL": f"sqlite:///{database}",
        "CACHE_DIR": str(tmp_path / "cache"),
        "DJANGO_SETTINGS_MODULE": "alwrity.settings",
        "LLM_REQUEST_DEADLINE": "1",
        "LLM_SWEEP_GRACE": "0",
        "LLM_SWEEP_INTERVAL": "0.2",
    }
    python = [sys.executable, "-c"]
    begin = (
        "import django; django.setup(); from decimal import Decimal; "
        "from django.core.management import call_command; call_command('migrate', verbosity=0); "
        "from llm_providers.accounting.ledger import begin_attempt; "
        "begin_attempt('dead', None, provider='gemini', model='gemini-2.5-flash', "
        "is_fallback=False, estimate=Decimal('0.3'), reservation=None)"
    )
    subprocess.run([*python, begin], cwd=ROOT, env=env, check=True, timeout=120)
    server = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("gunicorn")),
            "alwrity.wsgi:application",
            "--bind",
            "127.0.0.1:0",
            "--workers",
            "2",
            "--worker-class",
            "gthread",
            "--config",
            "python:alwrity.gunicorn_hooks",
            "--no-control-socket",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    # The log is read as it comes: the sweep logs just after its UPDATE commits, so a server
    # stopped as soon as the row reads "interrupted" could be stopped before the line is out.
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(server.stderr), daemon=True)
    reader.start()
    try:
        status = _wait_for_status(database, "interrupted", timeout=30)
        _wait_for(lambda: any("Interrupted 1 LLM attempt" in line for line in lines), 10)
        time.sleep(1)  # five sweep intervals: room for another worker's sweep, were it to happen
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        reader.join(timeout=10)
    errors = "".join(lines)
    assert status == "interrupted", errors
    assert errors.count("Interrupted 1 LLM attempt") == 1  # one sweep did it, of two workers


def _wait_for(check, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check() and time.monotonic() < deadline:
        time.sleep(0.05)


def _wait_for_status(database: Path, wanted: str, timeout: float) -> str:
    import sqlite3
    from contextlib import closing

    deadline = time.monotonic() + timeout
    status = ""
    while time.monotonic() < deadline:
        with closing(sqlite3.connect(database)) as db:
            status = db.execute("SELECT status FROM llm_providers_ledgerentry").fetchone()[0]
        if status == wanted:
            return status
        time.sleep(0.2)
    return status
