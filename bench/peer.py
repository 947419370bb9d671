"""Another gateway measured beside this project (``make bench PEER=litellm``).

``litellm_venv()`` installs LiteLLM's proxy (``litellm[proxy]``, pinned to ``LITELLM_VERSION``)
into a throwaway virtualenv kept under ``var/bench-peer/litellm-<version>/`` (``var/`` is
git-ignored), so a rerun installs nothing. Delete that directory to reclaim the space.

``LiteLLMProxy`` runs it with ``--num_workers`` workers on a free loopback port, configured by
``litellm_config()`` to send one model to the fake upstream's OpenRouter route, the route this
project's ``v1/chat/completions`` uses for the same model: the peer comparison sends the same
OpenAI-shaped request to both gateways, and the same upstream request goes to the fake.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "var" / "bench-peer"
PEERS = ("litellm",)
# The version the issue measured; change it to compare with another release.
LITELLM_VERSION = "1.108.7"
LITELLM_WORKERS = 2


def litellm_venv(version: str = LITELLM_VERSION) -> Path:
    """The cached virtualenv with ``litellm[proxy]==version`` installed; made on first use."""
    venv = CACHE / f"litellm-{version}" / "venv"
    marker = venv.parent / "installed"
    if marker.exists() and (venv / "bin" / "litellm").exists():
        return venv
    print(
        f"bench: installing litellm[proxy]=={version} into {venv} (once; it can take a few "
        "minutes)",
        flush=True,
    )
    venv.parent.mkdir(parents=True, exist_ok=True)
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(venv)],
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--upgrade", "pip"],
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", f"litellm[proxy]=={version}"],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(
                f"bench: {' '.join(step[-3:])} failed:\n{(done.stdout + done.stderr)[-3000:]}"
            )
    marker.write_text(f"litellm[proxy]=={version}\n")
    return venv


def litellm_config(model: str, api_base: str, api_key: str, master_key: str) -> dict:
    """A proxy configuration with one OpenAI-compatible deployment of ``model`` at ``api_base``.

    The ``openai/`` prefix selects LiteLLM's OpenAI-compatible client, which sends ``model``
    unchanged to ``api_base``/chat/completions. Clients authenticate with ``master_key`` (the
    proxy refuses to start without one); no database, no callbacks: the proxy's leanest
    set-up, the fairest comparison for a gateway that does more per call.
    """
    return {
        "model_list": [
            {
                "model_name": model,
                "litellm_params": {
                    "model": f"openai/{model}",
                    "api_base": api_base,
                    "api_key": api_key,
                },
            }
        ],
        "litellm_settings": {"telemetry": False, "set_verbose": False, "drop_params": True},
        "general_settings": {"master_key": master_key, "disable_spend_logs": True},
    }


def litellm_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The proxy's environment: quiet, offline (its price map from the package, not fetched)."""
    env = {
        k: v
        for k, v in (base if base is not None else os.environ).items()
        # Nothing of a developer's set-up: no database, no keys, no proxy settings of theirs.
        if not k.startswith(("LITELLM_", "OPENAI_", "DATABASE_", "REDIS_"))
        and k not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "VIRTUAL_ENV"}
    }
    env.update(
        {
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "LITELLM_LOG": "ERROR",
            "LITELLM_MODE": "PRODUCTION",
            "NO_DOCS": "True",
            "DISABLE_ADMIN_UI": "True",
        }
    )
    return env


@dataclass
class LiteLLMProxy:
    """LiteLLM's proxy as a server under test (the same attributes ``run.Gateway`` has that the
    bench reads: ``name``, ``url``, ``process``, ``serve_command``)."""

    port: int
    workdir: Path
    version: str = LITELLM_VERSION
    workers: int = LITELLM_WORKERS
    name: str = "litellm"
    master_key: str = field(default_factory=lambda: "sk-bench-" + secrets.token_hex(24))
    process: subprocess.Popen | None = None
    serve_command: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "litellm.log"

    @property
    def health_path(self) -> str:
        """An unauthenticated liveness probe that does nothing else (the server's floor)."""
        return "/health/liveliness"

    def command(self, venv: Path, config: Path) -> list[str]:
        return [
            str(venv / "bin" / "litellm"),
            *("--config", str(config), "--host", "127.0.0.1", "--port", str(self.port)),
            *("--num_workers", str(self.workers)),
        ]

    def start(self, model: str, api_base: str, api_key: str) -> None:
        """Install (once), configure and start the proxy; the caller waits for it to answer."""
        venv = litellm_venv(self.version)
        config = self.workdir / "litellm.yaml"
        # JSON is YAML: LiteLLM reads the file with yaml.safe_load.
        settings = litellm_config(model, api_base, api_key, self.master_key)
        config.write_text(json.dumps(settings, indent=2))
        command = self.command(venv, config)
        shown = [c.replace(str(ROOT) + "/", "") for c in command]
        self.serve_command = " ".join(shown).replace(str(config), "litellm.yaml")
        print(f"bench: litellm: starting `{self.serve_command}`", flush=True)
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(
                command,
                cwd=self.workdir,
                env=litellm_env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
