"""
The admin of clients, teams, projects and hourly rates: pages that render,
teams with their members and leads, projects with their client and teams,
rates typed as an amount and a local instant and set through the service (a
begun rate only shown), and the fiche admin refusing an owner who may not use
the project, on the form.
"""

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from tests.factories import client_of, make_fiche, person, project, team
from timesheet.core.dbtime import db_now
from timesheet.domain import budgets, profiles
from timesheet.models import BudgetMark, Etat, FicheTemps, Projet, Rate, Team, TeamMembership
from timesheet.workers.ticker import tick

pytestmark = pytest.mark.django_db

PARIS = ZoneInfo("Europe/Paris")
ADMIN = "/admin/timesheet"
FICHES = f"{ADMIN}/fichetemps/"
RATES = f"{ADMIN}/rate/"


@pytest.fixture
def in_paris(superuser, settings):
    """The site counts in UTC; the staff member filling in the forms, in Paris."""
    settings.TIME_ZONE = "UTC"
    profiles.set_time_zone(user=superuser, name="Europe/Paris")


@pytest.fixture
def secret(other_user):
    """A project restricted to Design, of which bob is a member (alice is not)."""
    restricted = project("Secret")
    team("Design", members=[other_user], projets=[restricted])
    return restricted


def errors_of(response):
    """Every error the admin's form shows: the form's, by field, and its non-field ones."""
    form = response.context["adminform"].form
    return {name: [str(e) for e in errors] for name, errors in form.errors.items()}


def later(days=400, hour=9, minute=30):
    """A local time in Paris well ahead of now, as a datetime-local input types it, and the instant it is."""
    day = (db_now() + timedelta(days=days)).astimezone(PARIS).date()
    local = datetime(day.year, day.month, day.day, hour, minute, tzinfo=PARIS)
    return local.strftime("%Y-%m-%dT%H:%M"), local.astimezone(UTC)


# Pages ------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["client", "team", "projet", "rate"])
def test_each_page_renders_empty_and_filled(superuser_client, superuser, model, secret, in_paris):
    acme = client_of("ACME")
    Projet.objects.filter(pk=secret.pk).update(client=acme)
    future, _instant = later()
    assert superuser_client.post(RATES + "add/", {"projet": secret.pk, "hourly": "90", "effective_from": future})
    Rate.objects.create(hourly_minor=5000, effective_from=db_now() - timedelta(days=1))
    objects = {"client": acme, "team": Team.objects.get(), "projet": secret, "rate": Rate.objects.first()}

    for url in (f"{ADMIN}/{model}/", f"{ADMIN}/{model}/add/", f"{ADMIN}/{model}/{objects[model].pk}/change/"):
        response = superuser_client.get(url)
        assert response.status_code == 200, url


def test_projects_show_their_client_and_teams_and_filter_by_them(superuser_client, secret, projet):
    acme = client_of("ACME")
    Projet.objects.filter(pk=secret.pk).update(client=acme, billable=False)
    design = Team.objects.get()

    page = superuser_client.get(f"{ADMIN}/projet/").content.decode()
    assert "ACME" in page and "Design" in page and "everyone" in page

    def listed(query):
        response = superuser_client.get(f"{ADMIN}/projet/?{query}")
        assert response.status_code == 200
        return {projet.designation for projet in response.context["cl"].result_list}

    assert listed(f"client__id__exact={acme.pk}") == {"Secret"}
    assert listed("billable__exact=0") == {"Secret"}
    assert listed("billable__exact=1") == {"Refonte"}
    assert listed(f"teams__id__exact={design.pk}") == {"Secret"}


def test_a_project_is_given_a_client_and_restricted_to_teams_in_its_form(superuser_client, user, projet):
    acme = client_of("ACME")
    design = team("Design", members=[person("dave")])

    response = superuser_client.post(
        f"{ADMIN}/projet/{projet.pk}/change/",
        {"designation": "Refonte", "client": acme.pk, "teams": [design.pk], "actif": "on", "rounding": ""},
    )

    assert response.status_code == 302, errors_of(response)
    saved = Projet.objects.get(pk=projet.pk)
    assert (saved.client, saved.billable, list(saved.teams.all())) == (acme, False, [design])
    assert not Projet.objects.usable_by(user).exists()


