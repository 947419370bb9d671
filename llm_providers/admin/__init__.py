"""Django admin of llm_providers: custom providers and keys (``keys``), the ledger and usage
summaries (``usage``), prices and budgets (``budgets``), the cost report page (``report``), the
dashboard (``dashboard``), and the links to those two pages in the app list (``links``).
Importing this package (Django's admin autodiscovery does) registers them all."""

from . import budgets, dashboard, keys, links, report, usage  # noqa: F401 (registers them)
