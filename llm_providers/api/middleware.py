"""Django's session and message middleware, with the session and the message storage created on
first use instead of for every request.

API clients authenticate with a token and send no cookies: nothing reads their session or
their messages (only the admin and session-authenticated callers do), yet Django builds both
for every request; the message storage alone (a cookie and a session storage, a cookie signer,
each class imported by name) was an eighth of a token-authenticated call's CPU in Django and
DRF. Here each is a lazy object; a request that never touched it leaves it unbuilt, and its
response is left as Django's middleware would have left it: untouched. Anything that does use
them (``request.session[...]``, ``messages.info(request, ...)``, the admin's templates) builds
them on the spot and gets Django's behaviour, response handling included.

Used in ``MIDDLEWARE`` in place of Django's (they are subclasses, so the admin's and auth's
system checks still find them).
"""

from __future__ import annotations

from functools import partial

from django.conf import settings
from django.contrib.messages.middleware import MessageMiddleware as DjangoMessageMiddleware
from django.contrib.messages.storage import default_storage
from django.contrib.sessions.middleware import SessionMiddleware as DjangoSessionMiddleware
from django.utils.functional import SimpleLazyObject, empty


def _unused(value) -> bool:
    """A lazy object of ours that nothing has touched."""
    return isinstance(value, SimpleLazyObject) and value._wrapped is empty


class SessionMiddleware(DjangoSessionMiddleware):
    def process_request(self, request):
        session_key = request.COOKIES.get(settings.SESSION_COOKIE_NAME)
        if session_key is None:
            request.session = SimpleLazyObject(self.SessionStore)
        else:
            # A cookie, valid or not, is Django's business (an invalid one is deleted).
            request.session = self.SessionStore(session_key)

    def process_response(self, request, response):
        # No cookie and never touched: not accessed (no Vary: Cookie), not modified, empty, so
        # Django's process_response would neither save, set nor delete anything.
        if _unused(getattr(request, "session", None)):
            return response
        return super().process_response(request, response)


class MessageMiddleware(DjangoMessageMiddleware):
    def process_request(self, request):
        request._messages = SimpleLazyObject(partial(default_storage, request))

    def process_response(self, request, response):
        # A storage nobody added to or read stores nothing (BaseStorage.update does nothing
        # unless it was used or got new messages).
        if _unused(getattr(request, "_messages", None)):
            return response
        return super().process_response(request, response)