def test_clients_show_their_projects_count_with_a_link_to_them(superuser_client, projet):
    acme = client_of("ACME")
    client_of("Autre", actif=False)
    Projet.objects.filter(pk=projet.pk).update(client=acme)

    page = superuser_client.get(f"{ADMIN}/client/").content.decode()

    assert f'href="/admin/timesheet/projet/?client__id__exact={acme.pk}">1<' in page
    assert "Autre" in page


def test_a_team_is_made_with_its_members_and_leads(superuser_client, user, other_user, secret):
    response = superuser_client.post(
        f"{ADMIN}/team/add/",
        {
            "name": "Support",
            "memberships-TOTAL_FORMS": "2",
            "memberships-INITIAL_FORMS": "0",
            "memberships-MIN_NUM_FORMS": "0",
            "memberships-MAX_NUM_FORMS": "1000",
            "memberships-0-user": user.pk,
            "memberships-0-lead": "on",
            "memberships-1-user": other_user.pk,
        },
    )

    assert response.status_code == 302, errors_of(response)
    support = Team.objects.get(name="Support")
    assert set(TeamMembership.objects.filter(team=support).values_list("user__username", "lead")) == {
        ("alice", True),
        ("bob", False),
    }
    page = superuser_client.get(f"{ADMIN}/team/").content.decode()
    row = page[page.index(">Support<") :]
    assert re.search(r'field-members_count">2<', row) and re.search(r'field-leads">alice<', row)
    design = superuser_client.get(f"{ADMIN}/team/{Team.objects.get(name='Design').pk}/change/").content.decode()
    assert f'href="/admin/timesheet/projet/{secret.pk}/change/">Secret<' in design


def test_the_same_person_twice_in_a_team_is_a_form_error(superuser_client, user):
    response = superuser_client.post(
        f"{ADMIN}/team/add/",
        {
            "name": "Support",
            "memberships-TOTAL_FORMS": "2",
            "memberships-INITIAL_FORMS": "0",
            "memberships-MIN_NUM_FORMS": "0",
            "memberships-MAX_NUM_FORMS": "1000",
            "memberships-0-user": user.pk,
            "memberships-1-user": user.pk,
        },
    )

    assert response.status_code == 200
    assert not Team.objects.exists()


def test_projects_clients_and_people_are_found_by_the_rates_autocomplete(superuser_client, secret):
    client_of("ACME")
    for field, term, found in (("projet", "Sec", "Secret"), ("client", "AC", "ACME"), ("user", "bo", "bob")):
        response = superuser_client.get(
            f"/admin/autocomplete/?app_label=timesheet&model_name=rate&field_name={field}&term={term}"
        )
        assert response.status_code == 200, field
        assert [item["text"] for item in response.json()["results"]] == [found]


# Rates ------------------------------------------------------------------------------


def add_rate(http, **fields):
    return http.post(RATES + "add/", {"user": "", "projet": "", "client": "", **fields})


def test_a_rate_is_an_amount_and_a_local_instant_set_through_the_service(superuser_client, superuser, secret, in_paris):
    typed, instant = later(hour=9, minute=30)

    response = add_rate(superuser_client, projet=secret.pk, hourly="85.50", effective_from=typed)

    assert response.status_code == 302, errors_of(response)
    rate = Rate.objects.get()
    assert (rate.projet, rate.user, rate.client, rate.hourly_minor) == (secret, None, None, 8550)
    assert rate.effective_from == instant  # 09:30 in Paris
    assert rate.created_by == superuser
    page = superuser_client.get(RATES).content.decode()
    assert "85.50 EUR" in page and "a project" in page and "Secret" in page and 'list-note">not begun yet' in page
    assert "Instants in Europe/Paris." in page
    assert typed.replace("T", " ") in page  # shown in the staff member's zone, as typed


