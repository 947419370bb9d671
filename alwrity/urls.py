"""Root URLs: the admin, and the llm_providers API under /api/llm/ (added with the REST API)."""

from django.contrib import admin
from django.urls import path

urlpatterns = [
    path("admin/", admin.site.urls),
]
