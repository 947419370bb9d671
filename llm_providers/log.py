"""A logging filter that masks keys in log records (SPEC §6: no key in a log line).

Install it on the handlers, not on a logger: a logger's filters see only the records logged on
that very logger, not those of its children (``llm_providers.providers.base``…) nor Django's
tracebacks of server errors, while a handler's filters see every record it writes::

    LOGGING = {
        "filters": {"secrets": {"()": "llm_providers.log.SecretsFilter"}},
        "handlers": {"console": {"class": "logging.StreamHandler", "filters": ["secrets"]}},
        ...
    }
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Iterable

from .scrubbing import Scrubber


class SecretsFilter(logging.Filter):
    """Mask every piece (8 characters or more) of the keys in use in a record's message, its
    traceback and its stack: see ``llm_providers.scrubbing``. It never drops a record.

    Extension point: override ``secrets()`` to mask more than the keys the providers resolve.
    """

    def __init__(self, name: str = ""):
        super().__init__(name)
        self._scrubber = Scrubber(())
        self._secrets: frozenset[str] = frozenset()
        self._lock = threading.Lock()
        self._busy = threading.local()

    def secrets(self) -> Iterable[str]:
        """The secrets to mask: every provider's key in use (stored in the database or set in
        the environment), as ``llm_providers.keys`` resolves them (its per-process copy), and
        every user's own active key (SPEC §12.2)."""
        from .keys import resolve_keys, users_secrets  # not at import: LOGGING is read early

        return [key.secret for key in resolve_keys().values()] + users_secrets()

    def filter(self, record: logging.LogRecord) -> bool:
        scrub = self.scrubber()
        if not scrub:
            return True
        try:
            message = record.getMessage()
        except Exception:  # arguments that do not fit: the handler reports it when it writes
            message = None
        if message is not None and (clean := scrub(message)) != message:
            record.msg, record.args = clean, ()
        if record.exc_info and not record.exc_text:
            # What a Formatter would write (it keeps exc_text once set), masked.
            record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        return True

    def scrubber(self) -> Scrubber:
        """The scrubber of the current secrets; rebuilt only when they change. While they are
        read (a query, which may log itself) or when they cannot be (apps not ready, an async
        context, a broken connection) the last one serves."""
        if getattr(self._busy, "reading", False):
            return self._scrubber
        self._busy.reading = True
        try:
            secrets = frozenset(self.secrets())
        except Exception:  # logging must never fail: at least the configured keys
            try:
                secrets = self._secrets | frozenset(configured_secrets())
            except Exception:
                return self._scrubber
        finally:
            self._busy.reading = False
        if secrets != self._secrets:
            scrubber = Scrubber(secrets)
            with self._lock:
                self._secrets, self._scrubber = secrets, scrubber
        return self._scrubber


def configured_secrets() -> list[str]:
    """The built-in providers' keys from Django settings or the environment: what can be
    masked when the database (the stored keys) cannot be read."""
    from .registry import BUILTIN_PROVIDERS  # not at import: LOGGING is read early

    return [key for cls in BUILTIN_PROVIDERS if (key := cls.configured_key())]