def test_a_rate_typed_with_a_decimal_comma_in_french(superuser_client, in_paris, settings):
    settings.LANGUAGE_CODE = "fr"
    typed, _instant = later()

    response = superuser_client.post(
        RATES + "add/", {"hourly": "85,5", "effective_from": typed}, HTTP_ACCEPT_LANGUAGE="fr"
    )

    assert response.status_code == 302, errors_of(response)
    assert Rate.objects.get().hourly_minor == 8550


@pytest.mark.parametrize(
    "hourly, text",
    [
        ("", "This field is required."),
        ("abc", "Enter a number."),
        ("-1", "greater than or equal to 0"),
        ("85.555", "at most 2 decimals in EUR"),
        ("1e999999999", "digits in total"),
        ("NaN", "Enter a number."),
        ("200000", "A rate is at most 100000.00 an hour."),
    ],
)
def test_an_amount_that_is_not_one_is_a_form_error(superuser_client, in_paris, hourly, text):
    typed, _instant = later()

    response = add_rate(superuser_client, hourly=hourly, effective_from=typed)

    assert response.status_code == 200
    assert any(text in error for error in errors_of(response)["hourly"]), errors_of(response)
    assert not Rate.objects.exists()


@pytest.mark.parametrize(
    "effective_from, text",
    [
        ("2020-01-06T09:00", "cannot begin in the past"),
        ("soon", "Enter a valid date/time."),
        ("2031-03-30T02:30", "be interpreted in time zone Europe/Paris"),  # skipped by DST
        ("9999-12-31T23:59", "between the years 2 and 9998"),
    ],
)
def test_an_instant_that_cannot_be_is_a_form_error(superuser_client, in_paris, effective_from, text):
    response = add_rate(superuser_client, hourly="80", effective_from=effective_from)

    assert response.status_code == 200
    assert any(text in error for errors in errors_of(response).values() for error in errors), errors_of(response)
    assert not Rate.objects.exists()


def test_left_as_shown_or_empty_a_new_rate_begins_now(superuser_client, in_paris):
    form = superuser_client.get(RATES + "add/").content.decode()
    shown = re.search(r'name="effective_from" value="([^"]+)"', form).group(1)
    hidden = re.search(r'name="initial-effective_from" value="([^"]+)"', form).group(1)
    assert shown == hidden == db_now().astimezone(PARIS).strftime("%Y-%m-%dT%H:%M")

    before = db_now()
    left = add_rate(superuser_client, hourly="80", effective_from=shown, **{"initial-effective_from": hidden})
    empty = add_rate(superuser_client, user=person("dave").pk, hourly="70", effective_from="")
    after = db_now()

    assert left.status_code == empty.status_code == 302
    for rate in Rate.objects.all():
        assert before < rate.effective_from <= after + timedelta(seconds=3)


def test_a_client_rate_naming_a_person_and_a_rate_twice_at_one_instant_are_form_errors(
    superuser_client, user, in_paris
):
    acme = client_of("ACME")
    typed, _instant = later()

    both = add_rate(superuser_client, client=acme.pk, user=user.pk, hourly="80", effective_from=typed)
    assert both.status_code == 200
    assert errors_of(both)["__all__"] == ["A client's rate names no person and no project."]

    assert add_rate(superuser_client, client=acme.pk, hourly="80", effective_from=typed).status_code == 302
    twice = add_rate(superuser_client, client=acme.pk, hourly="90", effective_from=typed)
    assert errors_of(twice)["__all__"] == ["A rate of that level already begins at that instant."]
    assert Rate.objects.count() == 1


