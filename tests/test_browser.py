"""The admin in a real browser: Playwright drives Debian's chromium against ``live_server``.

Logs in, adds an OpenRouter key through the add form and checks that only its mask is ever
shown, runs the "Test connection" action, and opens the cost report with its chart. Each page
is also checked to be styled (the admin's CSS served and applied) and saved as a screenshot in
the test's ``tmp_path``.

Chromium comes from Debian (``apt-get install chromium``, which ``.ci/run`` does when it is
missing): Playwright's own browser download cannot work here. Without /usr/bin/chromium the
module is skipped.

Playwright runs in a thread of its own (``ui``). Its sync API keeps an asyncio loop running in
the thread that uses it, and in such a thread Django refuses database calls and hands out
other connection objects than the test database's own (asgiref locals follow the loop's
context there): pytest-django's flush after a test would then recreate the content types and
break the next test's serialized rollback. So the test thread touches only the database, and
the browser steps are functions run in the Playwright thread.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import TypeVar

import pytest
from django.urls import reverse
from playwright.sync_api import Browser, Page, Response, expect, sync_playwright

from llm_providers.accounting import ledger
from llm_providers.models import APIKey, LedgerEntry
from llm_providers.results import Attempt, Completion, Usage
from tests.conftest import OPENROUTER_URL

CHROMIUM = Path("/usr/bin/chromium")
# Headless as root in a sandboxed machine with no network: no sandbox, no GPU, and none of
# chromium's own background connections (they would only be refused).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
STEP_TIMEOUT_MS = 5_000  # any one click, fill or wait
NAVIGATION_TIMEOUT_MS = 10_000
LAUNCH_TIMEOUT_MS = 20_000
UI_CALL_TIMEOUT_S = 60  # a backstop: every step inside has its own, shorter timeout

# Shaped like a real OpenRouter key: "sk-or-v1-" and 40 characters.
SECRET = "sk-or-v1-" + "browser0test0key0" + "0" * 19 + "wxyz"
MASK = "sk-or-…wxyz"
PASSWORD = "browser-test-password"

pytestmark = [
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason=f"{CHROMIUM} is missing (apt-get install chromium; .ci/run installs it)",
    ),
    # The live server runs in another thread: it sees only committed data.
    pytest.mark.django_db(transaction=True),
]

T = TypeVar("T")


@pytest.fixture(autouse=True)
def fast_password_hasher(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(scope="module")
def playwright_thread() -> Iterator[tuple[ThreadPoolExecutor, Browser]]:
    """One thread for everything Playwright (its objects belong to the thread that made them),
    and the browser, launched there."""
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="playwright")

    def launch():
        playwright = sync_playwright().start()
        try:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=LAUNCH_TIMEOUT_MS
            )
        except BaseException:
            playwright.stop()
            raise
        return playwright, browser

    def close():
        try:
            browser.close()
        finally:
            playwright.stop()

    try:
        playwright, browser = executor.submit(launch).result(timeout=UI_CALL_TIMEOUT_S)
        yield executor, browser
        executor.submit(close).result(timeout=UI_CALL_TIMEOUT_S)
    finally:
        executor.shutdown(wait=False)


class Traffic:
    """The responses a page received: failed ones, and the stylesheets."""

    def __init__(self) -> None:
        self.failed: list[str] = []
        self.stylesheets: list[str] = []

    def __call__(self, response: Response) -> None:
        if response.status >= 400:
            self.failed.append(f"{response.status} {response.url}")
        elif response.request.resource_type == "stylesheet":
            self.stylesheets.append(response.url)


class UI:
    """A fresh browser page; ``ui(steps)`` runs ``steps(page)`` in the Playwright thread and
    returns what it returns (or raises what it raised)."""

    def __init__(self, executor: ThreadPoolExecutor, page: Page, traffic: Traffic) -> None:
        self.executor = executor
        self.page = page
        self.traffic = traffic

    def __call__(self, steps: Callable[[Page], T]) -> T:
        return self.executor.submit(steps, self.page).result(timeout=UI_CALL_TIMEOUT_S)


@pytest.fixture
def ui(playwright_thread) -> Iterator[UI]:
    executor, browser = playwright_thread
    traffic = Traffic()

    def open_page() -> Page:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(STEP_TIMEOUT_MS)
        context.set_default_navigation_timeout(NAVIGATION_TIMEOUT_MS)
        page = context.new_page()
        page.on("response", traffic)
        return page

    page = executor.submit(open_page).result(timeout=UI_CALL_TIMEOUT_S)
    yield UI(executor, page, traffic)
    executor.submit(page.context.close).result(timeout=UI_CALL_TIMEOUT_S)


@pytest.fixture
def admin_ui(ui: UI, live_server, django_user_model) -> UI:
    """``ui``, logged into the admin as a new superuser through the login form."""
    django_user_model.objects.create_superuser("admin", "admin@example.com", PASSWORD)

    def log_in(page: Page) -> None:
        page.goto(f"{live_server.url}/admin/login/?next=/admin/")
        page.fill("#id_username", "admin")
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit]")
        expect(page.locator("#user-tools")).to_contain_text("admin")

    ui(log_in)
    return ui


def assert_styled(page: Page, traffic: Traffic) -> None:
    """The admin's CSS was served and applied, and nothing the pages loaded failed."""
    assert traffic.failed == []
    assert any("/static/admin/css/base.css" in url for url in traffic.stylesheets)
    header = page.evaluate("getComputedStyle(document.getElementById('header')).backgroundColor")
    assert header not in ("", "transparent", "rgba(0, 0, 0, 0)")


