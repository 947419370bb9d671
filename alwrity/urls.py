"""Root URLs: the admin, the llm_providers API under /api/llm/, its OpenAPI docs, and the
Prometheus metrics at /metrics (loopback or staff only). The site's root is the API's docs: this
project has no pages of its own, and the admin's "View site" and a browser opening the bare
address land there."""

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from llm_providers.api.monitoring import metrics_view

# The API first: resolving tries the patterns in order, and the API is where the traffic is
# (the prefixes are disjoint, so the order changes no match).
urlpatterns = [
    path("api/llm/", include("llm_providers.urls")),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("metrics", metrics_view, name="metrics"),
    path("", RedirectView.as_view(pattern_name="docs"), name="home"),
]

# Under /api/ errors keep the API's JSON body; elsewhere Django's pages.
handler404 = "llm_providers.api.errors.not_found"
handler500 = "llm_providers.api.errors.server_error"
