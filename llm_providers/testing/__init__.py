"""Test support shipped with the app: a fake of the three upstreams over real HTTP.

``FakeUpstream`` runs it in a background thread (tests); ``python -m
llm_providers.testing.fake_upstream`` runs it as a process (end-to-end tests, ``make bench``);
``FakeUpstreamClient`` steers a running one. See ``fake_upstream`` for the endpoints, the
control API and the configuration, and ``faults`` for the scripted faults.

Nothing in the app imports this package: it needs aiohttp, which production code does not.
"""

from typing import Any

__all__ = ["FakeConfig", "FakeUpstream", "FakeUpstreamClient", "base_urls"]


def __getattr__(name: str) -> Any:
    # Imported on first use, not with the package: ``python -m
    # llm_providers.testing.fake_upstream`` would otherwise find its own module already loaded
    # (runpy warns), and importing the package stays free of aiohttp until it is needed.
    if name in __all__:
        from . import fake_upstream

        return getattr(fake_upstream, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
