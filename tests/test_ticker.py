import threading
import time
from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, connections
from django.db.models.functions import Now
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tests.factories import running_fiche
from tests.support import assert_exact, assert_within_real_time, elapse, postgresql_only, postgresql_session
from timesheet.core import conf, limits
from timesheet.domain import fiches, ticking
from timesheet.models import Etat, FicheEvent, FicheTemps, Stretch, TickerHeartbeat
from timesheet.workers.ticker import TickReport, record_failure, record_stop, record_tick, register_heartbeat, tick


def db_now():
    return FicheTemps.objects.annotate(now=Now()).values_list("now", flat=True).first()


def shift_marks_back(fiche_id, by):
    """Pretend the fiche was started (and last settled) ``by`` earlier, keeping whole milliseconds."""
    fiche = FicheTemps.objects.get(pk=fiche_id)
    FicheTemps.objects.filter(pk=fiche_id).update(
        compte_jusqua=fiche.compte_jusqua - by, en_calcul_depuis=fiche.en_calcul_depuis - by
    )
    FicheEvent.objects.filter(fiche_id=fiche_id, kind="started").update(at=fiche.en_calcul_depuis - by)
    Stretch.objects.filter(fiche_id=fiche_id, ended_at__isnull=True).update(started_at=fiche.en_calcul_depuis - by)


@pytest.mark.django_db
def test_tick_settles_running_fiches_up_to_now(projet, user):
    t0 = time.monotonic()
    fiche = running_fiche(projet, user)
    t1 = time.monotonic()
    elapse(0.2)
    t2 = time.monotonic()
    report = tick()
    t3 = time.monotonic()
    assert (report.settled, report.auto_stopped, report.batches) == (1, 0, 1)
    ticked = FicheTemps.objects.get(pk=fiche.pk)
    assert ticked.etat == Etat.EN_CALCUL
    assert ticked.compte_jusqua > fiche.compte_jusqua
    assert ticked.temps_impute == ticked.compte_jusqua - fiche.compte_jusqua
    assert_within_real_time(ticked.temps_impute, t2 - t1, t3 - t0)


@pytest.mark.django_db
def test_tick_leaves_paused_and_finished_fiches_alone(projet, user):
    paused = fiches.create_fiche(projet_id=projet.pk, owner_id=user.pk, actor=user)
    finished = fiches.finish_fiche(fiche_id=running_fiche(projet, user).pk, actor=user)
    before = list(FicheTemps.objects.order_by("pk").values())
    assert tick().settled == 0
    assert list(FicheTemps.objects.order_by("pk").values()) == before
    assert {paused.pk, finished.pk} == set(FicheTemps.objects.values_list("pk", flat=True))


@pytest.mark.django_db
def test_ten_thousand_ticks_add_exactly_the_elapsed_time(projet, user):
    fiche = running_fiche(projet, user)
    for _ in range(10_000):
        tick()
    paused = fiches.pause_fiche(fiche_id=fiche.pk, actor=user)
    # Exact to the microsecond: no rounding error accumulates over the ticks.
    assert paused.temps_impute == paused.updated_at - fiche.en_calcul_depuis
    assert_exact(fiche.pk)


@pytest.mark.django_db
def test_a_late_tick_catches_up_on_everything_missed(projet, user):
    """The worker down for a while: the first tick after it settles the whole gap."""
    t0 = time.monotonic()
    fiche = running_fiche(projet, user)
    t1 = time.monotonic()
    tick()
    elapse(0.5)  # no tick: the worker is down
    t2 = time.monotonic()
    tick()
    t3 = time.monotonic()
    assert_within_real_time(FicheTemps.objects.get(pk=fiche.pk).temps_impute, t2 - t1, t3 - t0)


@pytest.mark.django_db
def test_a_clock_behind_the_mark_adds_nothing_and_never_moves_the_mark_back(projet, user):
    fiche = running_fiche(projet, user)
    future = db_now() + timedelta(hours=1)
    FicheTemps.objects.filter(pk=fiche.pk).update(compte_jusqua=future)
    tick()
    ticked = FicheTemps.objects.get(pk=fiche.pk)
    assert ticked.temps_impute == timedelta(0)
    assert ticked.compte_jusqua == future
    paused = fiches.pause_fiche(fiche_id=fiche.pk, actor=user)
    assert paused.temps_impute == timedelta(0)


