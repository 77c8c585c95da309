"""
What the tests share besides fixtures: the one wait helper, the checks that a
fiche's time is exact, and skips for what needs PostgreSQL or a tool.
"""

import os
import random
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.test import Client

from timesheet.domain import fiches
from timesheet.models import FicheEvent, FicheTemps, Stretch

ROOT = Path(__file__).resolve().parent.parent

# The clock of the database is SQLite's (millisecond resolution) or
# PostgreSQL's (microsecond): the time charged may differ from the real time
# measured around the calls by at most one millisecond.
RESOLUTION = timedelta(milliseconds=1)
# A generous ceiling for what happens at once on an idle machine: a test
# waits for its condition, never for a duration.
WAIT = 60.0


def wait_until(condition: Callable[[], object], timeout: float = WAIT, *, every: float = 0.005, message: str = ""):
    """Return ``condition()``'s first true value, polling every ``every`` seconds; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, message or f"not true within {timeout:g} s"
        time.sleep(every)
    return value


def signed_in(user, **kwargs) -> Client:
    """A test client (made with ``kwargs``) signed in as ``user``."""
    client = Client(**kwargs)
    client.force_login(user)
    return client


def _change_password(user):
    user.set_password("a-new-password")
    user.save()


def _deactivate(user):
    type(user).objects.filter(pk=user.pk).update(is_active=False)


# What makes Django end a user's sessions.
SESSION_ENDINGS = {"password changed": _change_password, "deactivated": _deactivate}


STAFF_PERMISSIONS = ["view_fichetemps", "change_fichetemps", "add_fichetemps", "adjust_fichetemps"]


def subscription_form(**fields):
    """The admin's webhook subscription form, filled in (``fields`` override), with its empty delivery log."""
    return {
        "name": "hook",
        "url": "https://example.org/hook",
        "secret": "s",
        "kinds": [],
        "owner": "",
        "active": "on",
        **{f"deliveries-{name}": "0" for name in ("TOTAL_FORMS", "INITIAL_FORMS", "MIN_NUM_FORMS", "MAX_NUM_FORMS")},
        **fields,
    }


def elapse(seconds: float) -> None:
    """Let at least ``seconds`` pass on the database's clock (the one time is charged on): a wait, not a sleep."""
    from timesheet.core.dbtime import db_now

    start = db_now()
    wait_until(lambda: (db_now() - start).total_seconds() >= seconds, every=min(seconds, 0.01))


def postgresql_session(url: str):
    """
    A PostgreSQL connection of its own to ``url`` (another session than the
    test's). psycopg comes with the postgres extra: imported here, so that the
    suite is collected with the test extra alone.
    """
    psycopg = pytest.importorskip("psycopg")
    return psycopg.connect(url)


def postgresql_only(reason):
    """Skip unless the suite runs on PostgreSQL."""
    if connection.vendor != "postgresql":
        pytest.skip(f"PostgreSQL only: {reason}")


def require(condition, reason, *, module=False):
    """Skip (the test, or the whole ``module``) when ``condition`` fails, except in CI, which must run everything."""
    if not condition:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run this test: {reason}", pytrace=False)
        pytest.skip(reason, allow_module_level=module)


def charged_by_events(fiche_id):
    """The fiche's time recomputed from its audit trail alone."""
    return sum((event.delta for event in FicheEvent.objects.filter(fiche_id=fiche_id)), timedelta(0))


def running_stretches(fiche_id):
    """Each running stretch of the fiche as (start event instant, stop event instant)."""
    stretches, started = [], None
    for event in FicheEvent.objects.filter(fiche_id=fiche_id):
        if event.kind == FicheEvent.Kind.STARTED:
            started = event.at
        elif event.kind in (FicheEvent.Kind.PAUSED, FicheEvent.Kind.FINISHED, FicheEvent.Kind.AUTO_STOPPED):
            if started is not None:
                stretches.append((started, event.at))
            started = None
    return stretches


