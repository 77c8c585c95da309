from typing import Any

from django.core.management.base import CommandParser

from timesheet.core import conf
from timesheet.workers.command import WorkerCommand, positive_seconds
from timesheet.workers.delivery import DeliveryUnit
from timesheet.workers.loop import Loop


class Command(WorkerCommand):
    help = "Deliver the fiche events to the webhook subscriptions, in order, signed, until SIGTERM or SIGINT."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--poll",
            type=positive_seconds,
            default=None,
            help="Seconds between looks for new events "
            f"(default: WEBHOOK_POLL_SECONDS, now {conf.get('WEBHOOK_POLL_SECONDS')}).",
        )
        parser.add_argument("--once", action="store_true", help="Make one delivery pass and exit.")

    def handle(self, *args: Any, poll: float | None, once: bool, verbosity: int, **options: Any) -> None:
        self.start(verbosity)
        poll = float(conf.get("WEBHOOK_POLL_SECONDS")) if poll is None else poll
        loop = Loop(
            DeliveryUnit(),
            interval=poll,
            max_runs=1 if once else None,
            max_failure_seconds=0 if once else conf.max_failure_seconds(),
            # A stop lets the POST in flight end (WEBHOOK_TIMEOUT_SECONDS at most) before it abandons it.
            stop_grace=float(conf.get("WEBHOOK_TIMEOUT_SECONDS")) + float(conf.get("TICKER_STOP_GRACE_SECONDS")),
        )
        self.run_loop(
            loop,
            name="Webhook delivery",
            started=f"looking every {poll:g} s.",
            failed="The delivery pass failed; see the error above." if once else None,
        )
