"""
Notification delivery as a worker loop's unit, run by ``manage.py run_notifications``.

Each pass hands the new notifications to their channels (``notify.fan_out``,
in transactions of ``NOTIFY_BATCH_SIZE``), then sends the due deliveries
(``notify.deliver_due``), each under its lease and within
``NOTIFY_TIMEOUT_SECONDS``. When a pass finds nothing to do, the loop waits
``NOTIFY_POLL_SECONDS`` (or until stopped); while work remains, it passes
again at once. A stop ends the pass after the delivery in flight; one cut
short all the same (SIGKILL) is sent again by whichever worker next takes
its lease once it runs out.
"""

import dataclasses
import threading
from dataclasses import dataclass, field

from timesheet.core import conf
from timesheet.domain import notify


def _batch_size() -> int:
    return int(conf.get("NOTIFY_BATCH_SIZE"))


@dataclass
class NotifyUnit:
    noun: str = "Pass"
    plural: str = "passes"
    fixed_rate: bool = False
    batch_size: int = field(default_factory=_batch_size)
    stopping: threading.Event = field(default_factory=threading.Event)

    def run(self) -> notify.NotifyReport:
        fanned_out = notify.fan_out(batch_size=self.batch_size, stop=self.stopping.is_set)
        report = notify.deliver_due(stop=self.stopping.is_set)
        return dataclasses.replace(report, fanned_out=fanned_out)

    def more(self, report: notify.NotifyReport) -> bool:
        return report.sent > 0 or report.fanned_out > 0

    def eventful(self, report: notify.NotifyReport) -> bool:
        return bool(report.fanned_out or report.sent or report.failed or report.gave_up)

    def interrupt(self) -> None:
        self.stopping.set()

    def failed(self, error: Exception) -> None:
        pass  # logged by the loop; each attempt is in the delivery's row

    def overran(self, missed: int) -> None:
        pass  # a poll has no deadlines to miss

    def stopped(self) -> None:
        pass
