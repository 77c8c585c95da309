import re
import threading
import time
from contextlib import contextmanager
from datetime import date, timedelta

import pytest
from asgiref.sync import async_to_sync
from django.db import IntegrityError, OperationalError, connection, connections, transaction
from django.db.models.functions import Now
from django.test.utils import CaptureQueriesContext

from tests.factories import make_fiche
from tests.support import assert_exact, assert_within_real_time, elapse, postgresql_only, wait_until
from timesheet.domain import days, fiches
from timesheet.domain.errors import Code, Refused
from timesheet.models import Etat, FicheEvent, FicheTemps, Projet
from timesheet.workers.ticker import tick

pytestmark = pytest.mark.django_db


def snapshot(fiche_id):
    return (
        FicheTemps.objects.filter(pk=fiche_id).values().first(),
        list(FicheEvent.objects.filter(fiche_id=fiche_id).values()),
    )


def test_create_fiche_is_paused_with_no_time(projet, user):
    fiche = make_fiche(projet, user)
    assert fiche.etat == Etat.EN_PAUSE
    assert fiche.temps_impute == timedelta(0)
    assert fiche.compte_jusqua is None
    assert [e.kind for e in fiche.events.all()] == ["created"]


def test_create_fiche_started_marks_it_running_on_the_db_clock(projet, user):
    fiche = make_fiche(projet, user, start=True)
    assert fiche.etat == Etat.EN_CALCUL
    assert fiche.compte_jusqua == fiche.en_calcul_depuis == fiche.updated_at
    assert [e.kind for e in fiche.events.all()] == ["created", "started"]


def selects_from(queries, table):
    """The queries among ``queries`` that read ``table`` other than in a subquery (aliased U0, V0...)."""
    read = re.compile(rf'\bFROM "{table}"(?! "?[A-Z]\d)')  # Django 6 quotes the alias
    return [q["sql"] for q in queries if read.search(q["sql"])]


def test_a_start_reads_its_projects_state_with_its_locked_fiche(projet, user):
    fiche = make_fiche(projet, user)
    with CaptureQueriesContext(connection) as queries:
        fiches.start_fiche(fiche_id=fiche.pk, actor=user)
    assert selects_from(queries, "timesheet_projet") == []


def test_a_pause_reads_the_fiche_it_stopped_once(projet, user):
    fiche = make_fiche(projet, user, start=True)
    with CaptureQueriesContext(connection) as queries:
        fiches.pause_fiche(fiche_id=fiche.pk, actor=user)
    # The locked read before the stop, and the one after it that answers and gives the settled time.
    assert len(selects_from(queries, "timesheet_fichetemps")) == 2


@pytest.mark.django_db(transaction=True)  # each its own transaction, as in a request, not a test's savepoint
def test_a_start_and_a_pause_make_their_statements_and_no_savepoint_or_notify(projet, user, settings):
    settings.FICHE_MAX_RUNNING_PER_OWNER = 1  # one running fiche a person: the slots are read
    # PostgreSQL: the owner's row held exclusively and ON CONFLICT stand for the savepoints, and the
    # process's notifier, not the writer, sends the NOTIFY (SQLite has neither savepoints nor NOTIFY here).
    postgresql_only("its savepoints and NOTIFY")
    fiche = make_fiche(projet, user)
    with CaptureQueriesContext(connection) as started:
        fiches.start_fiche(fiche_id=fiche.pk, actor=user)
    with CaptureQueriesContext(connection) as paused:
        fiches.pause_fiche(fiche_id=fiche.pk, actor=user)
    for queries in (started, paused):
        assert not [q["sql"] for q in queries if "SAVEPOINT" in q["sql"] or "pg_notify" in q["sql"]]
    # BEGIN, the fiche's lock, the owner's, the held weeks, the slots, the update, the reread, the
    # stretch, the budgets, the event, COMMIT; a pause: BEGIN, the lock, the stop, the reread, the
    # stretch closed, the budgets, the event, COMMIT.
    assert (len(started), len(paused)) == (11, 8)


