"""The admin in a real browser: Playwright drives Debian's chromium against ``live_server``.

Logs in, adds an OpenRouter key through the add form and checks that only its mask is ever
shown, runs the "Test connection" action, reads the ledger at a laptop's width (1366 x 768:
the cost column inside the window, the numbers the ledger's), checks that the app's other
lists fit that width, and opens the cost report grouped by user, provider, model and day (each
page's table and chart against sums made from the ledger). Each page is also checked to be
styled (the admin's CSS served and applied) and saved as a screenshot in the test's
``tmp_path``.

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

import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlencode

import pytest
from django.urls import reverse
from playwright.sync_api import Browser, Page, Response, expect, sync_playwright

from llm_providers import registry
from llm_providers.accounting import ledger
from llm_providers.accounting.money import money_str
from llm_providers.exceptions import ProviderUnavailable
from llm_providers.models import APIKey, LedgerEntry, UsageBudget
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


def record(
    user,
    provider: str,
    model: str,
    cost: str,
    *,
    ok: bool = True,
    fallback: bool = False,
    tokens: tuple[int, int] = (10, 9),
) -> None:
    """One attempt (19 tokens unless told), recorded as the gateway records it."""
    used = Usage(tokens[0], tokens[1], sum(tokens), Decimal(cost))
    attempt = Attempt(
        provider=provider,
        model=model,
        is_fallback=fallback,
        completion=Completion("text", provider, model, used) if ok else None,
        error=None if ok else ProviderUnavailable("upstream answered HTTP 502", provider=provider),
        partial_usage=None if ok else used,
        requests=1,
        requested_model=model,
    )
    ledger.record_call(f"req-{LedgerEntry.objects.count()}", user and user.pk, [attempt])


LAPTOP = {"width": 1366, "height": 768}
DESKTOP = {"width": 1920, "height": 1080}


@pytest.fixture
def laptop_ledger(django_user_model, settings) -> None:
    """Ledger rows as wide as real ones get: a long user name, long model ids, a custom
    provider's label, a fallback, failures, a cost to the picodollar."""
    settings.LLM_CUSTOM_PROVIDERS = [
        {
            "name": "ollama",
            "label": "Local Ollama",
            "base_url": "http://127.0.0.1:11434/v1",
            "default_model": "llama3.2",
            "requires_key": False,
        }
    ]
    alice = django_user_model.objects.create_user("alice")
    carol = django_user_model.objects.create_user("carol.longname@subdomain.example.org")
    record(alice, "openrouter", "anthropic/claude-3.5-sonnet-20241022", "0.0636945")
    record(carol, "gemini", "gemini-2.5-pro-preview-06-05", "0.000000123457", fallback=True)
    record(carol, "huggingface", "meta-llama/Meta-Llama-3.1-405B-Instruct", "1.25", ok=False)
    record(None, "ollama", "llama3.2", "0", tokens=(1234, 56789))
    record(alice, "openrouter", "openai/gpt-4o", "0.5", ok=False, fallback=True)


def money(value: Decimal) -> str:
    return "$" + money_str(value)


def assert_within(page: Page, selector: str, width: int) -> None:
    """Every element ``selector`` matches ends inside the window's width and, on a change
    list, inside the table's box (which scrolls what is wider: the cost column used to end at
    1,328 px, hidden under the filters)."""
    right = width
    results = page.locator("#changelist .results")
    if results.count():
        box = results.bounding_box()
        assert box is not None
        right = min(right, box["x"] + box["width"])
    boxes = [element.bounding_box() for element in page.locator(selector).all()]
    assert boxes, selector
    for box in boxes:
        assert box is not None and box["width"] > 0, selector
        assert box["x"] >= 0 and box["x"] + box["width"] <= right + 0.5, (selector, box, right)


def assert_no_horizontal_scroll(page: Page, width: int) -> None:
    """Neither the page nor the change list's table scrolls sideways."""
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    results = page.locator("#changelist .results")
    if results.count():
        scroll, client = results.evaluate("e => [e.scrollWidth, e.clientWidth]")
        assert scroll <= client, (scroll, client)


