"""The dashboard in a real browser, at a laptop's width (1366 x 768) and a desktop's (1920 x
1080): reached from the admin index's link, nothing wider than the window, the chart and every
table shown whole, and the total the ledger's. Screenshots go to the test's ``tmp_path``.

Playwright and Debian's chromium as ``tests/test_browser.py`` runs them (its fixtures: one
Playwright thread, a fresh page per test, logged in through the login form); skipped without
/usr/bin/chromium.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db.models import Sum
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import Page, expect

from llm_providers.admin.common import usd
from llm_providers.models import LedgerEntry, UsageBudget
from tests.test_browser import (  # noqa: F401 (fixtures)
    CHROMIUM,
    UI,
    admin_ui,
    assert_styled,
    playwright_thread,
    screenshot,
    ui,
)
from tests.test_dashboard import record

pytestmark = [
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason=f"{CHROMIUM} is missing (apt-get install chromium; .ci/run installs it)",
    ),
    # The live server runs in another thread: it sees only committed data.
    pytest.mark.django_db(transaction=True),
]

SCREENS = [(1366, 768), (1920, 1080)]
TABLES = ["#daily-table", "#budget-table", "#provider-table", "#model-table"]


@pytest.fixture(autouse=True)
def fast_password_hasher(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def spend(django_user_model) -> str:
    """A month of calls by users with long names and exact, long amounts (what would push a
    column off-screen); the last 30 days' total as the page must show it."""
    alice = django_user_model.objects.create_user("alice.the-accountant@example.com")
    bob = django_user_model.objects.create_user("bob")
    UsageBudget.objects.create(
        user=alice, monthly_cost_limit=Decimal("25"), monthly_call_limit=1000
    )
    for day in range(0, 35, 3):
        record(
            alice,
            "1.234567891234",
            provider="openrouter",
            model="anthropic/claude-3.5-sonnet-20241022",
            days_ago=day,
        )
        record(bob, "0.000012345678", provider="gemini", model="gemini-2.5-flash", days_ago=day)
    record(bob, "0.5", model="meta-llama/llama-3.1-405b-instruct:free", ok=False)
    record(
        bob, "12.5", provider="huggingface", model="meta-llama/Llama-3.1-8B-Instruct", days_ago=1
    )
    since = timezone.now() - timedelta(days=29)
    since = since.replace(hour=0, minute=0, second=0, microsecond=0)
    total = LedgerEntry.objects.filter(created_at__gte=since).aggregate(c=Sum("cost"))["c"]
    return usd(total)


def check_layout(page: Page, total: str) -> dict:
    """Nothing wider than the window; the chart and tables shown, none clipped in its box;
    the total shown; returns the boxes of the chart and the daily table."""
    expect(page.locator("#total-spend")).to_have_text(total)
    expect(page.locator("#spend-per-day h2")).to_contain_text(total)
    expect(page.locator("#daily-table tfoot td").last).to_have_text(total)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), (
        "the page scrolls sideways"
    )
    chart = page.locator("svg.spend-chart")
    expect(chart).to_be_visible()
    expect(chart.locator("g.day")).to_have_count(30)
    width = page.evaluate("window.innerWidth")
    for selector in ["svg.spend-chart", *TABLES]:
        table = page.locator(selector)
        expect(table).to_be_visible()
        box = table.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width, selector
    # No table is wider than its box (which would scroll it sideways, hiding columns).
    clipped = page.evaluate(
        "[...document.querySelectorAll('.table-box')]"
        ".filter(b => b.scrollWidth > b.clientWidth).map(b => b.parentElement.id)"
    )
    assert clipped == []
    return {
        "chart": chart.bounding_box(),
        "daily": page.locator("#daily-table").bounding_box(),
    }


def test_the_dashboard_from_the_index_at_a_laptops_and_a_desktops_width(
    admin_ui: UI,  # noqa: F811 (the fixture imported above)
    live_server,
    spend: str,
    tmp_path,
):
    def open_from_index(page: Page) -> None:
        page.set_viewport_size({"width": 1366, "height": 768})
        page.goto(live_server.url + reverse("admin:index"))
        link = page.locator("#content-main .app-llm_providers a", has_text="Dashboard")
        expect(link).to_have_count(1)
        expect(page.locator("#content-main .app-llm_providers a", has_text="Cost report"))
        link.click()
        expect(page).to_have_url(live_server.url + reverse("admin:llm_providers_dashboard"))
        expect(page.locator("h1")).to_have_text("Dashboard")

    def at(width: int, height: int):
        def steps(page: Page) -> dict:
            page.set_viewport_size({"width": width, "height": height})
            page.reload()
            screenshot(page, tmp_path, f"dashboard-{width}x{height}")  # kept when it fails too
            boxes = check_layout(page, spend)
            assert_styled(page, admin_ui.traffic)
            return boxes

        return steps

    admin_ui(open_from_index)
    boxes = {size: admin_ui(at(*size)) for size in SCREENS}

    # A laptop: the day-by-day table under the chart; a desktop: beside it.
    laptop, desktop = boxes[(1366, 768)], boxes[(1920, 1080)]
    assert laptop["daily"]["y"] > laptop["chart"]["y"] + laptop["chart"]["height"]
    assert desktop["daily"]["x"] > desktop["chart"]["x"] + desktop["chart"]["width"]
