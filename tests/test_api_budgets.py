"""Budgets in the API and on the people's page: live usage, thresholds, forecasts, starts refused when used up."""

from datetime import UTC, datetime, timedelta

import pytest
from django.utils.dateparse import parse_datetime

from tests.factories import make_fiche, person, project
from tests.support import signed_in
from timesheet.core.dbtime import db_now
from timesheet.domain import budgets, fiches
from timesheet.domain.errors import Refused
from timesheet.models import Client, Rate, Team, TeamMembership
from timesheet.workers.ticker import tick

pytestmark = pytest.mark.django_db

M = timedelta(minutes=1)


def whole_ms(instant):
    return instant.replace(microsecond=instant.microsecond // 1000 * 1000)


@pytest.fixture
def studio(user):
    team = Team.objects.create(name="Studio")
    TeamMembership.objects.create(team=team, user=user)
    projet = project("Site vitrine")
    projet.teams.add(team)
    return projet


def test_a_project_carries_its_live_budget_with_thresholds_and_forecast(alice, user, studio):
    budgets.save_budget(
        projet_id=studio.pk, kind="time", period="total", limit=3600, thresholds=[50, 100], action="alert"
    )
    began = whole_ms(db_now() - 40 * M)
    fiches.start_fiche(fiche_id=make_fiche(studio, user).pk, actor=user, at=began)
    tick()

    body = alice.get(f"/api/projets/{studio.pk}/").json()

    shown = body["budget"]
    assert shown["kind"] == "time" and shown["period"] == "total" and shown["action"] == "alert"
    assert shown["limit"] == 3600 and shown["currency"] is None
    assert 40 * 60 <= shown["used"] < 45 * 60
    assert shown["thresholds"][0]["percent"] == 50
    assert parse_datetime(shown["thresholds"][0]["crossed_at"]) == began + 30 * M
    assert shown["thresholds"][1] == {"percent": 100, "crossed_at": None}
    assert parse_datetime(shown["exhausted_forecast_at"]) == began + 60 * M
    listed = {row["id"]: row for row in alice.get("/api/projets/").json()}
    assert listed[studio.pk]["budget"]["limit"] == 3600


def test_a_money_budget_is_shown_in_decimal_strings_of_the_currency(alice, user, studio, settings):
    settings.CURRENCY = "EUR"
    client = Client.objects.create(name="ACME")
    studio.client = client
    studio.save()
    budgets.save_budget(
        client_id=client.pk, kind="money", period="month", limit=150_000, thresholds=[80], action="alert"
    )
    Rate.objects.create(hourly_minor=9000, effective_from=datetime(2020, 1, 1, tzinfo=UTC))
    tick()

    shown = alice.get(f"/api/projets/{studio.pk}/").json()["budget"]

    assert shown == {
        **shown,
        "kind": "money",
        "period": "month",
        "limit": "1500.00",
        "used": "0.00",
        "currency": "EUR",
        "exhausted_forecast_at": None,
    }


def test_a_project_without_a_budget_says_null(alice, projet):
    assert alice.get(f"/api/projets/{projet.pk}/").json()["budget"] is None


def test_a_start_on_a_used_up_stop_budget_is_refused_with_its_code(alice, user, studio):
    budgets.save_budget(projet_id=studio.pk, kind="time", period="total", limit=60, thresholds=[100], action="stop")
    fiches.start_fiche(fiche_id=make_fiche(studio, user).pk, actor=user, at=whole_ms(db_now() - 5 * M))
    tick()
    waiting = make_fiche(studio, user, "encore")

    response = alice.post(f"/api/fiches/{waiting.pk}/start", content_type="application/json")

    assert response.status_code == 409, response.content
    assert response.json()["code"] == "budget_exhausted"
    with pytest.raises(Refused):
        fiches.create_fiche(projet_id=studio.pk, actor=user, owner_id=user.pk, start=True)


def test_a_member_sees_the_budget_live_on_the_page_and_a_stranger_does_not(user, studio):
    budgets.save_budget(projet_id=studio.pk, kind="time", period="total", limit=3600, thresholds=[80], action="alert")
    fiches.start_fiche(fiche_id=make_fiche(studio, user).pk, actor=user, at=whole_ms(db_now() - 47 * M))
    tick()
    stranger = person("sam")

    page = signed_in(user).get("/").content.decode()
    partial = signed_in(user).get("/budgets").content.decode()

    for html in (page, partial):
        assert "Site vitrine" in html and 'hx-trigger="every 5s"' in html
        assert "78." in html or "79." in html
    assert "Site vitrine" not in signed_in(stranger).get("/budgets").content.decode()


def test_a_client_budget_is_not_shown_to_someone_who_cannot_see_all_its_projects(alice, user, studio):
    client = Client.objects.create(name="ACME")
    open_projet = project("Public", client=client)
    studio.client = client
    studio.save()
    budgets.save_budget(client_id=client.pk, kind="time", period="total", limit=3600, thresholds=[50], action="alert")
    fiches.start_fiche(fiche_id=make_fiche(studio, user).pk, actor=user, at=whole_ms(db_now() - 40 * M))
    stranger = person("nick")
    make_fiche(open_projet, stranger)
    tick()

    member_sees = alice.get(f"/api/projets/{open_projet.pk}/").json()["budget"]
    stranger_sees = signed_in(stranger).get(f"/api/projets/{open_projet.pk}/").json()["budget"]

    assert member_sees is not None and member_sees["used"] >= 40 * 60
    assert stranger_sees is None  # it would show the restricted project's time
    assert "ACME" not in signed_in(stranger).get("/budgets").content.decode()
