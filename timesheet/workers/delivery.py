"""
Webhook delivery as a worker loop's unit, run by ``manage.py run_webhooks``.

Each pass (``webhooks.deliver_due``) is started from Django's sync thread and
delivers up to ``WEBHOOK_CONCURRENCY`` subscriptions at once, in threads of
its own that close their database connections when the pass ends; each
attempt ends within ``WEBHOOK_TIMEOUT_SECONDS``, so a slow receiver delays
only its own subscription. When a pass finds nothing to send, the loop waits
``WEBHOOK_POLL_SECONDS`` (or until stopped); while events remain, it passes
again at once. A stop ends the pass once the deliveries in flight end (each
within its deadline): the attempts after them are left to the next worker.
A delivery cut short all the same (SIGKILL) is sent again by whichever
worker next holds the subscription's lease.
"""

import threading
from dataclasses import dataclass, field

from timesheet.domain import webhooks


@dataclass
class DeliveryUnit:
    noun: str = "Pass"
    plural: str = "passes"
    fixed_rate: bool = False
    stopping: threading.Event = field(default_factory=threading.Event)

    def run(self) -> webhooks.DeliveryReport:
        return webhooks.deliver_due(stop=self.stopping.is_set)

    def more(self, report: webhooks.DeliveryReport) -> bool:
        return report.delivered > 0

    def eventful(self, report: webhooks.DeliveryReport) -> bool:
        return bool(report.delivered or report.failed or report.disabled)

    def interrupt(self) -> None:
        self.stopping.set()

    def failed(self, error: Exception) -> None:
        pass  # logged by the loop; each attempt is in the delivery log

    def overran(self, missed: int) -> None:
        pass  # a poll has no deadlines to miss

    def stopped(self) -> None:
        pass