def screenshot(page: Page, tmp_path: Path, name: str) -> None:
    page.screenshot(path=tmp_path / f"{name}.png", full_page=True)


def test_add_a_key_and_see_only_its_mask(admin_ui: UI, live_server, tmp_path):
    def add_key(page: Page) -> None:
        page.goto(live_server.url + reverse("admin:llm_providers_apikey_add"))
        page.select_option("#id_provider", "openrouter")
        page.fill("#id_label", "prod")
        page.locator("#id_secret").press_sequentially(SECRET)
        assert page.get_attribute("#id_secret", "type") == "password"
        screenshot(page, tmp_path, "1-add-key")
        page.click("input[name=_save]")

    def changelist(page: Page) -> str:
        # Saved: back on the change list, which names the key by its mask only.
        expect(page.locator("ul.messagelist li.success")).to_contain_text("was added successfully")
        expect(page.locator("#result_list tbody tr")).to_have_count(1)
        expect(page.locator("#result_list td.field-mask")).to_have_text(MASK)
        assert_styled(page, admin_ui.traffic)
        screenshot(page, tmp_path, "2-key-changelist")
        return page.content()

    def change_page(page: Page) -> str:
        page.goto(live_server.url + reverse("admin:llm_providers_apikey_change", args=[key.pk]))
        expect(page.locator(".field-mask .readonly")).to_have_text(MASK)
        expect(page.locator(".field-secret .help")).to_contain_text(
            f"Leave empty to keep the current key ({MASK})"
        )
        assert page.input_value("#id_secret") == ""
        assert_styled(page, admin_ui.traffic)
        screenshot(page, tmp_path, "3-key-change")
        return page.content()

    admin_ui(add_key)
    changelist_html = admin_ui(changelist)
    key = APIKey.objects.get()
    assert (key.provider, key.label, key.active, key.secret()) == (
        "openrouter",
        "prod",
        True,
        SECRET,
    )
    change_html = admin_ui(change_page)

    for html in (changelist_html, change_html):
        assert MASK in html
        assert SECRET not in html
        assert SECRET[len("sk-or-v1-") : -4] not in html  # nor the key's middle
        assert key.encrypted_secret not in html


