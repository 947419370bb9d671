"""The HTTP transport under the providers: one pooled ``requests.Session`` per process.

A provider describes each upstream request as an ``HTTPCall``; ``send`` prepares it and hands it
to ``Session.send`` as requests ships them. The session is shared by every call and every user of
the process, so it keeps no cookies and reads no proxy settings from the environment.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.cookiejar import DefaultCookiePolicy
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ReadTimeoutError

from ..conf import llm_settings


@dataclass(frozen=True)
class HTTPCall:
    """One upstream request as a provider builds it."""

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    json: Any = None
    params: Mapping[str, str] | None = None


_session_lock = threading.Lock()
_session: requests.Session | None = None


def http_session() -> requests.Session:
    """The process's pooled session: one TLS handshake per upstream host, not per call.

    Its pool holds ``LLM_HTTP_POOL_SIZE`` connections per host (as many as a server's threads
    may use at once); requests' own retries are off, as ``Provider.send`` decides on retries.
    """
    global _session
    if _session is None:
        with _session_lock:
            if _session is None:
                session = requests.Session()
                adapter = HTTPAdapter(
                    pool_maxsize=int(llm_settings.LLM_HTTP_POOL_SIZE), max_retries=0
                )
                session.mount("https://", adapter)
                session.mount("http://", adapter)
                # Requests of all users share this session: keep no cookies between them.
                session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
                # Settings are the only proxy configuration; HTTP(S)_PROXY is not consulted.
                session.trust_env = False
                _session = session
    return _session


def send(
    call: HTTPCall, *, timeout: float | tuple[float, float], stream: bool
) -> requests.Response:
    """Send ``call`` on the shared session; raises requests' exceptions as they are.

    The request is prepared from the call and the session's default headers (requests'
    ``Request.prepare``), then sent with ``Session.send``, which follows redirects and reads the
    body unless streaming. ``timeout`` is requests' (connect, read) pair, or one value for both.
    ``Session.request`` would also merge the session's cookies, auth and
    hooks into it: this session has none, and skipping the merge saves a tenth of a call's CPU.
    """
    session = http_session()
    prepared = requests.Request(
        call.method,
        call.url,
        headers={**session.headers, **call.headers},
        json=call.json,
        params=call.params,
    ).prepare()
    return session.send(prepared, timeout=timeout, stream=stream)


def timed_out(exc: BaseException) -> bool:
    """Whether a requests error is a timeout.

    A read that times out while the body is read (every read of a stream, and the body of a
    non-streamed answer) reaches us as ``ConnectionError(ReadTimeoutError)``, not as ``Timeout``.
    """
    return isinstance(exc, requests.exceptions.Timeout) or any(
        isinstance(arg, ReadTimeoutError) for arg in exc.args
    )
