"""The app as a package (SPEC §11): its wheel, installed into a fresh virtualenv, serving a new
``django-admin startproject`` project that only adds the apps and the URL include.

Once per module: build the wheel from a copy of the repository, create a virtualenv, install the
wheel with the project's exact pins as constraints (no extras: no drf-spectacular, no aiohttp),
start a project, migrate, make a superuser and a user with a token, and run the project's server
(``runserver``) with an OpenRouter key and base URL in its environment, against the fake upstream
(run from the repository's own venv). The tests then talk to it over HTTP only.
"""

from __future__ import annotations

import contextlib
import http.cookiejar
import json
import re
import secrets
import select
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.harness import (
    ROOT,
    VENV_PYTHON,
    Client,
    Reply,
    assert_error,
    base_environment,
    free_port,
)

pytestmark = pytest.mark.package

# What the build must not see from the work tree: environments, caches, databases, build output.
_NOT_SOURCES = shutil.ignore_patterns(
    ".git",
    ".venv",
    "__pycache__",
    "*.pyc",
    ".env",
    "*.sqlite3",
    ".hypothesis",
    ".pytest_cache",
    ".ruff_cache",
    ".import_linter_cache",
    "build",
    "dist",
    "*.egg-info",
    "var",
)
SUPERUSER = "admin"
USER = "alice"
PASSWORD = secrets.token_urlsafe(12)
# Shaped like a real OpenRouter key, so the fake records its prefix and last four characters.
OPENROUTER_KEY = f"sk-or-v1-{secrets.token_hex(24)}"
HOST_SETTINGS = """
INSTALLED_APPS += ["rest_framework", "rest_framework.authtoken", "llm_providers"]
"""
HOST_URLS = """
from django.urls import include
from llm_providers.api.monitoring import metrics_view

urlpatterns.append(path("api/llm/", include("llm_providers.urls")))
urlpatterns.append(path("metrics", metrics_view))
"""


@dataclass
class Host:
    """The running host project: its server, its fake upstream and the user's token."""

    venv: Path
    project: Path
    env: dict[str, str]
    client: Client
    token: str
    fake_url: str
    server_log: Path

    def manage(self, *args: str) -> str:
        return run([self.venv / "bin" / "python", "manage.py", *args], self.project, self.env)

    def explain(self, answer: object) -> str:
        """``answer`` and the tail of the server's log, for a failure message."""
        if isinstance(answer, Reply) and answer.text.lstrip().startswith("<"):
            answer = f"HTTP {answer.status}: {_debug_summary(answer.text)}"
        lines = self.server_log.read_text("utf-8", "replace").splitlines()[-60:]
        return f"{answer}\n--- host server log (tail)\n" + "\n".join(lines)


