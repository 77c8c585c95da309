"""
Teams restrict projects: a project restricted to teams is seen, created on,
started and charged to by their members only, whoever acts (the fiche's
owner must be allowed); one with no team stays open to everyone. To someone
who may not see it, a restricted project is one that does not exist. The
rules, then the API, then the people's page.
"""

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.factories import client_of, make_fiche, person, project, running_fiche, team
from tests.support import signed_in
from timesheet.core.dbtime import db_now
from timesheet.domain import entries, fiches
from timesheet.domain.errors import Code, Refused
from timesheet.models import Etat, FicheEvent, FicheTemps, Projet, Stretch, TeamMembership

pytestmark = pytest.mark.django_db

MISSING = 999_999  # no project has this id


@pytest.fixture
def member(other_user):
    """bob, a member of Design."""
    return other_user


@pytest.fixture
def secret(member):
    """A project restricted to the team Design, of which bob is a member (alice is not)."""
    restricted = project("Secret")
    team("Design", members=[member], projets=[restricted])
    return restricted


def yesterday(hour):
    day = db_now().date() - timedelta(days=1)
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def refusal(call):
    with pytest.raises(Refused) as refused:
        call()
    return refused.value


def not_found(projet_id):
    """What a project that does not exist is said to be."""
    return f"Project {projet_id} does not exist."


def leave(person_, team_name="Design"):
    TeamMembership.objects.filter(user=person_, team__name=team_name).delete()


# The rule --------------------------------------------------------------------------


def test_a_restricted_project_is_open_to_its_teams_members_only(user, member, secret, projet, staff):
    other_team_project = project("Autre équipe")
    team("Support", members=[person("dave")], projets=[other_team_project])

    assert set(Projet.objects.open_to(member)) == {secret, projet}
    assert set(Projet.objects.open_to(user)) == {projet}
    assert set(Projet.objects.usable_by(user)) == {projet}
    # Staff who see everyone's fiches see every project, but use only those open to them.
    assert set(Projet.objects.seen_by(staff)) == {secret, projet, other_team_project}
    assert set(Projet.objects.usable_by(staff)) == {projet}


def test_a_project_restricted_to_several_teams_is_open_to_each_ones_members(user, member, secret):
    team("Support", members=[user], projets=[secret])

    assert set(Projet.objects.usable_by(user)) == set(Projet.objects.usable_by(member)) == {secret}


# Creating --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "create",
    [
        lambda actor, projet_id: fiches.create_fiche(projet_id=projet_id, actor=actor),
        lambda actor, projet_id: fiches.create_fiche(projet_id=projet_id, actor=actor, start=True),
        lambda actor, projet_id: fiches.check_new_fiche(actor=actor, owner_id=actor.pk, projet_id=projet_id),
        lambda actor, projet_id: entries.add_entry(
            actor=actor, projet_id=projet_id, start=yesterday(9), end=yesterday(10)
        ),
    ],
    ids=["create", "create started", "check", "add an entry"],
)
def test_a_non_member_is_told_a_restricted_project_does_not_exist_as_a_missing_one(user, secret, create):
    hidden = refusal(lambda: create(user, secret.pk))
    missing = refusal(lambda: create(user, MISSING))

    assert (hidden.code, hidden.message) == (Code.NOT_FOUND, not_found(secret.pk))
    assert (missing.code, missing.message) == (Code.NOT_FOUND, not_found(MISSING))
    assert not FicheTemps.objects.exists() and not FicheEvent.objects.exists() and not Stretch.objects.exists()


def test_a_restricted_project_that_is_also_inactive_is_still_one_that_does_not_exist(user, secret):
    Projet.objects.filter(pk=secret.pk).update(actif=False)

    refused = refusal(lambda: fiches.create_fiche(projet_id=secret.pk, actor=user))

    assert (refused.code, refused.message) == (Code.NOT_FOUND, not_found(secret.pk))


def test_a_member_creates_starts_and_adds_entries_on_it(member, secret):
    fiche = running_fiche(secret, member)
    entry = entries.add_entry(actor=member, projet_id=secret.pk, start=yesterday(9), end=yesterday(10))

    assert fiche.etat == Etat.EN_CALCUL and entry.projet == secret.pk


