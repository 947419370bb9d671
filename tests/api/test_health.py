"""``GET health/``: liveness and a database round trip, without credentials."""

import pytest
from django.db import OperationalError, connections
from rest_framework.test import APIClient

from tests.api.support import API

pytestmark = pytest.mark.django_db

HEALTH = API + "health/"
OK = {"status": "ok", "database": "ok"}


def test_ok_without_credentials(anon):
    response = anon.get(HEALTH)
    assert response.status_code == 200
    assert response.json() == OK


@pytest.mark.parametrize(
    "header", ["Token 0123456789abcdef0123456789abcdef01234567", "Bearer nope", "Token"]
)
def test_ok_even_with_a_bad_token(header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get(HEALTH)
    assert response.status_code == 200
    assert response.json() == OK


def test_ok_for_an_authenticated_user(api):
    assert api.get(HEALTH).json() == OK


def test_database_failure_is_503(anon, monkeypatch):
    def broken(self, *args, **kwargs):
        raise OperationalError("unable to open database file")

    monkeypatch.setattr(type(connections["default"]), "cursor", broken)

    response = anon.get(HEALTH)

    monkeypatch.undo()
    assert response.status_code == 503
    assert response.json() == {
        "status": "error",
        "database": "unavailable",
        "error": {"code": "database_unavailable", "message": "The database is not reachable."},
    }
    assert "unable to open" not in response.content.decode()  # no internals leak