def test_a_rate_not_begun_is_changed_or_withdrawn(superuser_client, secret, in_paris):
    typed, instant = later()
    add_rate(superuser_client, projet=secret.pk, hourly="80", effective_from=typed)
    first = Rate.objects.get()
    page = superuser_client.get(f"{RATES}{first.pk}/change/").content.decode()
    assert 'value="80.00"' in page and f'value="{typed}"' in page

    changed = superuser_client.post(
        f"{RATES}{first.pk}/change/",
        {"projet": secret.pk, "hourly": "95", "effective_from": typed, "initial-effective_from": typed},
    )

    assert changed.status_code == 302, errors_of(changed)
    second = Rate.objects.get()  # the first withdrawn, the new one set at the same instant
    assert (second.hourly_minor, second.effective_from, second.projet) == (9500, instant, secret)
    assert superuser_client.post(f"{RATES}{second.pk}/delete/", {"post": "yes"}).status_code == 302
    assert not Rate.objects.exists()


def test_a_begun_rate_is_only_shown(superuser_client, secret, in_paris):
    begun = Rate.objects.create(projet=secret, hourly_minor=8000, effective_from=db_now() - timedelta(days=3))

    page = superuser_client.get(f"{RATES}{begun.pk}/change/").content.decode()
    assert 'name="_save"' not in page and "80.00 EUR" in page and "a project" in page
    posted = superuser_client.post(
        f"{RATES}{begun.pk}/change/", {"projet": secret.pk, "hourly": "1", "effective_from": later()[0]}
    )
    assert posted.status_code == 403
    assert superuser_client.get(f"{RATES}{begun.pk}/delete/").status_code == 403
    assert superuser_client.post(f"{RATES}{begun.pk}/delete/", {"post": "yes"}).status_code == 403
    listed = superuser_client.get(RATES).content.decode()
    assert 'list-note">not begun yet' not in listed
    assert Rate.objects.get().hourly_minor == 8000


def test_the_withdraw_action_keeps_begun_rates_and_says_so_once(superuser_client, secret, in_paris):
    for days_ago in (1, 2):
        Rate.objects.create(projet=secret, hourly_minor=8000, effective_from=db_now() - timedelta(days=days_ago))
    typed, _instant = later()
    add_rate(superuser_client, projet=secret.pk, hourly="90", effective_from=typed)
    actions = superuser_client.get(RATES).context["action_form"].fields["action"].choices
    assert "delete_selected" not in [name for name, _label in actions]

    response = superuser_client.post(
        RATES, {"action": "withdraw", "_selected_action": list(Rate.objects.values_list("pk", flat=True))}, follow=True
    )

    shown = [(message.level_tag, str(message)) for message in response.context["messages"]]
    assert shown == [
        ("success", "1 rate withdrawn."),
        ("warning", "2 rates kept: A rate that has begun priced time: it is kept."),
    ]
    assert Rate.objects.count() == 2


def test_the_rates_levels_and_subjects_in_the_list(superuser_client, user, secret, in_paris):
    acme = client_of("ACME")
    for fields in ({"user": user, "projet": secret}, {"client": acme}, {"user": user}, {}):
        Rate.objects.create(hourly_minor=1000, effective_from=db_now() - timedelta(days=1), **fields)

    page = superuser_client.get(RATES).content.decode()

    for level in ("a person on a project", "a client", "a person", "the site&#x27;s default"):
        assert level in page, level
    assert "alice on Secret" in page and "ACME" in page and "10.00 EUR" in page


# The fiche admin --------------------------------------------------------------------


def inline_management():
    return {f"events-{name}": "0" for name in ("TOTAL_FORMS", "INITIAL_FORMS", "MIN_NUM_FORMS", "MAX_NUM_FORMS")}


REFUSED_TO_ALICE = "Project “Secret” is open only to its teams&#x27; members, and alice is not one of them."


def test_the_fiche_admin_refuses_a_new_fiche_for_a_non_member_on_the_form(superuser_client, user, other_user, secret):
    response = superuser_client.post(
        FICHES + "add/", {"projet": secret.pk, "owner": user.pk, "libelle": "x", **inline_management()}
    )

    assert response.status_code == 200
    assert REFUSED_TO_ALICE in response.content.decode()
    assert not FicheTemps.objects.exists()
    member = superuser_client.post(
        FICHES + "add/", {"projet": secret.pk, "owner": other_user.pk, "libelle": "x", **inline_management()}
    )
    assert member.status_code == 302 and FicheTemps.objects.get().owner == other_user


