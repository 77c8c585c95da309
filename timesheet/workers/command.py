"""
What every worker command shares: options validated by argparse ``type=``
functions, verbosity mapped to logging, the settings checked, and the loop
run until a signal stops it.
"""

import argparse
import asyncio
import logging
import math
from collections.abc import Callable
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from timesheet.workers.loop import Loop, WorkerFailed, install_signal_handlers

VERBOSITY_LEVELS = {0: logging.WARNING, 1: logging.INFO, 2: logging.DEBUG, 3: logging.DEBUG}


def positive_seconds(text: str) -> float:
    """An argparse type: a positive, finite number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {text!r}") from None
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def at_least(minimum: int, *, below: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number from ``minimum`` on (and below ``below``, if given)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        if value < minimum or (below is not None and value >= below):
            bound = f"from {minimum} to {below - 1}" if below is not None else f"at least {minimum}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text!r}")
        return value

    return parse


positive_int = at_least(1)
tcp_port = at_least(1, below=65536)


class WorkerCommand(BaseCommand):
    """A long-running worker's command: thin, its loop in ``timesheet.workers.loop``."""

    # The checks run in start(), without those that query the database: a worker started
    # while the database is locked or down waits for it, working with back-off, rather than exit.
    requires_system_checks: list[str] = []
    logger_name = "timesheet.workers"

    def start(self, verbosity: int) -> None:
        """Check the settings and set the timesheet loggers' level from ``verbosity``."""
        self.check(databases=[])
        logging.getLogger("timesheet").setLevel(VERBOSITY_LEVELS.get(verbosity, logging.DEBUG))

    def run_loop(self, loop: Loop[Any], *, name: str, started: str, failed: str | None = None) -> None:
        """
        Run ``loop`` until a signal stops it, logging ``name`` and ``started``
        first and how many passes at the end; a loop that gives up is a
        CommandError (``failed`` says why, if given).
        """
        logger = logging.getLogger(self.logger_name)

        async def main() -> None:
            install_signal_handlers(loop)
            logger.info("%s started: %s", name, started)
            await loop.run()
            logger.info("%s stopped after %s.", name, loop.counted(loop.runs))

        try:
            asyncio.run(main())
        except WorkerFailed as exc:
            raise CommandError(failed or str(exc)) from exc
