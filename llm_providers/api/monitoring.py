"""``/metrics``: the app's Prometheus metrics (``metrics``) in Prometheus' text format (SPEC §14).

Not public: a scrape is allowed from the machine itself (a loopback address, with no
``X-Forwarded-For``, ``Forwarded`` or ``X-Real-IP`` header: behind a reverse proxy on the same
host every client would look local) or by an authenticated staff user (session or token, as
the API authenticates). Anyone else gets the API's error envelope: 401 without credentials,
403 with those of a user who is not staff.

The project mounts it at ``/metrics``; a host project adds
``path("metrics", llm_providers.api.monitoring.metrics_view)`` to its URLconf. With
``PROMETHEUS_MULTIPROC_DIR`` set (several server processes) a scrape sums every process's
files; without it, it reads this process's registry.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

from django.http import HttpResponse
from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from rest_framework.permissions import BasePermission
from rest_framework.views import APIView

from .. import circuits, registry
from ..metrics import multiprocess_dir
from .base import AppAPIConfig
from .schema import extend_schema
from .streaming import StreamingContentNegotiation

#: Headers a reverse proxy adds: a request carrying one came through a proxy, whatever its
#: socket's address.
FORWARDING_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED", "HTTP_X_REAL_IP")

CIRCUIT_STATES = (circuits.CLOSED, circuits.OPEN, circuits.HALF_OPEN)


def is_direct_loopback(request) -> bool:
    """Whether the request came from this machine itself, not through a proxy."""
    if any(header in request.META for header in FORWARDING_HEADERS):
        return False
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1
    return (mapped or address).is_loopback


class LoopbackOrStaff(BasePermission):
    """A scrape from this machine, or by an active staff user."""

    def has_permission(self, request, view) -> bool:
        if is_direct_loopback(request):
            return True
        user = request.user
        return bool(user and user.is_active and user.is_staff)


class CircuitCollector:
    """Each provider's circuit (SPEC §5.1) as the shared cache has it at scrape time:
    ``llm_provider_circuit_state{provider, state}`` is 1 for its state, 0 for the others."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "llm_provider_circuit_state",
            "Circuit breaker state of each provider (1 for its current state: closed, open or "
            "half_open).",
            labels=["provider", "state"],
        )
        for name in registry.provider_names():
            current = circuits.state(name)
            for state in CIRCUIT_STATES:
                family.add_metric([name, state], 1.0 if state == current else 0.0)
        yield family


def scrape_registry() -> CollectorRegistry:
    """What one scrape reads: every process's values (multiprocess mode) or this process's,
    and the circuits."""
    scrape = CollectorRegistry()
    if multiprocess_dir():
        MultiProcessCollector(scrape)
    else:
        scrape.register(REGISTRY)  # a registry is a collector of its collectors
    scrape.register(CircuitCollector())
    return scrape


class MetricsView(AppAPIConfig, APIView):
    """The app's metrics in Prometheus' text format (version 0.0.4)."""

    permission_classes = [LoopbackOrStaff]
    # Not in its own figures: a scrape would always see itself in flight.
    counted_in_metrics = False
    throttle_classes = []  # a scraper every few seconds is not a user to slow down
    # Errors in JSON whatever the scraper's Accept header says (text/plain, OpenMetrics).
    content_negotiation_class = StreamingContentNegotiation

    @extend_schema(exclude=True)
    def get(self, request):
        return HttpResponse(
            generate_latest(scrape_registry()), content_type=CONTENT_TYPE_PLAIN_0_0_4
        )


metrics_view = MetricsView.as_view()
