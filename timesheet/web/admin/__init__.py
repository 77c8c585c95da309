"""
The admin, where staff inspect and act on fiches. Every change goes through
the domain's services; each module registers the admin of one area.
"""

from timesheet.web.admin import budgets, fiches, locks, projets, rates, records, tokens, webhooks
from timesheet.web.admin import notifications as notifications
from timesheet.web.admin import timesheets as timesheets

__all__ = ["budgets", "fiches", "locks", "projets", "rates", "records", "tokens", "webhooks"]
