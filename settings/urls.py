from django.contrib import admin
from django.urls import include, path

from timesheet import metrics, views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include("timesheet.urls")),
    path("healthz", views.healthz, name="healthz"),
    path("metrics", metrics.metrics_view, name="metrics"),
]
