from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class TimesheetConfig(AppConfig):
    name = "timesheet"
    verbose_name = _("Time sheets")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from timesheet.core import checks  # noqa: F401  (registers the system checks)
        from timesheet.domain import eventlog  # noqa: F401  (registers its check of the database)
        from timesheet.web import admin  # noqa: F401  (registers the admin's pages: not at Django's timesheet.admin)