@pytest.mark.usefixtures("laptop_ledger")
def test_ledger_at_a_laptops_width_shows_the_cost_column(admin_ui: UI, live_server, tmp_path):
    entries = {e.pk: e for e in LedgerEntry.objects.select_related("user")}
    assert len(entries) == 5

    def ledger_page(page: Page) -> list[dict]:
        page.set_viewport_size(LAPTOP)
        page.goto(live_server.url + reverse("admin:llm_providers_ledgerentry_changelist"))
        expect(page.locator("#result_list tbody tr")).to_have_count(len(entries))
        expect(page.locator(".paginator")).to_contain_text(f"{len(entries)} ledger entries")
        # The cost column, header and cells, inside a 1366 px window beside the nav sidebar
        # and the filters; nothing scrolls sideways.
        expect(page.locator("#nav-sidebar")).to_be_visible()
        expect(page.locator("#changelist-filter")).to_be_visible()
        assert_within(page, "#result_list th.column-cost_display", LAPTOP["width"])
        assert_within(page, "#result_list td.field-cost_display", LAPTOP["width"])
        assert_no_horizontal_scroll(page, LAPTOP["width"])
        assert page.locator("#result_list img").count() == 0  # no yes/no icons
        assert_styled(page, admin_ui.traffic)
        screenshot(page, tmp_path, "6-ledger-1366")
        rows = []
        for row in page.locator("#result_list tbody tr").all():
            link = row.locator("th.field-time a").get_attribute("href")
            rows.append(
                {
                    "pk": int(link.rstrip("/").split("/")[-2]),
                    "user": row.locator("td.field-user_display").inner_text(),
                    "provider": row.locator("td.field-provider_display").inner_text(),
                    "model": row.locator("td.field-model_display span").get_attribute("title"),
                    "status": row.locator("td.field-status_display").inner_text(),
                    "tokens": row.locator("td.field-tokens_display").inner_text(),
                    "cost": row.locator("td.field-cost_display").inner_text(),
                }
            )
        page.set_viewport_size(DESKTOP)
        page.reload()
        assert_within(page, "#result_list td.field-cost_display", DESKTOP["width"])
        assert_no_horizontal_scroll(page, DESKTOP["width"])
        screenshot(page, tmp_path, "7-ledger-1920")
        return rows

    rows = admin_ui(ledger_page)

    labels = {"openrouter": "OpenRouter", "gemini": "Google Gemini", "ollama": "Local Ollama"}
    labels["huggingface"] = "Hugging Face"
    for row in rows:
        entry = entries[row["pk"]]
        # What the window shows is the ledger's row: its cost to the picodollar, its tokens.
        assert row["cost"] == money(entry.cost)
        assert row["tokens"] == str(entry.total_tokens)
        assert row["model"] == entry.model
        assert row["user"] == (entry.user.get_username() if entry.user else "(system)")
        provider, *note = row["provider"].split("\n")
        assert provider == labels[entry.provider]
        assert note == (["fallback"] if entry.is_fallback else [])
        assert row["status"].split("\n")[0] == entry.status
    assert sorted(r["pk"] for r in rows) == sorted(entries)


@pytest.mark.usefixtures("laptop_ledger")
def test_the_apps_lists_fit_a_laptop(admin_ui: UI, live_server, tmp_path, django_user_model):
    UsageBudget.objects.create(
        user=django_user_model.objects.get(username="alice"), monthly_cost_limit=Decimal("5")
    )
    key = APIKey(provider="gemini", label="production", status_note="x " * 60)
    key.set_secret("AIzaSyFAKE-g3m1n1-k3y-000000000000abcd")
    key.save()
    # Each list's columns that were cut off at this width, and its last one.
    lists = {
        "usagesummary": ["td.field-total_column"],
        "modelprice": ["td.field-source", "td.field-updated"],
        "apikey": ["td.field-status_display", "td.field-last_used"],
        "usagebudget": ["td.field-cost_use", "td.field-updated"],
    }

    def visit(page: Page) -> None:
        page.set_viewport_size(LAPTOP)
        for model, columns in lists.items():
            page.goto(live_server.url + reverse(f"admin:llm_providers_{model}_changelist"))
            for column in columns:
                assert_within(page, column, LAPTOP["width"])
            assert_no_horizontal_scroll(page, LAPTOP["width"])
            screenshot(page, tmp_path, f"8-{model}-1366")

    admin_ui(visit)


