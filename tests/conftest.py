import os
import re
import subprocess
import sys
import time
import warnings
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, connections
from django.test import Client

from timesheet.models import FicheEvent, FicheTemps, Projet, Stretch

ROOT = Path(__file__).resolve().parent.parent

# The clock of the database is SQLite's (millisecond resolution) or
# PostgreSQL's (microsecond): the time charged may differ from the real time
# measured around the calls by at most one millisecond.
RESOLUTION = timedelta(milliseconds=1)


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


def _close_connections_and_pools():
    connections.close_all()
    for each in connections.all():
        if hasattr(each, "close_pool"):
            each.close_pool()


def _other_sessions():
    """The other sessions on this PostgreSQL database: (pid, application_name, state, query)."""
    # A connection of its own, not the pool's: a pool would open a spare one beside it.
    with connection.Database.connect(**connection.get_connection_params()) as own:
        return own.execute(
            "SELECT pid, application_name, state, left(query, 100) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()


@pytest.fixture(scope="session", autouse=True)
def close_pools_before_dropping_the_test_database(django_db_setup, django_db_blocker):
    """
    PostgreSQL drops the test database only when nobody is connected: close
    our pooled connections, wait for the sessions of worker processes that
    tests stopped to end, and name any session that stays.
    """
    yield
    with django_db_blocker.unblock():
        _close_connections_and_pools()
        if connection.vendor != "postgresql":
            return
        deadline = time.monotonic() + 30
        while (others := _other_sessions()) and time.monotonic() < deadline:
            time.sleep(0.1)
        if others:
            warnings.warn(f"Sessions still connected to the test database: {others}", stacklevel=1)


@pytest.fixture(autouse=True)
def language_of_each_test_is_its_own():
    """A request in French leaves the language active in its thread: each test starts from the default."""
    yield
    from django.utils import translation

    translation.deactivate()


@pytest.fixture
def user(db):
    return get_user_model().objects.create_user("alice", password="x")


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


@pytest.fixture
def alice(user):
    """A client signed in as ``user`` (alice)."""
    return signed_in(user)


@pytest.fixture
def admin_user(db):
    return get_user_model().objects.create_superuser("root", password="x")


@pytest.fixture
def admin_client(admin_user):
    return signed_in(admin_user)


@pytest.fixture
def other_user(db):
    return get_user_model().objects.create_user("bob", password="x")


STAFF_PERMISSIONS = ["view_fichetemps", "change_fichetemps", "add_fichetemps", "adjust_fichetemps"]


@pytest.fixture
def staff(db):
    """Staff with the admin's permissions on fiches: they see, act on, create and adjust anyone's."""
    from django.contrib.auth.models import Permission

    carol = get_user_model().objects.create_user("carol", password="x", is_staff=True)
    carol.user_permissions.set(Permission.objects.filter(codename__in=STAFF_PERMISSIONS))
    return get_user_model().objects.get(pk=carol.pk)


@pytest.fixture
def projet(db):
    return Projet.objects.create(designation="Refonte")


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


@pytest.fixture
def worker_env():
    """Environment for a subprocess that must use the test database."""
    settings_dict = connection.settings_dict
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST")}
    env["DJANGO_SETTINGS_MODULE"] = "settings"
    env.pop("DJANGO_DATA_DIR", None)
    if connection.vendor == "sqlite":
        env["DATABASE_URL"] = f"sqlite:///{settings_dict['NAME']}"
    else:
        env["DATABASE_URL"] = (
            f"postgres://{settings_dict['USER']}:{settings_dict['PASSWORD']}@{settings_dict['HOST']}:"
            f"{settings_dict['PORT']}/{settings_dict['NAME']}"
        )
    return env


@pytest.fixture
def production_env(worker_env, tmp_path):
    """The environment of a process in production mode, with a real secret key, over the test database."""
    import secrets

    secret = tmp_path / "secret"
    secret.write_text(secrets.token_urlsafe(60))
    return {
        **worker_env,
        "DJANGO_ENV": "production",
        "DJANGO_SECRET_KEY_FILE": str(secret),
        "DJANGO_ALLOWED_HOSTS": "fiches.example.org,testserver",
        "DJANGO_DATA_DIR": str(tmp_path),
    }


class WorkerProcess:
    """A worker command (``run_fiches_ticker`` by default) as a child process, its output collected in a file."""

    def __init__(self, env, *args, log_path, command="run_fiches_ticker"):
        self.log_path = log_path
        self.log = open(log_path, "w")
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), command, *args],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def output(self):
        return Path(self.log_path).read_text()

    def seen(self, text) -> int:
        """How many times ``text`` (a string, or a compiled pattern) appears in the output so far."""
        output = self.output()
        return len(text.findall(output)) if isinstance(text, re.Pattern) else output.count(text)

    def wait_for(self, text, *, count=1, timeout=60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.seen(text) >= count:
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError(f"{text!r} x{count} not seen in time; output:\n{self.output()}")

    def wait(self, timeout=10.0):
        try:
            return self.process.wait(timeout)
        finally:
            self.log.close()

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.log.close()


@pytest.fixture
def spawn_worker(worker_env, tmp_path):
    workers = []

    def spawn(*args):
        worker = WorkerProcess(worker_env, *args, log_path=tmp_path / f"worker-{len(workers)}.log")
        workers.append(worker)
        return worker

    yield spawn
    for worker in workers:
        worker.kill()


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
        from timesheet.domain import fiches

        before = time.monotonic()
        fiches.start_fiche(fiche_id=fiche_id, actor=self.actor)
        self.started[fiche_id] = (before, time.monotonic())

    def create_running(self, projet):
        from timesheet.domain import fiches

        before = time.monotonic()
        fiche = fiches.create_fiche(projet_id=projet.pk, owner_id=self.actor.pk, actor=self.actor, start=True)
        self.started[fiche.pk] = (before, time.monotonic())
        return fiche.pk

    def pause(self, fiche_id):
        from timesheet.domain import fiches

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
