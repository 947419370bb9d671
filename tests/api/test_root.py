"""The API root: a directory of the endpoints, readable without credentials."""

import pytest


@pytest.mark.django_db
def test_api_root_needs_credentials(client):
    response = client.get("/api/llm/")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


@pytest.mark.django_db
def test_unknown_api_path_is_a_json_404(client, settings):
    settings.DEBUG = False
    response = client.get("/api/llm/no-such-thing/")
    assert response.status_code == 404
    assert response.json() == {"error": {"code": "not_found", "message": "No such endpoint."}}
    assert client.get("/no-such-page/")["Content-Type"].startswith("text/html")


@pytest.mark.django_db
def test_api_root_lists_every_endpoint(admin_client):
    client = admin_client
    response = client.get("/api/llm/")
    assert response.status_code == 200
    links = response.json()
    assert links["generate"] == "http://testserver/api/llm/generate/"
    assert links["chat-completions"] == "http://testserver/api/llm/v1/chat/completions"
    assert links["docs"] == "http://testserver/api/docs/"
    assert set(links) == {
        "generate",
        "usage",
        "calls",
        "cost-report",
        "keys",
        "my-keys",
        "providers",
        "health",
        "chat-completions",
        "models",
        "docs",
        "schema",
    }
    for url in links.values():
        path = url.removeprefix("http://testserver")
        assert client.get(path).status_code != 404, path