def test_pause_charges_the_real_running_time(projet, user):
    fiche = make_fiche(projet, user)
    t0 = time.monotonic()
    fiches.start_fiche(fiche_id=fiche.pk, actor=user)
    t1 = time.monotonic()
    elapse(0.3)
    t2 = time.monotonic()
    paused = fiches.pause_fiche(fiche_id=fiche.pk, actor=user)
    t3 = time.monotonic()
    assert paused.etat == Etat.EN_PAUSE
    assert paused.compte_jusqua is None and paused.en_calcul_depuis is None
    assert_within_real_time(paused.temps_impute, t2 - t1, t3 - t0)
    assert_exact(fiche.pk)


def test_pause_settles_time_up_to_now_after_ticks(projet, user):
    fiche = make_fiche(projet, user)
    t0 = time.monotonic()
    fiches.start_fiche(fiche_id=fiche.pk, actor=user)
    t1 = time.monotonic()
    for _ in range(3):
        elapse(0.05)
        tick()
    elapse(0.07)  # the part after the last tick must not be lost
    t2 = time.monotonic()
    paused = fiches.pause_fiche(fiche_id=fiche.pk, actor=user)
    t3 = time.monotonic()
    assert_within_real_time(paused.temps_impute, t2 - t1, t3 - t0)
    assert_exact(fiche.pk)


def test_paused_fiche_time_is_frozen(projet, user):
    fiche = make_fiche(projet, user, start=True)
    elapse(0.02)
    paused = fiches.pause_fiche(fiche_id=fiche.pk, actor=user)
    elapse(0.05)
    tick()
    tick()
    assert FicheTemps.objects.get(pk=fiche.pk).temps_impute == paused.temps_impute


def test_resume_adds_a_second_stretch(projet, user):
    t0 = time.monotonic()
    fiche = make_fiche(projet, user, start=True)
    t1 = time.monotonic()
    elapse(0.02)
    t2 = time.monotonic()
    fiches.pause_fiche(fiche_id=fiche.pk, actor=user)
    t3 = time.monotonic()
    elapse(0.05)  # paused: not charged
    t4 = time.monotonic()
    fiches.start_fiche(fiche_id=fiche.pk, actor=user)
    t5 = time.monotonic()
    elapse(0.02)
    tick()
    t6 = time.monotonic()
    finished = fiches.finish_fiche(fiche_id=fiche.pk, actor=user)
    t7 = time.monotonic()
    assert finished.etat == Etat.TERMINEE
    # Both stretches, and not the pause between them.
    assert_within_real_time(finished.temps_impute, (t2 - t1) + (t6 - t5), (t3 - t0) + (t7 - t4))
    assert_exact(fiche.pk)


def test_finish_a_paused_fiche_keeps_its_time(projet, user):
    fiche = make_fiche(projet, user, start=True)
    elapse(0.01)
    paused = fiches.pause_fiche(fiche_id=fiche.pk, actor=user)
    finished = fiches.finish_fiche(fiche_id=fiche.pk, actor=user)
    assert finished.etat == Etat.TERMINEE
    assert finished.temps_impute == paused.temps_impute
    assert finished.events.last().delta == timedelta(0)


@pytest.mark.parametrize(
    "setup, action, etat",
    [
        ([], "pause", Etat.EN_PAUSE),
        ([], "start", None),
        (["start"], "start", Etat.EN_CALCUL),
        (["finish"], "start", Etat.TERMINEE),
        (["finish"], "pause", Etat.TERMINEE),
        (["finish"], "finish", Etat.TERMINEE),
    ],
)
def test_impossible_transition_is_refused_and_changes_nothing(projet, user, setup, action, etat):
    fiche = make_fiche(projet, user)
    for step in setup:
        getattr(fiches, f"{step}_fiche")(fiche_id=fiche.pk, actor=user)
    if etat is None:  # starting a paused fiche is allowed: the control case
        getattr(fiches, f"{action}_fiche")(fiche_id=fiche.pk, actor=user)
        return
    before = snapshot(fiche.pk)
    with pytest.raises(Refused) as refused:
        getattr(fiches, f"{action}_fiche")(fiche_id=fiche.pk, actor=user)
    assert refused.value.code == "wrong_state"
    assert refused.value.message.endswith(f"it is {etat.label}.")
    assert str(refused.value) == f"Cannot {action} fiche {fiche.pk}: it is {etat.label}."
    assert snapshot(fiche.pk) == before


