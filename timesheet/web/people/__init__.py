"""
The people's page at ``/`` and the settings page at ``/settings``: everyone
who tracks time runs a timer, sees and edits their week's entries, starts,
pauses, finishes, switches and continues fiches, reads their notifications
(the bell: a forgotten timer stopped at the time they really stopped), and
sets their time zone, language, reminders, notifications and API tokens.
Thin async views in the modules below; the page re-renders its regions when
the stream says something changed.
"""

from timesheet.web.people.account import (
    create_token,
    revoke_token,
    set_language,
    set_notification_preferences,
    set_reminders,
    set_time_zone,
    settings_page,
)
from timesheet.web.people.export import export
from timesheet.web.people.notifications import (
    notification_list,
    read_all_notifications,
    read_notification,
    stop_at_notification,
)
from timesheet.web.people.page import home
from timesheet.web.people.timer import continue_fiche, create, transition
from timesheet.web.people.week import add_entry, change_entry, delete_entry, split_entry

__all__ = [
    "add_entry",
    "change_entry",
    "continue_fiche",
    "create",
    "create_token",
    "delete_entry",
    "export",
    "home",
    "notification_list",
    "read_all_notifications",
    "read_notification",
    "revoke_token",
    "set_language",
    "set_notification_preferences",
    "set_reminders",
    "set_time_zone",
    "settings_page",
    "split_entry",
    "stop_at_notification",
    "transition",
]
