"""The OpenAPI 3 schema at ``/api/schema/`` and Swagger UI at ``/api/docs/``, served locally."""

import re

import pytest
from django.contrib.staticfiles import finders
from drf_spectacular.validation import validate_schema

pytestmark = pytest.mark.django_db

API_PATHS = {
    "/api/llm/generate/": {"post"},
    "/api/llm/usage/": {"get"},
    "/api/llm/calls/": {"get"},
    "/api/llm/reports/costs/": {"get"},
    "/api/llm/keys/": {"get", "post"},
    "/api/llm/keys/{id}/": {"patch", "delete"},
    "/api/llm/providers/": {"get"},
    "/api/llm/health/": {"get"},
    "/api/llm/v1/chat/completions": {"post"},
}


@pytest.fixture
def schema(client):
    response = client.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.oai.openapi+json")
    return response.json()


def test_schema_is_valid_openapi_3(schema):
    assert schema["openapi"].startswith("3.")
    validate_schema(schema)  # raises on any violation of the OpenAPI 3 JSON schema


def test_schema_documents_every_endpoint(schema):
    documented = {
        path: {m for m in ops if m in {"get", "post", "patch", "put", "delete"}}
        for path, ops in schema["paths"].items()
        if path.startswith("/api/llm/") and path != "/api/llm/"
    }
    for path, methods in API_PATHS.items():
        assert methods <= documented.get(path, set()), path


def test_schema_documents_token_and_bearer_authentication(schema):
    schemes = schema["components"]["securitySchemes"]
    assert schemes["tokenAuth"]["type"] == "apiKey"
    assert schemes["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "A DRF API token.",
    }


def test_schema_as_yaml_by_default(client):
    response = client.get("/api/schema/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.oai.openapi")
    assert response.content.startswith(b"openapi: 3.")


def test_swagger_ui_assets_are_local(client):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    assets = re.findall(r'<(?:script|link)\b[^>]*\b(?:src|href)="([^"]+)"', html)
    assert any(a.endswith("swagger-ui-bundle.js") for a in assets)
    assert any(a.endswith("swagger-ui.css") for a in assets)
    for asset in assets:
        assert asset.startswith("/static/"), asset
    assert re.findall(r"https?://", html) == []  # no absolute URL at all, so no CDN
    for cdn in ("jsdelivr", "unpkg", "cdnjs"):
        assert cdn not in html
    assert '"/api/schema/"' in html or "'/api/schema/'" in html


def test_swagger_ui_assets_are_served(client):
    html = client.get("/api/docs/").content.decode()
    assets = re.findall(r'<(?:script|link)\b[^>]*\b(?:src|href)="(/static/[^"]+)"', html)
    assert assets
    for asset in assets:
        assert finders.find(asset.removeprefix("/static/")), asset
        response = client.get(asset)
        assert response.status_code == 200, asset
