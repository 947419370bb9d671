"""Logging filters of the ``alwrity`` project (its ``LOGGING`` setting installs them)."""

from __future__ import annotations

import logging


class RefusedRequestFilter(logging.Filter):
    """Write a request Django refused as suspicious (``django.security.*``: a ``Host`` not in
    ``ALLOWED_HOSTS``, a malformed body) as one warning line, without its traceback.

    Django logs each of them as an error with a traceback, so a server that faces the internet
    would write a traceback, and mail ``ADMINS``, for every scanner that sends a wrong ``Host``.
    The client's mistake is not a server error. Install it on the handler of the
    ``django.security`` logger, which does not propagate to the handlers of server errors.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("django.security."):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info, record.exc_text = None, None
        return True