@pytest.mark.parametrize("action", ["start", "pause", "finish"])
def test_unknown_fiche_is_refused_as_not_found(user, action):
    with pytest.raises(Refused, match="Fiche 999 does not exist") as refused:
        getattr(fiches, f"{action}_fiche")(fiche_id=999, actor=user)
    assert refused.value.code == "not_found"


def test_someone_elses_fiche_looks_like_an_unknown_one(projet, user, other_user):
    fiche = make_fiche(projet, user, start=True)
    before = snapshot(fiche.pk)
    for action in ("start", "pause", "finish"):
        with pytest.raises(Refused) as refused:
            getattr(fiches, f"{action}_fiche")(fiche_id=fiche.pk, actor=other_user)
        assert refused.value.code == "not_found"
    assert snapshot(fiche.pk) == before


def test_staff_may_act_on_anyones_fiche_and_is_the_recorded_actor(projet, user, staff):
    fiche = make_fiche(projet, user, start=True)
    fiches.pause_fiche(fiche_id=fiche.pk, actor=staff)
    assert fiche.events.last().actor == staff


def test_double_pause_charges_once(projet, user):
    fiche = make_fiche(projet, user, start=True)
    elapse(0.01)
    first = fiches.pause_fiche(fiche_id=fiche.pk, actor=user)
    with pytest.raises(Refused):
        fiches.pause_fiche(fiche_id=fiche.pk, actor=user)
    assert FicheTemps.objects.get(pk=fiche.pk).temps_impute == first.temps_impute
    assert fiche.events.filter(kind="paused").count() == 1


def test_create_refuses_unknown_and_inactive_projects(user):
    with pytest.raises(Refused, match="Project 404 does not exist") as refused:
        fiches.create_fiche(projet_id=404, owner_id=user.pk, actor=user)
    assert refused.value.code == "not_found"
    closed = Projet.objects.create(designation="Fermé", actif=False)
    with pytest.raises(Refused, match="is not active") as refused:
        fiches.create_fiche(projet_id=closed.pk, owner_id=user.pk, actor=user)
    assert refused.value.code == "invalid"
    assert not FicheTemps.objects.exists()


def test_create_for_someone_else_needs_staff(projet, user, other_user, staff):
    with pytest.raises(Refused) as refused:
        fiches.create_fiche(projet_id=projet.pk, owner_id=other_user.pk, actor=user)
    assert refused.value.code == "forbidden"
    fiche = fiches.create_fiche(projet_id=projet.pk, owner_id=other_user.pk, actor=staff)
    assert fiche.owner == other_user
    assert fiche.events.get().actor == staff


def test_create_refuses_an_overlong_label(projet, user):
    with pytest.raises(Refused, match="too long"):
        fiches.create_fiche(projet_id=projet.pk, owner_id=user.pk, actor=user, libelle="x" * 201)


def test_adjust_adds_a_correction_with_its_reason(projet, user, staff):
    fiche = make_fiche(projet, user)
    adjusted = fiches.adjust_fiche(fiche_id=fiche.pk, actor=staff, delta=timedelta(minutes=30), reason=" oubli ")
    assert adjusted.temps_impute == timedelta(minutes=30)
    event = adjusted.events.last()
    assert (event.kind, event.actor, event.delta, event.reason) == ("adjusted", staff, timedelta(minutes=30), "oubli")
    removed = fiches.adjust_fiche(fiche_id=fiche.pk, actor=staff, delta=-timedelta(minutes=10), reason="trop")
    assert removed.temps_impute == timedelta(minutes=20)
    assert_exact(fiche.pk)


def test_adjust_never_goes_below_zero(projet, user, staff):
    fiche = make_fiche(projet, user)
    fiches.adjust_fiche(fiche_id=fiche.pk, actor=staff, delta=timedelta(minutes=5), reason="x")
    before = snapshot(fiche.pk)
    with pytest.raises(Refused, match="cannot go below zero") as refused:
        fiches.adjust_fiche(fiche_id=fiche.pk, actor=staff, delta=-timedelta(minutes=6), reason="x")
    assert refused.value.code == "negative_time"
    assert snapshot(fiche.pk) == before
    exactly = fiches.adjust_fiche(fiche_id=fiche.pk, actor=staff, delta=-timedelta(minutes=5), reason="x")
    assert exactly.temps_impute == timedelta(0)


