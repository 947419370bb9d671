"""The app's pages that belong to no model, the dashboard and the cost report, listed with its
models: on the admin index, the app's index and the navigation sidebar, for staff who may view
the ledger (the pages' own permission).

Those three places list what ``AdminSite.get_app_list`` returns, so it is wrapped (as
``common.add_page`` wraps ``get_urls``) to add the pages to the app's entry, in Django's shape for a
model the user may only view.
"""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse

from ..models import LedgerEntry
from .common import LEDGER_VIEW_PERMISSION

APP_LABEL = LedgerEntry._meta.app_label
# (name shown, object name: the row's CSS class and id, url name), in the order listed.
PAGES = [
    ("Dashboard", "Dashboard", "admin:llm_providers_dashboard"),
    ("Cost report", "CostReport", "admin:llm_providers_cost_report"),
]


def page_entries(site: admin.AdminSite) -> list[dict]:
    """The pages as app list entries: viewable, nothing to add or change."""
    return [
        {
            "name": name,
            "object_name": object_name,
            "perms": {"add": False, "change": False, "delete": False, "view": True},
            "admin_url": reverse(url_name, current_app=site.name),
            "add_url": None,
            "view_only": True,
        }
        for name, object_name, url_name in PAGES
    ]


def add_page_links(site: admin.AdminSite) -> None:
    """List the pages first in the app's entry of ``site``'s app list, for users with
    ``LEDGER_VIEW_PERMISSION``."""
    site_app_list = site.get_app_list

    def get_app_list(request: HttpRequest, app_label: str | None = None) -> list[dict]:
        apps = site_app_list(request, app_label)
        if request.user.has_perm(LEDGER_VIEW_PERMISSION):
            for app in apps:
                if app["app_label"] == APP_LABEL:
                    app["models"][:0] = page_entries(site)
        return apps

    site.get_app_list = get_app_list


add_page_links(admin.site)
