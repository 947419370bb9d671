"""The project's set-up: ``.env.example``, ``alwrity.envfile`` and ``manage.py ensure_admin``."""

import json
import os
import re
import stat
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.contrib.auth import get_user_model
from django.core.management import call_command

from alwrity import envfile

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / ".env.example"

# SPEC §3's table, written out so this test needs nothing outside the repository.
SPEC_VARIABLES = [
    "GPT_PROVIDER",
    "GEMINI_API_KEY",
    "OPENROUTER_API_KEY",
    "HF_TOKEN",
    "OPENROUTER_MODEL",
    "GEMINI_MODEL",
    "HF_MODEL",
    "OPENROUTER_HTTP_REFERER",
    "OPENROUTER_X_TITLE",
    "OPENROUTER_BASE_URL",
    "GEMINI_BASE_URL",
    "HF_BASE_URL",
    "LLM_TIMEOUT",
    "LLM_MAX_RETRIES",
    "LLM_RETRY_BASE_DELAY",
    "LLM_RETRY_MAX_DELAY",
    "LLM_ENCRYPTION_KEYS",
    "DATABASE_URL",
    "REDIS_URL",
    "SECRET_KEY",
    "DEBUG",
    "ALLOWED_HOSTS",
]
SET_UP_VARIABLES = [
    "LLM_RETRY_TOTAL_TIMEOUT",
    "DJANGO_SUPERUSER_USERNAME",
    "DJANGO_SUPERUSER_PASSWORD",
    "DJANGO_SUPERUSER_EMAIL",
    "HOST",
    "PORT",
]
SECRETS = ["SECRET_KEY", "LLM_ENCRYPTION_KEYS", "GEMINI_API_KEY", "OPENROUTER_API_KEY", "HF_TOKEN"]

# `NAME=value` or a commented-out `# NAME=default`.
_ASSIGNMENT = re.compile(r"^\s*(#\s*)?([A-Z][A-Z0-9_]*)\s*=(.*)$")


def assignments(text: str, *, commented: bool = True) -> dict[str, str]:
    found = {}
    for line in text.splitlines():
        match = _ASSIGNMENT.match(line)
        if match and (commented or not match[1]):
            found.setdefault(match[2], match[3].strip())
    return found


TEMPLATE = """\
# A comment that stays.
SECRET_KEY=
LLM_ENCRYPTION_KEYS=""
GEMINI_API_KEY=
# DEBUG=false
DJANGO_SUPERUSER_USERNAME=admin
DJANGO_SUPERUSER_PASSWORD=
"""


# --- .env.example ----------------------------------------------------------------------------


def test_env_example_names_every_spec_variable():
    names = assignments(EXAMPLE.read_text(encoding="utf-8"))
    missing = [name for name in SPEC_VARIABLES + SET_UP_VARIABLES if name not in names]
    assert not missing, f".env.example does not mention {missing}"


def test_env_example_names_every_variable_settings_reads():
    source = (ROOT / "alwrity" / "settings.py").read_text(encoding="utf-8")
    read = set(re.findall(r"\benv(?:\.\w+)?\(\s*\"([A-Z][A-Z0-9_]*)\"", source))
    names = assignments(EXAMPLE.read_text(encoding="utf-8"))
    missing = sorted(read - set(names) - {"ALWRITY_ENV_FILE"})
    assert not missing, f"settings.py reads {missing}, which .env.example does not document"


def test_env_example_holds_no_secret():
    active = assignments(EXAMPLE.read_text(encoding="utf-8"), commented=False)
    for name in [*SECRETS, "DJANGO_SUPERUSER_PASSWORD"]:
        assert active.get(name) == "", f"{name} should be present and empty in .env.example"


def test_every_variable_in_env_example_has_a_comment_above_it():
    lines = EXAMPLE.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        if _ASSIGNMENT.match(line) and not line.startswith("#"):
            above = lines[number - 1] if number else ""
            assert above.startswith("#"), f"line {number + 1} ({line!r}) has no comment above"


# --- alwrity.envfile -------------------------------------------------------------------------


