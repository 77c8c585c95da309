from django.contrib import admin
from django.urls import include, path

from timesheet import api

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include("timesheet.urls")),
    path("healthz", api.healthz, name="healthz"),
]
