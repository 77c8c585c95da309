"""The rules around running fiches: one at a time per owner, switch, and stop at an earlier instant."""

import threading
import time
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connections
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from tests.factories import make_fiche
from tests.support import assert_exact, elapse, postgresql_only
from timesheet.core.dbtime import db_now
from timesheet.domain import fiches
from timesheet.domain.errors import Refused
from timesheet.models import Etat, FicheEvent, FicheTemps, Projet, Stretch
from timesheet.workers.ticker import tick

pytestmark = pytest.mark.django_db


@pytest.fixture
def one_at_a_time(settings):
    settings.FICHE_MAX_RUNNING_PER_OWNER = 1


def test_a_second_start_is_refused_naming_the_running_fiche(one_at_a_time, projet, user):
    first = fiches.create_fiche(projet_id=projet.pk, actor=user, start=True)
    second = make_fiche(projet, user)
    with pytest.raises(Refused) as refused:
        fiches.start_fiche(fiche_id=second.pk, actor=user)
    assert (refused.value.code, refused.value.running_fiche_id) == ("limit_reached", first.pk)
    assert FicheTemps.objects.get(pk=second.pk).etat == Etat.EN_PAUSE
    with pytest.raises(Refused):
        fiches.create_fiche(projet_id=projet.pk, actor=user, start=True)
    assert FicheTemps.objects.count() == 2  # the refused creation left nothing behind


def test_the_limit_is_per_owner(one_at_a_time, projet, user, other_user):
    fiches.create_fiche(projet_id=projet.pk, actor=user, start=True)
    theirs = fiches.create_fiche(projet_id=projet.pk, actor=other_user, start=True)
    assert theirs.etat == Etat.EN_CALCUL


def test_a_limit_of_two_allows_two(settings, projet, user):
    settings.FICHE_MAX_RUNNING_PER_OWNER = 2
    mine = [fiches.create_fiche(projet_id=projet.pk, actor=user, start=True) for _ in range(2)]
    assert sorted(f.run_slot for f in mine) == [0, 1]
    with pytest.raises(Refused):
        fiches.create_fiche(projet_id=projet.pk, actor=user, start=True)
    fiches.pause_fiche(fiche_id=mine[0].pk, actor=user)
    assert fiches.create_fiche(projet_id=projet.pk, actor=user, start=True).run_slot == mine[0].run_slot


def test_the_database_refuses_a_second_running_fiche_of_one_owner(one_at_a_time, projet, user):
    from django.db import IntegrityError, transaction

    fiches.create_fiche(projet_id=projet.pk, actor=user, start=True)
    second = make_fiche(projet, user)
    with pytest.raises(IntegrityError), transaction.atomic():
        FicheTemps.objects.filter(pk=second.pk).update(
            etat=Etat.EN_CALCUL, compte_jusqua=db_now(), en_calcul_depuis=db_now(), run_slot=0
        )


@pytest.mark.django_db(transaction=True)
def test_concurrent_starts_of_one_owner_leave_exactly_one_running_and_the_others_name_it(one_at_a_time, projet, user):
    mine = [make_fiche(projet, user, f"f{i}") for i in range(4)]
    barrier = threading.Barrier(len(mine))
    outcomes = []

    def start(fiche):
        try:
            barrier.wait(timeout=30)
            fiches.start_fiche(fiche_id=fiche.pk, actor=user)
            outcomes.append(("started", fiche.pk))
        except Refused as refused:
            outcomes.append((refused.code, refused.running_fiche_id))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=start, args=(fiche,)) for fiche in mine]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    (running,) = FicheTemps.objects.running().filter(owner=user).values_list("pk", flat=True)
    # The starts take turns on the owner: each one refused read the slot taken, and names who took it.
    assert sorted(outcomes) == [("limit_reached", running)] * 3 + [("started", running)]
    for fiche in mine:
        assert_exact(fiche.pk)


