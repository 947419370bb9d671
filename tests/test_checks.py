"""System checks: what ``manage.py check`` tells a project that set the app up wrong."""

from django.apps import apps
from django.core import checks


def _ids() -> set[str]:
    return {message.id for message in checks.run_checks()}


def test_a_complete_project_passes_the_checks():
    assert not {i for i in _ids() if i and i.startswith("llm_providers.E")}


def test_a_missing_drf_app_is_named(monkeypatch):
    installed = apps.is_installed
    monkeypatch.setattr(
        apps, "is_installed", lambda name: name != "rest_framework.authtoken" and installed(name)
    )
    messages = [m for m in checks.run_checks() if m.id == "llm_providers.E002"]
    assert len(messages) == 1
    assert "'rest_framework.authtoken'" in messages[0].msg
    assert "INSTALLED_APPS" in messages[0].hint


def test_an_unknown_gpt_provider_is_an_error(settings):
    settings.GPT_PROVIDER = "nonesuch"
    assert "llm_providers.E001" in _ids()
