"""Reads shared by the front ends: whose fiches a user reads, validated filters, pages and one fiche."""

from datetime import timedelta

import pytest

from tests.factories import make_fiche, project, running_fiche
from timesheet.core.dbtime import db_now
from timesheet.domain import fiches
from timesheet.domain.errors import Code, Refused
from timesheet.domain.selectors import fiche_list, fiche_page, fiche_row, owners_seen_by, page
from timesheet.models import FicheTemps, Projet

pytestmark = pytest.mark.django_db


def refused(call, **kwargs):
    with pytest.raises(Refused) as raised:
        call(**kwargs)
    return raised.value.code


def test_people_read_their_own_fiches_only(user, other_user):
    assert owners_seen_by(user, None) == [user.pk]
    assert owners_seen_by(user, user.pk) == [user.pk]
    assert refused(owners_seen_by, user=user, owner_id=other_user.pk) is Code.FORBIDDEN


def test_staff_read_everyones_or_the_one_they_name(staff, other_user):
    assert owners_seen_by(staff, None) is None
    assert owners_seen_by(staff, other_user.pk) == [other_user.pk]


def test_the_list_is_a_persons_own_fiches_newest_first(projet, user, other_user):
    first, second = make_fiche(projet, user, "un"), make_fiche(projet, user, "deux")
    make_fiche(projet, other_user)
    assert list(fiche_list(user=user).values_list("pk", flat=True)) == [second.pk, first.pk]


def test_the_list_narrows_by_state_project_and_owner(projet, staff, user, other_user):
    other = project("Autre")
    finished, running = make_fiche(projet, user), running_fiche(projet, user)
    elsewhere, bobs = make_fiche(other, user), make_fiche(projet, other_user)
    fiches.finish_fiche(fiche_id=finished.pk, actor=user)

    def ids(**filters):
        return set(fiche_list(user=staff, **filters).values_list("pk", flat=True))

    assert ids() == {finished.pk, running.pk, elsewhere.pk, bobs.pk}
    assert ids(etat="en_calcul") == {running.pk}
    assert ids(etat="terminee") == {finished.pk}
    assert ids(projet_id=other.pk) == {elsewhere.pk}
    assert ids(owner_id=other_user.pk) == {bobs.pk}
    assert ids(etat="en_pause", projet_id=projet.pk, owner_id=user.pk) == set()


def test_the_list_carries_the_live_time(projet, user):
    fiche = running_fiche(projet, user)
    listed = fiche_list(user=user).get()
    assert listed.pk == fiche.pk
    assert listed.temps_live == listed.temps_impute + (listed.db_now - listed.compte_jusqua)


@pytest.mark.parametrize("etat", ["running", "EN_CALCUL", ""])
def test_an_unknown_state_is_refused_as_invalid(user, etat):
    assert refused(fiche_list, user=user, etat=etat) is Code.INVALID


def test_naming_someone_elses_fiches_is_forbidden_without_the_permission(user, other_user):
    assert refused(fiche_list, user=user, owner_id=other_user.pk) is Code.FORBIDDEN


def test_pages_split_the_rows_and_say_what_surrounds_them(projet):
    for n in range(4):
        Projet.objects.create(designation=f"P{n}")
    queryset = Projet.objects.order_by("designation")
    second = page(queryset, number=2, size=2, rows=lambda qs: qs.values_list("designation", flat=True))
    assert (second.items, second.number, second.pages, second.count) == (["P2", "P3"], 2, 3, 5)
    assert (second.has_previous, second.has_next, second.server_time) == (True, True, None)
    last = page(queryset, number=3, size=2, rows=lambda qs: qs.values_list("designation", flat=True))
    assert (last.items, last.has_previous, last.has_next) == (["Refonte"], True, False)


def test_an_empty_list_has_one_empty_page():
    empty = page(Projet.objects.none(), number=1, size=10, rows=lambda qs: qs)
    assert (empty.items, empty.number, empty.pages, empty.count, empty.has_next, empty.has_previous) == (
        [],
        1,
        1,
        0,
        False,
        False,
    )


@pytest.mark.parametrize("count, number", [(0, 2), (4, 3), (5, 4)])
def test_a_page_past_the_last_is_refused_as_not_found(count, number):
    for n in range(count):
        Projet.objects.create(designation=f"P{n}")
    with pytest.raises(Refused) as raised:
        page(Projet.objects.all(), number=number, size=2, rows=lambda qs: qs)
    assert raised.value.code is Code.NOT_FOUND
    assert raised.value.message == f"Page {number} does not exist; there are {max(1, -(-count // 2))}."


def test_a_fiche_page_holds_rows_and_the_instant_their_live_time_was_read_at(projet, user):
    older, newer = make_fiche(projet, user), running_fiche(projet, user)
    found = fiche_page(user=user, number=1, size=1)
    ((row,), pages, count) = found.items, found.pages, found.count
    assert (row["id"], row["designation"], row["username"], pages, count) == (newer.pk, "Refonte", "alice", 2, 2)
    assert found.server_time == row["db_now"]
    assert [r["id"] for r in fiche_page(user=user, number=2, size=1).items] == [older.pk]


def test_an_empty_fiche_page_still_says_the_databases_now(user):
    before = db_now()
    found = fiche_page(user=user, number=1, size=20, etat="en_calcul")
    assert found.items == [] and before <= found.server_time <= db_now()


def test_a_fiche_page_refuses_bad_filters_and_pages(user, other_user):
    assert refused(fiche_page, user=user, number=1, size=20, etat="nope") is Code.INVALID
    assert refused(fiche_page, user=user, number=1, size=20, owner_id=other_user.pk) is Code.FORBIDDEN
    assert refused(fiche_page, user=user, number=2, size=20) is Code.NOT_FOUND


def test_one_fiche_is_read_by_its_owner_and_by_staff(projet, user, staff):
    fiche = make_fiche(projet, user, "Revue")
    FicheTemps.objects.filter(pk=fiche.pk).update(temps_impute=timedelta(minutes=3))
    for reader in (user, staff):
        row = fiche_row(user=reader, fiche_id=fiche.pk)
        assert (row["id"], row["libelle"], row["temps_live"], row["username"]) == (
            fiche.pk,
            "Revue",
            timedelta(minutes=3),
            "alice",
        )


def test_someone_elses_fiche_or_none_is_refused_as_not_found(projet, user, other_user):
    bobs = make_fiche(projet, other_user)
    with pytest.raises(Refused) as raised:
        fiche_row(user=user, fiche_id=bobs.pk)
    assert (raised.value.code, raised.value.message) == (Code.NOT_FOUND, f"Fiche {bobs.pk} does not exist.")
    assert refused(fiche_row, user=user, fiche_id=bobs.pk + 1000) is Code.NOT_FOUND


def test_an_inactive_person_reads_nothing(projet, user):
    fiche = make_fiche(projet, user)
    type(user).objects.filter(pk=user.pk).update(is_active=False)
    user.refresh_from_db()
    assert list(fiche_list(user=user)) == []
    assert refused(fiche_row, user=user, fiche_id=fiche.pk) is Code.NOT_FOUND
