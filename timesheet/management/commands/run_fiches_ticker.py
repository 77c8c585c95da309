import logging
from typing import Any

import prometheus_client
from django.core.management.base import CommandError, CommandParser

from timesheet.core import conf
from timesheet.workers.command import WorkerCommand, positive_int, positive_seconds, tcp_port
from timesheet.workers.loop import Loop
from timesheet.workers.systemd import watchdog_seconds
from timesheet.workers.ticker import TickerUnit

logger = logging.getLogger("timesheet.workers")


class Command(WorkerCommand):
    help = (
        "Keep the stored time of every running fiche up to date: settle them all every "
        "INCREMENT_TIME_SECONDS until SIGTERM or SIGINT."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--interval",
            type=positive_seconds,
            default=None,
            help=f"Seconds between ticks (default: INCREMENT_TIME_SECONDS, now {conf.get('INCREMENT_TIME_SECONDS')}).",
        )
        parser.add_argument(
            "--once", action="store_true", help="Run one tick and exit: status 0 if it succeeded, 1 if it failed."
        )
        parser.add_argument("--max-ticks", type=positive_int, default=None, help="Exit after this many good ticks.")
        parser.add_argument(
            "--metrics-port",
            type=tcp_port,
            default=None,
            help="Serve Prometheus metrics on 127.0.0.1 at this port (default: METRICS_PORT, unset for none).",
        )
        parser.add_argument(
            "--batch-size",
            type=positive_int,
            default=None,
            help="Most rows settled in one transaction (default: TICKER_BATCH_SIZE).",
        )

    def handle(
        self,
        *args: Any,
        interval: float | None,
        once: bool,
        max_ticks: int | None,
        batch_size: int | None,
        metrics_port: int | None,
        verbosity: int,
        **options: Any,
    ) -> None:
        self.start(verbosity)
        interval = conf.tick_interval() if interval is None else interval
        metrics_port = conf.get("METRICS_PORT") if metrics_port is None else metrics_port
        if metrics_port:
            try:
                prometheus_client.start_http_server(metrics_port, addr="127.0.0.1")
            except OSError as exc:
                raise CommandError(f"Cannot serve metrics on 127.0.0.1:{metrics_port}: {exc}") from exc
            logger.info("Metrics on http://127.0.0.1:%d/metrics", metrics_port)
        unit = TickerUnit(interval=interval, batch_size=batch_size or conf.batch_size(), max_running=conf.max_running())
        loop = Loop(
            unit,
            interval=interval,
            max_runs=1 if once else max_ticks,
            # --once makes one attempt: a failure is final, not retried.
            max_failure_seconds=0 if once else conf.max_failure_seconds(),
            stop_grace=float(conf.get("TICKER_STOP_GRACE_SECONDS")),
        )
        watchdog = watchdog_seconds()
        if watchdog is not None and watchdog < 2 * interval:
            logger.warning(
                "WatchdogSec (%g s) is shorter than two intervals (%g s): systemd may restart a healthy ticker.",
                watchdog,
                2 * interval,
            )
        auto_stop = f", auto-stop after {unit.max_running}" if unit.max_running else ""
        self.run_loop(
            loop,
            name="Fiches ticker",
            started=f"every {interval:g} s, batches of {unit.batch_size}{auto_stop}.",
            failed="The tick failed; see the error above." if once else None,
        )
