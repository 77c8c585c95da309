from typing import Any

from django.core.management.base import BaseCommand

from timesheet.domain import eventlog


class Command(BaseCommand):
    help = (
        "After restoring a dump into another PostgreSQL cluster (system check timesheet.E090): give every event "
        "transaction id 0 and move each webhook cursor to before its first undelivered event. Stop the workers first."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        ahead = eventlog.written_ahead()
        if not ahead:
            self.stdout.write("No event is ahead of this cluster's transaction ids: nothing to do.")
            return
        done = eventlog.rebase()
        self.stdout.write(
            f"{ahead} events were ahead of this cluster; {done.events} events now carry transaction id 0, "
            f"{done.subscriptions} webhook cursors moved."
        )