def test_a_project_with_no_team_stays_open_to_everyone(user, member, secret, projet):
    for someone in (user, member):
        assert running_fiche(projet, someone).etat == Etat.EN_CALCUL


def test_the_owner_must_be_a_member_whoever_acts(user, member, secret, staff):
    """Staff may see the project: they are told why, with the owner named."""
    refused = refusal(lambda: fiches.create_fiche(projet_id=secret.pk, owner_id=user.pk, actor=staff))

    assert refused.code == Code.FORBIDDEN
    assert refused.message == "Project “Secret” is open only to its teams' members, and alice is not one of them."
    assert fiches.create_fiche(projet_id=secret.pk, owner_id=member.pk, actor=staff).owner == member
    # Staff themselves are no members: their own fiche is refused as well, and said plainly (they see it).
    own = refusal(lambda: fiches.create_fiche(projet_id=secret.pk, actor=staff))
    assert own.code == Code.FORBIDDEN and "carol is not one of them" in own.message


def test_someone_who_may_create_for_others_but_not_see_every_project_is_not_told_it_exists(user, secret):
    creator = person("erin", is_staff=True)
    from django.contrib.auth.models import Permission

    creator.user_permissions.add(Permission.objects.get(codename="add_fichetemps"))
    creator = type(creator).objects.get(pk=creator.pk)

    refused = refusal(lambda: fiches.create_fiche(projet_id=secret.pk, owner_id=user.pk, actor=creator))

    assert (refused.code, refused.message) == (Code.NOT_FOUND, not_found(secret.pk))


# Starting --------------------------------------------------------------------------


def test_removing_someone_from_the_team_stops_their_starts(member, secret):
    fiche = make_fiche(secret, member)
    leave(member)
    before = list(FicheEvent.objects.order_by("id").values_list("id", flat=True))

    refused = refusal(lambda: fiches.start_fiche(fiche_id=fiche.pk, actor=member))

    assert refused.code == Code.FORBIDDEN
    assert refused.message == (
        f"The project of fiche {fiche.pk} is open only to its teams' members, and its owner is not one of them."
    )
    assert FicheTemps.objects.get(pk=fiche.pk).etat == Etat.EN_PAUSE
    assert list(FicheEvent.objects.order_by("id").values_list("id", flat=True)) == before
    assert not Stretch.objects.exists()
    # Back in the team (or the project opened to everyone again), it starts.
    team_ = secret.teams.get()
    TeamMembership.objects.create(team=team_, user=member)
    assert fiches.start_fiche(fiche_id=fiche.pk, actor=member).etat == Etat.EN_CALCUL


def test_a_project_restricted_after_a_fiche_was_made_stops_its_starts_for_non_members(user, projet):
    fiche = make_fiche(projet, user)
    team("Design", members=[person("dave")], projets=[projet])

    assert refusal(lambda: fiches.start_fiche(fiche_id=fiche.pk, actor=user)).code == Code.FORBIDDEN
    Projet.teams.through.objects.all().delete()  # open to everyone again
    assert fiches.start_fiche(fiche_id=fiche.pk, actor=user).etat == Etat.EN_CALCUL


def test_staff_cannot_start_a_fiche_for_an_owner_who_left_the_team(member, secret, staff):
    fiche = make_fiche(secret, member)
    leave(member)

    assert refusal(lambda: fiches.start_fiche(fiche_id=fiche.pk, actor=staff)).code == Code.FORBIDDEN


def test_staff_who_are_no_members_start_a_members_fiche(member, secret, staff):
    fiche = make_fiche(secret, member)

    assert fiches.start_fiche(fiche_id=fiche.pk, actor=staff).etat == Etat.EN_CALCUL


def test_a_switch_to_a_fiche_whose_project_left_the_owner_changes_nothing(member, secret, projet):
    running = running_fiche(projet, member)
    waiting = make_fiche(secret, member)
    leave(member)

    refused = refusal(lambda: fiches.switch_fiche(from_id=running.pk, to_id=waiting.pk, actor=member))

    assert refused.code == Code.FORBIDDEN
    assert FicheTemps.objects.get(pk=running.pk).etat == Etat.EN_CALCUL
    assert FicheTemps.objects.get(pk=waiting.pk).etat == Etat.EN_PAUSE