@pytest.mark.django_db
def test_batches_settle_every_running_fiche_exactly_once(projet, user):
    running = [running_fiche(projet, user) for _ in range(25)]
    for fiche in running[::3]:  # paused rows interleaved with running ones
        fiches.pause_fiche(fiche_id=fiche.pk, actor=user)
    report = tick(batch_size=4)
    assert report.settled == 16
    assert report.batches == 5  # four full batches and the empty tail's check
    ticked = {f.pk: f for f in FicheTemps.objects.filter(etat=Etat.EN_CALCUL)}
    assert len(ticked) == 16
    for fiche in running:
        if fiche.pk in ticked:
            assert ticked[fiche.pk].temps_impute == ticked[fiche.pk].compte_jusqua - fiche.compte_jusqua


@pytest.mark.django_db
def test_tick_is_a_bounded_number_of_statements_whatever_the_number_of_fiches(projet, user):
    def statements(count):
        FicheTemps.objects.all().delete()
        for _ in range(count):
            running_fiche(projet, user)
        # Once first: the reminders' once-a-day marks (Monday's digest, say) are not part of every tick.
        tick(batch_size=1000)
        with CaptureQueriesContext(connection) as queries:
            tick(batch_size=1000)
        return [q["sql"].split()[0] for q in queries.captured_queries]

    few, many = statements(3), statements(300)
    assert few == many
    assert many.count("UPDATE") == 1


@pytest.mark.django_db
def test_tick_loads_no_fiche_into_python(projet, user, monkeypatch):
    running_fiche(projet, user)
    monkeypatch.setattr(FicheTemps, "__init__", lambda *a, **k: pytest.fail("a fiche was loaded"))
    assert tick().settled == 1


@pytest.mark.django_db
def test_auto_stop_pauses_at_exactly_start_plus_maximum(projet, user):
    fiche = running_fiche(projet, user)
    shift_marks_back(fiche.pk, timedelta(hours=3))
    started_at = FicheTemps.objects.get(pk=fiche.pk).en_calcul_depuis
    report = tick(max_running=timedelta(hours=2))
    assert (report.auto_stopped, report.settled) == (1, 0)
    stopped = FicheTemps.objects.get(pk=fiche.pk)
    assert (stopped.etat, stopped.auto_stopped) == (Etat.EN_PAUSE, True)
    assert stopped.temps_impute == timedelta(hours=2)
    event = stopped.events.last()
    assert (event.kind, event.actor, event.at, event.delta) == (
        "auto_stopped",
        None,
        started_at + timedelta(hours=2),
        timedelta(hours=2),
    )
    assert_exact(fiche.pk)


@pytest.mark.django_db
def test_auto_stop_counts_time_already_settled_once(projet, user):
    fiche = running_fiche(projet, user)
    shift_marks_back(fiche.pk, timedelta(hours=3))
    # A tick an hour after the start, before auto-stop was configured.
    FicheTemps.objects.filter(pk=fiche.pk).update(
        temps_impute=timedelta(hours=1), compte_jusqua=fiche.compte_jusqua - timedelta(hours=2)
    )
    tick(max_running=timedelta(hours=2, minutes=30))
    stopped = FicheTemps.objects.get(pk=fiche.pk)
    assert stopped.temps_impute == timedelta(hours=2, minutes=30)
    assert_exact(fiche.pk)


@pytest.mark.django_db
def test_auto_stop_spares_fiches_under_the_maximum_and_restart_clears_the_flag(projet, user):
    young = running_fiche(projet, user)
    old = running_fiche(projet, user)
    shift_marks_back(old.pk, timedelta(hours=9))
    report = tick(max_running=timedelta(hours=8))
    assert (report.auto_stopped, report.settled) == (1, 1)
    assert FicheTemps.objects.get(pk=young.pk).etat == Etat.EN_CALCUL
    restarted = fiches.start_fiche(fiche_id=old.pk, actor=user)
    assert restarted.auto_stopped is False


@pytest.mark.django_db
def test_auto_stop_works_in_batches(projet, user):
    mine = [running_fiche(projet, user) for _ in range(7)]
    for fiche in mine:
        shift_marks_back(fiche.pk, timedelta(hours=1))
    assert tick(max_running=timedelta(minutes=30), batch_size=3).auto_stopped == 7
    assert not FicheTemps.objects.filter(etat=Etat.EN_CALCUL).exists()
    assert FicheEvent.objects.filter(kind="auto_stopped").count() == 7