def test_adjust_a_running_fiche_settles_it_and_keeps_it_running(projet, user, staff):
    t0 = time.monotonic()
    fiche = make_fiche(projet, user, start=True)
    t1 = time.monotonic()
    elapse(0.05)
    t2 = time.monotonic()
    adjusted = fiches.adjust_fiche(fiche_id=fiche.pk, actor=staff, delta=timedelta(milliseconds=20), reason="x")
    t3 = time.monotonic()
    assert adjusted.etat == Etat.EN_CALCUL
    assert adjusted.compte_jusqua == adjusted.updated_at
    # Settled up to the adjustment, plus its 20 ms.
    assert_within_real_time(adjusted.temps_impute - timedelta(milliseconds=20), t2 - t1, t3 - t0)
    # Never more than the time before the running stretch: a stop at its start would go below zero.
    with pytest.raises(Refused) as refused:
        fiches.adjust_fiche(fiche_id=fiche.pk, actor=staff, delta=-timedelta(milliseconds=30), reason="x")
    assert refused.value.code == "negative_time"
    fiches.pause_fiche(fiche_id=fiche.pk, actor=user, at=fiche.en_calcul_depuis)
    assert FicheTemps.objects.get(pk=fiche.pk).temps_impute == timedelta(milliseconds=20)
    assert_exact(fiche.pk)


@pytest.mark.parametrize(
    "delta, reason, code",
    [
        (timedelta(0), "x", "invalid"),
        (300, "x", "invalid"),
        (timedelta(minutes=5), "", "invalid"),
        (timedelta(minutes=5), "   ", "invalid"),
    ],
)
def test_adjust_refuses_bad_arguments(projet, user, staff, delta, reason, code):
    fiche = make_fiche(projet, user)
    with pytest.raises(Refused) as refused:
        fiches.adjust_fiche(fiche_id=fiche.pk, actor=staff, delta=delta, reason=reason)
    assert refused.value.code == code
    assert FicheTemps.objects.get(pk=fiche.pk).temps_impute == timedelta(0)


def test_adjust_is_for_staff_only(projet, user):
    fiche = make_fiche(projet, user)
    with pytest.raises(Refused) as refused:
        fiches.adjust_fiche(fiche_id=fiche.pk, actor=user, delta=timedelta(hours=8), reason="moi")
    assert refused.value.code == "forbidden"


def test_async_twins_run_the_same_transitions(projet, user):
    fiche = async_to_sync(fiches.acreate_fiche)(projet_id=projet.pk, owner_id=user.pk, actor=user, start=True)
    assert fiche.etat == Etat.EN_CALCUL
    paused = async_to_sync(fiches.apause_fiche)(fiche_id=fiche.pk, actor=user)
    assert paused.etat == Etat.EN_PAUSE
    with pytest.raises(Refused):
        async_to_sync(fiches.apause_fiche)(fiche_id=fiche.pk, actor=user)


def test_database_refuses_a_running_fiche_without_a_mark(projet, user):
    fiche = make_fiche(projet, user)
    with pytest.raises(IntegrityError), transaction.atomic():
        FicheTemps.objects.filter(pk=fiche.pk).update(etat=Etat.EN_CALCUL)


def test_database_refuses_a_mark_on_a_paused_fiche(projet, user):
    fiche = make_fiche(projet, user)
    with pytest.raises(IntegrityError), transaction.atomic():
        FicheTemps.objects.filter(pk=fiche.pk).update(compte_jusqua=Now(), en_calcul_depuis=Now())


def test_database_refuses_negative_time(projet, user):
    fiche = make_fiche(projet, user)
    with pytest.raises(IntegrityError), transaction.atomic():
        FicheTemps.objects.filter(pk=fiche.pk).update(temps_impute=-timedelta(seconds=1))


def test_update_changes_label_project_and_owner_and_audits_each(projet, user, other_user, staff):
    fiche = make_fiche(projet, user)
    autre = Projet.objects.create(designation="Autre")
    updated = fiches.update_fiche(
        fiche_id=fiche.pk, actor=staff, libelle="Nouveau", projet_id=autre.pk, owner=other_user
    )
    assert (updated.libelle, updated.projet, updated.owner) == ("Nouveau", autre, other_user)
    event = FicheEvent.objects.filter(fiche_id=fiche.pk).last()
    assert event.kind == FicheEvent.Kind.UPDATED
    assert event.actor == staff
    assert event.changes == {
        "libelle": ["Travail", "Nouveau"],
        "projet": [projet.pk, autre.pk],
        "owner": [user.pk, other_user.pk],
    }
    assert event.reason == "label 'Travail' → 'Nouveau'; project Refonte → Autre; owner alice → bob"
    assert event.delta == timedelta(0)


