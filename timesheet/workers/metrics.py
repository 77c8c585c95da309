"""
The workers' Prometheus metrics, served by the ticker on ``METRICS_PORT``
(127.0.0.1).

The figure that says whether stored time can be trusted is freshness:
``fiches_stored_time_age_seconds``, how old the oldest running fiche's
accounting mark is. With a healthy ticker it stays under its interval plus a
tick's duration.
"""

from typing import TYPE_CHECKING

from prometheus_client import Counter, Gauge, Histogram

from timesheet.domain.health import freshness

if TYPE_CHECKING:
    from timesheet.workers.ticker import TickReport

# The ticker ----------------------------------------------------------------

TICK_DURATION = Histogram(
    "fiches_tick_duration_seconds",
    "How long a good tick took.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
TICKS = Counter("fiches_ticks", "Good ticks.")
TICK_FAILURES = Counter("fiches_tick_failures", "Ticks that failed (each retried with back-off).")
TICK_OVERRUNS = Counter("fiches_tick_overruns", "Deadlines skipped because a tick outlasted its interval.")
ROWS_SETTLED = Counter("fiches_rows_settled", "Running fiches settled by ticks.")
AUTO_STOPPED = Counter("fiches_auto_stopped", "Fiches paused by the auto-stop.")
STORED_TIME_AGE = Gauge(
    "fiches_stored_time_age_seconds",
    "Age of the oldest running fiche's accounting mark after the last tick (0 when none runs).",
)
RUNNING = Gauge("fiches_running", "Running fiches after the last tick.")


def record_tick(report: "TickReport") -> None:
    """After a good tick (in its thread): counters, and freshness read from the database."""
    TICKS.inc()
    TICK_DURATION.observe(report.duration)
    ROWS_SETTLED.inc(report.settled)
    AUTO_STOPPED.inc(report.auto_stopped)
    running, age = freshness()
    RUNNING.set(running)
    STORED_TIME_AGE.set(age or 0.0)
