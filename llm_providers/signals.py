"""The app's signals, for projects that act on what it does.

``budget_threshold_reached``: a user's spend in a billing period crossed a fraction of their
monthly cost limit (``LLM_BUDGET_ALERT_THRESHOLDS``, SPEC §7). Sent once per user, period and
threshold, after the call that crossed it was recorded. Keyword arguments: ``user`` (the user
object), ``period`` (``YYYY-MM``), ``threshold`` (``Decimal``, e.g. ``0.8``), ``spent`` and
``cost_limit`` (``Decimal`` USD). The sender is ``llm_providers.accounting.alerts``'s
``BudgetAlert`` model. Receivers' exceptions are logged and never fail the call.
"""

from django.dispatch import Signal

budget_threshold_reached = Signal()