def test_continuing_a_fiche_whose_project_left_the_owner_is_refused(member, secret):
    fiche = make_fiche(secret, member)
    fiches.finish_fiche(fiche_id=fiche.pk, actor=member)
    leave(member)

    refused = refusal(lambda: entries.continue_fiche(fiche_id=fiche.pk, actor=member))

    assert refused.code == Code.FORBIDDEN and f"fiche {fiche.pk}" in refused.message
    assert FicheTemps.objects.count() == 1


def test_pausing_and_finishing_stay_possible_after_leaving_the_team(member, secret):
    running = running_fiche(secret, member)
    leave(member)

    assert fiches.pause_fiche(fiche_id=running.pk, actor=member).etat == Etat.EN_PAUSE
    assert fiches.finish_fiche(fiche_id=running.pk, actor=member).etat == Etat.TERMINEE


def restricted_reads(queries):
    """The queries that read a project other than as a subquery (aliased U0, V0...)."""
    read = re.compile(r'\bFROM "timesheet_projet"(?! "?[A-Z]\d)')
    return [q["sql"] for q in queries if read.search(q["sql"])]


def test_a_start_reads_whether_its_project_is_open_with_its_locked_fiche(member, secret, projet):
    open_fiche, restricted_fiche = make_fiche(projet, member), make_fiche(secret, member)
    counts = []
    for fiche in (open_fiche, restricted_fiche):
        with CaptureQueriesContext(connection) as queries:
            fiches.start_fiche(fiche_id=fiche.pk, actor=member)
        assert restricted_reads(queries) == []
        counts.append(len(queries))
        fiches.pause_fiche(fiche_id=fiche.pk, actor=member)
    assert counts[0] == counts[1]


# Moving and giving -----------------------------------------------------------------


def test_a_fiche_moved_to_a_restricted_project_by_a_non_member_is_not_found(user, secret, projet):
    fiche = make_fiche(projet, user)

    refused = refusal(lambda: fiches.update_fiche(fiche_id=fiche.pk, actor=user, projet_id=secret.pk))

    assert (refused.code, refused.message) == (Code.NOT_FOUND, not_found(secret.pk))
    assert FicheTemps.objects.get(pk=fiche.pk).projet == projet


def test_staff_cannot_give_a_restricted_projects_fiche_to_a_non_member(user, member, secret, projet, staff):
    fiche = make_fiche(secret, member)
    theirs = make_fiche(projet, user)

    given = refusal(lambda: fiches.update_fiche(fiche_id=fiche.pk, actor=staff, owner=user))
    moved = refusal(lambda: fiches.update_fiche(fiche_id=theirs.pk, actor=staff, projet_id=secret.pk))

    assert given.code == moved.code == Code.FORBIDDEN
    assert "alice is not one of them" in given.message and "alice is not one of them" in moved.message
    assert FicheTemps.objects.get(pk=fiche.pk).owner == member
    assert FicheTemps.objects.get(pk=theirs.pk).projet == projet
    # To a member, with the project: both at once are checked together.
    dave = person("dave")
    TeamMembership.objects.create(team=secret.teams.get(), user=dave)
    done = fiches.update_fiche(fiche_id=theirs.pk, actor=staff, projet_id=secret.pk, owner=dave)
    assert (done.projet, done.owner) == (secret, dave)


def test_a_label_change_needs_no_membership_the_history_stays_its_owners(member, secret):
    fiche = make_fiche(secret, member)
    leave(member)

    assert fiches.update_fiche(fiche_id=fiche.pk, actor=member, libelle="Renommée").libelle == "Renommée"


def test_an_entry_moved_to_a_restricted_project_by_a_non_member_is_not_found(user, secret, projet):
    first = entries.add_entry(actor=user, projet_id=projet.pk, start=yesterday(9), end=yesterday(10))
    alone = entries.add_entry(actor=user, projet_id=projet.pk, start=yesterday(11), end=yesterday(12))
    fiches.update_fiche(fiche_id=alone.fiche, actor=user, libelle="x")
    # One entry alone on its fiche (its fiche moves), one among several (it moves to a fiche of its own).
    split_first, _second = entries.split_entry(entry_id=first.id, actor=user, at=yesterday(9) + timedelta(minutes=30))

    for entry_id in (alone.id, split_first.id):
        refused = refusal(
            lambda entry_id=entry_id: entries.change_entry(entry_id=entry_id, actor=user, projet_id=secret.pk)
        )
        assert (refused.code, refused.message) == (Code.NOT_FOUND, not_found(secret.pk))
    assert set(FicheTemps.objects.values_list("projet_id", flat=True)) == {projet.pk}