def test_envfile_fills_the_secrets(tmp_path):
    template, target = tmp_path / "example", tmp_path / ".env"
    template.write_text(TEMPLATE, encoding="utf-8")

    filled = envfile.write_env_file(template, target)

    assert sorted(filled) == ["DJANGO_SUPERUSER_PASSWORD", "LLM_ENCRYPTION_KEYS", "SECRET_KEY"]
    text = target.read_text(encoding="utf-8")
    values = assignments(text, commented=False)
    assert len(values["SECRET_KEY"]) >= 50
    assert not values["SECRET_KEY"].startswith("$")
    Fernet(values["LLM_ENCRYPTION_KEYS"].encode())  # a valid Fernet key
    assert len(values["DJANGO_SUPERUSER_PASSWORD"]) >= 16
    assert values["DJANGO_SUPERUSER_USERNAME"] == "admin"
    assert values["GEMINI_API_KEY"] == ""  # provider keys are not invented
    assert "# A comment that stays.\n" in text
    assert "# DEBUG=false\n" in text
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_envfile_generates_different_secrets_each_time(tmp_path):
    template = tmp_path / "example"
    template.write_text(TEMPLATE, encoding="utf-8")
    envfile.write_env_file(template, tmp_path / "one")
    envfile.write_env_file(template, tmp_path / "two")
    one = assignments((tmp_path / "one").read_text(), commented=False)
    two = assignments((tmp_path / "two").read_text(), commented=False)
    for name in ["SECRET_KEY", "LLM_ENCRYPTION_KEYS", "DJANGO_SUPERUSER_PASSWORD"]:
        assert one[name] != two[name]


def test_envfile_never_overwrites(tmp_path):
    template, target = tmp_path / "example", tmp_path / ".env"
    template.write_text(TEMPLATE, encoding="utf-8")
    target.write_text("SECRET_KEY=mine\n", encoding="utf-8")

    assert envfile.write_env_file(template, target) is None
    assert target.read_text(encoding="utf-8") == "SECRET_KEY=mine\n"


def test_envfile_is_idempotent(tmp_path, capsys):
    template, target = tmp_path / "example", tmp_path / ".env"
    template.write_text(TEMPLATE, encoding="utf-8")
    argv = ["--template", str(template), "--target", str(target)]

    assert envfile.main(argv) == 0
    first = target.read_text(encoding="utf-8")
    assert envfile.main(argv) == 0

    assert target.read_text(encoding="utf-8") == first
    out = capsys.readouterr().out
    assert "SECRET_KEY" in out and "exists: left as it is" in out
    values = assignments(first, commented=False)
    # It says which names it filled, never their values.
    assert values["SECRET_KEY"] not in out
    assert values["LLM_ENCRYPTION_KEYS"] not in out


def test_envfile_without_template_fails_clearly(tmp_path, capsys):
    argv = ["--template", str(tmp_path / "nope"), "--target", str(tmp_path / ".env")]
    assert envfile.main(argv) == 1
    assert "no template" in capsys.readouterr().err
    assert not (tmp_path / ".env").exists()


