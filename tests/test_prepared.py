"""Prepared reads: compiled once, run again with new values, each row what the queryset itself reads."""

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from tests.factories import make_fiche, person, project, running_fiche
from timesheet.core.prepared import Prepared, PreparedInsert, PreparedUpdate, columns, instance
from timesheet.domain import fiches
from timesheet.domain.errors import Code, Refused
from timesheet.domain.selectors import fiche_list, fiche_page, fiche_row
from timesheet.domain.serialize import fiche_rows
from timesheet.models import Etat, FicheEvent, FicheTemps, Projet

pytestmark = pytest.mark.django_db


def by_owner(owner):
    return (
        FicheTemps.objects.filter(owner_id=owner).order_by("id").values("id", "libelle", "updated_at", "temps_impute")
    )


def test_a_prepared_read_gives_the_querysets_rows_for_each_value_it_is_run_with(projet, user, other_user):
    for owner, label in itertools.product((user, other_user), ("a", "b")):
        make_fiche(projet, owner, f"{owner.username} {label}")
    running_fiche(projet, user)
    read = Prepared(by_owner, "owner")

    for owner in (user, other_user, user):
        rows = read.rows(owner=owner.pk)
        assert rows == list(by_owner(owner.pk))  # instants and durations converted as the ORM does on each database
        assert len(rows) >= 2


def test_text_values_and_choices_fill_their_places(projet, user):
    make_fiche(projet, user, "paused")
    running = running_fiche(projet, user)
    read = Prepared(lambda etat: FicheTemps.objects.filter(etat=etat).values("id"), "etat", text=("etat",))

    assert read.rows(etat=Etat.EN_CALCUL) == [{"id": running.pk}]
    assert read.rows(etat="terminee") == []


def test_limit_and_offset_read_the_slice_of_the_ordered_rows(projet, user):
    made = [make_fiche(projet, user, str(number)).pk for number in range(7)]
    read = Prepared(lambda owner: by_owner(owner).values("id"), "owner")

    assert [row["id"] for row in read.rows(owner=user.pk, limit=3, offset=2)] == made[2:5]
    assert [row["id"] for row in read.rows(owner=user.pk, limit=50, offset=6)] == made[6:]
    assert read.rows(owner=user.pk, limit=3, offset=7) == []


def test_a_read_whose_value_is_written_into_its_sql_is_refused_when_compiled(projet):
    sliced = Prepared(lambda size: Projet.objects.values("id")[:size], "size")
    unused = Prepared(lambda projet: Projet.objects.values("id"), "projet")
    not_values = Prepared(lambda projet: Projet.objects.filter(pk=projet), "projet")

    for read in (sliced, unused):
        with pytest.raises(TypeError, match="did not all become parameters"):
            read.rows(size=1, projet=projet.pk)
    with pytest.raises(TypeError, match="values"):
        not_values.rows(projet=projet.pk)


def test_a_value_computed_from_a_marker_is_refused_when_compiled(projet, user):
    # Derived from the marker for "after", it would have been taken for another marker's place.
    between = Prepared(
        lambda after, owner: FicheTemps.objects.filter(pk__gte=after, pk__lte=after + 1, owner_id=owner).values("id"),
        "after",
        "owner",
    )

    with pytest.raises(TypeError, match="computed from a marker"):
        between.rows(after=1, owner=user.pk)


def test_an_id_past_a_bigint_matches_nothing_as_the_orm_answers(projet, user):
    past = 2**63
    read = Prepared(lambda fiche: FicheTemps.objects.filter(pk=fiche).values("id"), "fiche")
    relabel = PreparedUpdate(lambda fiche: (FicheTemps.objects.filter(pk=fiche), {"libelle": "x"}), "fiche")

    assert read.rows(fiche=past) == [] == list(FicheTemps.objects.filter(pk=past).values("id"))
    assert relabel.run(fiche=past) == 0
    with pytest.raises(Refused) as refused:
        fiche_row(user=user, fiche_id=past)
    assert refused.value.code is Code.NOT_FOUND
    with pytest.raises(Refused) as refused:
        fiches.pause_fiche(fiche_id=past, actor=user)
    assert refused.value.code is Code.NOT_FOUND


