"""Accounting: the ledger and per-user summaries (``ledger``), budgets, prices, money and reports.

It knows nothing of providers or HTTP: the router hands it the attempts of a request, and it
records them in one transaction.
"""
