"""``/api/llm/`` in a browser is a page of links (DRF's browsable API, for the root only);
clients that ask for JSON, or for nothing in particular, get the JSON directory."""

from __future__ import annotations

import re

import pytest

from tests.api.support import assert_error

pytestmark = pytest.mark.django_db

ROOT = "/api/llm/"
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


def test_a_browser_gets_a_page_linking_every_endpoint(admin_client):
    links = admin_client.get(ROOT, HTTP_ACCEPT="application/json").json()

    page = admin_client.get(ROOT, HTTP_ACCEPT=BROWSER_ACCEPT)

    assert page.status_code == 200
    assert page["Content-Type"].startswith("text/html")
    html = page.content.decode()
    hrefs = set(re.findall(r'href=(?:&quot;|")(http://testserver/[^"&]+)', html))
    assert set(links.values()) <= hrefs
    assert "http://testserver/api/llm/v1/models" in hrefs
    assert "<h1>LLM providers API</h1>" in html


@pytest.mark.parametrize("accept", [None, "*/*", "application/json"])
def test_clients_still_get_json(admin_client, accept):
    headers = {} if accept is None else {"HTTP_ACCEPT": accept}

    response = admin_client.get(ROOT, **headers)

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json()["models"] == "http://testserver/api/llm/v1/models"


def test_token_clients_get_json(api):
    response = api.get(ROOT)

    assert response["Content-Type"] == "application/json"
    assert "generate" in response.json()


def test_anonymous_browsers_get_the_json_401_as_before(client):
    response = client.get(ROOT, HTTP_ACCEPT=BROWSER_ACCEPT)

    assert_error(response, 401, "not_authenticated")


def test_only_the_root_is_a_page(admin_client):
    response = admin_client.get(ROOT + "providers/", HTTP_ACCEPT=BROWSER_ACCEPT)

    assert response["Content-Type"] == "application/json"
