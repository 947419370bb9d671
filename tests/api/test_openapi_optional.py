"""drf-spectacular is optional (SPEC §11): without it the app imports, routes and answers.

A subprocess plays a host project that has no drf-spectacular (``sys.modules`` refuses the
import), sets no ``REST_FRAMEWORK`` and no LLM setting: only the apps of SPEC §11 and the URL
include.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

from llm_providers.conf import DEFAULTS

ROOT = Path(__file__).resolve().parents[2]

HOST = """
import json, sys, types
sys.modules["drf_spectacular"] = None  # "pip uninstall drf-spectacular"

import django
from django.conf import settings
from django.urls import include, path

settings.configure(
    SECRET_KEY="a-host-project-secret-key-of-enough-length-0123456789",
    ALLOWED_HOSTS=["testserver"],
    ROOT_URLCONF="host_urls",
    INSTALLED_APPS=[
        "django.contrib.admin",
        "django.contrib.auth",
        "django.contrib.contenttypes",
        "django.contrib.sessions",
        "django.contrib.messages",
        "django.contrib.staticfiles",
        "rest_framework",
        "rest_framework.authtoken",
        "llm_providers",
    ],
    MIDDLEWARE=[
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.common.CommonMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django.contrib.messages.middleware.MessageMiddleware",
    ],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    STATIC_URL="static/",
)
django.setup()

urls = types.ModuleType("host_urls")  # the host's URLconf: the app's URLs, nothing else
urls.urlpatterns = [path("api/llm/", include("llm_providers.urls"))]
sys.modules["host_urls"] = urls

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client
from django.urls import resolve
from rest_framework.authtoken.models import Token

call_command("migrate", verbosity=0)
view = resolve("/api/llm/generate/").func.view_class.__name__
anonymous = Client().post("/api/llm/generate/", {"prompt": "hi"}, content_type="application/json")
user = get_user_model().objects.create_user("host-user")
token = Client(HTTP_AUTHORIZATION="Token " + Token.objects.create(user=user).key)
generated = token.post("/api/llm/generate/", {"prompt": "hi"}, content_type="application/json")
root = token.get("/api/llm/")
print(json.dumps({
    "view": view,
    "anonymous": [anonymous.status_code, anonymous.json()],
    "generated": [generated.status_code, generated.json()["error"]["code"]],
    "root": [root.status_code, sorted(root.json())],
    "spectacular": sys.modules["drf_spectacular"],
}))
"""


def test_the_app_works_without_drf_spectacular():
    environment = {name: value for name, value in os.environ.items() if name not in DEFAULTS}
    environment.pop("DJANGO_SETTINGS_MODULE", None)
    done = subprocess.run(
        [sys.executable, "-c", HOST],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["view"] == "GenerateView"
    assert result["anonymous"] == [
        401,
        {
            "error": {
                "code": "not_authenticated",
                "message": "Authentication credentials were not provided.",
            }
        },
    ]
    # Past authentication and the throttles (no DEFAULT_THROTTLE_RATES anywhere) to the router:
    # no provider has a key in this host.
    assert result["generated"] == [503, "provider_not_configured"]
    status, links = result["root"]
    assert status == 200 and "generate" in links
    assert "docs" not in links and "schema" not in links  # the host serves no OpenAPI views
    assert result["spectacular"] is None  # never imported
