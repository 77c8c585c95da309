"""The API's entries and projects: a script finds a project, adds, lists, changes, splits and deletes entries."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client

from tests.factories import project, running_fiche
from tests.support import assert_exact
from timesheet.core.dbtime import db_now
from timesheet.domain import locks
from timesheet.models import FicheTemps, Stretch

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def one_running_fiche_each(settings):
    settings.FICHE_MAX_RUNNING_PER_OWNER = 1


def yesterday(hour, minute=0):
    day = db_now().date() - timedelta(days=1)
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


def send(client, method, url, body=None):
    return getattr(client, method)(url, json.dumps(body or {}), content_type="application/json")


def add(client, projet, start, end, **fields):
    response = send(
        client,
        "post",
        "/api/entries/",
        {"projet": projet.pk, "start": start.isoformat(), "end": end.isoformat(), **fields},
    )
    assert response.status_code == 201, response.content
    return response.json()


def test_a_script_lists_the_projects_it_may_use(alice, projet):
    project("Archivé", actif=False)

    assert alice.get("/api/projets/").json() == [
        {"id": projet.pk, "designation": projet.designation, "client": None, "billable": True, "budget": None}
    ]
    assert Client().get("/api/projets/").status_code == 401


def test_an_entry_is_added_listed_changed_split_and_deleted(alice, user, projet):
    entry = add(alice, projet, yesterday(9), yesterday(11), libelle="Rapport")
    assert entry == {
        "id": entry["id"],
        "fiche": entry["fiche"],
        "projet": {"id": projet.pk, "designation": projet.designation},
        "libelle": "Rapport",
        "start": yesterday(9).isoformat(),
        "end": yesterday(11).isoformat(),
        "seconds": 7200.0,
    }
    day = yesterday(0).date().isoformat()
    assert [e["id"] for e in alice.get(f"/api/entries/?from={day}&to={day}").json()] == [entry["id"]]

    changed = send(alice, "patch", f"/api/entries/{entry['id']}", {"end": yesterday(10, 30).isoformat()})
    assert changed.status_code == 200 and changed.json()["seconds"] == 5400.0
    split = send(alice, "post", f"/api/entries/{entry['id']}/split", {"at": yesterday(10).isoformat()})
    assert split.status_code == 200
    second = split.json()["second"]
    assert (second["start"], second["end"]) == (yesterday(10).isoformat(), yesterday(10, 30).isoformat())
    assert alice.delete(f"/api/entries/{second['id']}").status_code == 204
    assert assert_exact(entry["fiche"]).temps_impute == timedelta(hours=1)


def test_an_entry_typed_as_a_day_and_seconds(alice, projet):
    response = send(
        alice, "post", "/api/entries/", {"projet": projet.pk, "day": yesterday(0).date().isoformat(), "seconds": 1800}
    )

    assert response.status_code == 201, response.content
    assert (response.json()["start"], response.json()["seconds"]) == (yesterday(9).isoformat(), 1800.0)


def test_a_running_entry_has_no_end_and_grows(alice, user, projet):
    fiche = running_fiche(projet, user)
    today = db_now().date().isoformat()

    (entry,) = alice.get(f"/api/entries/?from={today}&to={today}").json()

    assert entry["fiche"] == fiche.pk and entry["end"] is None and entry["seconds"] >= 0


@pytest.mark.parametrize(
    ("body", "status", "code", "text"),
    [
        ({"start": "2026-01-01T10:00:00+00:00"}, 400, "invalid", "a start and an end"),
        ({"start": "2026-01-01T10:00:00", "end": "2026-01-01T11:00:00"}, 400, "invalid", "time zone"),
        ({"start": "2026-01-01T11:00:00+00:00", "end": "2026-01-01T10:00:00+00:00"}, 400, "invalid", "end after"),
        ({"start": "nope", "end": "2026-01-01T10:00:00+00:00"}, 400, None, "'start'"),
        ({"day": "2026-01-01", "seconds": -5}, 400, None, "'seconds'"),
        (
            {"start": "2026-01-01T10:00:00+00:00", "end": "2026-01-01T11:00:00+00:00", "colour": "red"},
            400,
            None,
            "Unknown field",
        ),
    ],
)
def test_bad_entries_are_refused_with_a_clear_error_and_nothing_is_made(alice, projet, body, status, code, text):
    response = send(alice, "post", "/api/entries/", {"projet": projet.pk, **body})

    assert response.status_code == status, response.content
    assert text in response.json()["error"] and response.json().get("code") == code
    assert not FicheTemps.objects.exists()


def test_an_overlap_is_a_409_with_its_code(alice, projet):
    add(alice, projet, yesterday(9), yesterday(10))

    response = send(
        alice,
        "post",
        "/api/entries/",
        {"projet": projet.pk, "start": yesterday(9, 30).isoformat(), "end": yesterday(11).isoformat()},
    )

    assert response.status_code == 409 and response.json()["code"] == "overlap"


def test_a_locked_day_is_a_409_locked(alice, superuser, projet):
    entry = add(alice, projet, yesterday(9), yesterday(10))
    locks.lock_days(until=yesterday(0).date(), actor=superuser)

    response = send(alice, "patch", f"/api/entries/{entry['id']}", {"start": yesterday(8).isoformat()})

    assert response.status_code == 409 and response.json()["code"] == "locked"
    assert alice.delete(f"/api/entries/{entry['id']}").json()["code"] == "locked"


def test_someone_elses_entries_are_not_found_or_forbidden(alice, other_user, staff, projet):
    bob = Client()
    bob.force_login(other_user)
    entry = add(bob, projet, yesterday(9), yesterday(10))
    day = yesterday(0).date().isoformat()

    assert send(alice, "patch", f"/api/entries/{entry['id']}", {"libelle": "x"}).status_code == 404
    assert alice.delete(f"/api/entries/{entry['id']}").status_code == 404
    forbidden = alice.get(f"/api/entries/?from={day}&to={day}&owner={other_user.pk}")
    assert forbidden.status_code == 403 and forbidden.json()["code"] == "forbidden"
    carol = Client()
    carol.force_login(staff)
    assert [e["id"] for e in carol.get(f"/api/entries/?from={day}&to={day}&owner={other_user.pk}").json()] == [
        entry["id"]
    ]


def test_a_range_too_long_is_refused(alice):
    response = alice.get("/api/entries/?from=2024-01-01&to=2026-01-01")

    assert response.status_code == 400 and "366" in response.json()["error"]


def test_a_fiche_starts_as_of_an_earlier_instant_through_the_api(alice, projet):
    began = db_now() - timedelta(minutes=25)

    response = send(
        alice, "post", "/api/fiches/", {"projet": projet.pk, "start": True, "started_at": began.isoformat()}
    )

    assert response.status_code == 201, response.content
    assert response.json()["temps_live"] >= 25 * 60
    paused = send(alice, "post", "/api/fiches/", {"projet": projet.pk, "started_at": began.isoformat()})
    assert paused.status_code == 400 and paused.json()["code"] == "invalid"
    fiche = FicheTemps.objects.create(projet=projet, owner_id=response.json()["owner"]["id"])
    overlap = send(alice, "post", f"/api/fiches/{fiche.pk}/start", {"at": (began - timedelta(minutes=1)).isoformat()})
    assert overlap.status_code == 409 and overlap.json()["code"] in ("overlap", "limit_reached")
    assert Stretch.objects.count() == 1