def assert_exact(fiche_id):
    """
    The stored time equals what the audit trail says, and what the ledger
    says: every stretch once, never twice (a running fiche's open stretch
    counted up to its accounting mark).
    """
    fiche = FicheTemps.objects.get(pk=fiche_id)
    settled_part = fiche.compte_jusqua - fiche.en_calcul_depuis if fiche.is_running else timedelta(0)
    assert fiche.temps_impute == charged_by_events(fiche_id) + settled_part
    adjustments = sum(
        (e.delta for e in FicheEvent.objects.filter(fiche_id=fiche_id, kind=FicheEvent.Kind.ADJUSTED)), timedelta(0)
    )
    edited = FicheEvent.objects.filter(fiche_id=fiche_id, kind__startswith="entry_").exists()
    if not edited:  # the stretches as the transitions' events draw them (entries' edits redraw them)
        stretches = sum((stop - start for start, stop in running_stretches(fiche_id)), timedelta(0))
        assert fiche.temps_impute == stretches + settled_part + adjustments
    assert fiche.temps_impute == ledger_time(fiche) + adjustments
    return fiche


def ledger_time(fiche):
    """The fiche's running time by its ledger: closed stretches, and the open one up to the accounting mark."""
    total = timedelta(0)
    for stretch in Stretch.objects.filter(fiche_id=fiche.pk):
        if stretch.ended_at is None:
            assert fiche.etat == "en_calcul" and stretch.started_at == fiche.en_calcul_depuis
            total += fiche.compte_jusqua - stretch.started_at
        else:
            total += stretch.ended_at - stretch.started_at
    return total


def assert_within_real_time(charged, shortest, longest):
    """``charged`` lies within the real running time measured around the calls (monotonic seconds)."""
    assert timedelta(seconds=shortest) - RESOLUTION <= charged <= timedelta(seconds=longest) + RESOLUTION, (
        f"{charged} is outside [{shortest:.6f} s, {longest:.6f} s]"
    )


class RealClock:
    """
    Starts and pauses fiches through the services while measuring, outside the
    product, the bounds of each fiche's real running time.
    """

    def __init__(self, actor):
        self.actor = actor
        self.shortest = {}
        self.longest = {}
        self.started = {}

    def start(self, fiche_id):
        before = time.monotonic()
        fiches.start_fiche(fiche_id=fiche_id, actor=self.actor)
        self.started[fiche_id] = (before, time.monotonic())

    def create_running(self, projet):
        before = time.monotonic()
        fiche = fiches.create_fiche(projet_id=projet.pk, owner_id=self.actor.pk, actor=self.actor, start=True)
        self.started[fiche.pk] = (before, time.monotonic())
        return fiche.pk

    def pause(self, fiche_id):
        before_start, after_start = self.started.pop(fiche_id)
        before = time.monotonic()
        fiches.pause_fiche(fiche_id=fiche_id, actor=self.actor)
        after = time.monotonic()
        self.shortest[fiche_id] = self.shortest.get(fiche_id, 0) + (before - after_start)
        self.longest[fiche_id] = self.longest.get(fiche_id, 0) + (after - before_start)

    def pause_all_and_check(self):
        """Pause what still runs; each fiche's time must match its audit trail and the real time measured here."""
        for fiche_id in list(self.started):
            self.pause(fiche_id)
        for fiche_id in self.shortest:
            fiche = assert_exact(fiche_id)
            stretches = len(running_stretches(fiche_id))
            # One resolution step of slack per stretch: each start and stop is on the database's clock.
            assert timedelta(seconds=self.shortest[fiche_id]) - stretches * RESOLUTION <= fiche.temps_impute
            assert fiche.temps_impute <= timedelta(seconds=self.longest[fiche_id]) + stretches * RESOLUTION


def sigkill_storm(spawn_worker, *, seconds: float, seed: int, workers: int = 2, interval: str = "0.05"):
    """
    Start ``workers`` tickers and SIGKILL them all after a random moment,
    again and again for ``seconds``; return ``workers`` tickers left running.
    """
    rng = random.Random(seed)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = [spawn_worker("--interval", interval) for _ in range(workers)]
        time.sleep(rng.uniform(0.2, 0.8))
        for worker in started:
            worker.process.kill()
            worker.wait()
    return [spawn_worker("--interval", interval) for _ in range(workers)]
