"""The fake upstream in this process, for tests that drive a live server with the ``openai``
SDK: the server's calls go to the fake over real HTTP (``responses`` lets them through)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from django.core.signals import request_started
from openai import OpenAI

from fake_upstream import FakeUpstream
from tests.conftest import FAKE_KEYS, KEY_SETTINGS


@contextlib.contextmanager
def fake_upstream(settings, http, *providers: str) -> Iterator[FakeUpstream]:
    """A running fake that the built-in providers' base URLs point at, with keys for
    ``providers`` (the others stay unconfigured)."""
    with FakeUpstream() as fake:
        http.add_passthru(fake.url)
        for name, url in fake.base_urls.items():
            setattr(settings, name, url)
        for name in providers:
            setattr(settings, KEY_SETTINGS[name], FAKE_KEYS[name])
        yield fake


@contextlib.contextmanager
def sdk_client(live_server, token: str, **options) -> Iterator[OpenAI]:
    """The official SDK on the live server's ``v1`` (its own defaults unless ``options``)."""
    client = OpenAI(base_url=f"{live_server.url}/api/llm/v1", api_key=token, **options)
    try:
        yield client
    finally:
        client.close()


@contextlib.contextmanager
def requests_served(path: str) -> Iterator[list[str]]:
    """The methods of the requests for ``path`` that this process's servers began to answer
    (Django's ``request_started``, sent by the live server's thread), as they come."""
    seen: list[str] = []

    def count(sender, environ=None, **kwargs):
        if environ is not None and environ.get("PATH_INFO") == path:
            seen.append(environ.get("REQUEST_METHOD", ""))

    request_started.connect(count, weak=False)
    try:
        yield seen
    finally:
        request_started.disconnect(count)
