from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class TimesheetConfig(AppConfig):
    name = "timesheet"
    verbose_name = _("Time sheets")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from . import checks  # noqa: F401  (registers the system checks)
