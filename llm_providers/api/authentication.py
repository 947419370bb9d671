"""Token authentication: DRF's tokens, as ``Authorization: Token <key>`` and, for the official
OpenAI SDK, ``Authorization: Bearer <key>``.

The user's budget row is read in the same query as the token and the user (a LEFT JOIN), so a
generation's budget check needs no query of its own (``budgets.limits_for``). And each process
keeps what a token resolved to for ``LLM_AUTH_CACHE_SECONDS``, while ``freshness`` says none of
those rows changed: a token deleted, a user deactivated or a budget changed through the models
takes effect at once in every server process of the machine (otherwise within that time).
"""

import time

from django.db import connection
from django.db.models.base import ModelState
from django.utils.translation import gettext_lazy as _
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.authtoken.models import Token

from .. import freshness
from ..accounting import budgets
from ..conf import llm_settings

_MAX_CACHED = 10_000
# {token key: (token, when read, freshness stamp)}; the token holds its user and the budget.
_cache: dict[str, tuple[Token, float, tuple]] = {}


class TokenAuthentication(authentication.TokenAuthentication):
    def authenticate_credentials(self, key):
        token = _cached_token(key)
        if token is None:
            ttl = float(llm_settings.LLM_AUTH_CACHE_SECONDS)
            stamp = freshness.current()
            model = self.get_model()
            try:
                token = model.objects.select_related("user", "user__llm_budget").get(key=key)
            except model.DoesNotExist:
                raise exceptions.AuthenticationFailed(_("Invalid token.")) from None
            # Inside a transaction the rows read may still be rolled back: not kept.
            if ttl > 0 and model is Token and not connection.in_atomic_block:
                if len(_cache) >= _MAX_CACHED:
                    _cache.clear()  # many tokens at once: start over rather than grow
                _cache[key] = (token, time.monotonic(), stamp)
            # Each request gets its own copies: views may change request.user.
            token = _copy(token)
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        budgets.mark_preloaded(token.user)
        return (token.user, token)


def _cached_token(key: str) -> Token | None:
    entry = _cache.get(key)
    if entry is None:
        return None
    token, when, stamp = entry
    if stamp != freshness.current() or time.monotonic() - when >= float(
        llm_settings.LLM_AUTH_CACHE_SECONDS
    ):
        _cache.pop(key, None)
        return None
    return _copy(token)


def _copy(token: Token) -> Token:
    """The token and its user, copied; the budget row loaded with them is shared (read-only)."""
    user = _clone(token.user)
    token = _clone(token)
    # The two copies point at each other, as the rows select_related() loaded did.
    token._state.fields_cache["user"] = user
    user._state.fields_cache["auth_token"] = token
    return token


def _clone(instance):
    """A shallow copy of a model instance with its own ``_state`` and related-object cache:
    what ``copy.copy`` gives (``Model.__getstate__``), without the pickle protocol's detour
    (``__reduce_ex__``, the Django-version check of ``__setstate__``), a third of what a cached
    authentication cost."""
    clone = instance.__class__.__new__(instance.__class__)
    clone.__dict__.update(instance.__dict__)
    state = clone._state = ModelState.__new__(ModelState)
    state.__dict__.update(instance._state.__dict__)
    state.fields_cache = dict(instance._state.fields_cache)
    return clone


class BearerTokenAuthentication(TokenAuthentication):
    keyword = "Bearer"


class BearerTokenScheme(OpenApiAuthenticationExtension):
    """Documents the Bearer form in the OpenAPI schema (beside DRF's ``Token`` scheme)."""

    target_class = BearerTokenAuthentication
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "A DRF API token."}
