"""A fake of the upstream LLM APIs over real HTTP, for the tests and ``make bench``.

It is not part of the installed app (it needs aiohttp, which the app does not): it lives beside
the package, like the tests. ``FakeUpstream`` runs it in a background thread (tests);
``python -m fake_upstream`` runs it as a process (``make bench``, by hand); ``FakeUpstreamClient``
steers a running one. See ``server`` for the endpoints, the control API and the configuration,
``dialects`` for the wire formats and ``faults`` for the scripted faults.
"""

from .server import FakeConfig, FakeUpstream, FakeUpstreamClient, base_urls, openai_base_url

__all__ = ["FakeConfig", "FakeUpstream", "FakeUpstreamClient", "base_urls", "openai_base_url"]
