"""Fixtures of the end-to-end tests: the fake upstream, the production server, users, checks.

Once per session: the fake upstream (``FakeUpstream``, a thread of this process), a database
for the servers (a SQLite file; on a PostgreSQL run, a database created on that server and
dropped at the end), the ``main`` server (``make serve`` with all three provider keys, the
primary detected by priority: Gemini) and, when a test asks for it, the ``solo`` server (the
same production command and database, ``GPT_PROVIDER=huggingface``, no Gemini key). Users and
DRF tokens are made with ``manage.py shell`` in a subprocess. The custom-provider tests add two
more on the same database: ``local`` (only a keyless ``ollama`` from LLM_CUSTOM_PROVIDERS) and
``local_primary`` (``GPT_PROVIDER=ollama`` beside a Hugging Face key).

After every test (``e2e_invariants``): no scripted fault was left unused; every upstream request
the fake saw is in the ledger (one row per provider attempt, ``retries`` counting the rest); the
servers are up (health 200, no worker died, nothing logged about lost accounting) and a
plain generation still works; and each user's ``usage/`` equals the sums over their ``calls/``.
A failing test gets the tail of each server's log in its report.
"""

from __future__ import annotations

import json
import secrets
import subprocess
from collections import defaultdict
from dataclasses import asdict
from decimal import Decimal

import pytest

from fake_upstream import FakeConfig, FakeUpstream
from tests.conftest import FAKE_KEYS
from tests.e2e.harness import (
    ROOT,
    VENV_PYTHON,
    Client,
    Server,
    base_environment,
    find_make,
    manage,
    server_database,
    totals,
)

WORKERS = 2
DEFAULT_FAKE_CONFIG = asdict(FakeConfig())
USERS = {"user": "e2e-user", "other": "e2e-other", "staff": "e2e-staff"}
# What gunicorn logs when a worker dies (killed, crashed, timed out, failed to boot), and what
# the app logs when a call could not be accounted.
BAD_LOG_MARKERS = (
    "WORKER TIMEOUT",
    "was sent SIG",
    "exited with code",
    "Worker failed to boot",
    "Traceback",
    "Could not record LLM usage",
)
GENERATION_PATHS = ("/chat/completions", ":generateContent", ":streamGenerateContent")

RUNNING: list[Server] = []  # started servers, for the failure report and the checks
# One deployment: the servers share the database, so they share the SECRET_KEY that the stored
# provider keys are encrypted with.
SECRET_KEY = secrets.token_urlsafe(50)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"e2e_report_{report.when}", report)
    if report.failed:
        for server in RUNNING:
            report.sections.append((f"{server.name} server log", server.log_tail()))


# --- Session: the fake, the database, the servers, the users ------------------------------------


@pytest.fixture(scope="session")
def make_command():
    make = find_make()
    if make is None:
        pytest.skip("end-to-end tests run the production command `make serve`: make is missing")
    # `make serve` would install requirements.txt into .venv first if they changed; do it here,
    # outside the bounded wait for the server to answer.
    quiet = subprocess.run(
        [make, "-q", "venv"], cwd=ROOT, env=base_environment(), capture_output=True
    )
    if quiet.returncode != 0:
        result = subprocess.run(
            [make, "--no-print-directory", "venv"],
            cwd=ROOT,
            env=base_environment(),
            capture_output=True,
            text=True,
            timeout=900,
        )
        if result.returncode != 0:
            pytest.skip(
                "end-to-end tests need the project's .venv and `make venv` failed:\n"
                + (result.stdout + result.stderr)[-2000:]
            )
    if not VENV_PYTHON.exists():
        pytest.skip(f"end-to-end tests need {VENV_PYTHON} (make venv)")
    return make


@pytest.fixture(scope="session")
def e2e_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="session")
def upstream():
    with FakeUpstream(host="127.0.0.1", port=0) as fake:
        yield fake


@pytest.fixture(scope="session")
def database(e2e_dir):
    db = server_database(e2e_dir)
    yield db
    db.drop()


def server_env(upstream, database, e2e_dir, **settings: str) -> dict[str, str]:
    """The servers' environment: nothing inherited that configures the app; the fake's URLs;
    fast retries and a short timeout, so every fault resolves in seconds. The servers share one
    cache directory, as the processes of one machine do (not the project's var/cache)."""
    return {
        **base_environment(),
        "ALWRITY_ENV_FILE": "",  # no .env: only what is set here
        "SECRET_KEY": SECRET_KEY,
        "DATABASE_URL": database.url,
        "CACHE_DIR": str(e2e_dir / "cache"),
        **upstream.base_urls,
        "LLM_TIMEOUT": "2",
        "LLM_FIRST_TOKEN_TIMEOUT": "2",
        "LLM_STREAM_IDLE_TIMEOUT": "2",
        "LLM_MAX_RETRIES": "1",
        "LLM_RETRY_BASE_DELAY": "0.05",
        "LLM_RETRY_MAX_DELAY": "0.2",
        "LLM_API_RATE": "100000/min",
        "LLM_API_GENERATION_RATE": "100000/min",
        # The fault tests script failures test after test on servers that live for the whole
        # session: circuits would carry one test's failures into the next. Circuits are tested
        # on servers of their own (test_failover_bench.py, test_circuits_e2e.py).
        "LLM_CIRCUIT_FAILURES": "1000000",
        "GUNICORN_WORKERS": str(WORKERS),
        **settings,
    }


