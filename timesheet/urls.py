from django.urls import path, re_path, register_converter

from . import api


class IdConverter:
    """A database id: digits that fit a 64-bit integer, so an absurd one is a plain 404."""

    regex = "[0-9]{1,18}"

    def to_python(self, value):
        return int(value)

    def to_url(self, value):
        return str(value)


register_converter(IdConverter, "id")

app_name = "timesheet"

urlpatterns = [
    path("fiches/", api.fiches, name="fiches"),
    path("fiches/stream", api.stream, name="stream"),
    path("fiches/<id:fiche_id>/", api.fiche_detail, name="fiche"),
    *(
        path(f"fiches/<id:fiche_id>/{action}", api.fiche_transition, {"action": action}, name=action)
        for action in api.TRANSITIONS
    ),
    path("csrf", api.csrf, name="csrf"),
    path("login", api.login, name="login"),
    path("logout", api.logout, name="logout"),
    re_path(r"^(?P<path>.*)$", api.not_found),
]
