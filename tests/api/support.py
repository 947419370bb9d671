"""Helpers of the REST API tests (fixtures are in ``conftest.py``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

API = "/api/llm/"
ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct-horse-battery-staple"

# SPEC §8's field lists, spelled out here rather than taken from the serializers they check;
# the API tests and the end-to-end tests hold the responses to them.
GENERATION_FIELDS = (
    "id",
    "provider",
    "model",
    "text",
    "data",
    "usage",
    "cost",
    "attempts",
    "fallback_from",
)
LEDGER_FIELDS = [
    "id",
    "request_id",
    "provider",
    "model",
    "status",
    "error_code",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cost",
    "cost_source",
    "latency_ms",
    "retries",
    "is_fallback",
    "resumed",
    "key_owner",
    "created_at",
]


def token_client(user, keyword: str = "Token") -> APIClient:
    """A client sending ``Authorization: <keyword> <a new DRF token of user>``."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"{keyword} {Token.objects.create(user=user).key}")
    return client


def assert_error(response, status: int, code: str) -> dict:
    """``response`` has ``status`` and the SPEC's error body with ``code``; returns the error."""
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert list(body) == ["error"]
    error = body["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    return error


def project_process(code: str, **environ: str | None) -> str:
    """Run ``code`` in a new process of the project (another server worker, ``manage.py``, or a
    server of another machine), with ``environ`` over this one's (None: unset); return what it
    printed."""
    env = {**os.environ, "ALWRITY_ENV_FILE": "", "DJANGO_SETTINGS_MODULE": "alwrity.settings"}
    for name, value in environ.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    done = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()