def start_server(make, name, env, e2e_dir) -> Server:
    server = Server(name, env, e2e_dir / f"{name}.log")
    server.start(make, timeout=60)
    RUNNING.append(server)
    return server


def stop_server(server: Server) -> None:
    server.stop()
    if server in RUNNING:
        RUNNING.remove(server)


@pytest.fixture(scope="session")
def main(make_command, upstream, database, e2e_dir):
    """The production server with a key for each provider (so Gemini is the primary)."""
    env = server_env(
        upstream,
        database,
        e2e_dir,
        GEMINI_API_KEY=FAKE_KEYS["gemini"],
        OPENROUTER_API_KEY=FAKE_KEYS["openrouter"],
        HF_TOKEN=FAKE_KEYS["huggingface"],
    )
    server = start_server(make_command, "main", env, e2e_dir)
    yield server
    stop_server(server)


@pytest.fixture(scope="session")
def accounts(main):
    """DRF tokens of an ordinary user, a second one and a staff user, made by manage.py."""
    code = f"""
import json
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
tokens = {{}}
for role, name in {USERS!r}.items():
    user, _ = get_user_model().objects.get_or_create(
        username=name, defaults={{"is_staff": role == "staff"}}
    )
    if role == "staff":  # staff endpoints follow the admin's model permissions (SPEC §8)
        from django.contrib.auth.models import Permission
        user.user_permissions.set(Permission.objects.filter(
            content_type__app_label="llm_providers",
            codename__in=["view_apikey", "add_apikey", "change_apikey", "delete_apikey",
                          "view_ledgerentry"],
        ))
    tokens[role] = Token.objects.get_or_create(user=user)[0].key
print("E2E_TOKENS=" + json.dumps(tokens))
"""
    out = manage(main.full_env(), code)
    line = next((x for x in out.splitlines() if x.startswith("E2E_TOKENS=")), None)
    assert line, f"manage.py shell printed no tokens:\n{out}"
    return json.loads(line.removeprefix("E2E_TOKENS="))


@pytest.fixture(scope="session")
def solo(make_command, upstream, database, main, e2e_dir):
    """A second production server on the same database: GPT_PROVIDER=huggingface, and keys
    for Hugging Face and OpenRouter only (none for Gemini)."""
    env = server_env(
        upstream,
        database,
        e2e_dir,
        GPT_PROVIDER="huggingface",
        OPENROUTER_API_KEY=FAKE_KEYS["openrouter"],
        HF_TOKEN=FAKE_KEYS["huggingface"],
    )
    server = start_server(make_command, "solo", env, e2e_dir)
    yield server
    stop_server(server)


def ollama_definition(upstream, **extra) -> str:
    """``LLM_CUSTOM_PROVIDERS``: one keyless ``ollama`` on the fake's OpenAI-compatible route."""
    return json.dumps(
        [
            {
                "name": "ollama",
                "label": "Ollama",
                "base_url": upstream.openai_base_url("ollama"),
                "default_model": "llama3.2",
                "requires_key": False,
                **extra,
            }
        ]
    )


@pytest.fixture(scope="session")
def local(make_command, upstream, database, main, e2e_dir):
    """A production server whose only provider is a keyless custom one from
    LLM_CUSTOM_PROVIDERS (``ollama``): no key at all, no GPT_PROVIDER. Prices are read at every
    call, so a price another process saves counts at once."""
    env = server_env(
        upstream,
        database,
        e2e_dir,
        LLM_CUSTOM_PROVIDERS=ollama_definition(upstream),
        LLM_PRICE_CACHE_SECONDS="0",
    )
    server = start_server(make_command, "local", env, e2e_dir)
    yield server
    stop_server(server)


@pytest.fixture(scope="session")
def local_primary(make_command, upstream, database, main, e2e_dir):
    """``GPT_PROVIDER=ollama`` beside a Hugging Face key: ollama is primary though Hugging Face
    comes first by priority, and the fallback of a failing Hugging Face."""
    env = server_env(
        upstream,
        database,
        e2e_dir,
        GPT_PROVIDER="ollama",
        HF_TOKEN=FAKE_KEYS["huggingface"],
        LLM_CUSTOM_PROVIDERS=ollama_definition(upstream),
    )
    server = start_server(make_command, "local_primary", env, e2e_dir)
    yield server
    stop_server(server)


