import asyncio
import logging

from timesheet.core import conf
from timesheet.workers.delivery import DeliveryWorker
from timesheet.workers.loop import install_signal_handlers

from .run_fiches_ticker import WorkerCommand, positive_float

logger = logging.getLogger("timesheet.workers.delivery")


class Command(WorkerCommand):
    help = "Deliver the fiche events to the webhook subscriptions, in order, signed, until SIGTERM or SIGINT."

    def add_arguments(self, parser):
        parser.add_argument(
            "--poll",
            type=str,
            default=None,
            help="Seconds between looks for new events "
            f"(default: WEBHOOK_POLL_SECONDS, now {conf.get('WEBHOOK_POLL_SECONDS')}).",
        )
        parser.add_argument("--once", action="store_true", help="Make one delivery pass and exit.")

    def handle(self, *args, poll, once, verbosity, **options):
        self.start(verbosity)
        poll = conf.get("WEBHOOK_POLL_SECONDS") if poll is None else positive_float(poll, option="--poll")
        asyncio.run(self._run(DeliveryWorker(poll=float(poll), once=once)))

    async def _run(self, worker):
        install_signal_handlers(worker)
        logger.info("Webhook delivery started: looking every %g s.", worker.poll)
        await worker.run()
        logger.info("Webhook delivery stopped after %d pass(es).", worker.passes)
