"""The API root: a directory of the endpoints, readable without credentials."""

import pytest


@pytest.mark.django_db
def test_api_root_lists_every_endpoint(client):
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
        "providers",
        "health",
        "chat-completions",
        "docs",
        "schema",
    }
    for url in links.values():
        path = url.removeprefix("http://testserver")
        assert client.get(path).status_code != 404, path
