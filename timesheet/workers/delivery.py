"""
The webhook delivery loop, run by ``manage.py run_webhooks``.

Each pass (``webhooks.deliver_due``) runs in Django's sync thread; when a
pass finds nothing to send, the loop waits ``WEBHOOK_POLL_SECONDS`` (or until
stopped). Errors are logged and retried after the same wait. SIGTERM/SIGINT
stop it after the delivery in flight; a delivery cut short is sent again by
whichever worker next holds the subscription's lease.
"""

import asyncio
import logging
from dataclasses import dataclass, field

from asgiref.sync import sync_to_async
from django.db import close_old_connections, connections

from timesheet.domain import webhooks
from timesheet.workers.systemd import Notifier

logger = logging.getLogger(__name__)


@dataclass
class DeliveryWorker:
    poll: float
    once: bool = False
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    notifier: Notifier = field(default_factory=Notifier)
    passes: int = 0

    def stop(self):
        """Ask the loop to stop after the delivery in flight."""
        self.stopping.set()

    async def run(self) -> None:
        ready = False
        try:
            while not self.stopping.is_set():
                try:
                    report = await sync_to_async(self._pass)()
                except Exception:
                    logger.exception("A delivery pass failed; retrying in %g s.", self.poll)
                    report = None
                else:
                    self.passes += 1
                    if report.delivered or report.failed or report.disabled:
                        logger.info("Webhooks: %s.", report)
                    self.notifier.send(
                        **({} if ready else {"ready": 1}), watchdog=1, status=f"Pass {self.passes}: {report}."
                    )
                    ready = True
                if self.once:
                    return
                if report is None or not report.delivered:
                    try:
                        await asyncio.wait_for(self.stopping.wait(), self.poll)
                    except TimeoutError:
                        pass
        finally:
            self.notifier.send(stopping=1)
            self.notifier.close()
            await sync_to_async(connections.close_all)()

    def _pass(self) -> webhooks.DeliveryReport:
        close_old_connections()
        try:
            return webhooks.deliver_due()
        finally:
            close_old_connections()