def test_a_start_into_the_owners_later_time_is_refused_naming_it_and_writes_nothing(one_at_a_time, projet, user):
    postgresql_only("its exclusion constraint: no service writes time ahead of now")
    ahead = make_fiche(projet, user, "tomorrow's entry")
    later = db_now() + timedelta(hours=2)
    Stretch.objects.create(
        fiche=ahead, owner=user, started_at=later, ended_at=later + timedelta(hours=1), exclusive=True
    )
    fiche = make_fiche(projet, user)
    with pytest.raises(Refused) as refused:
        fiches.start_fiche(fiche_id=fiche.pk, actor=user)
    assert refused.value.code == "overlap"
    assert str(ahead.pk) in str(refused.value) or "tomorrow's entry" in str(refused.value)
    assert FicheTemps.objects.get(pk=fiche.pk).etat == Etat.EN_PAUSE
    assert not Stretch.objects.filter(fiche=fiche).exists()
    assert not FicheEvent.objects.filter(fiche=fiche, kind="started").exists()


def test_switch_pauses_and_starts_at_one_instant(one_at_a_time, projet, user):
    source = fiches.create_fiche(projet_id=projet.pk, actor=user, start=True)
    target = make_fiche(projet, user)
    elapse(0.01)
    tick()
    now_paused, now_running = fiches.switch_fiche(from_id=source.pk, to_id=target.pk, actor=user)
    assert (now_paused.etat, now_running.etat) == (Etat.EN_PAUSE, Etat.EN_CALCUL)
    stop = FicheEvent.objects.filter(fiche_id=source.pk, kind="paused").get()
    start = FicheEvent.objects.filter(fiche_id=target.pk, kind="started").get()
    assert stop.at == start.at == now_running.en_calcul_depuis  # no gap, no overlap
    assert Stretch.objects.get(fiche_id=source.pk).ended_at == Stretch.objects.get(fiche_id=target.pk).started_at
    assert_exact(source.pk)
    assert_exact(target.pk)


@pytest.mark.parametrize(
    "setup, code",
    [
        ("same", "invalid"),
        ("source_paused", "wrong_state"),
        ("target_running", "wrong_state"),
        ("other_owner", "invalid"),
        ("target_project_closed", "invalid"),
    ],
)
def test_switch_refusals_change_nothing(projet, user, other_user, staff, setup, code):
    source = fiches.create_fiche(projet_id=projet.pk, actor=user, start=True)
    target_projet = Projet.objects.create(designation="Fermé") if setup == "target_project_closed" else projet
    target = make_fiche(target_projet, other_user if setup == "other_owner" else user)
    if setup == "source_paused":
        fiches.pause_fiche(fiche_id=source.pk, actor=user)
    if setup == "target_running":
        fiches.start_fiche(fiche_id=target.pk, actor=staff)
    if setup == "target_project_closed":
        Projet.objects.filter(pk=target_projet.pk).update(actif=False)
    before = list(FicheTemps.objects.order_by("pk").values())
    with pytest.raises(Refused) as refused:
        fiches.switch_fiche(from_id=source.pk, to_id=source.pk if setup == "same" else target.pk, actor=staff)
    assert refused.value.code == code
    assert list(FicheTemps.objects.order_by("pk").values()) == before


def test_switching_from_a_fiche_on_a_closed_project_to_one_on_an_active_project_is_allowed(projet, user):
    source = fiches.create_fiche(projet_id=projet.pk, actor=user, start=True)
    Projet.objects.filter(pk=projet.pk).update(actif=False)  # closed since the fiche started
    target = make_fiche(Projet.objects.create(designation="Ouvert"), user)
    now_paused, now_running = fiches.switch_fiche(from_id=source.pk, to_id=target.pk, actor=user)
    assert (now_paused.etat, now_running.etat) == (Etat.EN_PAUSE, Etat.EN_CALCUL)


def test_stop_at_an_earlier_instant_removes_the_time_after_it_exactly(projet, user):
    fiche = fiches.create_fiche(projet_id=projet.pk, actor=user, start=True)
    started = fiche.en_calcul_depuis
    # An hour and a half ago, two hours settled by ticks since (as if the fiche was forgotten).
    FicheTemps.objects.filter(pk=fiche.pk).update(
        en_calcul_depuis=started - timedelta(hours=2), compte_jusqua=started, temps_impute=timedelta(hours=2)
    )
    FicheEvent.objects.filter(fiche_id=fiche.pk, kind="started").update(at=started - timedelta(hours=2))
    Stretch.objects.filter(fiche_id=fiche.pk).update(started_at=started - timedelta(hours=2))
    at = started - timedelta(hours=1, minutes=20)
    stopped = fiches.pause_fiche(fiche_id=fiche.pk, actor=user, at=at)
    assert stopped.temps_impute == timedelta(minutes=40)
    event = FicheEvent.objects.filter(fiche_id=fiche.pk).last()
    assert (event.kind, event.at, event.delta) == ("paused", at, timedelta(minutes=40))
    assert event.recorded_at > at and event.reason == f"Stopped at {at.isoformat()}."
    assert Stretch.objects.get(fiche_id=fiche.pk).ended_at == at
    assert_exact(fiche.pk)