@pytest.mark.django_db(transaction=True)
def test_two_tickers_racing_count_each_instant_once(projet, user):
    mine = [running_fiche(projet, user) for _ in range(20)]
    stop = threading.Event()
    errors = []

    def ticker():
        try:
            while not stop.is_set():
                tick(batch_size=7)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=ticker) for _ in range(2)]
    for thread in threads:
        thread.start()
    elapse(0.5)
    for fiche in mine[::2]:  # pauses racing the ticks
        fiches.pause_fiche(fiche_id=fiche.pk, actor=user)
    elapse(0.2)
    stop.set()
    for thread in threads:
        thread.join()
    assert not errors
    for fiche in mine[1::2]:
        fiches.pause_fiche(fiche_id=fiche.pk, actor=user)
    for fiche in mine:
        paused = assert_exact(fiche.pk)
        assert paused.temps_impute == paused.events.last().at - fiche.en_calcul_depuis


@pytest.mark.django_db
def test_heartbeat_records_ticks_failures_and_stop():
    heartbeat_id = register_heartbeat(interval=5)
    record_tick(heartbeat_id=heartbeat_id, report=TickReport(settled=3, auto_stopped=1, batches=1, duration=0.25))
    record_failure(heartbeat_id=heartbeat_id, error="OperationalError: database is locked")
    record_stop(heartbeat_id=heartbeat_id)
    heartbeat = TickerHeartbeat.objects.get(pk=heartbeat_id)
    assert (heartbeat.ticks, heartbeat.last_rows, heartbeat.last_duration) == (1, 4, timedelta(seconds=0.25))
    assert (heartbeat.failures, heartbeat.last_error) == (1, "OperationalError: database is locked")
    assert heartbeat.interval == timedelta(seconds=5)
    assert heartbeat.last_tick_at and heartbeat.last_error_at and heartbeat.stopped_at


@pytest.mark.django_db
def test_registering_forgets_heartbeats_silent_for_a_week():
    old = register_heartbeat(interval=5)
    recent = register_heartbeat(interval=5)
    TickerHeartbeat.objects.filter(pk=old).update(last_tick_at=timezone.now() - timedelta(days=8))
    TickerHeartbeat.objects.filter(pk=recent).update(last_tick_at=timezone.now() - timedelta(days=6))
    new = register_heartbeat(interval=5)
    assert set(TickerHeartbeat.objects.values_list("pk", flat=True)) == {recent, new}


def test_batch_size_defaults_to_what_suits_the_database(settings):
    settings.TICKER_BATCH_SIZE = None
    # Short batches on SQLite (one write lock for everyone), large ones on PostgreSQL (row locks).
    assert conf.batch_size() == {"sqlite": 5_000, "postgresql": 100_000}[connection.vendor]
    settings.TICKER_BATCH_SIZE = 250
    assert conf.batch_size() == 250


@pytest.mark.django_db(transaction=True)
def test_auto_stop_leaves_a_fiche_another_transaction_holds_to_the_next_tick(projet, user, worker_env):
    postgresql_only("row locks that others can hold")
    held, free = running_fiche(projet, user), running_fiche(projet, user)
    for fiche in (held, free):
        shift_marks_back(fiche.pk, timedelta(hours=3))
    with postgresql_session(worker_env["DATABASE_URL"]) as other, connection.cursor() as cursor:
        other.execute("SELECT id FROM timesheet_fichetemps WHERE id = %s FOR UPDATE", [held.pk])
        cursor.execute("SET lock_timeout = '10s'")  # waiting would fail the test, not hang it
        try:
            assert ticking.stop_overdue(max_running=timedelta(hours=2), batch_size=10) == 1
        finally:
            cursor.execute("RESET lock_timeout")
    assert FicheTemps.objects.get(pk=held.pk).etat == Etat.EN_CALCUL
    assert tick(max_running=timedelta(hours=2)).auto_stopped == 1
    for fiche in (held, free):
        stopped = assert_exact(fiche.pk)
        assert stopped.temps_impute == timedelta(hours=2)


@pytest.mark.django_db(transaction=True)
def test_a_tick_never_stores_a_time_past_what_a_fiche_may_hold(projet, user):
    fiche = running_fiche(projet, user)
    FicheTemps.objects.filter(pk=fiche.pk).update(temps_impute=limits.STORED_TIME_MAX)
    elapse(0.01)
    with pytest.raises(IntegrityError):  # the loop logs it and counts it in fiches_tick_failures
        tick()
    assert FicheTemps.objects.get(pk=fiche.pk).temps_impute == limits.STORED_TIME_MAX  # not a float, not past it