def run(command: list, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    """Run ``command``; its output, or a failure that shows it."""
    result = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        pytest.fail(
            f"{' '.join(map(str, command))} exited {result.returncode}\n"
            f"--- stdout\n{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-3000:]}"
        )
    return result.stdout


def constraints_file(directory: Path) -> Path:
    """requirements.txt's exact pins as a constraints file (pip refuses extras there)."""
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    pins = [re.sub(r"\[.*?\]", "", line) for line in lines if "==" in line]
    path = directory / "constraints.txt"
    path.write_text("\n".join(pins) + "\n")
    return path


def build_wheel(directory: Path) -> Path:
    """The repository's wheel, built by pip from a copy of the work tree (the build writes
    ``build/`` and ``*.egg-info`` beside the sources)."""
    source = directory / "source"
    shutil.copytree(ROOT, source, ignore=_NOT_SOURCES)
    dist = directory / "dist"
    run([VENV_PYTHON, "-m", "pip", "wheel", "--no-deps", "-q", "-w", dist, "."], source)
    (wheel,) = dist.glob("*.whl")
    return wheel


def create_venv(path: Path) -> Path:
    result = subprocess.run(
        [sys.executable, "-m", "venv", str(path)], capture_output=True, text=True, timeout=300
    )
    if result.returncode != 0:
        pytest.skip(f"cannot create a virtualenv here: {result.stderr.strip()[-500:]}")
    return path / "bin" / "python"


@contextlib.contextmanager
def fake_upstream(directory: Path) -> Iterator[dict[str, str]]:
    """The fake upstream as a process of the repository's venv; its printed URLs."""
    log = directory / "fake_upstream.log"
    with log.open("wb") as errors:
        process = subprocess.Popen(
            [str(VENV_PYTHON), "-m", "fake_upstream", "--port", "0"],
            cwd=ROOT,
            env=base_environment(),
            stdout=subprocess.PIPE,
            stderr=errors,
            bufsize=0,  # unbuffered: select() on the pipe sees every line not yet read
        )
    try:
        urls: dict[str, str] = {}
        deadline = time.monotonic() + 30
        while "OPENROUTER_BASE_URL" not in urls:
            ready, _, _ = select.select([process.stdout], [], [], 0.5)
            line = process.stdout.readline() if ready else b""
            if (ready and not line) or time.monotonic() > deadline:  # exited, or hangs
                pytest.fail(f"the fake upstream did not start:\n{log.read_text()[-3000:]}")
            name, _, value = line.decode().strip().partition("=")
            if value:
                urls[name] = value
        yield urls
    finally:
        stop(process)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    if process.stdout:
        process.stdout.close()


def start_project(python: Path, directory: Path, env: dict[str, str]) -> Path:
    directory.mkdir()
    run([python.parent / "django-admin", "startproject", "host", directory], directory, env)
    with (directory / "host" / "settings.py").open("a") as settings:
        settings.write(HOST_SETTINGS)
    with (directory / "host" / "urls.py").open("a") as urls:
        urls.write(HOST_URLS)
    return directory


def wait_for_server(client: Client, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            pytest.fail(f"the host project's server exited:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(OSError):
            if client.get("health/").status:
                return
        if time.monotonic() > deadline:
            pytest.fail(f"the host project's server did not answer:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="module")
def host(wheel, tmp_path_factory) -> Iterator[Host]:
    directory = tmp_path_factory.mktemp("host")
    venv = directory / "venv"
    python = create_venv(venv)
    run(
        [python, "-m", "pip", "install", "-q", "-c", constraints_file(directory), wheel],
        directory,
    )
    # Nothing of the repository's: the host imports llm_providers from the venv only.
    env = {
        name: value
        for name, value in base_environment().items()
        if name not in {"PYTHONPATH", "VIRTUAL_ENV"}
    }
    env["PYTHONUNBUFFERED"] = "1"  # the server's log is complete when a test reads it
    with fake_upstream(directory) as urls:
        env |= {
            "OPENROUTER_API_KEY": OPENROUTER_KEY,
            "OPENROUTER_BASE_URL": urls["OPENROUTER_BASE_URL"],
        }
        project = start_project(python, directory / "project", env)
        port = free_port()
        log = directory / "server.log"
        site = Host(
            venv, project, env, Client("127.0.0.1", port), "", urls["FAKE_UPSTREAM_URL"], log
        )
        site.manage("migrate", "--noinput")
        superuser = {
            "DJANGO_SUPERUSER_USERNAME": SUPERUSER,
            "DJANGO_SUPERUSER_EMAIL": "admin@example.com",
            "DJANGO_SUPERUSER_PASSWORD": PASSWORD,
        }
        run([python, "manage.py", "createsuperuser", "--noinput"], project, env | superuser)
        site.manage(
            "shell",
            "-c",
            "from django.contrib.auth import get_user_model; "
            f"get_user_model().objects.create_user({USER!r}, password={PASSWORD!r})",
        )
        (site.token,) = re.findall(r"\b[0-9a-f]{40}\b", site.manage("drf_create_token", USER))
        with log.open("wb") as output:
            server = subprocess.Popen(
                [str(python), "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
                cwd=project,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_for_server(site.client, server, log)
            yield site
        finally:
            stop(server)
    shutil.rmtree(venv, ignore_errors=True)


def test_the_wheel_holds_the_app_and_nothing_else(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names if not name.split("/")[0].endswith("-info")}
    assert top_level == {"llm_providers"}, sorted(top_level)
    assert "llm_providers/migrations/0001_initial.py" in names
    assert "llm_providers/management/commands/llm_usage_report.py" in names
    templates = {name for name in names if "/templates/" in name}
    on_disk = {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "llm_providers" / "templates").rglob("*")
        if path.is_file()
    }
    assert templates == on_disk
    assert not [name for name in names if name.startswith("llm_providers/testing/")]


def test_the_app_is_imported_from_the_venv_without_its_optional_packages(host):
    code = (
        "import importlib.util, json, llm_providers; print(json.dumps({"
        "'file': llm_providers.__file__, "
        "'absent': [m for m in ('drf_spectacular', 'aiohttp') if not importlib.util.find_spec(m)]"
        "}))"
    )
    found = json.loads(run([host.venv / "bin" / "python", "-c", code], host.project, host.env))
    assert Path(found["file"]).is_relative_to(host.venv), found["file"]
    # The server of the other tests runs without them: OpenAPI docs and the fake are optional.
    assert found["absent"] == ["drf_spectacular", "aiohttp"]


def test_health_is_open(host):
    reply = host.client.get("health/")
    assert reply.status == 200, host.explain(reply)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "generate/", {"prompt": "hello"}),
        ("POST", "v1/chat/completions", {"messages": [{"role": "user", "content": "hello"}]}),
        ("GET", "usage/", None),
        ("GET", "calls/", None),
    ],
)
def test_anonymous_callers_are_refused_in_the_envelope(host, method, path, body):
    reply = host.client.request(method, path, body)
    try:
        assert_error(reply, 401, "not_authenticated")
    except AssertionError as failure:
        raise AssertionError(host.explain(failure)) from None


def test_a_token_call_uses_the_environment_key_and_is_counted(host):
    user = host.client.with_token(host.token)
    assert host.manage("shell", "-v", "0", "-c", _COUNT_ADMIN_KEYS).strip() == "0"
    before = _usage(host, user)

    reply = user.post("generate/", {"prompt": "Say hello from the host project", "max_tokens": 30})

    assert reply.status == 200, host.explain(reply)
    result = reply.json()
    assert result["provider"] == "openrouter", result
    assert isinstance(result["text"], str) and result["text"], result
    usage = result["usage"]
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0, usage
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"], usage
    # The fake saw the key of the environment (no key was ever added in the admin).
    seen = _fake_requests(host.fake_url, "openrouter")
    calls = [r for r in seen if r["path"].endswith("/chat/completions")]
    assert calls and calls[-1]["auth"]["last4"] == OPENROUTER_KEY[-4:], calls[-1:]
    assert calls[-1]["auth"]["prefix"] == "sk-or-", calls[-1]["auth"]

    after = _usage(host, user)
    assert after["total"]["calls"] == before["total"]["calls"] + 1, after
    assert after["total"]["tokens"] == before["total"]["tokens"] + usage["total_tokens"], after
    assert after["providers"]["openrouter"]["calls"] == (
        before["providers"]["openrouter"]["calls"] + 1
    ), after
    ledger = user.get("calls/")
    assert ledger.status == 200, host.explain(ledger)
    latest = ledger.json()["results"][0]
    assert (latest["provider"], latest["status"]) == ("openrouter", "success"), latest


def test_the_openai_compatible_endpoint_takes_a_bearer_token(host):
    reply = host.client.with_token(host.token, "Bearer").post(
        "v1/chat/completions",
        {"model": "auto", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 20},
    )
    assert reply.status == 200, host.explain(reply)
    body = reply.json()
    assert body["choices"][0]["message"]["content"], body
    assert body["usage"]["total_tokens"] > 0, body


def test_the_host_records_metrics_with_no_setting_of_its_own(host):
    reply = host.client.with_token(host.token).post("generate/", {"prompt": "Count me"})
    assert reply.status == 200, host.explain(reply)

    # Scraped over loopback, as Prometheus on the same machine would.
    url = f"http://127.0.0.1:{host.client.port}/metrics"
    with urllib.request.urlopen(url, timeout=30) as response:
        text = response.read().decode()
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    generated = samples.get(
        (
            "llm_api_requests_total",
            (("endpoint", "generate"), ("method", "POST"), ("status", "200")),
        )
    )
    assert generated is not None and generated >= 1, text
    assert any(
        name == "llm_upstream_attempts_total" and dict(labels)["provider"] == "openrouter"
        for name, labels in samples
    ), text


def test_the_admin_pages_of_the_app_render(host):
    admin = AdminSession(host.client.port)
    admin.log_in(SUPERUSER, PASSWORD)
    status, index = admin.get("/admin/llm_providers/")
    assert status == 200, host.explain((status, _debug_summary(index)))
    # Its changelists, their add forms and the cost report, as the app index links them.
    pages = sorted(set(re.findall(r'href="(/admin/llm_providers/[\w-]+/(?:add/)?)"', index)))
    assert {"/admin/llm_providers/apikey/", "/admin/llm_providers/apikey/add/"} <= set(pages)
    failures = {}
    for path in pages:
        status, page = admin.get(path)
        if status != 200:
            failures[path] = (status, _debug_summary(page))
    assert not failures, host.explain(failures)


_COUNT_ADMIN_KEYS = "from llm_providers.models import APIKey; print(APIKey.objects.count())"


def _usage(host: Host, client: Client) -> dict:
    reply = client.get("usage/")
    assert reply.status == 200, host.explain(reply)
    return reply.json()


def _fake_requests(fake_url: str, provider: str) -> list[dict]:
    url = f"{fake_url}/_fake/requests?{urllib.parse.urlencode({'provider': provider})}"
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def _debug_summary(page: str) -> str:
    """The exception of a DEBUG error page, or the start of the page."""
    summary = re.search(r"<title>(.*?)</title>", page, re.S)
    value = re.search(r'<pre class="exception_value">(.*?)</pre>', page, re.S)
    parts = [m.group(1).strip() for m in (summary, value) if m]
    return " | ".join(parts) or page[:500]


class AdminSession:
    """A browser-like session on the admin: cookies, the login form and its CSRF token."""

    def __init__(self, port: int):
        self.base = f"http://127.0.0.1:{port}"
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies))

    def get(self, path: str) -> tuple[int, str]:
        return self._open(urllib.request.Request(self.base + path))

    def log_in(self, username: str, password: str) -> None:
        status, form = self.get("/admin/login/")
        assert status == 200, form[:2000]
        (csrf,) = re.findall(r'name="csrfmiddlewaretoken" value="([^"]+)"', form)
        data = urllib.parse.urlencode(
            {
                "csrfmiddlewaretoken": csrf,
                "username": username,
                "password": password,
                "next": "/admin/",
            }
        ).encode()
        status, page = self._open(urllib.request.Request(self.base + "/admin/login/", data))
        assert status == 200 and "sessionid" in {c.name for c in self.cookies}, (
            status,
            _debug_summary(page),
        )

    def _open(self, request: urllib.request.Request) -> tuple[int, str]:
        try:
            with self.opener.open(request, timeout=30) as response:
                return response.status, response.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode("utf-8", "replace")
