"""Token authentication: DRF's tokens, as ``Authorization: Token <key>`` and, for the official
OpenAI SDK, ``Authorization: Bearer <key>``.

The token, its user and the user's budget come in one query (a join), so a generation's budget
check needs no query of its own (``budgets.limits_for``).
"""

from django.utils.translation import gettext_lazy as _
from rest_framework import authentication, exceptions

from ..accounting import budgets


class TokenAuthentication(authentication.TokenAuthentication):
    """DRF's ``TokenAuthentication``, loading the user's budget with the token."""

    def authenticate_credentials(self, key):
        model = self.get_model()
        try:
            token = model.objects.select_related("user", "user__llm_budget").get(key=key)
        except model.DoesNotExist:
            raise exceptions.AuthenticationFailed(_("Invalid token.")) from None
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        budgets.mark_preloaded(token.user)
        return (token.user, token)


class BearerTokenAuthentication(TokenAuthentication):
    """The same tokens sent as ``Bearer``: what the ``openai`` SDK sends as its ``api_key``."""

    keyword = "Bearer"
