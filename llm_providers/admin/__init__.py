"""Django admin of llm_providers: custom providers and keys (``keys``), the ledger and usage
summaries (``usage``), prices and budgets (``budgets``), and the cost report page (``report``).
Importing this package (Django's admin autodiscovery does) registers them all."""

from . import budgets, keys, report, usage  # noqa: F401 (registers the ModelAdmins)