def test_env_written_from_the_real_example_configures_settings(tmp_path):
    """A fresh `.env` from `.env.example` gives SPEC §3's defaults and the generated secrets."""
    target = tmp_path / ".env"
    result = subprocess.run(
        [sys.executable, "-m", "alwrity.envfile", "--target", str(target)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "Wrote" in result.stdout
    values = assignments(target.read_text(encoding="utf-8"), commented=False)

    environment = {
        name: value
        for name, value in os.environ.items()
        if name not in SPEC_VARIABLES + SET_UP_VARIABLES and not name.startswith("DJANGO_")
    }
    environment.update(ALWRITY_ENV_FILE=str(target), DJANGO_SETTINGS_MODULE="alwrity.settings")
    # The project's settings, and the app's as it reads them (setting, environment, default).
    probe = (
        "import json; from django.conf import settings as s; "
        "from llm_providers.conf import llm_settings as a; print(json.dumps(["
        "s.SECRET_KEY, a.LLM_ENCRYPTION_KEYS, a.GPT_PROVIDER, a.GEMINI_API_KEY, s.DEBUG, "
        "a.OPENROUTER_MODEL, a.LLM_TIMEOUT, a.LLM_MAX_RETRIES, a.LLM_RETRY_TOTAL_TIMEOUT]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(result.stdout) == [
        values["SECRET_KEY"],
        [values["LLM_ENCRYPTION_KEYS"]],
        None,
        None,
        False,
        "openai/gpt-4-turbo",
        60.0,
        3,
        120.0,
    ]


# --- manage.py ensure_admin ------------------------------------------------------------------


def run_ensure_admin(*args: str) -> str:
    out = StringIO()
    call_command("ensure_admin", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def admin_env(settings):
    settings.DJANGO_SUPERUSER_USERNAME = "boss"
    settings.DJANGO_SUPERUSER_PASSWORD = "correct-horse-battery"
    settings.DJANGO_SUPERUSER_EMAIL = "boss@example.com"


@pytest.mark.django_db
def test_ensure_admin_creates_the_superuser_from_the_environment(admin_env):
    out = run_ensure_admin("--url", "http://127.0.0.1:8765/admin/")

    user = get_user_model().objects.get(username="boss")
    assert user.is_superuser and user.is_staff
    assert user.email == "boss@example.com"
    assert user.check_password("correct-horse-battery")
    assert "http://127.0.0.1:8765/admin/" in out
    assert "boss" in out
    assert "correct-horse-battery" in out


@pytest.mark.django_db
def test_ensure_admin_twice_neither_fails_nor_duplicates(admin_env, settings):
    run_ensure_admin()
    settings.DJANGO_SUPERUSER_PASSWORD = "another-password"

    out = run_ensure_admin()

    users = get_user_model().objects.filter(username="boss")
    assert users.count() == 1
    assert users.get().check_password("correct-horse-battery")  # left unchanged
    assert "already exists" in out
    assert "http://127.0.0.1:8000/admin/" in out


@pytest.mark.django_db
def test_ensure_admin_without_a_password_generates_and_shows_one(settings):
    settings.DJANGO_SUPERUSER_USERNAME = "admin"
    settings.DJANGO_SUPERUSER_PASSWORD = ""
    settings.DJANGO_SUPERUSER_EMAIL = ""

    out = run_ensure_admin()

    user = get_user_model().objects.get(username="admin")
    assert user.is_superuser
    password = re.search(r"Password:\s+(\S+)", out)[1]
    assert user.check_password(password)


@pytest.mark.django_db
def test_ensure_admin_leaves_an_ordinary_user_of_that_name_alone(admin_env):
    get_user_model().objects.create_user("boss", password="x-original-1")

    out = run_ensure_admin()

    user = get_user_model().objects.get(username="boss")
    assert not user.is_superuser
    assert user.check_password("x-original-1")
    assert "not a staff superuser" in out


def test_keys_exported_in_the_shell_never_reach_the_tests(tmp_path):
    """A developer's exported provider keys are cleared for every test (tests/conftest.py),
    so no test sees a provider configured that it did not configure itself."""
    env = {
        **os.environ,
        "ALWRITY_ENV_FILE": "",
        "GEMINI_API_KEY": "AIzaSyEXPORTED-in-the-shell-000000000000",
        "OPENROUTER_API_KEY": "sk-or-v1-exported0in0the0shell00000000000",
        "HF_TOKEN": "hf_EXPORTEDinTheShell000000000000000",
        "GPT_PROVIDER": "openrouter",
    }
    env.pop("DATABASE_URL", None)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/test_router.py::test_no_provider_at_all_names_all_three_variables",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "1 passed" in result.stdout


def test_the_site_root_and_the_admins_view_site_lead_to_the_api_docs(admin_client):
    """The project has no page of its own at ``/``: the admin's "View site" link (``/``) and a
    browser opening the bare address reach the API's docs, not a 404."""
    admin_page = admin_client.get("/admin/")
    assert 'href="/"' in admin_page.content.decode()  # "View site"
    root = admin_client.get("/")
    assert root.status_code == 302
    assert root["Location"] == "/api/docs/"
    assert admin_client.get(root["Location"]).status_code == 200