@pytest.mark.parametrize(
    ("status", "body", "level", "text"),
    [
        (200, {"data": {"label": "sk-or-v1-bro...xyz"}}, "success", "OpenRouter accepted"),
        # An upstream that echoes the key back in its error must not get it onto the page.
        (
            401,
            {"error": {"code": 401, "message": f"No auth credentials found for {SECRET}"}},
            "error",
            "HTTP 401",
        ),
    ],
    ids=["accepted", "rejected"],
)
def test_test_connection_action_shows_a_message_without_the_key(
    admin_ui: UI, live_server, http, tmp_path, status, body, level, text
):
    key = APIKey(provider="openrouter", label="prod", active=True)
    key.set_secret(SECRET)
    key.save()
    # The action runs in the live server's thread; ``responses`` patches requests everywhere.
    http.get(f"{OPENROUTER_URL}/key", json=body, status=status)

    def test_connection(page: Page) -> tuple[str, str]:
        page.goto(live_server.url + reverse("admin:llm_providers_apikey_changelist"))
        page.check(f"input.action-select[value='{key.pk}']")
        page.select_option("select[name=action]", "test_connection")
        page.click("button[name=index]")
        message = page.locator(f"ul.messagelist li.{level}")
        expect(message).to_have_count(1)
        expect(message).to_contain_text(f"OpenRouter key #{key.pk} 'prod' ({MASK}): ")
        expect(message).to_contain_text(text)
        assert_styled(page, admin_ui.traffic)
        screenshot(page, tmp_path, f"4-test-connection-{level}")
        return message.inner_text(), page.content()

    message, html = admin_ui(test_connection)

    assert SECRET not in message
    assert SECRET not in html
    assert len(http.calls) == 1
    assert http.calls[0].request.headers["Authorization"] == f"Bearer {SECRET}"


def record(user, provider: str, model: str, cost: str) -> None:
    """One successful call of 19 tokens, recorded as the gateway records it."""
    used = Usage(10, 9, 19, Decimal(cost))
    attempt = Attempt(
        provider=provider,
        model=model,
        is_fallback=False,
        completion=Completion("text", provider, model, used),
        requests=1,
        requested_model=model,
    )
    ledger.record_call(f"req-{LedgerEntry.objects.count()}", user.pk, [attempt])


def test_cost_report_shows_the_totals_and_a_chart(
    admin_ui: UI, live_server, django_user_model, tmp_path
):
    alice = django_user_model.objects.create_user("alice")
    bob = django_user_model.objects.create_user("bob")
    record(alice, "openrouter", "openai/gpt-4o", "0.50")
    record(alice, "gemini", "gemini-2.5-flash", "0.25")
    record(bob, "openrouter", "openai/gpt-4o", "1.00")
    record(bob, "gemini", "gemini-2.5-flash", "0.125")
    # key, calls, tokens, cost, share; largest cost first.
    expected = {
        "user": [("bob", "2", "38", "$1.125", "60.0%"), ("alice", "2", "38", "$0.75", "40.0%")],
        "provider": [
            ("openrouter", "2", "38", "$1.5", "80.0%"),
            ("gemini", "2", "38", "$0.375", "20.0%"),
        ],
    }

    def report(page: Page) -> dict[str, list[float]]:
        page.goto(live_server.url + reverse("admin:llm_providers_cost_report"))
        # This month by default: every call above.
        expect(page.locator(".cost-report-summary")).to_contain_text(
            "$1.875 for 4 successful calls and 76 tokens."
        )
        widths = {}
        for group_by, rows in expected.items():
            table = page.locator(f"#cost-by-{group_by}")
            body = table.locator("tbody tr")
            expect(body).to_have_count(len(rows))
            for index, row in enumerate(rows):
                expect(body.nth(index).locator("td")).to_have_text(list(row))
            expect(table.locator("tfoot tr.total td")).to_have_text(
                ["Total", "4", "76", "$1.875", "100.0%"]
            )

            # The chart: one visible bar per row, labelled with its key and cost.
            chart = table.locator("svg.cost-chart")
            expect(chart).to_be_visible()
            bars = chart.locator("rect.bar")
            expect(bars).to_have_count(len(rows))
            widths[group_by] = []
            for index in range(len(rows)):
                expect(bars.nth(index)).to_be_visible()
                box = bars.nth(index).bounding_box()
                assert box is not None and box["width"] > 0 and box["height"] > 0
                widths[group_by].append(box["width"])
            expect(chart.locator("text.bar-key")).to_have_text([row[0] for row in rows])
            expect(chart.locator("text.bar-value")).to_have_text([row[3] for row in rows])
        assert_styled(page, admin_ui.traffic)
        screenshot(page, tmp_path, "5-cost-report")
        return widths

    widths = admin_ui(report)

    for group_by, rows in expected.items():
        # Bars are as long as their cost, relative to the largest.
        costs = [Decimal(row[3].removeprefix("$")) for row in rows]
        measured = widths[group_by]
        assert measured[1] / measured[0] == pytest.approx(float(costs[1] / costs[0]), rel=0.02)