def test_update_without_a_change_writes_no_event(projet, user):
    fiche = make_fiche(projet, user)
    fiches.update_fiche(fiche_id=fiche.pk, actor=user, libelle="Travail", projet_id=projet.pk, owner=user)
    assert list(FicheEvent.objects.filter(fiche_id=fiche.pk).values_list("kind", flat=True)) == ["created"]


def test_update_of_a_running_fiche_keeps_its_time_running(projet, user):
    fiche = fiches.create_fiche(projet_id=projet.pk, owner_id=user.pk, actor=user, start=True)
    updated = fiches.update_fiche(fiche_id=fiche.pk, actor=user, libelle="Renommée")
    assert updated.etat == Etat.EN_CALCUL
    assert updated.compte_jusqua == fiche.compte_jusqua
    assert updated.en_calcul_depuis == fiche.en_calcul_depuis


@pytest.mark.parametrize(
    "change, code",
    [
        ({"owner": "other"}, "forbidden"),
        ({"projet_id": "inactive"}, "invalid"),
        ({"projet_id": 999999}, "not_found"),
        ({"libelle": "x" * 201}, "invalid"),
        ({"libelle": "a\x00b"}, "invalid"),
    ],
)
def test_update_refuses_and_changes_nothing(projet, user, other_user, change, code):
    fiche = make_fiche(projet, user)
    inactive = Projet.objects.create(designation="Fermé", actif=False)
    values = {"other": other_user, "inactive": inactive.pk}
    change = {name: values.get(value, value) if isinstance(value, str) else value for name, value in change.items()}
    before = snapshot(fiche.pk)
    with pytest.raises(Refused) as refused:
        fiches.update_fiche(fiche_id=fiche.pk, actor=user, **change)
    assert refused.value.code == code
    assert snapshot(fiche.pk) == before
    assert FicheEvent.objects.filter(fiche_id=fiche.pk).count() == 1


def test_update_keeps_a_project_deactivated_since(projet, user):
    fiche = make_fiche(projet, user)
    Projet.objects.filter(pk=projet.pk).update(actif=False)
    updated = fiches.update_fiche(fiche_id=fiche.pk, actor=user, libelle="Encore", projet_id=projet.pk)
    assert (updated.libelle, updated.projet_id) == ("Encore", projet.pk)


def test_update_of_someone_elses_fiche_is_not_found(projet, user, other_user):
    fiche = make_fiche(projet, user)
    with pytest.raises(Refused) as refused:
        fiches.update_fiche(fiche_id=fiche.pk, actor=other_user, libelle="À moi")
    assert refused.value.code == "not_found"


@contextmanager
def held_by_a_transition(fiche, user, then=None, *, with_projet=False):
    """
    Hold ``fiche`` locked, as every transition begins (and, if given, run
    ``then`` under the lock), in another thread until the block ends.
    """
    locked, done = threading.Event(), threading.Event()

    def hold_the_fiche():
        try:
            with transaction.atomic():
                fiches.locked(fiche.pk, user, with_projet=with_projet)
                if then is not None:
                    then()
                locked.set()
                done.wait(60)
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold_the_fiche)
    holder.start()
    try:
        assert locked.wait(60)
        yield
    finally:
        done.set()
        holder.join(60)


@pytest.mark.django_db(transaction=True)
def test_someone_elses_fiche_is_refused_without_waiting_for_its_lock(projet, user, other_user):
    postgresql_only("row locks")
    fiche = make_fiche(projet, user, start=True)
    with held_by_a_transition(fiche, user), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL lock_timeout = '2s'")  # a wait for the row would fail, not hang
        with pytest.raises(Refused, match="does not exist"):
            fiches.pause_fiche(fiche_id=fiche.pk, actor=other_user)


