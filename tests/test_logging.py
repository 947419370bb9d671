"""Server errors reach the log with their traceback in production (DEBUG off), and no key does.

Django's default configuration logs a 500 to the console only with DEBUG on, and to ADMINS'
mail otherwise: with DEBUG off no 500 left a trace in the log. Each test runs the project in a
new process, with the project's own LOGGING, and reads what it wrote to stderr.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.api.support import ROOT

KEY = "sk-or-v1-env0openrouter0key0in0the0environment0000envk"

# A request to health/ whose view fails with an unexpected error: a 500 for Django to log.
FAILING_REQUEST = """
from django.test import Client
from llm_providers.api import views

def broken(self, request):
    raise RuntimeError("the database driver fell over")

views.HealthView.get = broken
response = Client(raise_request_exception=False).get("/api/llm/health/", HTTP_HOST="localhost")
print(response.status_code, response.content.decode())
"""


@pytest.fixture(scope="module")
def database(tmp_path_factory) -> str:
    """A migrated SQLite database of the module's processes (the log filter reads the keys in
    use from it), never the project's own."""
    url = f"sqlite:///{tmp_path_factory.mktemp('logging') / 'db.sqlite3'}"
    env = {**os.environ, "ALWRITY_ENV_FILE": "", "DATABASE_URL": url}
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=120
    )
    return url


@pytest.fixture(autouse=True)
def project_database(database, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", database)


def run_project(code: str, **environ: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "ALWRITY_ENV_FILE": "",
        "DJANGO_SETTINGS_MODULE": "alwrity.settings",
        "DEBUG": "false",
        **environ,
    }
    done = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup()\n{code}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done


def test_a_server_error_is_logged_with_its_traceback_with_debug_off():
    done = run_project(FAILING_REQUEST)

    assert done.stdout.startswith("500 ")
    assert "the database driver fell over" not in done.stdout  # the client sees no internals
    log = done.stderr
    assert "ERROR django.request: Internal Server Error: /api/llm/health/" in log
    assert "Traceback (most recent call last):" in log
    assert "RuntimeError: the database driver fell over" in log


def test_the_log_of_a_server_error_holds_no_key_from_the_environment():
    done = run_project(FAILING_REQUEST, OPENROUTER_API_KEY=KEY, GEMINI_API_KEY=KEY[::-1])

    assert "Traceback" in done.stderr
    for secret in (KEY, KEY[::-1]):
        assert secret not in done.stderr and secret[8:-4] not in done.stderr
        assert secret not in done.stdout


def test_a_key_in_the_message_of_a_server_error_is_masked_in_the_log():
    code = FAILING_REQUEST.replace(
        'raise RuntimeError("the database driver fell over")',
        f'raise RuntimeError("the driver was handed {KEY[:-1]}")',
    )
    done = run_project(code, OPENROUTER_API_KEY=KEY)

    assert "RuntimeError: the driver was handed" in done.stderr
    assert KEY[:-1] not in done.stderr and KEY[8:-4] not in done.stderr


def test_a_provider_failure_that_echoes_the_key_is_logged_without_it():
    # The upstream answers 500 with the key in its body; the failure reaches the client as a
    # 502 and the log, both scrubbed by the provider.
    code = f"""
import logging, responses
from llm_providers.providers.openrouter import OpenRouterProvider
from llm_providers.exceptions import LLMError
with responses.RequestsMock() as mock:
    mock.get("https://openrouter.ai/api/v1/key", status=401,
             json={{"error": {{"code": 401, "message": "bad key {KEY}"}}}})
    try:
        OpenRouterProvider({KEY!r}, key_source="the environment").test_connection()
    except LLMError as exc:
        logging.getLogger("django.request").error("Provider failure", exc_info=True)
        print(type(exc).__name__)
"""
    done = run_project(code)

    assert done.stdout.strip() == "ProviderAuthError"
    assert "Traceback" in done.stderr and "rejected the key" in done.stderr
    assert KEY not in done.stderr and KEY[8:-4] not in done.stderr


def test_debug_on_keeps_djangos_console_logging():
    done = run_project(FAILING_REQUEST, DEBUG="true")
    assert "Internal Server Error: /api/llm/health/" in done.stderr
    assert done.stderr.count("RuntimeError: the database driver fell over") == 1


def test_a_request_with_a_wrong_host_is_one_warning_line_without_a_traceback():
    # What every scanner of a server facing the internet sends: Django refuses it (400) and
    # logs it on django.security.DisallowedHost, as an error with a traceback unless told.
    code = """
from django.test import Client
response = Client().get("/api/llm/health/", HTTP_HOST="scanner.example")
print(response.status_code)
"""
    done = run_project(code)

    assert done.stdout.strip() == "400"
    lines = done.stderr.splitlines()
    refused = [line for line in lines if "django.security.DisallowedHost" in line]
    assert len(refused) == 1, done.stderr
    expected = "WARNING django.security.DisallowedHost: Invalid HTTP_HOST header: 'scanner.example'"
    assert expected in refused[0]
    assert "Traceback" not in done.stderr and " ERROR " not in done.stderr


def test_a_wrong_host_sends_no_mail_to_the_admins():
    code = """
from django.core import mail
from django.test import Client
from django.test.utils import setup_test_environment
setup_test_environment()  # the locmem mail outbox
from django.conf import settings
settings.ADMINS = [("Ops", "ops@example.com")]
Client().get("/api/llm/health/", HTTP_HOST="scanner.example")
print(len(mail.outbox))
"""
    done = run_project(code)
    assert done.stdout.strip() == "0", done.stderr