def test_relabelling_one_entry_among_several_after_leaving_the_team_is_refused_plainly(member, secret):
    entry = entries.add_entry(actor=member, projet_id=secret.pk, start=yesterday(9), end=yesterday(10))
    first, _second = entries.split_entry(entry_id=entry.id, actor=member, at=yesterday(9) + timedelta(minutes=30))
    leave(member)

    refused = refusal(lambda: entries.change_entry(entry_id=first.id, actor=member, libelle="À part"))

    assert refused.code == Code.FORBIDDEN and "its owner is not one of them" in refused.message
    assert FicheTemps.objects.count() == 1


# The API ---------------------------------------------------------------------------


def send(client, method, url, body=None):
    return getattr(client, method)(url, json.dumps(body or {}), content_type="application/json")


def test_the_api_lists_the_projects_you_may_use_with_their_client(alice, member, secret, projet):
    acme = client_of("ACME")
    Projet.objects.filter(pk=projet.pk).update(client=acme, billable=False)
    project("Archivé", actif=False)

    assert alice.get("/api/projets/").json() == [
        {
            "id": projet.pk,
            "designation": "Refonte",
            "client": {"id": acme.pk, "name": "ACME"},
            "billable": False,
            "budget": None,
        }
    ]
    bob = signed_in(member)
    assert [p["designation"] for p in bob.get("/api/projets/").json()] == ["Refonte", "Secret"]
    assert bob.get(f"/api/projets/{secret.pk}/").json() == {
        "id": secret.pk,
        "designation": "Secret",
        "client": None,
        "billable": True,
        "budget": None,
    }


def test_the_api_answers_a_restricted_project_as_one_that_does_not_exist(alice, secret, staff):
    hidden, missing = alice.get(f"/api/projets/{secret.pk}/"), alice.get(f"/api/projets/{MISSING}/")

    assert hidden.status_code == missing.status_code == 404
    assert hidden.json() == {"error": not_found(secret.pk), "code": "not_found"}
    assert missing.json() == {"error": not_found(MISSING), "code": "not_found"}
    # Staff who see every fiche still get only the projects open to them.
    assert signed_in(staff).get(f"/api/projets/{secret.pk}/").status_code == 404
    assert signed_in(staff).get("/api/projets/").json() == []


def test_a_deactivated_project_of_yours_still_answers_but_is_not_listed(alice, projet):
    Projet.objects.filter(pk=projet.pk).update(actif=False)

    assert alice.get("/api/projets/").json() == []
    assert alice.get(f"/api/projets/{projet.pk}/").status_code == 200


@pytest.mark.parametrize("path", ["/api/projets/0/", "/api/projets/abc/", "/api/projets/99999999999999999999/"])
def test_a_bad_project_id_is_a_json_404(alice, path):
    response = alice.get(path)

    assert response.status_code == 404 and "error" in response.json()


def test_the_projects_are_in_the_openapi_schema(client):
    schema = client.get("/api/openapi.json").json()

    detail = schema["paths"]["/api/projets/{projet_id}/"]["get"]
    assert detail["operationId"] == "timesheet_api_projet_detail"
    assert {"200", "404"} <= set(detail["responses"])
    assert set(schema["components"]["schemas"]["ProjetOut"]["properties"]) == {
        "id",
        "designation",
        "client",
        "billable",
        "budget",
    }


def test_the_api_refuses_a_non_members_fiche_and_entry_as_a_missing_project(alice, secret):
    for url, body in (
        ("/api/fiches/", {"projet": secret.pk, "start": True}),
        ("/api/entries/", {"projet": secret.pk, "start": yesterday(9).isoformat(), "end": yesterday(10).isoformat()}),
    ):
        hidden = send(alice, "post", url, body)
        missing = send(alice, "post", url, {**body, "projet": MISSING})
        assert hidden.status_code == missing.status_code == 404
        assert hidden.json() == {"error": not_found(secret.pk), "code": "not_found"}
        assert missing.json()["error"] == not_found(MISSING)
    assert not FicheTemps.objects.exists()