def expected_report(group_by: str) -> list[tuple[str, str, str, str]]:
    """The cost report's rows for ``group_by``, summed here from the ledger rows: key, calls
    (successful), tokens and cost (every attempt), biggest cost first (days in order)."""
    labels = dict(registry.as_choices())
    key_of = {
        "user": lambda e: e.user.get_username() if e.user else "(system)",
        "provider": lambda e: labels.get(e.provider, e.provider),
        "model": lambda e: e.model,
        "day": lambda e: e.created_at.astimezone(UTC).date().isoformat(),
    }[group_by]
    sums: dict[str, list] = {}
    for entry in LedgerEntry.objects.select_related("user"):
        calls, tokens, cost = sums.setdefault(key_of(entry), [0, 0, Decimal(0)])
        sums[key_of(entry)] = [
            calls + (entry.status == "success"),
            tokens + entry.total_tokens,
            cost + entry.cost,
        ]
    order = (lambda k: k) if group_by == "day" else (lambda k: (-sums[k][2], k))
    return [
        (key, str(sums[key][0]), str(sums[key][1]), money(sums[key][2]))
        for key in sorted(sums, key=order)
    ]


@pytest.mark.usefixtures("laptop_ledger")
def test_cost_report_grouped_each_way(admin_ui: UI, live_server, tmp_path):
    today = datetime.now(UTC).date()
    dates = {"start": (today - timedelta(days=1)).isoformat(), "end": today.isoformat()}
    expected = {g: expected_report(g) for g in ("user", "provider", "model", "day")}
    entries = list(LedgerEntry.objects.all())
    total = (
        str(sum(e.status == "success" for e in entries)),
        str(sum(e.total_tokens for e in entries)),
        money(sum((e.cost for e in entries), Decimal(0))),
    )
    url = live_server.url + reverse("admin:llm_providers_cost_report")

    def report(page: Page) -> dict[str, list[float]]:
        page.set_viewport_size(LAPTOP)
        widths = {}
        for group_by, rows in expected.items():
            page.goto(f"{url}?{urlencode({**dates, 'group_by': group_by})}")
            # One table: the grouping's, its tab the current one.
            tables = page.locator(".cost-report-table")
            expect(tables).to_have_count(1)
            table = page.locator(f"#cost-by-{group_by}")
            expect(table.locator("h2")).to_have_text(f"Cost by {group_by}")
            expect(page.locator(".cost-report-tabs .current")).to_have_text(group_by.capitalize())
            body = table.locator("tbody tr")
            expect(body).to_have_count(len(rows))
            for index, row in enumerate(rows):
                expect(body.nth(index).locator("td")).to_have_text([*row, re.compile(r"%$")])
            expect(table.locator("tfoot tr.total td")).to_have_text(["Total", *total, "100.0%"])
            # The chart: one visible bar per row, labelled with its key and cost.
            chart = table.locator("svg.cost-chart")
            expect(chart).to_be_visible()
            expect(chart.locator("text.bar-key")).to_have_text([row[0] for row in rows])
            expect(chart.locator("text.bar-value")).to_have_text([row[3] for row in rows])
            bars = chart.locator("rect.bar")
            widths[group_by] = [bars.nth(i).bounding_box()["width"] for i in range(len(rows))]
            csv = table.locator("a", has_text="Download CSV")
            expect(csv).to_have_attribute("href", re.compile(f"group_by={group_by}&format=csv"))
            assert_no_horizontal_scroll(page, LAPTOP["width"])
            assert_styled(page, admin_ui.traffic)
            screenshot(page, tmp_path, f"5-cost-report-by-{group_by}")
        # The tabs switch the grouping and keep the dates.
        page.locator(".cost-report-tabs a", has_text="Provider").click()
        expect(page.locator("#cost-by-provider")).to_be_visible()
        assert f"start={dates['start']}" in page.url
        # A period without calls: no table, chart or CSV button.
        page.goto(f"{url}?start=2001-01-01&end=2001-01-31&group_by=provider")
        expect(page.locator("#cost-by-provider")).to_contain_text("No calls in this period.")
        expect(page.get_by_text("Download CSV")).to_have_count(0)
        screenshot(page, tmp_path, "5-cost-report-empty")
        return widths

    widths = admin_ui(report)

    for group_by, rows in expected.items():
        # Bars are as long as their cost, relative to the largest.
        costs = [Decimal(row[3].removeprefix("$")) for row in rows]
        for measured, cost in zip(widths[group_by], costs, strict=True):
            if cost > 0 and costs[0] > 0 and cost / costs[0] > Decimal("0.01"):
                assert measured / widths[group_by][0] == pytest.approx(
                    float(cost / costs[0]), rel=0.02
                )
