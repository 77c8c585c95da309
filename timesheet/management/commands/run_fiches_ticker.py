import asyncio
import logging

import prometheus_client
from django.core.management.base import BaseCommand, CommandError

from timesheet.core import conf
from timesheet.workers.loop import Worker, WorkerFailed, install_signal_handlers
from timesheet.workers.systemd import watchdog_seconds

logger = logging.getLogger("timesheet.workers.loop")

VERBOSITY_LEVELS = {0: logging.WARNING, 1: logging.INFO, 2: logging.DEBUG, 3: logging.DEBUG}


def positive_float(text, option="--interval"):
    try:
        value = float(text)
    except ValueError:
        raise CommandError(f"{option} must be a number of seconds, got {text!r}.") from None
    if not value > 0 or value == float("inf"):
        raise CommandError(f"{option} must be a positive number of seconds, got {text!r}.")
    return value


def positive_int(option):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise CommandError(f"{option} must be a whole number, got {text!r}.") from None
        if value < 1:
            raise CommandError(f"{option} must be at least 1, got {text!r}.")
        return value

    return parse


class WorkerCommand(BaseCommand):
    """A long-running worker's command (the ticker, the webhook worker)."""

    # The checks run in start(), without those that query the database: a worker started
    # while the database is locked or down waits for it, working with back-off, rather than exit.
    requires_system_checks = []

    def start(self, verbosity):
        """Check the settings and set the timesheet loggers' level from ``verbosity``."""
        self.check(databases=[])
        logging.getLogger("timesheet").setLevel(VERBOSITY_LEVELS.get(verbosity, logging.DEBUG))


class Command(WorkerCommand):
    help = (
        "Keep the stored time of every running fiche up to date: settle them all every "
        "INCREMENT_TIME_SECONDS until SIGTERM or SIGINT."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--interval",
            type=str,
            default=None,
            help=f"Seconds between ticks (default: INCREMENT_TIME_SECONDS, now {conf.get('INCREMENT_TIME_SECONDS')}).",
        )
        parser.add_argument(
            "--once", action="store_true", help="Run one tick and exit: status 0 if it succeeded, 1 if it failed."
        )
        parser.add_argument("--max-ticks", type=str, default=None, help="Exit after this many good ticks.")
        parser.add_argument(
            "--metrics-port",
            type=str,
            default=None,
            help="Serve Prometheus metrics on 127.0.0.1 at this port (default: METRICS_PORT, unset for none).",
        )
        parser.add_argument(
            "--batch-size",
            type=str,
            default=None,
            help="Most rows settled in one transaction (default: TICKER_BATCH_SIZE).",
        )

    def handle(self, *args, interval, once, max_ticks, batch_size, metrics_port, verbosity, **options):
        self.start(verbosity)
        interval = conf.tick_interval() if interval is None else positive_float(interval)
        max_ticks = 1 if once else (None if max_ticks is None else positive_int("--max-ticks")(max_ticks))
        batch_size = conf.batch_size() if batch_size is None else positive_int("--batch-size")(batch_size)
        metrics_port = (
            conf.get("METRICS_PORT") if metrics_port is None else positive_int("--metrics-port")(metrics_port)
        )
        if metrics_port:
            try:
                prometheus_client.start_http_server(metrics_port, addr="127.0.0.1")
            except OSError as exc:
                raise CommandError(f"Cannot serve metrics on 127.0.0.1:{metrics_port}: {exc}") from exc
            logger.info("Metrics on http://127.0.0.1:%d/metrics", metrics_port)

        worker = Worker(
            interval=interval,
            max_ticks=max_ticks,
            batch_size=batch_size,
            max_running=conf.max_running(),
            # --once makes one attempt: a failure is final, not retried.
            max_failure_seconds=0 if once else conf.max_failure_seconds(),
            stop_grace=float(conf.get("TICKER_STOP_GRACE_SECONDS")),
        )
        try:
            asyncio.run(self._run(worker))
        except WorkerFailed as exc:
            raise CommandError("The tick failed; see the error above." if once else str(exc)) from exc

    async def _run(self, worker):
        install_signal_handlers(worker)
        logger.info(
            "Fiches ticker started: every %g s, batches of %d%s.",
            worker.interval,
            worker.batch_size,
            f", auto-stop after {worker.max_running}" if worker.max_running else "",
        )
        watchdog = watchdog_seconds()
        if watchdog is not None and watchdog < 2 * worker.interval:
            logger.warning(
                "WatchdogSec (%g s) is shorter than two intervals (%g s): systemd may restart a healthy ticker.",
                watchdog,
                2 * worker.interval,
            )
        await worker.run()
        logger.info("Fiches ticker stopped after %d tick(s).", worker.ticks)