@pytest.mark.django_db(transaction=True)
def test_a_read_that_locks_is_refused_outside_a_transaction_as_the_orm_refuses_it(projet, user):
    from django.db import connection, transaction
    from django.db.transaction import TransactionManagementError

    fiche = make_fiche(projet, user, "x")
    with transaction.atomic():
        fiches.locked(fiche.pk, user)  # compiled once, inside one
    if not connection.features.has_select_for_update:  # SQLite: its transactions lock the whole file
        assert fiches.locked(fiche.pk, user)["id"] == fiche.pk
        return
    with pytest.raises(TransactionManagementError):
        fiches.locked(fiche.pk, user)


@pytest.mark.parametrize("value", [None, True, [1, 2], "1", 1.0])
def test_a_value_that_would_change_the_reads_shape_is_refused(projet, value):
    read = Prepared(lambda projet: Projet.objects.filter(pk=projet).values("id"), "projet")

    with pytest.raises(TypeError, match="takes a value of type int"):
        read.rows(projet=value)


def test_a_prepared_update_changes_the_rows_of_each_value_it_is_run_with(projet, user):
    first, second = make_fiche(projet, user, "first"), make_fiche(projet, user, "second")
    instant = datetime(2026, 3, 29, 0, 59, 59, 123456, tzinfo=UTC)
    relabel = PreparedUpdate(
        lambda fiche, label, at: (FicheTemps.objects.filter(pk=fiche), {"libelle": label, "updated_at": at}),
        "fiche",
        "label",
        "at",
        text=("label",),
        instants=("at",),
    )

    assert relabel.run(fiche=first.pk, label="un", at=instant) == 1
    assert relabel.run(fiche=second.pk, label="deux", at=instant + timedelta(days=1)) == 1
    assert relabel.run(fiche=second.pk + 1000, label="none", at=instant) == 0

    assert list(FicheTemps.objects.order_by("pk").values_list("libelle", "updated_at")) == [
        ("un", instant),
        ("deux", instant + timedelta(days=1)),
    ]
    with pytest.raises(TypeError, match="takes a value of type datetime"):
        relabel.run(fiche=first.pk, label="x", at=instant.replace(tzinfo=None))


def test_a_prepared_insert_writes_the_row_create_would_with_the_databases_defaults(projet, user):
    fiche = make_fiche(projet, user, "x")
    event = PreparedInsert(
        lambda fiche, at, delta, reason: FicheEvent(
            fiche_id=fiche,
            kind=FicheEvent.Kind.PAUSED,
            actor_id=user.pk,
            at=at,
            delta=delta,
            temps_impute=delta,
            reason=reason,
        ),
        *("fiche", "at", "delta", "reason"),
        instants=("at",),
        spans=("delta",),
        text=("reason",),
    )
    instant = datetime(2026, 10, 25, 1, 30, 0, 654321, tzinfo=UTC)
    lengths = [timedelta(hours=1, microseconds=7), timedelta(0), timedelta(days=-1, seconds=3)]

    for number, length in enumerate(lengths):
        event.run(fiche=fiche.pk, at=instant + timedelta(minutes=number), delta=length, reason=f"r{number}")
    created = FicheEvent.objects.create(
        fiche=fiche, kind=FicheEvent.Kind.PAUSED, actor=user, at=instant, temps_impute=timedelta(0)
    )

    written = list(FicheEvent.objects.filter(reason__startswith="r").order_by("id"))
    assert [(row.at, row.delta, row.temps_impute, row.reason) for row in written] == [
        (instant + timedelta(minutes=number), length, length, f"r{number}") for number, length in enumerate(lengths)
    ]
    created.refresh_from_db()
    assert all(row.txid == created.txid for row in written)  # the same database default (0 on SQLite)
    assert all(row.recorded_at is not None and row.changes == {} and row.applies_to is None for row in written)