@pytest.fixture
def local_api(local, accounts) -> Client:
    return local.client(accounts["user"])


@pytest.fixture
def fake(upstream):
    """The fake upstream, reset by ``e2e_invariants`` before each test."""
    return upstream


@pytest.fixture
def api(main, accounts) -> Client:
    return main.client(accounts["user"])


@pytest.fixture
def other_api(main, accounts) -> Client:
    return main.client(accounts["other"])


@pytest.fixture
def staff_api(main, accounts) -> Client:
    return main.client(accounts["staff"])


@pytest.fixture
def solo_api(solo, accounts) -> Client:
    return solo.client(accounts["user"])


# --- After every test ---------------------------------------------------------------------------


def ledger(client: Client) -> list[dict]:
    return client.pages("calls/")


def primary_of(server: Server) -> str:
    if server.env.get("GPT_PROVIDER"):
        return server.env["GPT_PROVIDER"]
    return "ollama" if server.name == "local" else "gemini"


def assert_usage_matches_ledger(client: Client, rows: list[dict], who: str) -> None:
    """``usage/`` of each period equals the sums over the ledger rows of that period."""
    by_period: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_period[row["created_at"][:7]].append(row)
    current = client.get("usage/")
    assert current.status == 200, current
    by_period.setdefault(current.json()["period"], [])
    for period, period_rows in sorted(by_period.items()):
        reply = client.get("usage/", period=period)
        assert reply.status == 200, reply
        usage = reply.json()
        expected = totals(period_rows)
        total = usage["total"]
        actual = {
            "calls": total["calls"],
            "tokens": total["tokens"],
            "cost": Decimal(total["cost"]),
        }
        assert actual == expected, (
            f"{who}: usage/ for {period} says {actual}, its {len(period_rows)} ledger rows "
            f"sum to {expected}"
        )
        for name, figures in usage["providers"].items():
            mine = totals([r for r in period_rows if r["provider"] == name])
            got = {**figures, "cost": Decimal(figures["cost"])}
            assert got == mine, f"{who}: usage/ {period} {name}: {got} != ledger {mine}"


_marks: dict[str, int] = {}  # each user's newest ledger id, as the last check left it


@pytest.fixture(autouse=True)
def e2e_invariants(request, upstream, main, accounts):
    upstream.reset()
    upstream.configure(**DEFAULT_FAKE_CONFIG)
    clients = {role: main.client(token) for role, token in accounts.items()}
    if set(_marks) != set(clients):
        for role, client in clients.items():
            _marks[role] = max((r["id"] for r in ledger(client)), default=0)
    marks = dict(_marks)
    _marks.clear()  # recomputed next time unless this test's checks pass
    log_marks = {server.name: server.log_size() for server in RUNNING}
    yield
    call = getattr(request.node, "e2e_report_call", None)
    if call is None or not call.passed:
        return  # the test's own failure says more than these checks could

    # 1. The test used exactly the faults it scripted.
    pending = {name: faults for name, faults in upstream.pending().items() if faults}
    assert not pending, f"scripted faults left unused: {pending}"
    upstream.configure(**DEFAULT_FAKE_CONFIG)  # the checks' own calls at full speed

    # 2. The servers are up, and nothing crashed or went unaccounted.
    for server in RUNNING:
        assert server.alive(), f"{server.name}: the server process ended"
        health = server.client().get("health/")
        assert health.status == 200, f"{server.name}: health/ answered {health!r}"
        log = server.log_since(log_marks.get(server.name, 0))
        for marker in BAD_LOG_MARKERS:
            assert marker not in log, f"{server.name} logged {marker!r} during the test"

    # 3. A plain generation still works on every server.
    for server in RUNNING:
        reply = server.client(accounts["user"]).post("generate/", {"prompt": "still there?"})
        assert reply.status == 200, f"{server.name}: a plain generation failed: {reply!r}"
        assert reply.json()["provider"] == primary_of(server)

    # 4. Every upstream request is in the ledger: one row per provider attempt, whose
    #    `retries` count its other requests.
    rows = {role: ledger(client) for role, client in clients.items()}
    new = [r for role in rows for r in rows[role] if r["id"] > marks[role]]
    seen = [r for r in upstream.requests() if r["path"].endswith(GENERATION_PATHS)]
    assert sum(r["retries"] + 1 for r in new) == len(seen), (
        f"the fake answered {len(seen)} generation requests, the new ledger rows account "
        f"for {sum(r['retries'] + 1 for r in new)}: "
        + json.dumps(
            [
                {k: r[k] for k in ("provider", "status", "error_code", "retries")}
                for r in sorted(new, key=lambda r: r["id"])
            ]
        )
    )

    # 5. Nothing double-counted or lost: usage/ equals the ledger, for every user.
    for role, client in clients.items():
        assert_usage_matches_ledger(client, rows[role], USERS[role])
    _marks.update({role: max((r["id"] for r in rows[role]), default=0) for role in rows})
