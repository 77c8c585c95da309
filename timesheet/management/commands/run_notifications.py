from typing import Any

from django.core.management.base import CommandParser

from timesheet.core import conf
from timesheet.workers.command import WorkerCommand, positive_int, positive_seconds
from timesheet.workers.loop import Loop
from timesheet.workers.notify import NotifyUnit


class Command(WorkerCommand):
    help = "Deliver the notifications by email and to the webhook subscriptions, until SIGTERM or SIGINT."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--poll",
            type=positive_seconds,
            default=None,
            help="Seconds between looks for new notifications "
            f"(default: NOTIFY_POLL_SECONDS, now {conf.get('NOTIFY_POLL_SECONDS')}).",
        )
        parser.add_argument("--once", action="store_true", help="Make one delivery pass and exit.")
        parser.add_argument(
            "--batch-size",
            type=positive_int,
            default=None,
            help=f"Most notifications fanned out in one transaction (default: NOTIFY_BATCH_SIZE, "
            f"now {conf.get('NOTIFY_BATCH_SIZE')}).",
        )

    def handle(
        self, *args: Any, poll: float | None, once: bool, batch_size: int | None, verbosity: int, **options: Any
    ) -> None:
        self.start(verbosity)
        poll = float(conf.get("NOTIFY_POLL_SECONDS")) if poll is None else poll
        unit = NotifyUnit() if batch_size is None else NotifyUnit(batch_size=batch_size)
        loop = Loop(
            unit,
            interval=poll,
            max_runs=1 if once else None,
            max_failure_seconds=0 if once else conf.max_failure_seconds(),
            # A stop lets the delivery in flight end (NOTIFY_TIMEOUT_SECONDS at most) before it abandons it.
            stop_grace=float(conf.get("NOTIFY_TIMEOUT_SECONDS")) + float(conf.get("TICKER_STOP_GRACE_SECONDS")),
        )
        self.run_loop(
            loop,
            name="Notification delivery",
            started=f"looking every {poll:g} s.",
            failed="The delivery pass failed; see the error above." if once else None,
        )