def waiting_for_a_lock():
    """Whether another session of this test's database waits for a lock."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
        )
        return cursor.fetchone()[0] > 0


@pytest.mark.django_db(transaction=True)
def test_a_start_that_waited_for_its_fiche_finds_it_moved_to_another_project(projet, user, staff):
    postgresql_only("row locks")
    fiche = make_fiche(projet, user)
    other = Projet.objects.create(designation="Autre")
    started = {}

    def start():
        try:
            started["fiche"] = fiches.start_fiche(fiche_id=fiche.pk, actor=staff)
        except Refused as refused:
            started["refused"] = refused
        finally:
            connections.close_all()

    starter = threading.Thread(target=start)
    with held_by_a_transition(fiche, user, then=lambda: FicheTemps.objects.filter(pk=fiche.pk).update(projet=other)):
        Projet.objects.filter(pk=projet.pk).update(actif=False)  # the project it leaves: no longer its own
        starter.start()
        wait_until(waiting_for_a_lock, every=0.01)
    starter.join(60)
    # Read with the row it locked: the project it moved to, and that project's state.
    assert "refused" not in started
    assert (started["fiche"].etat, started["fiche"].projet_id) == (Etat.EN_CALCUL, other.pk)


@pytest.mark.django_db(transaction=True)
def test_a_transition_locks_its_fiche_but_not_its_project(projet, user):
    postgresql_only("row locks")
    fiche = make_fiche(projet, user, start=True)
    # As a start does: the project's state read with the fiche.
    held = held_by_a_transition(fiche, user, with_projet=True)
    with held, transaction.atomic(), connection.cursor() as cursor:
        # Another fiche of the project may change meanwhile: the project's row is free.
        cursor.execute("SELECT id FROM timesheet_projet WHERE id = %s FOR UPDATE NOWAIT", [projet.pk])
        with pytest.raises(OperationalError, match="could not obtain lock"), transaction.atomic():
            cursor.execute("SELECT id FROM timesheet_fichetemps WHERE id = %s FOR UPDATE NOWAIT", [fiche.pk])


@pytest.mark.parametrize(
    "delta, day, text",
    [
        (timedelta(hours=745), None, "An adjustment is at most 744 hours either way."),
        (-timedelta(hours=745), None, "An adjustment is at most 744 hours either way."),
        (timedelta(days=10**8), None, "An adjustment is at most 744 hours either way."),
        (timedelta(hours=1), date(1, 1, 1), "The day of an adjustment must be a date"),
        (timedelta(hours=1), date(9999, 12, 31), "The day of an adjustment must be a date"),
        (timedelta(hours=1), "2026-01-01", "The day of an adjustment must be a date"),
    ],
)
def test_an_adjustment_out_of_bounds_is_refused_and_changes_nothing(projet, user, staff, delta, day, text):
    fiche = make_fiche(projet, user)
    with pytest.raises(Refused, match=re.escape(text)) as refused:
        fiches.adjust_fiche(fiche_id=fiche.pk, actor=staff, delta=delta, reason="x", day=day)
    assert refused.value.code == Code.INVALID
    assert FicheTemps.objects.get(pk=fiche.pk).temps_impute == timedelta(0)
    assert not FicheEvent.objects.filter(kind=FicheEvent.Kind.ADJUSTED).exists()


def test_an_adjustment_on_a_day_still_to_come_for_the_owner_is_refused(projet, user, staff):
    fiche = make_fiche(projet, user)
    tomorrow = days.today_for(user.pk) + timedelta(days=1)
    with pytest.raises(Refused, match="has not come yet") as refused:
        fiches.adjust_fiche(fiche_id=fiche.pk, actor=staff, delta=timedelta(hours=1), reason="x", day=tomorrow)
    assert refused.value.code == Code.INVALID


def test_adjustments_never_take_a_fiche_past_the_most_it_may_hold(projet, user, staff, settings):
    settings.FICHE_MAX_TOTAL_HOURS = 10
    fiche = make_fiche(projet, user)
    fiches.adjust_fiche(fiche_id=fiche.pk, actor=staff, delta=timedelta(hours=10), reason="x")
    with pytest.raises(Refused, match="more than the 10 hours one fiche may hold") as refused:
        fiches.adjust_fiche(fiche_id=fiche.pk, actor=staff, delta=timedelta(microseconds=1000), reason="x")
    assert refused.value.code == Code.INVALID
    assert FicheTemps.objects.get(pk=fiche.pk).temps_impute == timedelta(hours=10)