def test_the_api_refuses_a_start_once_the_owner_left_the_team(member, secret):
    bob = signed_in(member)
    fiche = make_fiche(secret, member)
    leave(member)

    response = send(bob, "post", f"/api/fiches/{fiche.pk}/start")

    assert response.status_code == 403 and response.json()["code"] == "forbidden"
    assert FicheTemps.objects.get(pk=fiche.pk).etat == Etat.EN_PAUSE


def test_a_member_starts_through_the_api(member, secret):
    bob = signed_in(member)

    response = send(bob, "post", "/api/fiches/", {"projet": secret.pk, "start": True})

    assert response.status_code == 201 and response.json()["etat"] == "en_calcul"


# The people's page -----------------------------------------------------------------


def options(page, select_id):
    """The project ids a picker of the page offers."""
    start = page.index(f'id="{select_id}"')
    select = page[start : page.index("</select>", start)]
    return {int(value) for value in re.findall(r'<option value="(\d+)"', select)}


def test_the_pickers_offer_only_the_projects_the_person_may_use(alice, user, member, secret, projet):
    project("Archivé", actif=False)
    entries.add_entry(actor=user, projet_id=projet.pk, start=yesterday(9), end=yesterday(10))

    page = alice.get(f"/?week={yesterday(0).date().isoformat()}").content.decode()

    assert options(page, "timer-projet") == options(page, "add-projet") == {projet.pk}
    edit = re.search(r'id="(projet-\d+-[\d-]+)"', page).group(1)
    assert options(page, edit) == {projet.pk}
    bob_page = signed_in(member).get("/").content.decode()
    assert options(bob_page, "timer-projet") == {projet.pk, secret.pk}


def fetch(client, url, data):
    """A form posted as the page's script posts it: the answer is JSON."""
    return client.post(url, data, HTTP_X_REQUESTED_WITH="fetch")


def test_the_page_refuses_a_non_members_fiche_and_entry_as_a_missing_project(alice, secret):
    day = yesterday(0).date().isoformat()
    for url, data in (
        ("/fiches/new", {"projet": secret.pk, "start": "on", "libelle": "x"}),
        ("/entries/new", {"projet": secret.pk, "day": day, "start": "09:00", "end": "10:00"}),
    ):
        response = fetch(alice, url, data)
        assert response.status_code == 404, response.content
        assert response.json() == {"error": not_found(secret.pk), "code": "not_found"}
    assert not FicheTemps.objects.exists()
    # A plain form: the message on the page, the same words.
    page = alice.post("/fiches/new", {"projet": secret.pk, "start": "on"}, follow=True).content.decode()
    assert not_found(secret.pk) in page and "Secret" not in page


def test_the_page_refuses_a_start_once_the_owner_left_the_team(member, secret):
    bob = signed_in(member)
    fiche = make_fiche(secret, member)
    leave(member)

    response = fetch(bob, f"/fiches/{fiche.pk}/start", {})

    assert response.status_code == 403 and response.json()["code"] == "forbidden"
    assert FicheTemps.objects.get(pk=fiche.pk).etat == Etat.EN_PAUSE


def test_a_member_starts_from_the_page(member, secret):
    response = fetch(signed_in(member), "/fiches/new", {"projet": secret.pk, "start": "on"})

    assert response.status_code == 200
    assert FicheTemps.objects.get().etat == Etat.EN_CALCUL


def test_the_page_shows_the_persons_teams_and_which_they_lead(alice, user, member, secret):
    team("Support", leads=[member])

    bob_page = signed_in(member).get("/").content.decode()
    teams = bob_page[bob_page.index('id="teams"') :]
    teams = teams[: teams.index("</section>")]
    assert "My teams" in teams
    assert teams.index("Design") < teams.index("Support")
    assert re.search(r"Support</strong></span><span class=\"badge\">lead<", teams)
    assert not re.search(r"Design</strong></span><span class=\"badge\">", teams)
    # Someone in no team: no section to read.
    page = alice.get("/").content.decode()
    assert "My teams" not in page


def test_the_teams_are_drawn_again_with_the_regions(member, secret):
    response = signed_in(member).get("/", HTTP_HX_REQUEST="true")

    page = response.content.decode()
    assert 'id="teams" aria-labelledby="teams-title" hx-swap-oob="true"' in page
