from django.urls import path, re_path, register_converter

from timesheet.web import api, views


class IdConverter:
    """A database id: digits that fit a 64-bit integer, so an absurd one is a plain 404."""

    regex = "[0-9]{1,18}"

    def to_python(self, value):
        return int(value)

    def to_url(self, value):
        return str(value)


register_converter(IdConverter, "id")

urlpatterns = [
    path("fiches/stream", views.stream, name="stream"),
    path("", api.api.urls),
    re_path(r"^(?P<path>.*)$", api.not_found),
]
