"""Fiches as JSON: instants in ISO 8601, durations in seconds, the same from a row as from a fiche in hand."""

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from tests.factories import make_fiche, running_fiche
from timesheet.domain.serialize import FIELDS, fiche_json, fiche_rows, iso, row_json, seconds
from timesheet.models import FicheTemps


def test_iso_writes_an_instant_with_its_offset_and_none_as_none():
    assert iso(datetime(2026, 3, 29, 1, 2, 3, 4000, tzinfo=UTC)) == "2026-03-29T01:02:03.004000+00:00"
    assert iso(datetime(2026, 3, 29, 1, 2, 3, tzinfo=timezone(timedelta(hours=2)))) == "2026-03-29T01:02:03+02:00"
    assert iso(date(2026, 3, 29)) == "2026-03-29"
    assert iso(None) is None


@pytest.mark.parametrize(
    "duration, expected",
    [
        (timedelta(0), 0.0),
        (timedelta(microseconds=1), 0.000001),
        (timedelta(milliseconds=1), 0.001),
        (timedelta(hours=1, minutes=30, microseconds=250_000), 5400.25),
        (timedelta(days=3, seconds=7), 259_207.0),
        (timedelta(seconds=-1, microseconds=500_000), -0.5),
    ],
)
def test_seconds_are_exact_to_the_microsecond(duration, expected):
    assert seconds(duration) == expected


def test_a_row_is_shown_with_its_project_and_owner_nested():
    at = datetime(2026, 1, 5, 9, tzinfo=UTC)
    row = {
        "id": 7,
        "projet_id": 3,
        "designation": "Refonte",
        "owner_id": 2,
        "username": "alice",
        "libelle": "Revue",
        "etat": "en_calcul",
        "temps_impute": timedelta(minutes=1),
        "temps_live": timedelta(minutes=1, milliseconds=500),
        "en_calcul_depuis": at,
        "compte_jusqua": at + timedelta(minutes=1),
        "auto_stopped": False,
        "created_at": at - timedelta(days=1),
        "updated_at": at,
        "db_now": at + timedelta(minutes=1, milliseconds=500),
    }
    assert row_json(row) == {
        "id": 7,
        "projet": {"id": 3, "designation": "Refonte"},
        "owner": {"id": 2, "username": "alice"},
        "libelle": "Revue",
        "etat": "en_calcul",
        "temps_impute": 60.0,
        "temps_live": 60.5,
        "en_calcul_depuis": "2026-01-05T09:00:00+00:00",
        "compte_jusqua": "2026-01-05T09:01:00+00:00",
        "auto_stopped": False,
        "created_at": "2026-01-04T09:00:00+00:00",
        "updated_at": "2026-01-05T09:00:00+00:00",
        "server_time": "2026-01-05T09:01:00.500000+00:00",
    }


@pytest.mark.django_db
def test_rows_carry_the_fields_of_a_fiche_and_the_names_shown_beside_them(projet, user):
    make_fiche(projet, user)
    (row,) = fiche_rows(FicheTemps.objects.with_live_time())
    assert set(row) == {*FIELDS, "designation", "username"}
    assert (row["designation"], row["username"]) == ("Refonte", "alice")


@pytest.mark.django_db
def test_a_fiche_in_hand_and_its_row_show_the_same(projet, user):
    fiche = make_fiche(projet, user, "Revue")
    FicheTemps.objects.filter(pk=fiche.pk).update(temps_impute=timedelta(hours=1, microseconds=250_000))
    in_hand = fiche_json(FicheTemps.objects.with_live_time().select_related("projet", "owner").get(pk=fiche.pk))
    from_row = row_json(fiche_rows(FicheTemps.objects.with_live_time()).get(pk=fiche.pk))
    assert in_hand.pop("server_time") is not None and from_row.pop("server_time") is not None
    assert in_hand == from_row
    assert {
        key: in_hand[key] for key in ("id", "projet", "owner", "libelle", "etat", "temps_impute", "temps_live")
    } == {
        "id": fiche.pk,
        "projet": {"id": projet.pk, "designation": "Refonte"},
        "owner": {"id": user.pk, "username": "alice"},
        "libelle": "Revue",
        "etat": "en_pause",
        "temps_impute": 3600.25,
        "temps_live": 3600.25,
    }
    assert in_hand["en_calcul_depuis"] is None and in_hand["compte_jusqua"] is None


@pytest.mark.django_db
def test_a_running_fiches_live_time_runs_up_to_the_instant_it_was_read_at(projet, user):
    fiche = running_fiche(projet, user)
    row = fiche_rows(FicheTemps.objects.with_live_time()).get(pk=fiche.pk)
    assert row["temps_live"] == row["temps_impute"] + (row["db_now"] - row["compte_jusqua"])
    shown = row_json(row)
    assert shown["etat"] == "en_calcul"
    assert shown["server_time"] == iso(row["db_now"]) and shown["server_time"].endswith("+00:00")
    assert shown["temps_live"] == seconds(row["db_now"] - row["compte_jusqua"])
