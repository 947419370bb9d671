"""Budget alerts (SPEC §7): when a recorded call takes a user's spend in a period across a
fraction of their monthly cost limit (``LLM_BUDGET_ALERT_THRESHOLDS``), tell them and the admins
once: the ``budget_threshold_reached`` signal and an email to the user (when they have an
address) and to ``settings.ADMINS``.

Once, also when two calls cross the same threshold at the same moment (in two processes): the
alert is a ``BudgetAlert`` row, unique per user, period and threshold, and only the call whose
INSERT succeeds sends it. An alert never fails the call that triggered it: failures are logged.
"""

from __future__ import annotations

import logging
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.core.mail import mail_admins, send_mail
from django.db import IntegrityError, transaction

from ..conf import llm_settings
from ..signals import budget_threshold_reached
from . import budgets
from .models import BudgetAlert, UsageSummary
from .money import money_str

logger = logging.getLogger(__name__)


def thresholds() -> list[Decimal]:
    """The configured fractions of the cost limit, ascending (invalid ones left out, logged)."""
    found = set()
    for value in llm_settings.LLM_BUDGET_ALERT_THRESHOLDS or ():
        try:
            fraction = Decimal(str(value))
        except ArithmeticError:
            fraction = Decimal(-1)
        if fraction <= 0 or not fraction.is_finite():
            logger.warning("LLM_BUDGET_ALERT_THRESHOLDS: %r is not a positive fraction.", value)
            continue
        found.add(fraction.quantize(Decimal("0.0001")))  # BudgetAlert.threshold's places
    return sorted(found)


def check_safely(
    user_id: int | None, period: str, *, cost_limit: Decimal | None = None
) -> list[BudgetAlert]:
    """``check``, logging instead of raising: the call it follows is already recorded."""
    try:
        return check(user_id, period, cost_limit=cost_limit)
    except Exception:
        logger.exception("Could not check the budget alerts of user %s in %s.", user_id, period)
        return []


def check(
    user_id: int | None, period: str, *, cost_limit: Decimal | None = None
) -> list[BudgetAlert]:
    """Send the alerts of the thresholds the user's spend in ``period`` has crossed and that
    were not sent yet; return the alerts this call sent. ``cost_limit``: the user's limit when
    the caller knows it (saves reading it)."""
    if user_id is None:
        return []
    fractions = thresholds()
    if not fractions:
        return []
    limit = cost_limit if cost_limit is not None else budgets.limits_for(user_id).cost
    if limit is None or limit <= 0:
        return []
    summary = UsageSummary.objects.filter(user_id=user_id, period=period).first()
    spent = budgets.counted_cost(summary) if summary is not None else None  # BYOK aside
    crossed = [f for f in fractions if spent is not None and spent >= limit * f]
    if not crossed:
        return []
    already = set(
        BudgetAlert.objects.filter(user_id=user_id, period=period).values_list(
            "threshold", flat=True
        )
    )
    sent = []
    for fraction in crossed:
        if fraction in already:
            continue
        alert = _claim(user_id, period, fraction, spent, limit)
        if alert is not None:
            _send(alert)
            sent.append(alert)
    return sent


def _claim(
    user_id: int, period: str, fraction: Decimal, spent: Decimal, limit: Decimal
) -> BudgetAlert | None:
    """Insert the alert's row, or None when another call already did (the unique constraint
    decides; the savepoint keeps a surrounding transaction usable)."""
    try:
        with transaction.atomic():
            return BudgetAlert.objects.create(
                user_id=user_id, period=period, threshold=fraction, spent=spent, cost_limit=limit
            )
    except IntegrityError:
        return None


def _send(alert: BudgetAlert) -> None:
    user = get_user_model().objects.filter(pk=alert.user_id).first()
    if user is None:
        return
    details = {
        "user": user,
        "period": alert.period,
        "threshold": alert.threshold,
        "spent": alert.spent,
        "cost_limit": alert.cost_limit,
    }
    for receiver, result in budget_threshold_reached.send_robust(sender=BudgetAlert, **details):
        if isinstance(result, Exception):
            logger.error("A receiver of budget_threshold_reached (%r) failed: %r", receiver, result)
    subject, body = _message(user, alert)
    try:
        address = getattr(user, "email", "") or ""
        if address:
            send_mail(subject, body, None, [address])
        mail_admins(subject, body)
    except Exception:
        logger.exception("Could not email the budget alert of user %s (%s).", user.pk, subject)


def _message(user, alert: BudgetAlert) -> tuple[str, str]:
    percent = f"{alert.threshold * 100:.0f}%"
    name = user.get_username()
    subject = f"LLM budget: {name} has spent {percent} of the monthly limit ({alert.period})"
    body = (
        f"{name} has spent ${money_str(alert.spent)} of the monthly LLM budget of "
        f"${money_str(alert.cost_limit)} in {alert.period} (UTC), crossing {percent}.\n"
        f"The budget resets at {budgets.resets_at(alert.period)}. Calls that would exceed it "
        "are refused; an administrator can change the limit under Usage budgets in the admin.\n"
    )
    return subject, body
