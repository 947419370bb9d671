"""The REST API's routes (SPEC §8). The project mounts them at ``/api/llm/``."""

from django.urls import path

from .api import views
from .api.openai_compat import ChatCompletionsView, ModelDetailView, ModelListView

app_name = "llm_providers"

urlpatterns = [
    path("", views.APIRootView.as_view(), name="root"),
    path("generate/", views.GenerateView.as_view(), name="generate"),
    path("usage/", views.UsageView.as_view(), name="usage"),
    path("calls/", views.CallsView.as_view(), name="calls"),
    path("reports/costs/", views.CostReportView.as_view(), name="cost-report"),
    path("keys/", views.KeyListView.as_view(), name="keys"),
    path("keys/<int:pk>/", views.KeyDetailView.as_view(), name="key"),
    path("me/keys/", views.MyKeyListView.as_view(), name="my-keys"),
    path("me/keys/<int:pk>/", views.MyKeyDetailView.as_view(), name="my-key"),
    path("providers/", views.ProvidersView.as_view(), name="providers"),
    path("health/", views.HealthView.as_view(), name="health"),
    path("v1/chat/completions", ChatCompletionsView.as_view(), name="chat-completions"),
    path("v1/models", ModelListView.as_view(), name="models"),
    # Model ids hold slashes (openai/gpt-4o); the SDK sends them percent-encoded, as one segment.
    path("v1/models/<path:model>", ModelDetailView.as_view(), name="model"),
]
