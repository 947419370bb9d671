"""Helpers of the fleet end-to-end tests (test_fleet.py): a database of the fleet's own, the
admin driven over HTTP by a staff session, users' limits and an admin made with ``manage.py
shell``, and a poller that asks a server every few milliseconds and keeps the answers with
their times.
"""

from __future__ import annotations

import os
import re
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.e2e.crash_support import _marked_json
from tests.e2e.harness import POSTGRES_SCHEMES, manage
from tests.test_package import AdminSession as _AdminSession


def on_postgresql() -> bool:
    """Whether the session's database (``DATABASE_URL``) is PostgreSQL."""
    scheme = urllib.parse.urlsplit(os.environ.get("DATABASE_URL", "")).scheme
    return scheme in POSTGRES_SCHEMES


def migrate(env: dict[str, str]) -> None:
    """Migrate the database of ``env`` once, before its servers start side by side (their own
    ``migrate`` then has nothing to do and cannot race)."""
    manage(
        env, "from django.core.management import call_command; call_command('migrate', verbosity=0)"
    )


# --- Users ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Admin:
    username: str
    password: str
    token: str


def create_admin(env: dict[str, str], prefix: str) -> Admin:
    """A superuser with a password (for the admin's login form) and a DRF token (for the
    staff API), made by ``manage.py shell`` in the server's environment."""
    import secrets

    username = f"{prefix}-{secrets.token_hex(4)}"
    password = secrets.token_urlsafe(16)
    code = f"""
import json
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
user = get_user_model().objects.create_superuser({username!r}, password={password!r})
print("E2E_ADMIN=" + json.dumps(Token.objects.create(user=user).key))
"""
    token = _marked_json(manage(env, code), "E2E_ADMIN=")
    return Admin(username, password, token)


def set_limits(
    env: dict[str, str], user_id: int, *, cost: str | None = None, calls: int | None = None
) -> None:
    """Give the user these monthly limits (None: unlimited), replacing any they had."""
    code = f"""
from llm_providers.models import UsageBudget
UsageBudget.objects.update_or_create(
    user_id={user_id},
    defaults={{"monthly_cost_limit": {cost!r}, "monthly_call_limit": {calls!r}}},
)
"""
    manage(env, code)


# --- The admin over HTTP -------------------------------------------------------------------------

_CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


class AdminSession(_AdminSession):
    """The package test's admin session (cookies, login form) that also submits the admin's
    forms: a delete confirmation, a change list's action."""

    def submit(self, path: str, fields: dict[str, Any]) -> tuple[int, str]:
        """GET the admin page at ``path``, then POST ``fields`` to it with the page's CSRF
        token, following the admin's redirect; returns the last page's status and text."""
        status, page = self.get(path)
        assert status == 200, (path, status, page[:2000])
        found = _CSRF.search(page)
        assert found, f"{path}: no CSRF token on the page"
        data = urllib.parse.urlencode(
            {"csrfmiddlewaretoken": found.group(1), **fields}, doseq=True
        ).encode()
        return self._open(urllib.request.Request(self.base + path, data))

    def delete_token(self, user_id: int) -> str:
        """Delete the user's DRF token on the admin's confirmation page; the page it ends on."""
        status, page = self.submit(
            f"/admin/authtoken/tokenproxy/{user_id}/delete/", {"post": "yes"}
        )
        assert status == 200 and "deleted successfully" in page, (status, page[:2000])
        return page

    def key_action(self, action: str, key_id: int) -> str:
        """Run the API key list's ``action`` ("activate", "deactivate") on one key."""
        status, page = self.submit(
            "/admin/llm_providers/apikey/",
            {"action": action, "_selected_action": [key_id], "index": "0", "select_across": "0"},
        )
        assert status == 200, (status, page[:2000])
        return page


# --- Polling -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    sent: float  # time.time() when the request went out
    answered: float  # and when its answer came
    value: Any


class Poller:
    """Call ``ask()`` every ``interval`` seconds (one call at a time) in a thread until
    stopped, keeping each answer with its times (wall clock: the fake upstream's records use
    it too)."""

    def __init__(self, ask: Callable[[], Any], interval: float = 0.05):
        self.ask = ask
        self.interval = interval
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Poller:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.is_set():
            sent = time.time()
            value = self.ask()
            self.samples.append(Sample(sent, time.time(), value))
            self._stop.wait(max(0.0, self.interval - (time.time() - sent)))

    def wait_for(self, count: int, check: Callable[[Any], bool], timeout: float = 10.0) -> None:
        """Wait (bounded) until ``count`` answers satisfy ``check``."""
        deadline = time.monotonic() + timeout
        while sum(check(s.value) for s in list(self.samples)) < count:
            assert time.monotonic() < deadline, f"not {count} such answers in {timeout:g}s"
            time.sleep(0.02)

    def wait_while_since(self, since: float, check: Callable[[Any], bool], timeout: float) -> None:
        """Wait (bounded) until an answer sent after ``since`` does not satisfy ``check``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(s.sent > since and not check(s.value) for s in list(self.samples)):
                return
            time.sleep(0.02)
