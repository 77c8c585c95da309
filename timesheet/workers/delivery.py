"""
Webhook delivery as a worker loop's unit, run by ``manage.py run_webhooks``.

Each pass (``webhooks.deliver_due``) runs in Django's sync thread; when a
pass finds nothing to send, the loop waits ``WEBHOOK_POLL_SECONDS`` (or until
stopped); while events remain, it passes again at once. A delivery cut short
by a stop is sent again by whichever worker next holds the subscription's
lease.
"""

from dataclasses import dataclass

from timesheet.domain import webhooks


@dataclass
class DeliveryUnit:
    noun: str = "Pass"
    fixed_rate: bool = False

    def run(self) -> webhooks.DeliveryReport:
        return webhooks.deliver_due()

    def more(self, report: webhooks.DeliveryReport) -> bool:
        return report.delivered > 0

    def failed(self, error: Exception) -> None:
        pass  # logged by the loop; each attempt is in the delivery log

    def overran(self, missed: int) -> None:
        pass  # a poll has no deadlines to miss

    def stopped(self) -> None:
        pass