@pytest.mark.parametrize(
    "offset, text", [(timedelta(minutes=5), "in the future"), (-timedelta(hours=1), "has run only")]
)
def test_stop_at_outside_the_current_stretch_is_refused(projet, user, offset, text):
    fiche = fiches.create_fiche(projet_id=projet.pk, actor=user, start=True)
    before = FicheTemps.objects.filter(pk=fiche.pk).values().get()
    at = (db_now() if offset > timedelta(0) else fiche.en_calcul_depuis) + offset
    with pytest.raises(Refused, match=text) as refused:
        fiches.finish_fiche(fiche_id=fiche.pk, actor=user, at=at)
    assert refused.value.code == "invalid"
    assert FicheTemps.objects.filter(pk=fiche.pk).values().get() == before


def test_auto_stop_past_a_later_mark_keeps_exactly_the_maximum(projet, user):
    fiche = fiches.create_fiche(projet_id=projet.pk, actor=user, start=True)
    started = fiche.en_calcul_depuis - timedelta(hours=5)
    # Ticks settled four hours before the auto-stop was configured at two.
    FicheTemps.objects.filter(pk=fiche.pk).update(
        en_calcul_depuis=started, compte_jusqua=started + timedelta(hours=4), temps_impute=timedelta(hours=4)
    )
    FicheEvent.objects.filter(fiche_id=fiche.pk, kind="started").update(at=started)
    Stretch.objects.filter(fiche_id=fiche.pk).update(started_at=started)
    assert tick(max_running=timedelta(hours=2)).auto_stopped == 1
    stopped = FicheTemps.objects.get(pk=fiche.pk)
    assert (stopped.temps_impute, stopped.auto_stopped) == (timedelta(hours=2), True)
    assert_exact(fiche.pk)


OPERATIONS = st.lists(
    st.tuples(
        st.sampled_from(["start", "pause", "finish", "switch", "stop_at", "tick"]), st.integers(0, 3), st.floats(0, 1)
    ),
    min_size=1,
    max_size=25,
)


@hypothesis_settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=OPERATIONS, limit=st.sampled_from([1, 2]))
def test_at_every_instant_the_limit_holds_and_time_equals_the_stretches(settings, projet, operations, limit):
    settings.FICHE_MAX_RUNNING_PER_OWNER = limit
    owner = get_user_model().objects.create_user(f"prop-{FicheTemps.objects.count()}-{time.monotonic_ns()}")
    mine = [make_fiche(projet, owner) for _ in range(4)]
    for operation, index, fraction in operations:
        fiche = FicheTemps.objects.get(pk=mine[index].pk)
        try:
            if operation == "start":
                fiches.start_fiche(fiche_id=fiche.pk, actor=owner)
            elif operation in ("pause", "finish"):
                getattr(fiches, f"{operation}_fiche")(fiche_id=fiche.pk, actor=owner)
            elif operation == "switch":
                target = mine[(index + 1) % 4]
                fiches.switch_fiche(from_id=fiche.pk, to_id=target.pk, actor=owner)
            elif operation == "stop_at" and fiche.is_running:
                at = fiche.en_calcul_depuis + (db_now() - fiche.en_calcul_depuis) * fraction
                fiches.pause_fiche(fiche_id=fiche.pk, actor=owner, at=at)
            elif operation == "tick":
                tick()
        except Refused as refused:
            assert refused.code in ("wrong_state", "limit_reached")
        assert FicheTemps.objects.running().filter(owner=owner).count() <= limit
        for each in mine:
            assert_exact(each.pk)