def test_the_fiche_admin_refuses_a_non_member_owner_or_a_restricted_project_on_the_form(
    superuser_client, user, other_user, secret, projet
):
    theirs = make_fiche(secret, other_user)
    alices = make_fiche(projet, user)

    given = superuser_client.post(
        f"{FICHES}{theirs.pk}/change/", {"projet": secret.pk, "owner": user.pk, "libelle": "x", **inline_management()}
    )
    moved = superuser_client.post(
        f"{FICHES}{alices.pk}/change/", {"projet": secret.pk, "owner": user.pk, "libelle": "x", **inline_management()}
    )

    assert given.status_code == moved.status_code == 200
    assert errors_of(given) == {"owner": [REFUSED_TO_ALICE.replace("&#x27;", "'")]}
    assert errors_of(moved) == {"projet": [REFUSED_TO_ALICE.replace("&#x27;", "'")]}
    assert FicheTemps.objects.get(pk=theirs.pk).owner == other_user
    assert FicheTemps.objects.get(pk=alices.pk).projet == projet


def test_the_fiche_admin_keeps_a_fiche_whose_owner_left_the_team_editable(superuser_client, other_user, secret):
    fiche = make_fiche(secret, other_user)
    TeamMembership.objects.filter(user=other_user).delete()

    response = superuser_client.post(
        f"{FICHES}{fiche.pk}/change/",
        {"projet": secret.pk, "owner": other_user.pk, "libelle": "Renommée", **inline_management()},
    )

    assert response.status_code == 302
    assert FicheTemps.objects.get(pk=fiche.pk).libelle == "Renommée"


def test_the_fiche_admins_start_action_says_why_a_fiche_of_someone_who_left_the_team_stays(
    superuser_client, other_user, secret
):
    fiche = make_fiche(secret, other_user, "Maquettes")
    TeamMembership.objects.filter(user=other_user).delete()

    response = superuser_client.post(FICHES, {"action": "start", "_selected_action": [fiche.pk]}, follow=True)

    (message,) = [str(message) for message in response.context["messages"]]
    assert message == (
        f"#{fiche.pk} Maquettes: Cannot start: The project of fiche {fiche.pk} is open only to its teams' "
        "members, and its owner is not one of them."
    )
    assert FicheTemps.objects.get(pk=fiche.pk).etat == Etat.EN_PAUSE


def test_a_team_that_alone_restricts_a_project_cannot_be_deleted(superuser_client, secret):
    design = Team.objects.get(name="Design")

    page = superuser_client.get(f"{ADMIN}/team/{design.pk}/delete/")
    refused = superuser_client.post(f"{ADMIN}/team/{design.pk}/delete/", {"post": "yes"})

    assert "Secret: its teams would be gone and everyone would see it" in page.content.decode()
    assert refused.status_code == 403 or "would be gone" in refused.content.decode()
    assert Team.objects.filter(pk=design.pk).exists() and secret.teams.exists()
    # With another team restricting it too, the project stays restricted: the team goes.
    other = team("Studio", projets=[secret])
    assert superuser_client.post(f"{ADMIN}/team/{design.pk}/delete/", {"post": "yes"}).status_code == 302
    assert list(secret.teams.all()) == [other]


def test_moving_a_project_to_another_client_computes_every_budget_again(superuser_client, projet):
    acme = client_of("ACME")
    budget = budgets.save_budget(
        client_id=acme.pk, kind="time", period="total", limit=3600, thresholds=[80], action="alert"
    )
    tick()
    assert not BudgetMark.objects.filter(budget=budget).exists()

    response = superuser_client.post(
        f"{ADMIN}/projet/{projet.pk}/change/",
        {"designation": projet.designation, "client": acme.pk, "billable": "on", "actif": "on", "rounding": ""},
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    assert BudgetMark.objects.filter(budget=budget).exists()