def test_columns_and_instance_build_the_models_the_orm_builds(projet, user):
    fiche = make_fiche(projet, user, "label")
    row = FicheTemps.objects.filter(pk=fiche.pk).values(*columns(FicheTemps), *columns(Projet, "projet__")).get()

    built, its_projet = instance(FicheTemps, row), instance(Projet, row, "projet__")

    assert [getattr(built, name) for name in columns(FicheTemps)] == [
        getattr(fiche, name) for name in columns(FicheTemps)
    ]
    assert (its_projet.pk, its_projet.designation, its_projet._state.adding) == (projet.pk, projet.designation, False)


# The reads prepared for the front ends ---------------------------------------------------------


@pytest.fixture
def crowd(projet, user, other_user):
    other_projet = project("Autre")
    for number, (owner, on) in enumerate(itertools.product((user, other_user), (projet, other_projet))):
        make_fiche(on, owner, f"n{number}")
        started = make_fiche(on, owner, f"r{number}")
        fiches.start_fiche(fiche_id=started.pk, actor=owner)
    return projet, other_projet


@pytest.mark.parametrize("who", ["user", "staff"])
def test_every_page_of_every_filter_matches_the_list_it_is_a_page_of(crowd, who, request, user, other_user):
    reader = request.getfixturevalue(who)
    projet, _other = crowd
    owners = [None, user.pk] + ([other_user.pk] if who == "staff" else [])
    for etat, projet_id, owner_id in itertools.product(
        [None, Etat.EN_CALCUL, Etat.EN_PAUSE], [None, projet.pk], owners
    ):
        filters = {"etat": etat, "projet_id": projet_id, "owner_id": owner_id}
        expected = list(fiche_rows(fiche_list(user=reader, **filters)).values_list("id", "temps_impute", "etat"))
        found = []
        for number in itertools.count(1):
            page = fiche_page(user=reader, number=number, size=2, **filters)
            assert page.count == len(expected)
            found += [(row["id"], row["temps_impute"], row["etat"]) for row in page.items]
            if not page.has_next:
                break
        assert found == expected, filters


def test_one_fiche_reads_as_the_page_reads_it(crowd, user, staff):
    for fiche_id in FicheTemps.objects.filter(owner=user).values_list("pk", flat=True):
        row = fiche_row(user=user, fiche_id=fiche_id)
        listed = fiche_rows(fiche_list(user=user)).get(pk=fiche_id)
        assert {key: value for key, value in row.items() if key not in ("temps_live", "db_now")} == {
            key: value for key, value in listed.items() if key not in ("temps_live", "db_now")
        }
        assert fiche_row(user=staff, fiche_id=fiche_id)["id"] == fiche_id


def test_a_transition_returns_the_fiche_as_the_orm_reads_it(projet, user):
    fiche = fiches.start_fiche(fiche_id=make_fiche(projet, user, "x").pk, actor=user)
    read = FicheTemps.objects.with_live_time().select_related("projet", "owner").get(pk=fiche.pk)

    for name in (*columns(FicheTemps), "temps_impute"):
        assert getattr(fiche, name) == getattr(read, name), name
    assert fiche.temps_live <= read.temps_live and fiche.db_now <= read.db_now
    assert (fiche.projet.designation, fiche.owner.get_username()) == (projet.designation, user.get_username())


def test_someone_elses_fiche_is_found_and_changed_only_by_those_who_may(projet, user, staff):
    theirs = make_fiche(projet, person("third"), "theirs")

    with pytest.raises(Refused) as refused:
        fiches.start_fiche(fiche_id=theirs.pk, actor=user)
    assert refused.value.code is Code.NOT_FOUND
    assert fiches.start_fiche(fiche_id=theirs.pk, actor=staff).etat == Etat.EN_CALCUL
